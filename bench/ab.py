#!/usr/bin/env python3
"""A/B comparison of two commands, alternating call by call.

  bench/ab.py [--runs N] [--warmup W] 'COMMAND A' 'COMMAND B'

On a shared 2-core machine, separate runs drift by 10-20% between each other
(a peer such as crun moves that much), which hides or invents regressions of
that size. Alternating A and B (ABBA order) puts both under the same
conditions; the medians and their ratio are printed. Used for issue 13's
"make bench must not get slower", e.g. a cold run of two builds:

  bench/ab.py 'OLD/warmbox --state-dir /tmp/a run -- /bin/true' \\
              'NEW/warmbox --state-dir /tmp/b run -- /bin/true'

A failing command stops the comparison (exit 1).
"""
import argparse
import shlex
import statistics
import subprocess
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=300, help="timed calls of each command (300)")
    p.add_argument("--warmup", type=int, default=20, help="untimed rounds first (20)")
    p.add_argument("a")
    p.add_argument("b")
    o = p.parse_args()
    if o.runs < 2 or o.warmup < 0:
        p.error("--runs must be at least 2 and --warmup at least 0")
    cmds = {"A": shlex.split(o.a), "B": shlex.split(o.b)}
    times = {"A": [], "B": []}
    for i in range(o.warmup + o.runs):
        for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
            start = time.perf_counter()
            r = subprocess.run(cmds[k], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            took = (time.perf_counter() - start) * 1000
            if r.returncode != 0:
                sys.stderr.write("ab: %s failed (exit %d): %s\n" % (k, r.returncode, r.stderr.decode(errors="replace")))
                return 1
            if i >= o.warmup:
                times[k].append(took)
    for k in ("A", "B"):
        v = sorted(times[k])
        print("%s: median %.2f ms  p25 %.2f  p75 %.2f  mean %.2f  (n=%d)  %s" % (
            k, statistics.median(v), v[len(v) // 4], v[3 * len(v) // 4], statistics.mean(v), len(v),
            " ".join(cmds[k])))
    print("B/A median ratio: %.3f" % (statistics.median(times["B"]) / statistics.median(times["A"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
