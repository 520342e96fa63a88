#!/usr/bin/env bash
# Snapshot-template figures (issue 9), in one run: cold boot to agent-ready,
# clone to agent-ready with a pre-started QEMU (p50/p99), PSS per clone with
# 10 clones up, refill rate; then a warm `pool run -- /bin/true` served by a
# clone (pool start --driver vm --snapshot).
# Usage: bench/vm_snapshot.sh BUILD_DIR     (root, after scripts/setup)
# Env: COLD (3) cold boots, CLONES (20) clones, RUNS (10) warm pool runs.
set -euo pipefail
COLD="${COLD:-3}"; CLONES="${CLONES:-20}"; RUNS="${RUNS:-10}"
die() { echo "vm_snapshot: error: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root"
BUILD="$(realpath -- "$1")"
[ -x "$BUILD/vm_snapshot_bench" ] || die "$BUILD/vm_snapshot_bench not built (ninja -C BUILD vm_snapshot_bench)"
STATE="$(mktemp -d /tmp/wb-vmsnap-bench-XXXXXX)"
chmod 711 "$STATE"  # the sandboxes' uid range walks to the disk cache below it
SOCK="$STATE/pool.sock"; DAEMON=""
cleanup() {
    local rc=$?
    if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
        "$BUILD/warmbox" pool stop --socket "$SOCK" >/dev/null 2>&1 || kill "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    local left; left=$(pgrep -f -- "$STATE" | wc -l || true)
    rm -rf "$STATE"
    [ "${left:-0}" -eq 0 ] || { echo "vm_snapshot: error: $left process(es) of ours survived" >&2; exit 1; }
    exit $rc
}
trap cleanup EXIT

"$BUILD/vm_snapshot_bench" "$STATE/drv" "$BUILD/warmbox-agent" "$COLD" "$CLONES" 2>"$STATE/bench.log" >"$STATE/table.md"
cat "$STATE/table.md"
python3 - "$STATE/bench.log" <<'PY'
import re, sys
rows = [l for l in open(sys.argv[1]) if "vm clone" in l and "ready in" in l]
rows = rows[-int(len(rows) and len(rows)):]
def ms(pat, l): return float(re.search(pat, l).group(1))
ready = sorted(ms(r"ready in ([\d.]+) ms", l) for l in rows)
def pct(v, p): return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]
if ready:
    print(f"| clone to agent-ready with a pre-started QEMU (restore + resume + identity + warm-up), p50 / p99 of {len(ready)} | {pct(ready, .5):.1f} / {pct(ready, .99):.1f} ms |")
    nowarm = sorted(ms(r"ready in ([\d.]+) ms", l) - ms(r"warm-up ([\d.]+) ms\)", l) for l in rows)
    print(f"| clone to agent-ready with a pre-started QEMU, before the warm-up (restore + resume + identity), p50 / p99 | {pct(nowarm, .5):.1f} / {pct(nowarm, .99):.1f} ms |")
    for k, pat in [("restore", r"restore ([\d.]+) ms"), ("resume to heartbeat", r"heartbeat ([\d.]+) ms"),
                   ("identity", r"identity ([\d.]+) ms"), ("warm-up", r"warm-up ([\d.]+) ms\)")]:
        v = sorted(ms(pat, l) for l in rows)
        print(f"| &nbsp; {k}, p50 | {pct(v, .5):.1f} ms |")
PY

# A warm pool run served by a clone.
"$BUILD/warmbox" --state-dir "$STATE/pool" pool start --socket "$SOCK" --driver vm --snapshot \
    --size 1 --memory 256m >"$STATE/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 600); do [ -S "$SOCK" ] && break; sleep 0.1; done
times=()
for i in $(seq "$RUNS"); do
    # Wait for an idle clone, so each run is a warm hit.
    for _ in $(seq 600); do
        "$BUILD/warmbox" pool status --socket "$SOCK" --json 2>/dev/null | grep -q '"idle": 1' && break; sleep 0.1
    done
    s=$(date +%s%N); "$BUILD/warmbox" pool run --socket "$SOCK" -- /bin/true; e=$(date +%s%N)
    times+=($(( (e - s) / 1000 )))
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "| warm `pool run -- /bin/true` served by a clone, p50 of %d | %.1f ms |\n", NR, a[int((NR+1)/2)]/1000}'
"$BUILD/warmbox" pool status --socket "$SOCK" | sed 's/^/    /'
