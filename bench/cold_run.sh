#!/usr/bin/env bash
# Cold-start benchmark: warmbox vs bubblewrap, crun, runc and a bare fork+exec,
# all running /bin/true from the same busybox rootfs, measured in ONE hyperfine
# invocation so they share the same conditions.
#
# Usage: bench/cold_run.sh BUILD_DIR        (run as root; `make bench` does this)
# Env:   RUNS (default 50), WARMUP (default 5)
# Output: BUILD_DIR/bench-cold-run.json (hyperfine export) and a median/ratio table.
#
# warmbox failing is a hard error; a missing or broken peer only skips its row.
set -euo pipefail

RUNS="${RUNS:-50}"
WARMUP="${WARMUP:-5}"

die() { echo "cold_run: error: $*" >&2; exit 1; }
note() { echo "cold_run: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root (crun/runc/warmbox need it)"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 2 ]] || die "RUNS must be an integer >= 2 (got '$RUNS')"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"

BUILD="$(realpath -- "$1")" || die "cannot resolve BUILD_DIR '$1'"
# hyperfine -N splits command lines into words itself: keep paths simple.
case "$BUILD" in *[[:space:]\'\"\$\\]*) die "BUILD_DIR path must not contain spaces, quotes, \$ or backslashes: $BUILD" ;; esac
WARMBOX="$BUILD/warmbox"
[ -x "$WARMBOX" ] || die "$WARMBOX not found or not executable (build first)"
[ -x "$BUILD/warmbox-agent" ] || note "warning: $BUILD/warmbox-agent not found"
command -v hyperfine >/dev/null || die "hyperfine not installed (scripts/setup installs it)"
command -v python3 >/dev/null || die "python3 not installed"
JSON_OUT="$BUILD/bench-cold-run.json"

# ---------------------------------------------------------------- temp + cleanup
STATE=""
WORK=""
NONCE="$$"               # container names: wbbench-<script pid>-<pid of per-run sh>
CRUN_ROOT=""
RUNC_ROOT=""
HYBRID=0
HF_PID=""
SH_WRAPPED=0             # 1 if some row runs inside `sh -c` (then add sh-overhead)

# Lazily unmount anything still mounted below $1 (deepest first) so rm -rf can
# never walk into a bind mount of something outside the temp dir.
umount_below() {
    local dir="$1" m
    [ -n "$dir" ] || return 0
    awk -v d="$dir" '{ gsub(/\\040/, " ", $5); if ($5 == d || index($5, d "/") == 1) print $5 }' \
        /proc/self/mountinfo | sort -r | while IFS= read -r m; do
        note "cleanup: unmounting leftover mount $m"
        umount -l -- "$m" 2>/dev/null || true
    done
}

# PIDs of processes whose command line mentions our temp dirs (i.e. a benchmark
# run still in flight).
our_pids() {
    local f pid
    for f in /proc/[0-9]*/cmdline; do
        pid="${f#/proc/}"; pid="${pid%/cmdline}"
        [ "$pid" = "$$" ] && continue
        if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qF -e "$WORK/" -e "$STATE/" -e "$STATE "; then
            echo "$pid"
        fi
    done
}

cleanup() {
    local rc=$? id i
    set +e
    if [ -n "$HF_PID" ]; then
        kill -TERM "$HF_PID" 2>/dev/null
        wait "$HF_PID" 2>/dev/null
    fi
    # Let a container/sandbox run that hyperfine had in flight finish (they run
    # /bin/true, so this takes milliseconds) before its state is removed.
    if [ -n "$WORK" ] && [ -n "$STATE" ]; then
        for i in $(seq 50); do
            [ -z "$(our_pids)" ] && break
            sleep 0.1
        done
    fi
    if [ -n "$CRUN_ROOT" ] && [ -d "$CRUN_ROOT" ] && command -v crun >/dev/null; then
        for id in $(crun --root "$CRUN_ROOT" list -q 2>/dev/null); do
            note "cleanup: deleting leftover crun container $id"
            if [ "$HYBRID" -eq 1 ]; then
                # shellcheck disable=SC2016  # expanded by the inner sh
                unshare -m --propagation private sh -c \
                    'umount /sys/fs/cgroup/unified; crun --root "$1" delete -f "$2"' \
                    sh "$CRUN_ROOT" "$id" >/dev/null 2>&1
            else
                crun --root "$CRUN_ROOT" delete -f "$id" >/dev/null 2>&1
            fi
        done
    fi
    if [ -n "$RUNC_ROOT" ] && [ -d "$RUNC_ROOT" ] && command -v runc >/dev/null; then
        for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
            note "cleanup: deleting leftover runc container $id"
            runc --root "$RUNC_ROOT" delete -f "$id" >/dev/null 2>&1
        done
    fi
    umount_below "$WORK"
    umount_below "$STATE"
    [ -n "$WORK" ] && rm -rf --one-file-system -- "$WORK"
    [ -n "$STATE" ] && rm -rf --one-file-system -- "$STATE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STATE="$(mktemp -d /tmp/wbbench-state.XXXXXX)"
WORK="$(mktemp -d /tmp/wbbench-work.XXXXXX)"
# mktemp gives 0700; the rootfs below may be traversed by a shifted (non-root) uid.
chmod 0755 "$STATE" "$WORK"
CRUN_ROOT="$WORK/crun-state"
RUNC_ROOT="$WORK/runc-state"

# ---------------------------------------------------------------- warm-up warmbox
WB_CMD="$WARMBOX --state-dir $STATE run -- /bin/true"
note "warm-up: $WB_CMD"
if ! out="$($WB_CMD </dev/null 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "warmbox warm-up run failed"
fi
ROOTFS="$STATE/images/busybox/rootfs"
[ -d "$ROOTFS" ] || die "warmbox did not create the default image at $ROOTFS"
[ -e "$ROOTFS/bin/true" ] || [ -L "$ROOTFS/bin/true" ] || die "$ROOTFS/bin/true missing"

# ---------------------------------------------------------------- peers
NAMES=()     # hyperfine -n names, in order
CMDS=()      # matching command lines (hyperfine -N splits them shell-words style)
SKIPPED=()

add_row() { NAMES+=("$1"); CMDS+=("$2"); }

# smoke NAME CMD: run CMD once through the same word splitting hyperfine uses
# (a POSIX shell parse of the string; none of our commands rely on expansions at
# this level); on failure print why and return 1.
smoke() {
    local name="$1" cmd="$2" out
    if out="$(sh -c "$cmd" </dev/null 2>&1)"; then
        return 0
    fi
    SKIPPED+=("$name: smoke run failed: $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-200)")
    return 1
}

# Bundle dir with config.json from `crun spec` (or `runc spec` if crun is
# missing), pointed at the shared ROOTFS.
make_bundle() {
    local dir="$1" spec=crun
    command -v crun >/dev/null || spec=runc
    mkdir -p "$dir"
    (cd "$dir" && "$spec" spec >/dev/null) || return 1
    python3 - "$dir/config.json" "$ROOTFS" <<'EOF' || return 1
import json, sys
path, rootfs = sys.argv[1], sys.argv[2]
with open(path) as f:
    c = json.load(f)
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
with open(path, "w") as f:
    json.dump(c, f, indent=2)
EOF
}

# a. warmbox (hard requirement)
add_row "warmbox" "$WB_CMD"

# b. bubblewrap
if command -v bwrap >/dev/null; then
    cmd="$(command -v bwrap) --unshare-all --ro-bind $ROOTFS / /bin/true"
    smoke bwrap "$cmd" && add_row "bwrap" "$cmd"
else
    SKIPPED+=("bwrap: not installed")
fi

# c. crun (+ the unshare wrapper's own cost on hybrid cgroup hosts)
if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then HYBRID=1; fi
if ! command -v crun >/dev/null; then
    SKIPPED+=("crun: not installed")
elif [ "$HYBRID" -eq 1 ] && ! command -v unshare >/dev/null; then
    SKIPPED+=("crun: hybrid cgroups need 'unshare' (util-linux) for the workaround, not found")
elif ! make_bundle "$WORK/crun-bundle"; then
    SKIPPED+=("crun: could not generate bundle with 'crun spec'")
else
    mkdir -p "$CRUN_ROOT"
    # \$\$ is expanded by the per-run sh, giving a unique container name per run.
    inner="crun --root $CRUN_ROOT run -b $WORK/crun-bundle wbbench-$NONCE-\$\$"
    if [ "$HYBRID" -eq 1 ]; then
        # crun 1.8 refuses v1/v2 hybrid cgroups: drop the cgroup2 mount in a
        # private mount namespace (the host is not affected).
        cmd="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; $inner'"
        ovh="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; /bin/true'"
        if smoke crun "$cmd"; then
            add_row "crun" "$cmd"
            smoke "unshare-overhead" "$ovh" && add_row "unshare-overhead" "$ovh"
        fi
    else
        cmd="sh -c '$inner'"
        if smoke crun "$cmd"; then add_row "crun" "$cmd"; SH_WRAPPED=1; fi
    fi
fi

# d. runc
if ! command -v runc >/dev/null; then
    SKIPPED+=("runc: not installed")
elif ! make_bundle "$WORK/runc-bundle"; then
    SKIPPED+=("runc: could not generate bundle")
else
    mkdir -p "$RUNC_ROOT"
    cmd="sh -c 'runc --root $RUNC_ROOT run -b $WORK/runc-bundle wbbench-$NONCE-\$\$'"
    if smoke runc "$cmd"; then add_row "runc" "$cmd"; SH_WRAPPED=1; fi
fi
# cost of the `sh -c` wrapper that supplies unique container names
if [ "$SH_WRAPPED" -eq 1 ]; then add_row "sh-overhead" "sh -c '/bin/true'"; fi

# e. baseline
add_row "baseline" "/bin/true"

# crun/runc create missing mount points (dev, proc, sys) inside the shared
# rootfs during their smoke run; make sure warmbox still works afterwards.
if ! out="$($WB_CMD </dev/null 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "warmbox run failed after the peers' smoke runs (did crun/runc mountpoint creation in $ROOTFS break it?)"
fi

if ((${#SKIPPED[@]})); then
    for s in "${SKIPPED[@]}"; do note "skipping $s"; done
fi

# ---------------------------------------------------------------- measure
HF_ARGS=(-N --warmup "$WARMUP" --runs "$RUNS" --export-json "$JSON_OUT")
for i in "${!NAMES[@]}"; do
    HF_ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}")
done
note "hyperfine ${HF_ARGS[*]}"
# Run in the background and `wait`: bash defers traps while a foreground child
# runs, so this lets Ctrl-C/SIGTERM reach the trap at once; cleanup stops it.
hyperfine "${HF_ARGS[@]}" &
HF_PID=$!
wait "$HF_PID" || die "hyperfine failed (a command exited non-zero mid-run? see above)"
HF_PID=""

# ---------------------------------------------------------------- report
python3 - "$JSON_OUT" <<'EOF'
import json, sys

with open(sys.argv[1]) as f:
    results = {r["command"]: r for r in json.load(f)["results"]}

def med(name):
    return results[name]["median"] * 1e3 if name in results else None

wb = med("warmbox")
print()
print(f"{'command':<18} {'median ms':>10}  ratio")
for name, r in results.items():
    m = r["median"] * 1e3
    if name == "warmbox":
        ratio = ""
    elif name.endswith("-overhead"):
        ratio = "(wrapper cost only; subtract, see below)"
    else:
        ratio = f"{name}/warmbox = {m / wb:.2f}x"
    print(f"{name:<18} {m:>10.2f}  {ratio}")

notes = []
crun_wrap = "unshare-overhead" if "unshare-overhead" in results else "sh-overhead"
for peer, wrap in (("crun", crun_wrap), ("runc", "sh-overhead")):
    if peer in results and wrap in results:
        net = med(peer) - med(wrap)
        label = f"{peer} minus {wrap}"
        notes.append(f"{label:<28}= {net:.2f} ms ({net / wb:.2f}x warmbox)")
if notes:
    print()
    for n in notes:
        print(n)
print(f"\nraw results: {sys.argv[1]}")
EOF
