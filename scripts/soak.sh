#!/usr/bin/env bash
# Soak: lookout runs for DURATION against simulated hosts that flap, and its resources are
# sampled every SAMPLE seconds, to show that nothing leaks over a long run.
#
#   scripts/soak.sh DURATION            e.g. scripts/soak.sh 2h   (or 30m, 600s)
#
# It starts `lookout-fleet serve` with HOSTS hosts whose modes change every FLAP (a share
# FLAP_SHARE of them each time: up hosts go down, hang or reset their connections, others
# come back; the simulated process lists change all the time), with CHECKS [[check]]s per
# host, and `lookout run --headless` on that fleet plus the local host (a local [[check]]
# every 5 s, a trigger on host.up whose action runs `sh`), recording on. Every SAMPLE s it
# writes into OUT/soak.csv: seconds, lookout's VmRSS (KiB), open fds, threads, child
# processes, recording bytes on disk, hosts up (from the events), and the RSS split into
# anonymous memory (heap, stacks: where a leak shows) and file-backed pages (lookout's own
# code and libraries, which fault in as rarer code paths run: bounded by the binary's
# size, so a slow rise there early on is not a leak). Flapping stops SETTLE
# before the end, so the run ends on a settled fleet whose final modes (hosts.tsv) are
# compared with lookout's last host_status event per host (up, unreachable for down and
# reset, timeout for hung).
#
# At the end it prints a summary (and writes OUT/summary.txt): RSS growth per hour after
# the first WARMUP seconds (least squares over the samples; also for the anonymous and
# file-backed parts), the range and trend of fds,
# threads and children after the warm-up, and how many hosts' final statuses match. With
# gnuplot it draws OUT/soak.png (RSS and fds over time). Exit status 1 when a target is
# missed: RSS growth >= 1 MiB/h, a trend in fds (>= 2/h) or children (>= 1/h), threads
# varying by more than 2, or a final status that does not match.
#
# Environment: HOSTS (100), INTERVAL (2s), FLAP (30s), FLAP_SHARE (0.05), CHECKS (2),
# SAMPLE (10), WARMUP (600), SETTLE (240 s), OUT (a new temp dir), BUILD (1: cargo build --release),
# LOOKOUT and BIN (the binaries; copied into OUT so a rebuild during the run changes nothing),
# FIRST (first address, 127.46.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 1 ] || { echo "usage: scripts/soak.sh DURATION (e.g. 2h, 30m, 600s)" >&2; exit 2; }
seconds() {
    case "$1" in
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}
DURATION=$(seconds "$1")
HOSTS=${HOSTS:-100}
INTERVAL=${INTERVAL:-2s}
FLAP=${FLAP:-30s}
FLAP_SHARE=${FLAP_SHARE:-0.05}
CHECKS=${CHECKS:-2}
SAMPLE=${SAMPLE:-10}
WARMUP=${WARMUP:-600}
SETTLE=${SETTLE:-240}
FIRST=${FIRST:-127.46.0.1}
OUT=${OUT:-$(mktemp -d /tmp/lookout-soak.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ "$DURATION" -le "$SETTLE" ]; then
    echo "DURATION must be longer than SETTLE ($SETTLE s)" >&2
    exit 2
fi
if [ "${BUILD:-1}" = 1 ]; then
    cargo build --release --bin lookout-fleet --bin lookout >&2
fi
cp "${BIN:-target/release/lookout-fleet}" "$OUT/lookout-fleet"
cp "${LOOKOUT:-target/release/lookout}" "$OUT/lookout"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# the simulator: flapping until SETTLE before the end
"$OUT/lookout-fleet" serve --hosts "$HOSTS" --port 0 --first "$FIRST" --dir "$OUT/fleet" \
    --interval "$INTERVAL" --connect-timeout 5s --checks "$CHECKS" --check-interval 10s \
    --flap "$FLAP" --flap-share "$FLAP_SHARE" --flap-for "$(( DURATION - SETTLE ))s" \
    > "$OUT/fleet.out" 2> "$OUT/fleet.err" &
pids+=($!)
for _ in $(seq 100); do
    grep -q '^ready' "$OUT/fleet.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^ready' "$OUT/fleet.out" || { cat "$OUT/fleet.err" >&2; exit 1; }

# lookout's config: the fleet's, plus the local host with a check, a trigger with an
# action, and recording into OUT/rec
{
    cat "$OUT/fleet/fleet.toml"
    cat <<EOF

[[hosts]]
names = ["localhost"]
group = "self"
via = "local"

[[check]]
name = "soak_local"
hosts = ["localhost"]
command = "echo 1"
interval = "5s"

[[trigger]]
name = "host lost"
metric = "host.up"
scope = "each"
below = 1
for = "10s"
cooldown = "1m"
severity = "warning"
run = ["sh", "-c", "echo \"\$LOOKOUT_HOST\" >> '$OUT/alerts.log'"]

[record]
enabled = true
dir = "$OUT/rec"
retention = "1d"
max_size = "1GiB"
EOF
} > "$OUT/soak.toml"
"$OUT/lookout" check --config "$OUT/soak.toml" > "$OUT/check.txt"

"$OUT/lookout" run --headless --config "$OUT/soak.toml" --duration "${DURATION}s" \
    > "$OUT/events.jsonl" 2> "$OUT/lookout.err" &
LPID=$!
pids+=("$LPID")

# hosts whose latest host_status event says up
hosts_up() {
    awk '/"event":"host_status"/ {
          h = $0; sub(/.*"host":"/, "", h); sub(/".*/, "", h)
          s = $0; sub(/.*"status":"/, "", s); sub(/".*/, "", s); st[h] = s }
        END { n = 0; for (h in st) if (st[h] == "up") n++; print n }' "$OUT/events.jsonl"
}

echo "t,rss_kib,fds,threads,children,rec_bytes,hosts_up,rss_anon_kib,rss_file_kib" > "$OUT/soak.csv"
echo "soak: $HOSTS hosts flapping every $FLAP for ${DURATION}s; lookout pid $LPID; out $OUT" >&2
start=$(date +%s)
while kill -0 "$LPID" 2>/dev/null; do
    t=$(( $(date +%s) - start ))
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$LPID/status" 2>/dev/null || true)
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$LPID/status" 2>/dev/null || true)
    anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$LPID/status" 2>/dev/null || true)
    file=$(awk '/^RssFile:/ { print $2 }' "/proc/$LPID/status" 2>/dev/null || true)
    fds=$(ls "/proc/$LPID/fd" 2>/dev/null | wc -l)
    children=$(pgrep -c -P "$LPID" || true)
    rec=$(du -sb "$OUT/rec" 2>/dev/null | cut -f1 || true)
    [ -n "$rss" ] && echo "$t,$rss,$fds,$threads,$children,${rec:-0},$(hosts_up),${anon:-0},${file:-0}" >> "$OUT/soak.csv"
    sleep "$SAMPLE"
done
wait "$LPID" || echo "lookout exited with status $?" >&2

# final statuses: the simulator's modes now against lookout's last event per host
awk -F'\t' 'NR == FNR { if (FNR > 1) mode[$1] = $3; next }
    /"event":"host_status"/ {
        h = $0; sub(/.*"host":"/, "", h); sub(/".*/, "", h)
        s = $0; sub(/.*"status":"/, "", s); sub(/".*/, "", s); st[h] = s }
    END {
        ok = 0; bad = 0
        for (h in mode) {
            want = mode[h] == "up" ? "up" : mode[h] == "hung" ? "timeout" : "unreachable"
            if (st[h] == want) ok++; else { bad++; printf "mismatch %s: simulator %s, lookout %s\n", h, mode[h], st[h] }
        }
        printf "final_status match=%d mismatch=%d\n", ok, bad
    }' "$OUT/fleet/hosts.tsv" "$OUT/events.jsonl" > "$OUT/final.txt"

# After the warm-up, per column: min, max and the least-squares trend per hour. fds follow
# the connections of the hosts that are up, and children the checks and actions running
# at the moment, so those vary; what must not happen is a trend.
awk -F, -v warm="$WARMUP" '
    NR == 1 { next }
    { n_all++; last_t = $1 }
    $1 >= warm {
        n++; sx += $1; sxx += $1 * $1
        for (c = 2; c <= 9; c++) {
            if (c == 6 || c == 7) continue
            sy[c] += $c; sxy[c] += $1 * $c
            if (n == 1 || $c < lo[c]) lo[c] = $c
            if (n == 1 || $c > hi[c]) hi[c] = $c
        }
    }
    END {
        if (n < 2) { print "too few samples after the warm-up"; exit 1 }
        for (c = 2; c <= 9; c++) trend[c] = (n * sxy[c] - sx * sy[c]) / (n * sxx - sx * sx) * 3600
        printf "samples=%d duration_s=%d warmup_s=%d\n", n_all, last_t, warm
        printf "rss_mib min=%.1f max=%.1f growth_mib_per_h=%.3f\n", lo[2] / 1024, hi[2] / 1024, trend[2] / 1024
        printf "rss_anon_mib min=%.1f max=%.1f growth_mib_per_h=%.3f\n", lo[8] / 1024, hi[8] / 1024, trend[8] / 1024
        printf "rss_file_mib min=%.1f max=%.1f growth_mib_per_h=%.3f\n", lo[9] / 1024, hi[9] / 1024, trend[9] / 1024
        printf "fds min=%d max=%d trend_per_h=%.2f\n", lo[3], hi[3], trend[3]
        printf "threads min=%d max=%d trend_per_h=%.2f\n", lo[4], hi[4], trend[4]
        printf "children min=%d max=%d trend_per_h=%.2f\n", lo[5], hi[5], trend[5]
        fail = (trend[2] / 1024 >= 1) || (trend[3] >= 2 || trend[3] <= -2) || (hi[4] - lo[4] > 2) || (trend[5] >= 1 || trend[5] <= -1)
        print fail ? "targets MISSED" : "targets met"
        exit fail
    }' "$OUT/soak.csv" > "$OUT/summary.txt" && met=1 || met=0
{
    grep -c '"event":"host_status"' "$OUT/events.jsonl" | sed 's/^/host_status_events=/'
    grep -c '^flap t=' "$OUT/fleet.out" | sed 's/^/flap_rounds=/'
    awk '/^flap t=/ { sub("changed=", "", $3); c += $3 } END { print "mode_changes=" c + 0 }' "$OUT/fleet.out"
    [ -f "$OUT/alerts.log" ] && wc -l < "$OUT/alerts.log" | sed 's/^/actions_run=/'
    du -sb "$OUT/rec" | cut -f1 | sed 's/^/recording_bytes=/'
    tail -n 1 "$OUT/final.txt"
} >> "$OUT/summary.txt"
grep -q 'mismatch=0$' "$OUT/final.txt" || met=0

if ! command -v gnuplot >/dev/null; then
    echo "no gnuplot (apt-get install gnuplot-nox): no plot" >&2
else
    gnuplot <<EOF
set terminal pngcairo size 1000,500 noenhanced
set output "$OUT/soak.png"
set datafile separator ","
set key autotitle columnhead left top
set title "lookout run --headless, $HOSTS flapping hosts, $CHECKS checks/host, recording"
set xlabel "minutes"
set ylabel "RSS (MiB)"
set y2label "open fds, threads"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "$OUT/soak.csv" using (\$1/60):(\$2/1024) with lines lw 2 title "RSS (MiB)", \
     "" using (\$1/60):(\$8/1024) with lines title "anonymous (MiB)", \
     "" using (\$1/60):(\$9/1024) with lines title "file-backed (MiB)", \
     "" using (\$1/60):3 axes x1y2 with lines title "open fds", \
     "" using (\$1/60):4 axes x1y2 with lines title "threads"
EOF
fi
cat "$OUT/summary.txt"
grep '^mismatch' "$OUT/final.txt" | head -n 10 || true
echo "csv: $OUT/soak.csv  plot: $OUT/soak.png" >&2
[ "$met" = 1 ]
