#!/usr/bin/env bash
# Warm-pool benchmark: a warm run through the pool daemon vs the cold path,
# crun exec into a running container, crun run, and a bare fork+exec; then the
# in-process client (build/pool_bench: latency, throughput, refill) and the
# memory of idle sandboxes vs idle crun containers.
#
# Usage: bench/pool_run.sh BUILD_DIR        (run as root; `make bench` does this)
# Env:   RUNS (50), WARMUP (5)               hyperfine runs per command
#        BENCH_RUNS (200), PER_LEVEL (200)   pool_bench --runs / --per-level
#        CONCURRENCY (1,4,16)                pool_bench --concurrency
#        MEM_SANDBOXES (100), MEM_CRUN (20)  idle sandboxes / containers for the memory figure
#        MEM_TIMEOUT (300)                   seconds to wait for MEM_SANDBOXES idle
#        MEM_ROUNDS (3)                      memory measurements (median reported)
#        LOG_LEVEL (debug)                   the daemon's; debug lines carry µs timestamps,
#                                            which pool_bench uses for the daemon-side refill
# Output: BUILD_DIR/bench-pool.json (pool_bench), bench-pool-hyperfine.json,
#         bench-pool-memory.json, bench-pool-daemon.log and the summary in
#         BUILD_DIR/bench-pool.md (also printed).
#
# Everything lives in mktemp dirs and cgroups named wbpool-<pid>-*; the exit
# trap stops the daemon, deletes the crun containers, removes the dirs and
# cgroups, and fails if any process, mount, cgroup or container of ours survives.
set -euo pipefail

RUNS="${RUNS:-50}"
WARMUP="${WARMUP:-5}"
BENCH_RUNS="${BENCH_RUNS:-200}"
PER_LEVEL="${PER_LEVEL:-200}"
CONCURRENCY="${CONCURRENCY:-1,4,16}"
MEM_SANDBOXES="${MEM_SANDBOXES:-100}"
MEM_CRUN="${MEM_CRUN:-20}"
MEM_TIMEOUT="${MEM_TIMEOUT:-300}"
MEM_ROUNDS="${MEM_ROUNDS:-3}"
LOG_LEVEL="${LOG_LEVEL:-debug}"
POOL_SIZE=4
POOL_MAX=16

die() { echo "pool_run: error: $*" >&2; exit 1; }
note() { echo "pool_run: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root (warmbox and crun need it)"
for v in RUNS BENCH_RUNS PER_LEVEL MEM_SANDBOXES MEM_CRUN MEM_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 2 ]] || die "$v must be an integer >= 2 (got '${!v}')"
done
[[ "$MEM_ROUNDS" =~ ^[0-9]+$ && "$MEM_ROUNDS" -ge 1 ]] || die "MEM_ROUNDS must be an integer >= 1 (got '$MEM_ROUNDS')"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"
[[ "$CONCURRENCY" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "CONCURRENCY must look like 1,4,16 (got '$CONCURRENCY')"

BUILD="$(realpath -- "$1")" || die "cannot resolve BUILD_DIR '$1'"
# hyperfine -N splits command lines into words itself: keep paths simple.
case "$BUILD" in *[[:space:]\'\"\$\\]*) die "BUILD_DIR path must not contain spaces, quotes, \$ or backslashes: $BUILD" ;; esac
WARMBOX="$BUILD/warmbox"
POOL_BENCH="$BUILD/pool_bench"
[ -x "$WARMBOX" ] || die "$WARMBOX not found or not executable (build first)"
[ -x "$BUILD/warmbox-agent" ] || die "$BUILD/warmbox-agent not found (build first)"
[ -x "$POOL_BENCH" ] || die "$POOL_BENCH not found (build first: ninja pool_bench)"
command -v hyperfine >/dev/null || die "hyperfine not installed (scripts/setup installs it)"
command -v python3 >/dev/null || die "python3 not installed"
HAVE_CRUN=1
command -v crun >/dev/null || HAVE_CRUN=0

HF_JSON="$BUILD/bench-pool-hyperfine.json"
BENCH_JSON="$BUILD/bench-pool.json"
MEM_JSON="$BUILD/bench-pool-memory.json"
LOG_COPY="$BUILD/bench-pool-daemon.log"
SUMMARY_MD="$BUILD/bench-pool.md"

# ---------------------------------------------------------------- temp + cleanup
NONCE="$$"
TAG="wbpool-$NONCE"           # prefix of every cgroup and container name of ours
CG_PARENT="$TAG-wb"           # warmbox sandboxes' cgroup parent (in every hierarchy)
export WARMBOX_CGROUP_PARENT="$CG_PARENT"
STATE=""
WORK=""
SOCK=""
LOG=""
CRUN_ROOT=""
HYBRID=0
DAEMON_PID=""
BG_PID=""                     # hyperfine or pool_bench while they run

# Lazily unmount anything still mounted below $1 (deepest first).
umount_below() {
    local dir="$1" m
    [ -n "$dir" ] || return 0
    awk -v d="$dir" '{ gsub(/\\040/, " ", $5); if ($5 == d || index($5, d "/") == 1) print $5 }' \
        /proc/self/mountinfo | sort -r | while IFS= read -r m; do
        note "cleanup: unmounting leftover mount $m"
        umount -l -- "$m" 2>/dev/null || true
    done
}

# PIDs of our processes: the command line mentions our temp dirs (daemon,
# agents, CLI runs), or the process sits in one of our cgroups (crun containers).
our_pids() {
    local pid dir
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        [ "$pid" = "$$" ] && continue
        [ "$pid" = "$BASHPID" ] && continue
        if { tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null | grep -qF -e "$WORK/" -e "$STATE/" -e "$STATE "; then
            echo "$pid"
        elif grep -qF ":/$TAG-" "$dir/cgroup" 2>/dev/null; then
            echo "$pid"
        fi
    done
}

# Our cgroup dirs (crun's are named after the container, warmbox's sit below CG_PARENT).
our_cgroups() {
    find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -name "$TAG-*" 2>/dev/null || true
}

# crun with the hybrid-cgroup workaround: crun 1.8 refuses v1+v2 hybrid hosts,
# so on those it runs in a private mount namespace without the cgroup2 mount.
# CRUN is the argv prefix (set once HYBRID is known).
CRUN=(crun)
crun_wrap() { "${CRUN[@]}" "$@"; }

crun_delete_all() {
    local id
    [ -n "$CRUN_ROOT" ] && [ -d "$CRUN_ROOT" ] && [ "$HAVE_CRUN" -eq 1 ] || return 0
    for id in $(crun --root "$CRUN_ROOT" list -q 2>/dev/null); do
        crun_wrap --root "$CRUN_ROOT" delete -f "$id" >/dev/null 2>&1 ||
            crun --root "$CRUN_ROOT" delete -f "$id" >/dev/null 2>&1 ||
            note "cleanup: could not delete crun container $id"
    done
}

# Stops the daemon: `pool stop` (in-flight runs finish, every sandbox is torn
# down), then SIGTERM, then SIGKILL (its sandboxes die with it via
# PDEATHSIG; `warmbox gc` then removes their dirs and cgroups).
stop_daemon() {
    local i
    [ -n "$DAEMON_PID" ] || return 0
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        local out rc=0 t0
        t0=$(date +%s.%N)
        out="$(timeout 10 "$WARMBOX" pool stop --socket "$SOCK" 2>&1)" || rc=$?
        echo "=== pool stop: exit $rc after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }') s${out:+: $out} ===" >>"$LOG"
        for i in $(seq 300); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        note "daemon $DAEMON_PID did not stop on request; SIGTERM"
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        note "daemon $DAEMON_PID still alive; SIGKILL"
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    if [ -n "$(ls -A "$STATE/sandboxes" 2>/dev/null)" ]; then
        "$WARMBOX" --state-dir "$STATE" gc >/dev/null 2>&1 || true
    fi
}

LEAKS=""
check_leaks() {
    local p c m
    LEAKS=""
    p="$(our_pids | tr '\n' ' ')"
    [ -n "${p// /}" ] && LEAKS+="processes: $p; "
    c="$(our_cgroups | tr '\n' ' ')"
    [ -n "${c// /}" ] && LEAKS+="cgroups: $c; "
    if [ -n "$WORK" ] && [ -n "$STATE" ]; then
        m="$(awk -v a="$WORK" -v b="$STATE" 'index($5, a) == 1 || index($5, b) == 1 { print $5 }' /proc/self/mountinfo | tr '\n' ' ')"
        [ -n "${m// /}" ] && LEAKS+="mounts: $m; "
    fi
    if [ -n "$CRUN_ROOT" ] && [ -d "$CRUN_ROOT" ] && [ "$HAVE_CRUN" -eq 1 ]; then
        c="$(crun --root "$CRUN_ROOT" list -q 2>/dev/null | tr '\n' ' ')"
        [ -n "${c// /}" ] && LEAKS+="crun containers: $c; "
    fi
    [ -z "$LEAKS" ]
}

cleanup() {
    local rc=$? i pid d
    set +e
    if [ -n "$BG_PID" ]; then
        kill -TERM "$BG_PID" 2>/dev/null
        wait "$BG_PID" 2>/dev/null
        BG_PID=""
    fi
    stop_daemon
    crun_delete_all
    # Anything still in flight (a CLI run hyperfine had started) ends within
    # milliseconds; then whatever is left of ours is killed by pid.
    if [ -n "$WORK" ] && [ -n "$STATE" ]; then
        for i in $(seq 50); do [ -z "$(our_pids)" ] && break; sleep 0.1; done
        for pid in $(our_pids); do
            note "cleanup: killing leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
            kill -KILL "$pid" 2>/dev/null
        done
        for i in $(seq 50); do [ -z "$(our_pids)" ] && break; sleep 0.1; done
        [ -d "$STATE/sandboxes" ] && [ -n "$(ls -A "$STATE/sandboxes" 2>/dev/null)" ] &&
            "$WARMBOX" --state-dir "$STATE" gc >/dev/null 2>&1
    fi
    # Our cgroups: deepest first (empty by now; retry while dying tasks leave).
    for i in $(seq 20); do
        [ -z "$(our_cgroups)" ] && break
        our_cgroups | sort -r | while IFS= read -r d; do rmdir "$d" 2>/dev/null; done
        sleep 0.1
    done
    umount_below "$WORK"
    umount_below "$STATE"
    if ! check_leaks; then
        note "LEFTOVERS after cleanup: $LEAKS"
        [ "$rc" -eq 0 ] && rc=1
    fi
    [ -n "$WORK" ] && rm -rf --one-file-system -- "$WORK"
    [ -n "$STATE" ] && rm -rf --one-file-system -- "$STATE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STATE="$(mktemp -d /tmp/wbpool-state.XXXXXX)"
WORK="$(mktemp -d /tmp/wbpool-work.XXXXXX)"
# mktemp gives 0700; the rootfs below is traversed by the sandboxes' shifted uids.
chmod 0755 "$STATE" "$WORK"
SOCK="$WORK/pool.sock"
LOG="$WORK/daemon.log"
CRUN_ROOT="$WORK/crun-state"
if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
    HYBRID=1
    # shellcheck disable=SC2016  # expanded by the inner sh
    CRUN=(unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec crun "$@"' sh)
fi

# ---------------------------------------------------------------- helpers
# pool_stat FIELD...: the fields of the (only) image of `pool status --json`.
pool_stat() {
    local out
    out="$("$WARMBOX" pool status --socket "$SOCK" --json 2>/dev/null)" || return 1
    printf '%s' "$out" | python3 -c '
import json, sys
imgs = json.load(sys.stdin)
s = imgs[0] if imgs else {}
print(*(s.get(k, 0) for k in sys.argv[1:]))' "$@"
}

# in_memcg NAME CMD...: runs CMD in a fresh v1 memory cgroup NAME (below the
# memory hierarchy's root), so that what it allocates, kernel objects included
# (e.g. the namespaces a clone creates), is charged there.
in_memcg() {
    local cg="/sys/fs/cgroup/memory/$1"
    shift
    mkdir -p "$cg"
    # shellcheck disable=SC2016  # expanded by the inner sh
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}
HAVE_MEMCG=0
[ -f /sys/fs/cgroup/memory/cgroup.procs ] && HAVE_MEMCG=1
memcg_usage() {  # NAME...: summed memory.usage_in_bytes
    local n
    for n in "$@"; do cat "/sys/fs/cgroup/memory/$n/memory.usage_in_bytes" 2>/dev/null || echo 0; done |
        awk '{ s += $1 } END { print s + 0 }'
}

start_daemon() {  # SIZE MAX [MEMCG]: the daemon in the background, DAEMON_PID its pid
    echo "=== pool start --size $1 --max $2 ===" >>"$LOG"
    local cg="/sys/fs/cgroup/memory/${3:-}"
    if [ -n "${3:-}" ] && [ "$HAVE_MEMCG" -eq 1 ]; then
        mkdir -p "$cg"
    else
        cg=""
    fi
    # sh joins the memory cgroup (if any) and execs the daemon: same pid.
    # shellcheck disable=SC2016  # expanded by the inner sh
    sh -c '[ -z "$0" ] || echo $$ >"$0/cgroup.procs" || exit 1; exec "$@"' "$cg" \
        "$WARMBOX" --state-dir "$STATE" --log-level "$LOG_LEVEL" pool start --socket "$SOCK" \
        --size "$1" --max "$2" </dev/null >/dev/null 2>>"$LOG" &
    DAEMON_PID=$!
}

# wait_idle N TIMEOUT_S: until status answers with idle >= N and nothing creating.
wait_idle() {
    local want="$1" timeout="$2" t0 st idle creating failed
    t0=$(date +%s.%N)
    while :; do
        kill -0 "$DAEMON_PID" 2>/dev/null || { tail -20 "$LOG" >&2; die "the daemon exited (log above)"; }
        if st="$(pool_stat idle creating failed_creations)" && [ -n "$st" ]; then
            read -r idle creating failed <<<"$st"
            [ "$idle" -ge "$want" ] && [ "$creating" -eq 0 ] && break
            if [ "$failed" -gt 0 ]; then
                tail -20 "$LOG" >&2
                die "the daemon failed to create $failed sandbox(es) (log above)"
            fi
        fi
        if awk -v a="$t0" -v b="$(date +%s.%N)" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
            die "pool did not reach idle=$want within ${timeout}s (last: ${st:-no answer})"
        fi
        sleep 0.1
    done
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }'
}

mem_available_kb() {  # median of 5 samples over ~1 s
    local i
    for i in 1 2 3 4 5; do
        awk '/^MemAvailable:/ { print $2 }' /proc/meminfo
        sleep 0.2
    done | sort -n | sed -n 3p
}

# ---------------------------------------------------------------- image + daemon
WB_COLD="$WARMBOX --state-dir $STATE run -- /bin/true"
# cold_check WHAT: one cold run must succeed. A second try is allowed: about
# 2% of cold runs with stdin at EOF fail with "send(.../agent.sock): Broken
# pipe" (warmbox bug: the agent closes the connection after the exit while
# the CLI still sends its stdin-close frame).
cold_check() {
    local out
    out="$($WB_COLD </dev/null 2>&1)" && return 0
    note "$1: cold run failed once ($(printf '%s' "$out" | tr '\n' ' ' | cut -c1-200)); retrying"
    out="$($WB_COLD </dev/null 2>&1)" && return 0
    printf '%s\n' "$out" >&2
    die "$1: warmbox cold run failed twice"
}
note "warm-up (builds the busybox image): $WB_COLD"
cold_check "warm-up"
ROOTFS="$STATE/images/busybox/rootfs"
[ -d "$ROOTFS" ] || die "warmbox did not create the default image at $ROOTFS"

start_daemon "$POOL_SIZE" "$POOL_MAX"
t="$(wait_idle "$POOL_SIZE" 60)"
note "daemon $DAEMON_PID up, idle=$POOL_SIZE after ${t}s (log: $LOG, level $LOG_LEVEL)"
WB_WARM="$WARMBOX pool run --socket $SOCK -- /bin/true"
out="$($WB_WARM </dev/null 2>&1)" || { printf '%s\n' "$out" >&2; die "warm run failed"; }

# ---------------------------------------------------------------- crun peers
NAMES=()
CMDS=()
SKIPPED=()
CRUN_EXEC_HOW=""
add_row() { NAMES+=("$1"); CMDS+=("$2"); }
smoke() {  # NAME CMD: one run through a POSIX shell parse, like hyperfine -N's split
    local out
    if out="$(sh -c "$2" </dev/null 2>&1)"; then return 0; fi
    SKIPPED+=("$1: smoke run failed: $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-200)")
    return 1
}

make_bundle() {  # DIR ARGS_JSON
    mkdir -p "$1"
    (cd "$1" && crun spec >/dev/null) || return 1
    python3 - "$1/config.json" "$ROOTFS" "$2" <<'EOF' || return 1
import json, sys
path, rootfs, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(path) as f:
    c = json.load(f)
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["args"] = args
c["process"]["terminal"] = False
with open(path, "w") as f:
    json.dump(c, f, indent=2)
EOF
}

add_row "warm-cli" "$WB_WARM"
add_row "cold-cli" "$WB_COLD"

EXEC_NAME="$TAG-exec"
if [ "$HAVE_CRUN" -eq 0 ]; then
    SKIPPED+=("crun: not installed")
elif [ "$HYBRID" -eq 1 ] && ! command -v unshare >/dev/null; then
    SKIPPED+=("crun: hybrid cgroups need 'unshare' (util-linux) for the workaround")
    HAVE_CRUN=0
elif ! make_bundle "$WORK/bundle-sleep" '["sleep", "100000"]' || ! make_bundle "$WORK/bundle-true" '["/bin/true"]'; then
    SKIPPED+=("crun: could not generate bundles with 'crun spec'")
    HAVE_CRUN=0
else
    mkdir -p "$CRUN_ROOT"
    # The container for crun exec; -d leaves the container holding crun's
    # stdio, so it gets /dev/null (a pipe would never see EOF).
    if crun_wrap --root "$CRUN_ROOT" run -d -b "$WORK/bundle-sleep" "$EXEC_NAME" \
        </dev/null >/dev/null 2>"$WORK/crun-exec.err"; then
        # crun exec joins the running container's namespaces and cgroups and
        # works on the hybrid host without the wrapper; that (cheaper) form is
        # the reference. The wrapped form is shown too on hybrid hosts.
        direct="crun --root $CRUN_ROOT exec $EXEC_NAME /bin/true"
        wrapped="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; $direct'"
        if smoke crun-exec "$direct"; then
            add_row "crun-exec" "$direct"
            CRUN_EXEC_HOW="direct"
            if [ "$HYBRID" -eq 1 ] && smoke crun-exec-unshare "$wrapped"; then
                add_row "crun-exec-unshare" "$wrapped"
            fi
        elif [ "$HYBRID" -eq 1 ] && smoke crun-exec "$wrapped"; then
            add_row "crun-exec" "$wrapped"
            CRUN_EXEC_HOW="unshare wrapper"
        fi
    else
        SKIPPED+=("crun-exec: crun run -d failed: $(tr '\n' ' ' <"$WORK/crun-exec.err" | cut -c1-200)")
    fi
    # crun run: a fresh container per run; \$\$ (the per-run sh) names it.
    inner="crun --root $CRUN_ROOT run -b $WORK/bundle-true $TAG-run-\$\$"
    if [ "$HYBRID" -eq 1 ]; then
        cmd="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; $inner'"
        ovh="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; /bin/true'"
        if smoke crun-run "$cmd"; then
            add_row "crun-run" "$cmd"
            smoke unshare-overhead "$ovh" && add_row "unshare-overhead" "$ovh"
        fi
    else
        cmd="sh -c '$inner'"
        if smoke crun-run "$cmd"; then
            add_row "crun-run" "$cmd"
            add_row "sh-overhead" "sh -c '/bin/true'"
        fi
    fi
fi
add_row "baseline" "/bin/true"
if ((${#SKIPPED[@]})); then
    for s in "${SKIPPED[@]}"; do note "skipping $s"; done
fi

# crun may have created mount points in the shared rootfs: warmbox must still work.
cold_check "after the crun smoke runs"
out="$($WB_WARM </dev/null 2>&1)" || { printf '%s\n' "$out" >&2; die "warm run failed after the crun smoke runs"; }

# ---------------------------------------------------------------- hyperfine
wait_idle "$POOL_SIZE" 60 >/dev/null
read -r HF_HITS0 HF_MISSES0 <<<"$(pool_stat hits misses)"
# -i: a failed run does not abort the whole invocation; the exit codes are
# checked below (only the cold row may fail, rarely; see cold_check).
HF_ARGS=(-N -i --warmup "$WARMUP" --runs "$RUNS" --export-json "$HF_JSON")
for i in "${!NAMES[@]}"; do HF_ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
note "hyperfine ${HF_ARGS[*]}"
# Background + wait: bash defers traps while a foreground child runs.
hyperfine "${HF_ARGS[@]}" </dev/null &
BG_PID=$!
wait "$BG_PID" || die "hyperfine failed (see above)"
BG_PID=""
HF_FAILS="$(python3 - "$HF_JSON" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    bad = [c for c in r.get("exit_codes", []) if c != 0]
    if bad:
        print(f"{r['command']}:{len(bad)}:{len(r['exit_codes'])}:{','.join(map(str, sorted(set(bad))))}")
EOF
)"
for f in $HF_FAILS; do
    IFS=: read -r name n total codes <<<"$f"
    note "hyperfine: $name: $n of $total runs exited non-zero (codes $codes)"
    # cold-cli may lose a few runs (up to 10%, at least 2) to the EPIPE bug.
    if [ "$name" != "cold-cli" ] || { [ "$n" -gt 2 ] && [ $((n * 10)) -gt "$total" ]; }; then
        die "too many failed runs in hyperfine's $name row"
    fi
done
read -r HF_HITS1 HF_MISSES1 <<<"$(pool_stat hits misses)"
# Only the warm-cli row touches the pool (incl. its warm-up runs).
HF_HITS=$((HF_HITS1 - HF_HITS0))
HF_MISSES=$((HF_MISSES1 - HF_MISSES0))
note "pool during hyperfine: $HF_HITS warm, $HF_MISSES cold (misses)"

# ---------------------------------------------------------------- pool_bench
wait_idle "$POOL_SIZE" 60 >/dev/null
BENCH_MD="$WORK/pool_bench.md"
note "$POOL_BENCH --socket $SOCK --runs $BENCH_RUNS --per-level $PER_LEVEL --concurrency $CONCURRENCY --daemon-log $LOG --out $BENCH_JSON"
"$POOL_BENCH" --socket "$SOCK" --runs "$BENCH_RUNS" --per-level "$PER_LEVEL" --concurrency "$CONCURRENCY" \
    --size "$POOL_SIZE" --daemon-log "$LOG" --out "$BENCH_JSON" </dev/null >"$BENCH_MD" &
BG_PID=$!
wait "$BG_PID" || die "pool_bench failed"
BG_PID=""
cat "$BENCH_MD"

# ---------------------------------------------------------------- memory
stop_daemon
[ -z "$(ls -A "$STATE/sandboxes" 2>/dev/null)" ] || die "sandbox dirs left after the daemon stopped: $(ls "$STATE/sandboxes")"
if [ "$HAVE_CRUN" -eq 1 ]; then crun_delete_all; fi
sync

# Each round: MemAvailable before, with the idle set up, and after it is gone.
# "before - during" is the plain drop; the drift-corrected drop uses the mean
# of before and after as the baseline, which cancels a steady drift of the
# rest of the host. warmbox and crun alternate, so they share conditions.
MEM_LINES="$WORK/memory.jsonl"
: >"$MEM_LINES"
for round in $(seq "$MEM_ROUNDS"); do
    note "memory round $round/$MEM_ROUNDS: $MEM_SANDBOXES idle warmbox sandboxes"
    sync
    before="$(mem_available_kb)"
    start_daemon "$MEM_SANDBOXES" "$MEM_SANDBOXES" "$TAG-daemon-$round"
    fill="$(wait_idle "$MEM_SANDBOXES" "$MEM_TIMEOUT")"
    sleep 1
    during="$(mem_available_kb)"
    agents=0
    for p in $(our_pids); do
        case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in warmbox-agent*) agents=$((agents + 1)) ;; esac
    done
    cg="$(memcg_usage "$CG_PARENT")"
    launcher="$(memcg_usage "$TAG-daemon-$round")"
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0)"
    stop_daemon
    [ -z "$(ls -A "$STATE/sandboxes" 2>/dev/null)" ] || die "sandbox dirs left after the daemon stopped"
    sleep 1
    after="$(mem_available_kb)"
    note "  idle=$MEM_SANDBOXES after ${fill}s; $agents agents; MemAvailable $before -> $during -> $after kB"
    printf '{"kind": "warmbox", "round": %d, "count": %d, "before_kb": %d, "during_kb": %d, "after_kb": %d, "cgroup_bytes": %d, "launcher_cgroup_bytes": %d, "daemon_rss_kb": %d, "agents_seen": %d, "fill_s": %s}\n' \
        "$round" "$MEM_SANDBOXES" "$before" "$during" "$after" "$cg" "$launcher" "$rss" "$agents" "$fill" >>"$MEM_LINES"

    [ "$HAVE_CRUN" -eq 1 ] || continue
    note "memory round $round/$MEM_ROUNDS: $MEM_CRUN idle crun containers (crun run -d, sleep)"
    sync
    before="$(mem_available_kb)"
    wrap=()
    [ "$HAVE_MEMCG" -eq 1 ] && wrap=(in_memcg "$TAG-crun-$round")
    for i in $(seq "$MEM_CRUN"); do
        "${wrap[@]}" "${CRUN[@]}" --root "$CRUN_ROOT" run -d -b "$WORK/bundle-sleep" "$TAG-mem-$round-$i" \
            </dev/null >/dev/null 2>"$WORK/crun-mem.err" || die "crun run -d #$i failed: $(cat "$WORK/crun-mem.err")"
    done
    sleep 1
    during="$(mem_available_kb)"
    n="$(crun --root "$CRUN_ROOT" list -q | grep -c "^$TAG-mem-$round-" || true)"
    cg="$(cat /sys/fs/cgroup/memory/"$TAG-mem-$round"-*/memory.usage_in_bytes 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')"
    launcher="$(memcg_usage "$TAG-crun-$round")"
    crun_delete_all
    sleep 1
    after="$(mem_available_kb)"
    note "  $n containers running; MemAvailable $before -> $during -> $after kB"
    printf '{"kind": "crun", "round": %d, "count": %d, "before_kb": %d, "during_kb": %d, "after_kb": %d, "cgroup_bytes": %d, "launcher_cgroup_bytes": %d, "running_seen": %d}\n' \
        "$round" "$MEM_CRUN" "$before" "$during" "$after" "$cg" "$launcher" "$n" >>"$MEM_LINES"
done
python3 - "$MEM_LINES" "$MEM_JSON" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump(rows, open(sys.argv[2], "w"), indent=2)
EOF
cp "$LOG" "$LOG_COPY"

# ---------------------------------------------------------------- summary
SUM_HITS="$HF_HITS" SUM_MISSES="$HF_MISSES" SUM_SKIPPED="$(printf '%s\n' "${SKIPPED[@]:-}")" \
SUM_CRUN_EXEC_HOW="$CRUN_EXEC_HOW" SUM_POOL="--size $POOL_SIZE --max $POOL_MAX" SUM_LOG_LEVEL="$LOG_LEVEL" \
SUM_RUNS="$RUNS" SUM_WARMUP="$WARMUP" SUM_LOG_COPY="$LOG_COPY" SUM_HF_FAILS="$HF_FAILS" \
python3 - "$HF_JSON" "$BENCH_JSON" "$MEM_JSON" "$SUMMARY_MD" "$BENCH_MD" <<'EOF'

import json, math, os, statistics, sys

hf_path, bench_path, mem_path, md_path, bench_md = sys.argv[1:6]
hf = {r["command"]: r for r in json.load(open(hf_path))["results"]}
b = json.load(open(bench_path))
mem = json.load(open(mem_path))
E = os.environ
hits, misses = int(E["SUM_HITS"]), int(E["SUM_MISSES"])
skipped = E["SUM_SKIPPED"].strip()
crun_exec_how = E["SUM_CRUN_EXEC_HOW"]

def pct(v, p):
    v = sorted(v)
    pos = p / 100 * (len(v) - 1)
    lo = math.floor(pos); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)

def p50(name):
    return hf[name]["median"] * 1e3 if name in hf else None

def mean(name):
    return hf[name]["mean"] * 1e3 if name in hf else None

L = []
L.append("## warmbox warm-pool benchmark")
L.append("")
L.append(f"Host: {b['host']['nproc']} CPUs, kernel {b['host']['kernel']}. Pool: {E['SUM_POOL']}, "
         f"daemon log level {E['SUM_LOG_LEVEL']}. Same busybox rootfs for every row.")
L.append("")
L.append(f"### CLI and peers (one hyperfine invocation, {E['SUM_RUNS']} runs + {E['SUM_WARMUP']} warm-up each, -N)")
L.append("")
L.append("| command | p50 ms | mean ms | p90 ms | p99 ms | min ms |")
L.append("|---|---:|---:|---:|---:|---:|")
for name, r in hf.items():
    t = [x * 1e3 for x in r["times"]]
    L.append(f"| {name} | {pct(t, 50):.2f} | {r['mean'] * 1e3:.2f} | {pct(t, 90):.2f} | {pct(t, 99):.2f} | {min(t):.2f} |")
L.append("")
L.append(f"warm-cli (warm-up included) was served by {hits} idle sandboxes and {misses} cold creation(s)"
         + (" (the pool was empty: back-to-back runs outpaced the refill)." if misses else "."))
if crun_exec_how:
    L.append(f"crun-exec: crun exec into a running `sleep` container, {crun_exec_how}"
             + (" (it works on hybrid cgroups without the mount-namespace wrapper that crun run needs)."
                if crun_exec_how == "direct" else "."))
for f in E["SUM_HF_FAILS"].split():
    name, n, total, codes = f.split(":")
    L.append(f"{name}: {n} of {total} runs exited non-zero (exit {codes}); their times are included. "
             "Known warmbox bug: with stdin at EOF, `warmbox run` sometimes fails with "
             "\"send(.../agent.sock): Broken pipe\" after the command ran.")
if skipped:
    L.append("Skipped: " + "; ".join(skipped.splitlines()))
L.append("")
L.append(open(bench_md).read().strip())
L.append("")

# memory
MiB = 1024.0
def mem_rows(kind):
    return [r for r in mem if r["kind"] == kind]
def each(r, corrected):
    base = (r["before_kb"] + r["after_kb"]) / 2 if corrected else r["before_kb"]
    return (base - r["during_kb"]) / MiB / r["count"]
def med(v):
    return statistics.median(v) if v else None
L.append("### Memory of idle sandboxes")
L.append("")
L.append("MiB per idle sandbox/container, median over rounds (each round in bench-pool-memory.json). "
         "*cgroups* = memory.usage_in_bytes of the sandboxes'/containers' own memory cgroups; "
         "*+ launcher* adds the cgroup the daemon (warmbox) or crun (crun run -d) ran in, which holds the kernel "
         "objects they allocate for the sandboxes (namespaces created by clone, dirs, ...) and, for warmbox, "
         "the daemon itself.")
L.append("")
L.append("| | count | rounds | MemAvailable drop (before - during) | drift-corrected | cgroups | cgroups + launcher | host drift per round, MiB (after - before) |")
L.append("|---|---:|---:|---:|---:|---:|---:|---|")
mem_each = {}
noisy = {}
for kind, label in (("warmbox", "warmbox idle sandboxes (daemon --size N)"), ("crun", "crun run -d containers (sleep)")):
    rs = mem_rows(kind)
    if not rs:
        continue
    plain = med([each(r, False) for r in rs])
    corr = med([each(r, True) for r in rs])
    cg = med([r["cgroup_bytes"] / 2**20 / r["count"] for r in rs])
    cgl = med([(r["cgroup_bytes"] + r.get("launcher_cgroup_bytes", 0)) / 2**20 / r["count"] for r in rs])
    drifts = [(r["after_kb"] - r["before_kb"]) / MiB for r in rs]
    # The host moved more than the whole signal: MemAvailable says nothing.
    noisy[kind] = med([abs(d) for d in drifts]) > 0.5 * abs(corr * rs[0]["count"])
    mem_each[kind] = (plain, corr, cgl)
    drift = ", ".join(f"{d:+.0f}" for d in drifts)
    L.append(f"| {label} | {rs[0]['count']} | {len(rs)} | {plain:.2f} | {corr:.2f} | {cg:.2f} | {cgl:.2f} | {drift} |")
L.append("")
if any(noisy.values()):
    L.append(f"**MemAvailable was too noisy for {' and '.join(k for k, v in noisy.items() if v)} in this run** "
             "(the rest of the host moved by about as much as the signal, or more, between samples); "
             "use the cgroup columns.")
    L.append("")
wr = mem_rows("warmbox")
if wr:
    L.append(f"Daemon RSS with {wr[0]['count']} idle: {med([r['daemon_rss_kb'] for r in wr]) / MiB:.1f} MiB; "
             f"{wr[0]['count']} idle sandboxes were ready {med([r['fill_s'] for r in wr]):.2f} s after the daemon "
             "started. MemAvailable is host-wide: anything else running shows up in it (drift column).")
L.append("")

# ratios
def fmt(x, unit=""):
    return "n/a" if x is None else f"{x:.2f}{unit}"
def verdict(x, target):
    return "n/a" if x is None else ("met" if x <= target else "missed")

warm = p50("warm-cli")
cexec = p50("crun-exec")
r1 = warm / cexec if warm and cexec else None
inproc = b["sequential"]["p50_ms"]
bare = b["bare_spawn"]["p50_ms"]
r2 = inproc / bare
t16 = next((t["runs_per_s"] for t in b["throughput"] if t["concurrency"] == 16), None)
tmax = max(b["throughput"], key=lambda t: t["concurrency"])
crun_run = mean("crun-run")
crun_rps = 1000.0 / crun_run if crun_run else None
r3 = (t16 if t16 else tmax["runs_per_s"]) / crun_rps if crun_rps else None
rf = b["refill"]
refill_client = rf["refill_after_burst_ms"]["p50_ms"]
refill_daemon = rf.get("daemon_last_ready_after_burst_end_ms", {}).get("p50_ms")

L.append("### Ratios")
L.append("")
L.append("| figure | value | target |")
L.append("|---|---:|---|")
L.append(f"| warm CLI p50 / crun exec p50 | {fmt(r1)} ({fmt(warm)} / {fmt(cexec)} ms) | <= 0.4: {verdict(r1, 0.4)} |")
L.append(f"| in-process p50 / bare fork+exec p50 | {fmt(r2)} ({inproc:.2f} / {bare:.2f} ms) | <= 1.5: {verdict(r2, 1.5)} |")
conc = 16 if t16 else tmax["concurrency"]
L.append(f"| throughput at concurrency {conc} / crun run throughput | {fmt(r3)} "
         f"({(t16 or tmax['runs_per_s']):.0f} runs/s / {fmt(crun_rps)} runs/s) | - |")
L.append(f"| refill after a burst of {b['size']} runs, p50 | {refill_client:.1f} ms (client, 1 ms status polls)"
         + (f"; {refill_daemon:.1f} ms (daemon log: last replacement ready)" if refill_daemon is not None else "")
         + " | - |")
if "warmbox" in mem_each:
    w, c = mem_each["warmbox"], mem_each.get("crun", (None, None, None))
    L.append(f"| MiB per idle sandbox, warmbox vs crun, cgroups + launcher | {w[2]:.2f} vs {fmt(c[2])}"
             + (f" ({w[2] / c[2]:.2f}x)" if c[2] else "") + " | - |")
    L.append(f"| MiB per idle sandbox, warmbox vs crun, MemAvailable (drift-corrected) | {w[1]:.2f} vs {fmt(c[1])}"
             + (" (too noisy)" if any(noisy.values()) else (f" ({w[1] / c[1]:.2f}x)" if c[1] and c[1] > 0 else ""))
             + " | - |")
L.append("")
L.append("crun run throughput = 1000 / mean ms of the crun-run row: one client, one container at a time "
         "(including the unshare wrapper on hybrid-cgroup hosts). pool_bench's throughput is the in-process client "
         "with that many threads.")
text = "\n".join(L) + "\n"
open(md_path, "w").write(text)
print()
print(text)
print(f"raw: {hf_path} {bench_path} {mem_path} {E['SUM_LOG_COPY']}")
EOF
