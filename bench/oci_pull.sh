#!/usr/bin/env bash
# Pull + unpack throughput of a ~100 MB image from a local registry:
# `warmbox image pull` (download, verify, unpack into the store) next to
# `skopeo copy` (download into an OCI layout) + `umoci unpack` (unpack it),
# the same image from the same registry, alternating, in one run.
#
# Usage: bench/oci_pull.sh BUILD_DIR        (run as root)
# Env:   RUNS (default 3), SIZE_MB (default 100: uncompressed content)
# Output: a table of median seconds and MB/s (of uncompressed layer bytes)
#         and the ratio warmbox / (skopeo+umoci).
set -euo pipefail

RUNS="${RUNS:-3}"
SIZE_MB="${SIZE_MB:-100}"
die() { echo "oci_pull: error: $*" >&2; exit 1; }
note() { echo "oci_pull: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root (the store shifts owners into the sandbox range)"
BUILD="$(realpath -- "$1")"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
for t in docker-registry skopeo umoci python3; do command -v "$t" >/dev/null || die "$t missing (scripts/setup)"; done
[ -x "$BUILD/warmbox" ] && [ -x "$BUILD/warmbox-image" ] || die "build warmbox and warmbox-image first"

WORK="$(mktemp -d /tmp/wb-oci-bench-XXXXXX)"
REG_PID=""
cleanup() {
  if [ -n "$REG_PID" ]; then
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the image: busybox, then two layers of files, half random (incompressible)
# and half base64 of random (compresses to ~75%) --------------------------------
note "building a ${SIZE_MB} MB image"
mkdir -p "$WORK/base/bin" "$WORK/data1/srv/a" "$WORK/data2/srv/b"
cp /bin/busybox "$WORK/base/bin/busybox"
ln -s busybox "$WORK/base/bin/sh"
python3 - "$WORK" "$SIZE_MB" <<'PY'
import base64, os, sys
work, size = sys.argv[1], int(sys.argv[2]) << 20
per = 256 << 10
for i in range(size // per):
    d = os.path.join(work, "data1/srv/a" if i % 2 == 0 else "data2/srv/b")
    raw = os.urandom(per) if i % 4 == 0 else base64.b64encode(os.urandom(per * 3 // 4))[:per]
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(raw)
PY
python3 "$SRC/tests/oci/make_layout.py" "$WORK/layout" --tag v1 --layer "$WORK/base" --layer "$WORK/data1" \
  --layer "$WORK/data2" --config '{"Cmd":["sh"]}' >/dev/null
COMPRESSED=$(du -sb "$WORK/layout/blobs" | cut -f1)
CONTENT=$(du -sb --apparent-size "$WORK/base" "$WORK/data1" "$WORK/data2" | awk '{s+=$1} END {print s}')

# --- the registry ---------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/reg.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/regdata
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$WORK/reg.yml" >"$WORK/reg.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REF="127.0.0.1:$PORT/bench/img:v1"
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/layout:v1" "docker://$REF"
sync

now() { date +%s.%N; }
run_warmbox() {
  local state="$WORK/state"
  rm -rf "$state"; mkdir -m 0711 "$state"
  local t0; t0=$(now)
  "$BUILD/warmbox" --state-dir "$state" --userns-base 1300000000 image pull -q "$REF" >/dev/null
  awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f\n", a - b}'
}
run_peer() {
  rm -rf "$WORK/oci" "$WORK/bundle"
  local t0; t0=$(now)
  skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$WORK/oci:v1"
  umoci unpack --image "$WORK/oci:v1" "$WORK/bundle" >/dev/null
  awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f\n", a - b}'
}

W=(); P=()
for i in $(seq "$RUNS"); do
  W+=("$(run_warmbox)")
  P+=("$(run_peer)")
  note "run $i: warmbox ${W[-1]} s, skopeo+umoci ${P[-1]} s"
done
# Sanity: both trees hold the same files.
n_w=$(find "$WORK/state/layers" -type f | wc -l)
n_p=$(find "$WORK/bundle/rootfs" -type f | wc -l)
[ "$n_w" -eq "$n_p" ] || note "warning: warmbox unpacked $n_w files, umoci $n_p"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mw=$(median "${W[@]}"); mp=$(median "${P[@]}")
python3 - "$mw" "$mp" "$CONTENT" "$COMPRESSED" "$RUNS" <<'PY'
import sys
w, p, content, comp, runs = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"image: {content/1e6:.1f} MB of files, {comp/1e6:.1f} MB of blobs (3 layers, gzip); median of {runs} runs")
print(f"{'':22} {'seconds':>8} {'MB/s (files)':>13} {'MB/s (blobs)':>13}")
print(f"{'warmbox image pull':22} {w:8.2f} {content/1e6/w:13.1f} {comp/1e6/w:13.1f}")
print(f"{'skopeo copy + umoci':22} {p:8.2f} {content/1e6/p:13.1f} {comp/1e6/p:13.1f}")
print(f"warmbox is {p/w:.2f}x the throughput of skopeo+umoci")
PY
