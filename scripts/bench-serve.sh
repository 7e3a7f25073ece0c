#!/usr/bin/env bash
# One collector, many viewers: `lookout serve` watching N simulated hosts, with and without
# V viewers attached.
#
#   scripts/bench-serve.sh [N]          (default 1000 hosts; VIEWERS=20)
#
# Starts `lookout-fleet serve` (N hosts on 127.42.x.y, 2 s interval) and `lookout serve` on
# it, waits until every served host is up, then measures over WINDOW seconds each, in one run:
#   none     the server with no viewer
#   viewers  the server with VIEWERS viewers: VIEWERS-1 real `lookout attach` dashboards in
#            160x45 tmux windows, plus one measuring viewer (examples/serve_probe.rs) that
#            applies the same deltas and reports bytes received per second and lag (receipt
#            time minus the snapshot's taken_at, so the protocol's delay, not the drawing)
#   none2    the server with no viewer again (the spread of none/none2 is the noise)
# and prints the server's CPU (% of one core) and RSS for each phase, the dashboards' CPU and
# RSS (mean and highest), the probe's bytes/s and lag, the simulator's CPU and the load.
#
# Environment: VIEWERS (20), WINDOW (30), SETTLE (10), INTERVAL (2s), PROCS (40), WATCH
# ("nginx,python3"), BUILD (1), OUT (log directory, default a temp dir), UP_WITHIN (90).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-1000}
VIEWERS=${VIEWERS:-20}
WINDOW=${WINDOW:-30}
SETTLE=${SETTLE:-10}
INTERVAL=${INTERVAL:-2s}
PROCS=${PROCS:-40}
WATCH=${WATCH-nginx,python3}
UP_WITHIN=${UP_WITHIN:-90}
OUT=${OUT:-$(mktemp -d /tmp/lookout-bench-serve.XXXXXX)}
TICK=$(getconf CLK_TCK)
FLEET=target/release/lookout-fleet
LOOKOUT=target/release/lookout
PROBE=target/release/examples/serve_probe
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

SOCKET="$OUT/lookout.sock"
"$LOOKOUT" serve --config "$OUT/fleet.toml" --socket "$SOCKET" 2>"$OUT/serve.err" &
server=$!
PIDS+=("$server")
up=0
for _ in $(seq 1 "$UP_WITHIN"); do
    sleep 1
    up=$("$LOOKOUT" snapshot --socket "$SOCKET" --json 2>/dev/null | grep -c '"status": "up"' || true)
    [ "$up" -ge "$expect" ] && break
done
[ "$up" -ge "$expect" ] || { echo "only $up of $expect hosts up" >&2; exit 1; }
sleep "$SETTLE"

# phase NAME: the server's CPU and highest RSS over WINDOW seconds.
phase() {
    local c0 c1 t0 t1 s0 s1 r rss=0
    c0=$(cpu_ticks "$server"); s0=$(cpu_ticks "$sim"); t0=$(date +%s.%N)
    for _ in $(seq 1 "$WINDOW"); do
        sleep 1
        r=$(rss_kb "$server"); [ "$r" -gt "$rss" ] && rss=$r
    done
    c1=$(cpu_ticks "$server"); s1=$(cpu_ticks "$sim"); t1=$(date +%s.%N)
    printf '%-8s server_cpu_pct=%s server_rss_mb=%s sim_cpu_pct=%s load=%s\n' "$1" \
        "$(pct "$c0" "$c1" "$t0" "$t1")" "$((rss / 1024))" "$(pct "$s0" "$s1" "$t0" "$t1")" "$(cut -d' ' -f1 /proc/loadavg)"
}

echo "hosts=$N viewers=$VIEWERS window=${WINDOW}s interval=$INTERVAL"
phase none

vpids=()
for i in $(seq 1 $((VIEWERS - 1))); do
    tmux -S "$TSOCK" new-session -d -s "v$i" -x 160 -y 45 -c "$PWD" \
        "exec '$LOOKOUT' attach --config '$OUT/fleet.toml' --socket '$SOCKET' 2>'$OUT/attach-$i.err'"
    vpids+=("$(tmux -S "$TSOCK" display-message -p -t "v$i" '#{pane_pid}')")
done
"$PROBE" "$SOCKET" $((SETTLE + WINDOW + 2)) >"$OUT/probe.out" &
probe=$!
PIDS+=("$probe")
sleep "$SETTLE"
declare -A v0
for p in "${vpids[@]}"; do v0[$p]=$(cpu_ticks "$p"); done
t0=$(date +%s.%N)
phase viewers
t1=$(date +%s.%N)
tmux -S "$TSOCK" capture-pane -p -t v1 >"$OUT/attach-1.screen"
vcpu=()
vrss=()
for p in "${vpids[@]}"; do
    vcpu+=("$(pct "${v0[$p]}" "$(cpu_ticks "$p")" "$t0" "$t1")")
    vrss+=("$(rss_kb "$p")")
done
printf '%s\n' "${vcpu[@]}" | awk '{ s += $1; if ($1 > m) m = $1 } END { printf "dashboards cpu_pct mean=%.2f max=%.2f\n", s / NR, m }'
printf '%s\n' "${vrss[@]}" | awk '{ s += $1; if ($1 > m) m = $1 } END { printf "dashboards rss_mb mean=%.1f max=%.1f\n", s / NR / 1024, m / 1024 }'
wait "$probe" || true
grep '^summary' "$OUT/probe.out" | sed 's/^summary/probe/'
head -n 1 "$OUT/attach-1.screen"
tmux -S "$TSOCK" kill-server 2>/dev/null || true
sleep "$SETTLE"
phase none2
echo "logs: $OUT" >&2
