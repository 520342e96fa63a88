#!/usr/bin/env python3
"""Writes a hostile layer tar for warmbox's tests.

  make_hostile.py KIND OUT.tar TARGET

KIND: dotdot (../../TARGET/passwd), absolute (TARGET/abs as an absolute
path), symlink (a symlink "escape" -> TARGET, then escape/pwned written
through it), hardlink (a hard link to ../../TARGET/file).
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
        else:
            sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main()
