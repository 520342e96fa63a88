#!/usr/bin/env bash
# The vm driver's figures: cold boot to agent-ready per phase, a warm
# `pool run -- /bin/true` through a vm pool next to an ns pool in the same
# daemon, and the memory of an idle VM's QEMU process.
#
# Usage: bench/vm_run.sh BUILD_DIR            (run as root, after scripts/setup)
# Env:   BOOTS (5)   cold `warmbox run --driver vm -- /bin/true`, phases from the debug log
#        RUNS (15)   warm pool runs per driver (each waits until its pool has an idle sandbox)
#        IDLE (2)    idle VMs whose QEMU RSS/PSS is read
# Output: the summary in BUILD_DIR/bench-vm.md (also printed).
#
# Everything lives in a mktemp state dir; the exit trap stops the daemon,
# removes the dir and fails if a QEMU of ours survives.
set -euo pipefail

BOOTS="${BOOTS:-5}"
RUNS="${RUNS:-15}"
IDLE="${IDLE:-2}"
die() { echo "vm_run: error: $*" >&2; exit 1; }
note() { echo "vm_run: $*" >&2; }
[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root"
for v in BOOTS RUNS IDLE; do [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive integer"; done
BUILD="$(realpath -- "$1")"
WARMBOX="$BUILD/warmbox"
[ -x "$WARMBOX" ] || die "$WARMBOX not found (build first)"
command -v python3 >/dev/null || die "python3 not installed"

STATE="$(mktemp -d /tmp/wb-vm-bench-XXXXXX)"
SOCK="$STATE/pool.sock"
DAEMON=""
cleanup() {
    local rc=$?
    if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
        "$WARMBOX" pool stop --socket "$SOCK" >/dev/null 2>&1 || kill "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    local left
    left=$(pgrep -f -- "$STATE" | wc -l || true)
    rm -rf "$STATE"
    if [ "${left:-0}" -gt 0 ]; then echo "vm_run: error: $left process(es) of ours survived" >&2; exit 1; fi
    exit $rc
}
trap cleanup EXIT
wb() { "$WARMBOX" --state-dir "$STATE" "$@"; }

note "guest kernel:"; wb vm kernel >&2

# --- cold boots, per phase ---------------------------------------------------
wb run --driver vm -- /bin/true  # builds the initramfs and the image's disk
: >"$STATE/cold.log"
for i in $(seq "$BOOTS"); do
    s=$(date +%s%N)
    wb --log-level debug run --driver vm -- /bin/true 2>>"$STATE/cold.log"
    e=$(date +%s%N)
    echo "wall_ms $(( (e - s) / 1000000 ))" >>"$STATE/cold.log"
done

# --- warm runs: a vm pool and an ns pool in one daemon -------------------------
"$WARMBOX" --state-dir "$STATE" pool start --socket "$SOCK" --driver vm --size "$IDLE" --memory 256m \
    2>"$STATE/daemon.log" &
DAEMON=$!
idle_of() {  # idle count of the pool of driver $1, 0 while one is being created
    "$WARMBOX" pool status --socket "$SOCK" --json 2>/dev/null |
        python3 -c "import json,sys; print(sum(p['idle'] if not p['creating'] else 0 for p in json.load(sys.stdin) if p['driver']=='$1'))" 2>/dev/null || echo 0
}
wait_idle() {  # driver, count, seconds
    local t=0
    while [ "$(idle_of "$1")" -lt "$2" ]; do
        sleep 0.2; t=$((t + 1))
        [ $t -lt $(( $3 * 5 )) ] || die "no $2 idle $1 sandbox(es) after $3 s; daemon log: $(tail -5 "$STATE/daemon.log")"
    done
}
wait_idle vm "$IDLE" 300
# QEMU memory of idle VMs (the daemon's QEMU children).
: >"$STATE/mem.txt"
for pid in $(pgrep -P "$DAEMON" -f qemu-system || true); do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
    echo "$rss $pss" >>"$STATE/mem.txt"
done
"$WARMBOX" pool run --socket "$SOCK" --driver ns -- /bin/true >/dev/null  # warms the ns pool (size $IDLE too)
: >"$STATE/warm.txt"
for i in $(seq "$RUNS"); do
    for d in vm ns; do
        # A full pool, no boot in flight: a warm run, not a run beside a boot.
        wait_idle "$d" "$([ "$d" = vm ] && echo "$IDLE" || echo 1)" 300
        s=$(date +%s%N)
        "$WARMBOX" pool run --socket "$SOCK" --driver "$d" -- /bin/true
        e=$(date +%s%N)
        echo "$d $(( (e - s) / 1000 ))" >>"$STATE/warm.txt"
    done
done

python3 - "$STATE" "$BUILD/bench-vm.md" <<'PY'
import re, statistics, sys
state, out = sys.argv[1], sys.argv[2]
cold = open(f"{state}/cold.log").read()
pat = re.compile(r"ready in (\d+) ms \(disks (\d+) ms; guest clock: kernel until /init (\d+) ms, modules (\d+) ms, "
                 r"port (\d+) ms, rootfs (\d+) ms; qemu start and agent answer (-?\d+) ms; warm-up (\d+) ms\)")
rows = [tuple(map(int, m.groups())) for m in pat.finditer(cold)]
walls = [int(x) for x in re.findall(r"^wall_ms (\d+)", cold, re.M)]
med = lambda xs: statistics.median(xs) if xs else float("nan")
names = ["Create to agent heartbeat (host)", "disks (cached)", "kernel until /init (guest clock)", "modules",
         "port open", "rootfs mount + switch_root", "QEMU start + agent answer (host - guest)",
         "warm-up command (after ready)"]
lines = ["# vm driver figures", "", f"Cold boots: {len(rows)} (`warmbox run --driver vm -- /bin/true`), medians", "",
         "| phase | ms |", "|---|---|"]
for i, n in enumerate(names):
    lines.append(f"| {n} | {med([r[i] for r in rows]):.0f} |")
lines.append(f"| whole `warmbox run` (wall, incl. teardown) | {med(walls):.0f} |")
warm = {"vm": [], "ns": []}
for l in open(f"{state}/warm.txt"):
    d, us = l.split()
    warm[d].append(int(us) / 1000)
lines += ["", "Warm `warmbox pool run -- /bin/true` (CLI wall, ms; same daemon, runs interleaved)", "",
          "| driver | runs | p50 | min | max |", "|---|---|---|---|---|"]
for d in ("vm", "ns"):
    xs = sorted(warm[d])
    if xs:
        lines.append(f"| {d} | {len(xs)} | {med(xs):.1f} | {xs[0]:.1f} | {xs[-1]:.1f} |")
if warm["vm"] and warm["ns"]:
    lines.append(f"\nvm/ns p50 ratio: {med(warm['vm']) / med(warm['ns']):.0f}x")
mem = [tuple(map(int, l.split())) for l in open(f"{state}/mem.txt") if l.strip()]
if mem:
    lines += ["", f"Idle VM QEMU memory ({len(mem)} VMs, 256 MiB guests, TCG tb-size=64): "
              f"RSS median {med([m[0] for m in mem]) / 1024:.0f} MiB, PSS median {med([m[1] for m in mem]) / 1024:.0f} MiB"]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
