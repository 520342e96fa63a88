#!/usr/bin/env python3
"""The Python client's cost next to the CLI's, on one daemon, in one run.

Warm runs of `true` through warmbox.Client over the Unix socket (plain and
streamed), over HTTP when the build has --http, and through
`warmbox pool run` spawned from Python (what a Python program did before this
client); then a 1 MiB stdin echoed back by `cat`, where the socket's JSON byte
arrays cost the most. Prints medians, p90s and ratios to the socket client.

Usage: bench/python_client.py BUILD_DIR     (as root; RUNS=200 by default)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "clients", "python", "tests"))


def measure(fn: Callable[[], None], runs: int) -> List[float]:
    for _ in range(max(3, runs // 20)):  # warm-up: caches, the pool's refill rhythm
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ["WARMBOX_BUILD_DIR"] = os.path.realpath(sys.argv[1])
    import _support  # noqa: E402  (after WARMBOX_BUILD_DIR is set)
    import warmbox  # noqa: E402

    why = _support.daemon_skip_reason()
    if why:
        print(f"python_client: cannot run: {why}", file=sys.stderr)
        return 1
    runs = int(os.environ.get("RUNS", "200"))
    http = _support.daemon_has_http()
    d = _support.Daemon("--size", "4", "--max", "8", http=http).start()
    results: Dict[str, List[float]] = {}
    try:
        c = d.client()
        cli = [_support.warmbox_bin(), "pool", "run", "--socket", d.sock, "--", "true"]
        big = os.urandom(1 << 20)

        def check(r: warmbox.Result) -> None:
            if r.exit_code != 0:
                raise SystemExit(f"run failed: {r}")

        results["socket run(true)"] = measure(lambda: check(c.run(["true"])), runs)
        results["socket stream(true)"] = measure(lambda: check(c.stream(["true"]).wait()), runs)
        results["CLI `pool run -- true` via subprocess"] = measure(
            lambda: subprocess.run(cli, check=True, stdin=subprocess.DEVNULL), runs)
        results["socket run(cat) 1 MiB in+out"] = measure(lambda: check(c.run(["cat"], stdin=big)), runs // 4)
        if http:
            h = d.http_client()
            results["http run(true)"] = measure(lambda: check(h.run(["true"])), runs)
            results["http stream(true)"] = measure(lambda: check(h.stream(["true"]).wait()), runs)
            results["http run(cat) 1 MiB in+out"] = measure(lambda: check(h.run(["cat"], stdin=big)), runs // 4)
    finally:
        problems = d.stop()
    base = statistics.median(results["socket run(true)"])
    print(f"python {sys.version.split()[0]}, {runs} runs each (1 MiB: {runs // 4}), ms")
    print(f"{'what':44} {'median':>8} {'p90':>8} {'x socket':>9}")
    for name, xs in results.items():
        xs.sort()
        med = statistics.median(xs)
        print(f"{name:44} {med:8.2f} {xs[int(len(xs) * 0.9) - 1]:8.2f} {med / base:9.2f}")
    if not http:
        print("(no --http in this build: HTTP rows skipped)")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
