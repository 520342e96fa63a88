#!/usr/bin/env python3
"""Writes a hostile layer tar for warmbox's tests.

  make_hostile.py KIND OUT.tar TARGET

KIND: dotdot (../../TARGET/passwd), absolute (TARGET/abs as an absolute
path), symlink (a symlink "escape" -> TARGET, then escape/pwned written
through it), hardlink (a hard link to ../../TARGET/file); and features, not
hostile: a hard link, a fifo, a device node, xattrs (user.* and
security.capability), a set-uid file, an absolute symlink, a file in a dir
the tar never lists (TARGET unused).
"""
import io, sys, tarfile


def add(t, name, data=None, **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if data is not None:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    else:
        t.addfile(ti)


def main():
    kind, out, target = sys.argv[1], sys.argv[2], sys.argv[3].rstrip("/")
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        add(t, "ok.txt", b"fine\n")
        if kind == "dotdot":
            add(t, "../../../../../../.." + target + "/passwd", b"pwned\n")
        elif kind == "absolute":
            add(t, target + "/abs", b"pwned\n")
        elif kind == "symlink":
            add(t, "escape", type=tarfile.SYMTYPE, linkname=target)
            add(t, "escape/pwned", b"pwned\n")
        elif kind == "hardlink":
            add(t, "link", type=tarfile.LNKTYPE, linkname="../../../../../.." + target + "/file")
        elif kind == "features":
            add(t, "f/data", b"data\n", mode=0o644)
            add(t, "f/hard", type=tarfile.LNKTYPE, linkname="f/data")
            add(t, "f/fifo", type=tarfile.FIFOTYPE, mode=0o600)
            add(t, "f/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
            add(t, "f/suid", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000)
            add(t, "f/abs-link", type=tarfile.SYMTYPE, linkname="/etc/keep")
            add(t, "f/x", b"x\n", pax_headers={"SCHILY.xattr.user.note": "hi",
                                               "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"})
            add(t, "implicit/dir/file", b"deep\n", uid=5, gid=5)
        else:
            sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main()
