#!/usr/bin/env bash
# End-to-end scale benchmark: lookout's SSH collection against N simulated hosts.
#
#   scripts/bench-fleet.sh [N ...]          (default: 100 500 1000)
#
# For each N it starts `lookout-fleet serve` (N hosts on 127.42.x.y), then, one after the
# other, against the generated fleet.toml at a 2 s interval:
#   probe     `lookout-fleet probe`: lookout's runtime (the collectors and engine that the
#             dashboard and `lookout run --headless` use) printing up/fresh counts every second
#   headless  the real `lookout run --headless` (unless HEADLESS=0): up time from its
#             host_status events; it prints no per-sample data, so no freshness figure
#   tui       the real dashboard in a 160x45 tmux window (unless TUI=0, or without tmux):
#             up time from its header line ("N hosts: N up"), read with capture-pane
# and reports for each:
#   all_up_s   seconds from its start until every host that the simulator serves is up
#   cpu_pct    its CPU (utime+stime from /proc/PID/stat) over WINDOW seconds of steady state
#              (starting SETTLE seconds after all hosts are up), % of one core
#   rss_mb     its VmRSS, the highest seen during the window
#   fresh      share of hosts that are up with a sample younger than two intervals, over the
#              probe's per-second lines in the window: lowest and mean
#   sim_cpu    the simulator's CPU over the same window (it shares the machine)
#   load       the 1-minute load average at the end (other work inflates CPU figures)
# It exits with status 1 when a measured run never saw every served host up.
#
# Environment: PROBE (1: measure the probe), HEADLESS (1), TUI (1), WINDOW (default 30),
# SETTLE (10), INTERVAL (2s), PROCS (40 per host), WATCH (process names, default
# "nginx,python3"; "" for none), CHECKS ([[check]]s per host, answered by the simulator;
# default 0), CHECK_INTERVAL (10s), BUILD (1: cargo build --release first), BIN and LOOKOUT
# (the binaries, default target/release/...), UP_WITHIN (seconds to wait for all hosts up,
# default 60), OUT (directory for logs, default a temp dir), FIRST (first address, 127.42.0.1).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(100 500 1000)
WINDOW=${WINDOW:-30}
SETTLE=${SETTLE:-10}
INTERVAL=${INTERVAL:-2s}
PROCS=${PROCS:-40}
WATCH=${WATCH-nginx,python3}
CHECKS=${CHECKS:-0}
CHECK_INTERVAL=${CHECK_INTERVAL:-10s}
FIRST=${FIRST:-127.42.0.1}
OUT=${OUT:-$(mktemp -d /tmp/lookout-bench.XXXXXX)}
TICK=$(getconf CLK_TCK)
BIN=${BIN:-target/release/lookout-fleet}
LOOKOUT=${LOOKOUT:-target/release/lookout}
HEADLESS=${HEADLESS:-1}
PROBE=${PROBE:-1}
TUI=${TUI:-1}
UP_WITHIN=${UP_WITHIN:-60}
if [ "$TUI" = 1 ] && ! command -v tmux >/dev/null; then
    echo "no tmux: the dashboard is not measured" >&2
    TUI=0
fi
FAILED=0

if [ "${BUILD:-1}" = 1 ]; then
    cargo build --release --bin lookout-fleet --bin lookout >&2
fi
[ -x "$BIN" ] || { echo "no $BIN: build it with cargo build --release --bin lookout-fleet" >&2; exit 1; }

PIDS=()
SOCK="$OUT/tmux.sock"
cleanup() {
    tmux -S "$SOCK" kill-server 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap cleanup EXIT INT TERM

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# measure KIND N: KIND is "probe" (lookout-fleet probe: up/fresh counts), "headless" (the
# real `lookout run --headless`: up time from its host_status events, no freshness figure)
# or "tui" (the real dashboard in tmux: up time from its header line).
measure() {
    local kind=$1 N=$2 dir="$OUT/fleet-$2" total=$((UP_WITHIN + SETTLE + WINDOW))
    local expect
    expect=$(awk -F'\t' 'NR > 1 && $3 == "up"' "$dir/hosts.tsv" | wc -l)
    local t_start
    : >"$dir/$kind.out"
    t_start=$(date +%s.%N)
    local pid
    case $kind in
    probe)
        "$BIN" probe --config "$dir/fleet.toml" --duration "${total}s" --expect-up "$expect" \
            >"$dir/$kind.out" 2>"$dir/$kind.err" &
        pid=$!
        ;;
    headless)
        "$LOOKOUT" run --headless --config "$dir/fleet.toml" --duration "${total}s" \
            >"$dir/$kind.out" 2>"$dir/$kind.err" &
        pid=$!
        ;;
    tui)
        # exec: the pane's process is lookout itself, so its pid is the one to measure.
        tmux -S "$SOCK" new-session -d -s bench -x 160 -y 45 -c "$PWD" \
            "exec '$LOOKOUT' --config '$dir/fleet.toml' 2>'$dir/$kind.err'" \; \
            set-option -t bench remain-on-exit on
        pid=$(tmux -S "$SOCK" display-message -p -t bench '#{pane_pid}')
        ;;
    esac
    # The dashboard is stopped with its tmux server (cleanup), not by its pid.
    [ "$kind" = tui ] || PIDS+=("$pid")
    local all_up=never
    for _ in $(seq 1 $((UP_WITHIN * 10))); do
        if [ "$kind" = probe ]; then
            if grep -q '^all_up' "$dir/$kind.out"; then
                all_up=$(awk '/^all_up/ { sub("t=", "", $2); print $2 }' "$dir/$kind.out")
                break
            fi
        elif [ "$kind" = tui ]; then
            if tmux -S "$SOCK" capture-pane -p -t bench | head -n 1 | grep -q "hosts: $expect up"; then
                all_up=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
                break
            fi
        else
            # hosts whose latest host_status event says up
            local up
            up=$(awk '/"event":"host_status"/ {
                  h = $0; sub(/.*"host":"/, "", h); sub(/".*/, "", h)
                  s = $0; sub(/.*"status":"/, "", s); sub(/".*/, "", s); st[h] = s }
                END { n = 0; for (h in st) if (st[h] == "up") n++; print n }' "$dir/$kind.out")
            if [ "$up" -ge "$expect" ]; then
                all_up=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
                break
            fi
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir/$kind.err" >&2; break; }
        sleep 0.1
    done
    [ "$all_up" = never ] && FAILED=1
    sleep "$SETTLE"
    local start_line c0 s0 t0 c1 s1 t1 rss=0 r load fresh=- cpu simcpu
    start_line=$(wc -l <"$dir/$kind.out")
    c0=$(cpu_ticks "$pid"); s0=$(cpu_ticks "$sim"); t0=$(date +%s.%N)
    for _ in $(seq 1 "$WINDOW"); do
        sleep 1
        r=$(rss_kb "$pid"); [ "$r" -gt "$rss" ] && rss=$r
    done
    c1=$(cpu_ticks "$pid"); s1=$(cpu_ticks "$sim"); t1=$(date +%s.%N)
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [ "$kind" = probe ]; then
        fresh=$(tail -n +"$((start_line + 1))" "$dir/$kind.out" | awk -v n="$expect" '
            /^t=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                    f = v["fresh"] / n * 100; sum += f; k++; if (min == "" || f < min) min = f }
            END { if (k) printf "%.1f%%/%.1f%%", min, sum / k; else print "-" }')
    fi
    cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$TICK" 'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
    simcpu=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" -v hz="$TICK" 'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
    printf '%-6s %-9s %-9s %-8s %-7s %-15s %-8s %s\n' "$N" "$kind" "$all_up" "$cpu" "$((rss / 1024))" "$fresh" "$simcpu" "$load"
    if [ "$kind" = tui ]; then
        tmux -S "$SOCK" capture-pane -p -t bench >"$dir/$kind.out"
        tmux -S "$SOCK" kill-server 2>/dev/null || true
    else
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    PIDS=("$sim")
}

printf '%-6s %-9s %-9s %-8s %-7s %-15s %-8s %s\n' hosts measured all_up_s cpu_pct rss_mb 'fresh min/mean' sim_cpu load
for N in "${SIZES[@]}"; do
    dir="$OUT/fleet-$N"
    mkdir -p "$dir"
    "$BIN" serve --hosts "$N" --dir "$dir" --port 0 --first "$FIRST" --interval "$INTERVAL" \
        --procs "$PROCS" --watch "$WATCH" --checks "$CHECKS" --check-interval "$CHECK_INTERVAL" \
        >"$dir/sim.out" 2>"$dir/sim.err" &
    sim=$!
    PIDS+=("$sim")
    for _ in $(seq 1 300); do
        grep -q '^ready' "$dir/sim.out" 2>/dev/null && break
        kill -0 "$sim" 2>/dev/null || { cat "$dir/sim.err" >&2; exit 1; }
        sleep 0.1
    done
    grep -q '^ready' "$dir/sim.out" || { echo "simulator did not start" >&2; exit 1; }
    if [ "$PROBE" = 1 ]; then
        measure probe "$N"
    fi
    if [ "$HEADLESS" = 1 ]; then
        measure headless "$N"
    fi
    if [ "$TUI" = 1 ]; then
        measure tui "$N"
    fi
    cleanup
done
echo "logs: $OUT" >&2
exit "$FAILED"
