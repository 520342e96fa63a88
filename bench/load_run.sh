#!/usr/bin/env bash
# Load: 1, 16, 256 and 1000 concurrent clients against one daemon with a small
# pool (size 2, max 8). Every request completes or gets "busy"; the daemon's
# fds and threads return to their baseline. Usage: bench/load_run.sh BUILD_DIR
set -euo pipefail
BUILD="$(realpath "${1:-build}")"
LEVELS="${LEVELS:-1,16,256,1000}"
RUNS="${RUNS:-1}"      # runs per client per level
OUT="${OUT:-bench-load}"
[ "$(id -u)" -eq 0 ] || { echo "load_run: run as root" >&2; exit 1; }
STATE="$(mktemp -d /tmp/warmbox-load-XXXXXX)"
SOCK="$STATE/pool.sock"
DPID=""
cleanup() {
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then kill "$DPID"; wait "$DPID" 2>/dev/null || true; fi
  rm -rf "$STATE"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true
"$BUILD/warmbox" --state-dir "$STATE" --log-level warn pool start --socket "$SOCK" --size 2 --max 8 \
  --queue-timeout 30 ${EXTRA:-} 2>"$STATE/daemon.log" &
DPID=$!
for _ in $(seq 1 500); do "$BUILD/warmbox" pool status --socket "$SOCK" >/dev/null 2>&1 && break; sleep 0.02; done
"$BUILD/load" --socket "$SOCK" --daemon-pid "$DPID" --levels "$LEVELS" --runs-per-client "$RUNS" \
  --out "$BUILD/$OUT.json" | tee "$BUILD/$OUT.md"
