"""Helpers shared by the client's tests: a real daemon per test class.

The daemon runs as in tests/pool_test.cc: its own state dir under /tmp, its
own user-namespace id range (so that leak checks count only its processes)
and its own cgroup parent (so that leftover cgroups are its own). The build
dir comes from $WARMBOX_BUILD_DIR (ctest sets it), else the repo's build/.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Callable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # clients/python: the package under test

import warmbox  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
# Ids [USERNS_BASE, +65536) are this suite's alone (tests/uid_ranges.h lists
# every test's range; uid_ranges_test checks this one against it), so the
# processes found there are ours.
USERNS_BASE = 1700000000
# The daemon's whole span: slot 0 (the store's) and 128 sandbox ranges (the
# default --uid-slots; src/sandbox/ns/uid_slots.h).
UID_COUNT = 129 * 65536


def build_dir() -> str:
    return os.environ.get("WARMBOX_BUILD_DIR") or os.path.join(REPO, "build")


def warmbox_bin() -> str:
    return os.path.join(build_dir(), "warmbox")


def daemon_skip_reason() -> Optional[str]:
    """Why real-daemon tests cannot run here, or None (like SandboxProbe())."""
    if os.geteuid() != 0:
        return "needs root (the daemon maps a 65536-id range and creates cgroups)"
    for name in ("warmbox", "warmbox-agent"):
        p = os.path.join(build_dir(), name)
        if not os.access(p, os.X_OK):
            return f"{p} missing: build it (ninja -C build warmbox warmbox-agent) or set WARMBOX_BUILD_DIR"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "overlayfs not available"
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if f.read().strip() == "0":
                return "user namespaces disabled (max_user_namespaces=0)"
    except OSError:
        pass
    if not os.path.exists("/bin/busybox"):
        return "/bin/busybox missing (run scripts/setup)"
    return None


_http_probe: Optional[bool] = None


def daemon_has_http() -> bool:
    """True when this build's `pool start` has --http (the HTTP API is merged)."""
    global _http_probe
    if _http_probe is None:
        out = subprocess.run([warmbox_bin(), "pool", "start", "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, check=False).stdout.decode("utf-8", "replace")
        _http_probe = "--http" in out
    return _http_probe


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(pred: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Polls pred until it holds or the deadline passes (waits for a condition,
    never for a fixed time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def _die_with_parent() -> None:
    # A test run that is killed must not leave its daemon behind.
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Daemon:
    """`warmbox pool start` with its own state dir, id range and cgroup parent."""

    def __init__(self, *args: str, http: bool = False, token: Optional[str] = None,
                 userns_base: int = USERNS_BASE) -> None:
        self.args = list(args)
        self.userns_base = userns_base
        self.http = http
        self.token = token
        self.state = tempfile.mkdtemp(prefix="wb-pytest-")
        self.sock = os.path.join(self.state, "pool.sock")
        self.cgroup_parent = f"/warmbox-pytest-{os.getpid()}-{os.path.basename(self.state)}"
        self.url: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Daemon":
        argv = [warmbox_bin(), "--state-dir", self.state, "--userns-base", str(self.userns_base),
                "pool", "start", "--socket", self.sock] + self.args
        if self.http:
            port = free_port()
            argv += ["--http", f"127.0.0.1:{port}"]
            self.url = f"http://127.0.0.1:{port}"
            if self.token is not None:
                tf = os.path.join(self.state, "token")
                with open(tf, "w") as f:
                    f.write(self.token + "\n")
                os.chmod(tf, 0o600)
                argv += ["--http-token-file", tf]
        env = dict(os.environ, WARMBOX_CGROUP_PARENT=self.cgroup_parent)
        self.log = open(os.path.join(self.state, "daemon.log"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
                                     preexec_fn=_die_with_parent)
        try:
            self._wait_serving()
        except BaseException:
            problems = self.stop()
            if problems:
                sys.stderr.write("\n".join(problems) + "\n")
            raise
        return self

    def _wait_serving(self) -> None:
        client = warmbox.Client(socket=self.sock, timeout=5)

        def serving() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                client.status()
                return True
            except warmbox.DaemonUnavailable:
                return False

        if not eventually(serving, 30):
            raise AssertionError("daemon did not serve within 30 s:\n" + self.log_text())
        if self.http:
            if self.token is None:
                # No --http-token-file: the daemon generated STATE/http-token.
                path = os.path.join(self.state, "http-token")
                if os.stat(path).st_mode & 0o077:
                    raise AssertionError(f"{path} is readable by group or others")
                with open(path) as f:
                    self.token = f.read().strip()
            hc = warmbox.Client(url=self.url, token=self.token, timeout=5)

            def http_serving() -> bool:
                try:
                    hc.healthz()
                    return True
                except warmbox.DaemonUnavailable:
                    return False

            if not eventually(http_serving, 30):
                raise AssertionError("daemon's HTTP API did not serve within 30 s:\n" + self.log_text())

    def client(self, **kw: object) -> warmbox.Client:
        return warmbox.Client(socket=self.sock, **kw)  # type: ignore[arg-type]

    def http_client(self, **kw: object) -> warmbox.Client:
        kw.setdefault("token", self.token)
        return warmbox.Client(url=self.url, **kw)  # type: ignore[arg-type]

    def log_text(self) -> str:
        try:
            with open(os.path.join(self.state, "daemon.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def pool(self, image: str = "busybox") -> warmbox.PoolStatus:
        for p in self.client(timeout=5).status():
            if p.image == image:
                return p
        raise AssertionError(f"no pool for {image}")

    def stop(self) -> List[str]:
        """Stops the daemon (SIGTERM: drain) and returns what it leaked."""
        problems: List[str] = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("daemon ignored SIGTERM for 60 s")
        if self.proc is not None and self.proc.returncode not in (0, None):
            problems.append(f"daemon exited with {self.proc.returncode}")
        # The kernel reaps a sandbox's processes once its pid namespace's init
        # is gone; give that a moment rather than racing it.
        lo = self.userns_base
        eventually(lambda: not _pids_with_uid_in(lo, lo + UID_COUNT), 5)
        procs = _pids_with_uid_in(lo, lo + UID_COUNT)
        if procs:
            problems.append(f"sandbox processes left: {procs}")
        mounts = [m for m in _mount_points() if m.startswith(self.state + "/")]
        if mounts:
            problems.append(f"mounts left under {self.state}: {mounts}")
        problems += _remove_cgroup_parent(self.cgroup_parent)
        if problems:
            problems.append("daemon log:\n" + self.log_text())
        if hasattr(self, "log"):
            self.log.close()
        if not mounts:
            shutil.rmtree(self.state, ignore_errors=True)
        return problems


def _pids_with_uid_in(lo: int, hi: int) -> List[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
            except OSError:
                continue
            if lo <= uid < hi:
                out.append(int(name))
    return out


def _mount_points() -> List[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split(" ")[4] for line in f if line.count(" ") > 4]


def _remove_cgroup_parent(parent: str) -> List[str]:
    """Removes the daemon's cgroup parent in every hierarchy; names any sandbox
    cgroup left inside (a leak)."""
    problems = []
    for d in sorted(set(glob.glob(f"/sys/fs/cgroup/*{parent}") + glob.glob(f"/sys/fs/cgroup{parent}"))):
        d = os.path.realpath(d)
        if not os.path.isdir(d):
            continue
        for child in sorted(os.listdir(d)):
            if os.path.isdir(os.path.join(d, child)):
                problems.append(f"cgroup left: {d}/{child}")
                try:
                    os.rmdir(os.path.join(d, child))
                except OSError:
                    pass
        try:
            os.rmdir(d)
        except OSError as e:
            problems.append(f"cannot remove {d}: {e}")
    return problems


class DaemonTestCase(unittest.TestCase):
    """One real daemon for the whole class (started in setUpClass)."""

    DAEMON_ARGS: List[str] = ["--size", "2", "--max", "4"]
    HTTP = False
    TOKEN: Optional[str] = None
    USERNS_BASE = USERNS_BASE
    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        why = daemon_skip_reason()
        if why:
            raise unittest.SkipTest(why)
        if cls.HTTP and not daemon_has_http():
            raise unittest.SkipTest(f"{warmbox_bin()} has no --http (the daemon's HTTP API is not in this build)")
        cls.daemon = Daemon(*cls.DAEMON_ARGS, http=cls.HTTP, token=cls.TOKEN, userns_base=cls.USERNS_BASE).start()

    @classmethod
    def tearDownClass(cls) -> None:
        problems = cls.daemon.stop()
        if problems:
            raise AssertionError("\n".join(problems))
