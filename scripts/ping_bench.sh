#!/bin/sh
# Scale benchmark of ping: N loopback targets (127.0.0.0/8) pinged every second.
#
#   scripts/ping_bench.sh [collector|lookout] [TARGETS] [WARMUP_S] [MEASURE_S]
#
#   collector  the ping collector alone (examples/ping_scale.rs), updates counted and dropped
#   lookout    the whole program: `lookout run --headless` with a generated config of
#              TARGETS ping-only hosts (engine, history, triggers included)
#
# Measures the process's CPU as % of one core (utime+stime from /proc/PID/stat over a
# steady-state window after a warm-up) and its memory (VmRSS and VmHWM from
# /proc/PID/status). Needs root or CAP_NET_RAW (or a ping_group_range allowing datagram ICMP).
set -eu
MODE=${1:-collector}
TARGETS=${2:-2000}
WARMUP=${3:-15}
MEASURE=${4:-60}
RUN=$((WARMUP + MEASURE + 5))
cd "$(dirname "$0")/.."
cargo build --release --example ping_scale --bin lookout >&2
WORK=$(mktemp -d)
PID=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT INT TERM

# The k-th target is 127.1.(k/250).(k%250+1), as in examples/ping_scale.rs.
case "$MODE" in
collector)
    target/release/examples/ping_scale --targets "$TARGETS" --interval-ms 1000 --seconds "$RUN" \
        >"$WORK/out" 2>&1 &
    PID=$!
    ;;
lookout)
    {
        printf '[general]\ninterval = "1s"\nhistory = "1m"\n\n[ping]\ntimeout = "1s"\n\n[[hosts]]\nvia = "ping"\nnames = [\n'
        awk -v n="$TARGETS" 'BEGIN { for (k = 0; k < n; k++) printf "  \"127.1.%d.%d\",\n", int(k / 250), k % 250 + 1 }'
        printf ']\n'
    } >"$WORK/config.toml"
    target/release/lookout run --headless --config "$WORK/config.toml" --duration "${RUN}s" \
        >"$WORK/events" 2>"$WORK/out" &
    PID=$!
    ;;
*)
    echo "usage: $0 [collector|lookout] [TARGETS] [WARMUP_S] [MEASURE_S]" >&2
    exit 2
    ;;
esac

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
sleep "$WARMUP"
T0=$(cpu_ticks); S0=$(date +%s.%N)
sleep "$MEASURE"
T1=$(cpu_ticks); S1=$(date +%s.%N)
RSS=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$PID/status")
THREADS=$(awk '/^Threads/ { print $2 }' "/proc/$PID/status")
wait "$PID" || true
PID=
cat "$WORK/out"
if [ "$MODE" = lookout ]; then
    echo "events: $(wc -l <"$WORK/events") lines; not-up status events: $(grep -c '"status":"\(unreachable\|error\)"' "$WORK/events" || true)"
fi
awk -v t0="$T0" -v t1="$T1" -v s0="$S0" -v s1="$S1" -v tick="$TICK" -v rss="$RSS" -v hwm="$HWM" \
    -v n="$TARGETS" -v th="$THREADS" -v mode="$MODE" 'BEGIN {
    cpu = (t1 - t0) / tick / (s1 - s0) * 100
    printf "%s: %d targets, 1 s interval: CPU %.2f%% of one core over %.0f s; RSS %.1f MB (peak %.1f MB); %d threads\n",
        mode, n, cpu, s1 - s0, rss / 1024, hwm / 1024, th
}'
