#!/usr/bin/env python3
"""Live sandboxes, side by side with crun in one run (issue "Sandboxes that live").

  claim   `sandbox_create` from a warm pool over the socket (in-process client), p50
  exec    `warmbox exec ID -- /bin/true` vs `crun exec C /bin/true` (CLI, alternated call by
          call), and the in-process exec (socket client, frames until the exit) vs a bare
          posix_spawn+wait of /bin/true
  files   100 MiB through `warmbox cp` each way vs `crun exec C sh -c 'cat > F'` and `cat F`
  memory  host memory per idle live sandbox (MemAvailable drop over MEM_SANDBOXES of them)

Usage: bench/live_run.py BUILD_DIR   (root; `make bench` runs it)
Env:   RUNS (50) calls per exec row, FILE_RUNS (5), CLAIMS (30), MEM_SANDBOXES (200)
Output: BUILD_DIR/bench-live.json and a table on stdout.
"""
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("RUNS", "50"))
FILE_RUNS = int(os.environ.get("FILE_RUNS", "5"))
CLAIMS = int(os.environ.get("CLAIMS", "30"))
MEM_SANDBOXES = int(os.environ.get("MEM_SANDBOXES", "200"))


def note(msg):
    print(f"live_run: {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"live_run: error: {msg}", file=sys.stderr)
    sys.exit(1)


class Pool:
    """The pool socket: a length-prefixed JSON request, then frames."""

    def __init__(self, path):
        self.path = path

    def open(self, req):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        body = json.dumps(req).encode()
        s.sendall(struct.pack("<I", len(body)) + body)
        return s

    @staticmethod
    def read_exact(s, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return bytes(buf)

    def answer(self, s):
        (n,) = struct.unpack("<I", self.read_exact(s, 4))
        return json.loads(self.read_exact(s, n))

    def call(self, req):
        with self.open(req) as s:
            return self.answer(s)

    def exec_true(self, sid):
        """One in-process exec: request, ok, agent frames until X."""
        with self.open({"op": "exec", "id": sid, "cmd": ["/bin/true"]}) as s:
            a = self.answer(s)
            if not a.get("ok"):
                raise RuntimeError(a)
            while True:
                hdr = self.read_exact(s, 5)
                n = struct.unpack(">I", hdr[1:])[0]
                payload = self.read_exact(s, n)
                if hdr[:1] == b"X":
                    return json.loads(payload)["exit_code"]
                if hdr[:1] in (b"F", b"e"):
                    raise RuntimeError(payload)


def median_ms(xs):
    return statistics.median(xs) * 1e3


def timed(argv, **kw):
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def alternate(a, b, runs):
    """Two commands called in turn (ab, ba, ...): medians share the machine's moods."""
    ta, tb = [], []
    for i in range(runs):
        for which in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            which[1].append(timed(which[0]))
    return ta, tb


def mem_available_kb():
    vals = []
    for _ in range(5):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    vals.append(int(line.split()[1]))
        time.sleep(0.2)
    return statistics.median(vals)


def main():
    if len(sys.argv) != 2:
        die("usage: live_run.py BUILD_DIR")
    if os.geteuid() != 0:
        die("must run as root")
    build = os.path.realpath(sys.argv[1])
    wb = os.path.join(build, "warmbox")
    state = tempfile.mkdtemp(prefix="wblive-state.")
    work = tempfile.mkdtemp(prefix="wblive-work.")
    os.chmod(state, 0o755)
    os.chmod(work, 0o755)
    sock = os.path.join(work, "pool.sock")
    crun_root = os.path.join(work, "crun")
    hybrid = os.path.ismount("/sys/fs/cgroup/unified")
    crun = ["crun"]
    if hybrid:
        # crun 1.8 refuses hybrid cgroups: a private mount namespace without the cgroup2 mount.
        crun = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified && exec crun "$@"', "sh"]
    daemon = None
    container = f"wblive-{os.getpid()}"
    results = {}
    try:
        subprocess.run([wb, "--state-dir", state, "run", "--", "/bin/true"], check=True)
        rootfs = os.path.join(state, "images", "busybox", "rootfs")
        log = open(os.path.join(work, "daemon.log"), "w")
        daemon = subprocess.Popen(
            [wb, "--state-dir", state, "pool", "start", "--socket", sock, "--size", "4",
             "--max-sandboxes", str(MEM_SANDBOXES + 10)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        pool = Pool(sock)

        def idle():
            try:
                st = pool.call({"op": "status"})
                return sum(i.get("idle", 0) for i in st.get("images", []))
            except OSError:
                return -1

        def wait_idle(n, secs=120):
            t0 = time.time()
            while idle() < n:
                if daemon.poll() is not None:
                    die("the daemon exited; see " + log.name)
                if time.time() - t0 > secs:
                    die(f"pool did not reach {n} idle")
                time.sleep(0.05)

        wait_idle(4)
        # --- claim -----------------------------------------------------------
        claims = []
        for _ in range(CLAIMS):
            wait_idle(4)
            t0 = time.perf_counter()
            r = pool.call({"op": "sandbox_create", "no_main": True})
            claims.append(time.perf_counter() - t0)
            if not r.get("ok"):
                die(f"sandbox_create: {r}")
            pool.call({"op": "sandbox_kill", "id": r["sandbox"]["id"]})
        results["claim_p50_ms"] = median_ms(claims)
        wait_idle(4)
        sid = pool.call({"op": "sandbox_create", "no_main": True})["sandbox"]["id"]

        # --- crun peer ---------------------------------------------------------
        bundle = os.path.join(work, "bundle")
        os.makedirs(bundle)
        subprocess.run(["crun", "spec"], cwd=bundle, check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["root"] = {"path": rootfs, "readonly": True}
        cfg["process"]["args"] = ["sleep", "100000"]
        cfg["process"]["terminal"] = False
        cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev", "size=300m"]})
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        subprocess.run(crun + ["--root", crun_root, "run", "-d", "-b", bundle, container],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        crun_exec = ["crun", "--root", crun_root, "exec", container]

        # --- exec --------------------------------------------------------------
        wexec = [wb, "exec", "--socket", sock, sid, "--", "/bin/true"]
        tw, tc = alternate(wexec, crun_exec + ["/bin/true"], RUNS)
        results["exec_cli_p50_ms"] = median_ms(tw)
        results["crun_exec_p50_ms"] = median_ms(tc)
        inproc, bare = [], []
        for _ in range(RUNS * 4):
            t0 = time.perf_counter()
            if pool.exec_true(sid) != 0:
                die("in-process exec of /bin/true failed")
            inproc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
            os.waitpid(pid, 0)
            bare.append(time.perf_counter() - t0)
        results["exec_inproc_p50_ms"] = median_ms(inproc)
        results["bare_spawn_p50_ms"] = median_ms(bare)

        # --- files -------------------------------------------------------------
        src = os.path.join(work, "data")
        with open(src, "wb") as f:
            f.write(os.urandom(100 << 20))
        size = os.path.getsize(src)
        up, down, cup, cdown = [], [], [], []
        back = os.path.join(work, "back")
        for _ in range(FILE_RUNS):
            up.append(timed([wb, "cp", "--socket", sock, src, sid + ":/tmp/data"]))
            down.append(timed([wb, "cp", "--socket", sock, sid + ":/tmp/data", back]))
            with open(src, "rb") as fin:
                cup.append(timed(crun_exec + ["sh", "-c", "cat > /tmp/data"], stdin=fin))
            t0 = time.perf_counter()
            with open(back, "wb") as fout:
                subprocess.run(crun_exec + ["cat", "/tmp/data"], check=True, stdout=fout)
            cdown.append(time.perf_counter() - t0)
        if os.path.getsize(back) != size:
            die("the crun read-back differs in size")
        mbps = lambda ts: size / statistics.median(ts) / 1e6
        results.update(cp_up_MBps=mbps(up), cp_down_MBps=mbps(down),
                       crun_up_MBps=mbps(cup), crun_down_MBps=mbps(cdown))

        # --- memory ------------------------------------------------------------
        pool.call({"op": "sandbox_kill", "id": sid})
        wait_idle(4)
        before = mem_available_kb()
        ids = []
        for _ in range(MEM_SANDBOXES):
            r = pool.call({"op": "sandbox_create", "no_main": True})
            if not r.get("ok"):
                die(f"sandbox_create #{len(ids)}: {r}")
            ids.append(r["sandbox"]["id"])
        wait_idle(4, 300)
        after = mem_available_kb()
        results["memory_per_sandbox_MiB"] = (before - after) / 1024 / MEM_SANDBOXES
        results["memory_sandboxes"] = MEM_SANDBOXES
        for i in ids:
            pool.call({"op": "sandbox_kill", "id": i})
    finally:
        subprocess.run(crun + ["--root", crun_root, "delete", "-f", container],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if daemon and daemon.poll() is None:
            subprocess.run([wb, "pool", "stop", "--socket", sock], stdout=subprocess.DEVNULL)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        subprocess.run([wb, "--state-dir", state, "gc"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)

    with open(os.path.join(build, "bench-live.json"), "w") as f:
        json.dump(results, f, indent=2)
    r = results
    rows = [
        ("claim p50 (socket, in-process client)", f"{r['claim_p50_ms']:.2f} ms", "<= 1 ms"),
        ("exec CLI p50 / crun exec p50",
         f"{r['exec_cli_p50_ms'] / r['crun_exec_p50_ms']:.2f} "
         f"({r['exec_cli_p50_ms']:.2f} / {r['crun_exec_p50_ms']:.2f} ms)", "<= 0.5"),
        ("exec in-process p50 / bare spawn p50",
         f"{r['exec_inproc_p50_ms'] / r['bare_spawn_p50_ms']:.2f} "
         f"({r['exec_inproc_p50_ms']:.2f} / {r['bare_spawn_p50_ms']:.2f} ms)", "<= 2"),
        ("cp 100 MiB in (warmbox / crun cat)",
         f"{r['cp_up_MBps']:.0f} / {r['crun_up_MBps']:.0f} MB/s", ">= 300 MB/s"),
        ("cp 100 MiB out (warmbox / crun cat)",
         f"{r['cp_down_MBps']:.0f} / {r['crun_down_MBps']:.0f} MB/s", ">= 300 MB/s"),
        (f"host memory per idle live sandbox ({r['memory_sandboxes']})",
         f"{r['memory_per_sandbox_MiB']:.2f} MiB", "<= 0.5 MiB"),
    ]
    print("| figure | measured | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
