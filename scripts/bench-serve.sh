#!/usr/bin/env bash
# One collector, many viewers: `lookout serve` watching N simulated hosts, with and without
# viewers attached.
#
#   scripts/bench-serve.sh [N]          (default 1000 hosts; VIEWERS="1 20")
#
# Starts `lookout-fleet serve` (N hosts on 127.42.x.y, 2 s interval) once, then for each build
# (BEFORE's, if given, then this checkout's; same simulator, one after the other) starts
# `lookout serve` on it, waits until every served host is up, and measures over WINDOW
# seconds each:
#   none        the server with no viewer
#   viewers=V   for each V of VIEWERS: V-1 real `lookout attach` dashboards in 160x45 tmux
#               windows plus one measuring viewer (examples/serve_probe.rs) that applies the
#               same deltas and reports bytes received per second, where they went, and lag
#               (receipt time minus the snapshot's taken_at: the protocol's delay, not the
#               drawing)
#   none2       the server with no viewer again (the spread of none/none2 is the noise)
# It prints the server's CPU (utime+stime from /proc/PID/stat, % of one core) and highest
# RSS for each phase and its ratio to `none`; the dashboards' CPU and RSS (mean and
# highest); the probe's bytes/s, parts and lag (every viewer is sent the same broadcast
# frames, so the probe's bytes are each dashboard's; /proc/PID/io cannot tell, as socket
# reads are not counted in rchar); the simulator's CPU and the load average.
#
# Environment: VIEWERS ("1 20"), WINDOW (30), SETTLE (10), INTERVAL (2s), PROCS (40), WATCH
# ("nginx,python3"), BUILD (1), OUT (log directory, default a temp dir), UP_WITHIN (90),
# BEFORE (a directory holding an earlier build's `lookout` and `serve_probe`, measured first).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-1000}
VIEWERS=${VIEWERS:-1 20}
WINDOW=${WINDOW:-30}
SETTLE=${SETTLE:-10}
INTERVAL=${INTERVAL:-2s}
PROCS=${PROCS:-40}
WATCH=${WATCH-nginx,python3}
UP_WITHIN=${UP_WITHIN:-90}
OUT=${OUT:-$(mktemp -d /tmp/lookout-bench-serve.XXXXXX)}
mkdir -p "$OUT"
TICK=$(getconf CLK_TCK)
FLEET=target/release/lookout-fleet
command -v tmux >/dev/null || { echo "tmux is needed (apt-get install tmux)" >&2; exit 1; }

if [ "${BUILD:-1}" = 1 ]; then
    cargo build --release --bin lookout-fleet --bin lookout --example serve_probe >&2
fi

PIDS=()
TSOCK="$OUT/tmux.sock"
cleanup() {
    tmux -S "$TSOCK" kill-server 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
pct() { awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$TICK" 'BEGIN { printf "%.2f", (b - a) / hz / (t1 - t0) * 100 }'; }

"$FLEET" serve --hosts "$N" --dir "$OUT" --port 0 --interval "$INTERVAL" --procs "$PROCS" --watch "$WATCH" \
    >"$OUT/sim.out" 2>"$OUT/sim.err" &
sim=$!
PIDS+=("$sim")
for _ in $(seq 1 300); do
    grep -q '^ready' "$OUT/sim.out" 2>/dev/null && break
    kill -0 "$sim" 2>/dev/null || { cat "$OUT/sim.err" >&2; exit 1; }
    sleep 0.1
done
expect=$(awk -F'\t' 'NR > 1 && $3 == "up"' "$OUT/hosts.tsv" | wc -l)
echo "hosts=$N viewers=($VIEWERS) window=${WINDOW}s settle=${SETTLE}s interval=$INTERVAL procs=$PROCS watch=$WATCH cores=$(nproc)"

# phase LABEL: the server's CPU and highest RSS over WINDOW seconds; sets CPU.
phase() {
    local c0 c1 t0 t1 s0 s1 r rss=0 ratio=""
    c0=$(cpu_ticks "$server"); s0=$(cpu_ticks "$sim"); t0=$(date +%s.%N)
    for _ in $(seq 1 "$WINDOW"); do
        sleep 1
        r=$(rss_kb "$server"); [ "$r" -gt "$rss" ] && rss=$r
    done
    c1=$(cpu_ticks "$server"); s1=$(cpu_ticks "$sim"); t1=$(date +%s.%N)
    CPU=$(pct "$c0" "$c1" "$t0" "$t1")
    [ -n "${BASE:-}" ] && ratio=$(awk -v a="$CPU" -v b="$BASE" 'BEGIN { if (b > 0) printf " x_none=%.2f", a / b }')
    printf '%-8s %-11s server_cpu_pct=%s%s server_rss_mb=%s sim_cpu_pct=%s load=%s\n' "$build" "$1" \
        "$CPU" "$ratio" "$((rss / 1024))" "$(pct "$s0" "$s1" "$t0" "$t1")" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# viewers V: V-1 dashboards and the probe, measured over one phase.
viewers() {
    local v=$1 i p t0 t1 probe
    local -a vpids=()
    local -A c0
    for i in $(seq 1 $((v - 1))); do
        tmux -S "$TSOCK" new-session -d -s "v$i" -x 160 -y 45 -c "$PWD" \
            "exec '$LOOKOUT' attach --config '$OUT/fleet.toml' --socket '$SOCKET' 2>'$OUT/$build-attach-$i.err'"
        vpids+=("$(tmux -S "$TSOCK" display-message -p -t "v$i" '#{pane_pid}')")
    done
    "$PROBE" "$SOCKET" $((SETTLE + WINDOW + 2)) >"$OUT/$build-probe-$v.out" &
    probe=$!
    sleep "$SETTLE"
    for p in "${vpids[@]}"; do c0[$p]=$(cpu_ticks "$p"); done
    t0=$(date +%s.%N)
    phase "viewers=$v"
    t1=$(date +%s.%N)
    if [ "$v" -gt 1 ]; then
        tmux -S "$TSOCK" capture-pane -p -t v1 >"$OUT/$build-attach-$v.screen"
        for p in "${vpids[@]}"; do
            echo "$(pct "${c0[$p]}" "$(cpu_ticks "$p")" "$t0" "$t1") $(rss_kb "$p")"
        done | awk -v b="$build" -v v="$v" '
            { c += $1; if ($1 > cm) cm = $1; r += $2; if ($2 > rm) rm = $2 }
            END { printf "%-8s viewers=%-3s dashboards=%d cpu_pct mean=%.2f max=%.2f rss_mb mean=%.1f max=%.1f\n",
                  b, v, NR, c / NR, cm, r / NR / 1024, rm / 1024 }'
        head -n 1 "$OUT/$build-attach-$v.screen" | sed "s/^/$build screen: /"
    fi
    wait "$probe" || true
    grep -E '^(summary|parts)' "$OUT/$build-probe-$v.out" | sed "s/^/$build viewers=$v probe /"
    tmux -S "$TSOCK" kill-server 2>/dev/null || true
}

# measure LABEL DIR: a server of DIR's build through every phase.
measure() {
    build=$1
    LOOKOUT=$2/lookout
    PROBE=$2/serve_probe
    [ -x "$PROBE" ] || PROBE=$2/examples/serve_probe
    SOCKET="$OUT/$build.sock"
    "$LOOKOUT" serve --config "$OUT/fleet.toml" --socket "$SOCKET" 2>"$OUT/$build-serve.err" &
    server=$!
    PIDS+=("$server")
    local up=0
    for _ in $(seq 1 "$UP_WITHIN"); do
        sleep 1
        up=$("$LOOKOUT" snapshot --socket "$SOCKET" --json 2>/dev/null | grep -c '"status": "up"' || true)
        [ "$up" -ge "$expect" ] && break
    done
    [ "$up" -ge "$expect" ] || { echo "$build: only $up of $expect hosts up" >&2; exit 1; }
    sleep "$SETTLE"
    BASE=""
    phase none
    BASE=$CPU
    for v in $VIEWERS; do
        viewers "$v"
        sleep "$SETTLE"
    done
    phase none2
    kill "$server"
    wait "$server" 2>/dev/null || true
}

[ -n "${BEFORE:-}" ] && measure before "$BEFORE"
measure after target/release
echo "logs: $OUT" >&2
