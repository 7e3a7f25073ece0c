#!/bin/sh
# Scale figure for the Prometheus source (docs/prometheus.md, "Scale"): a synthetic page with
# node_exporter-style series for N instances (default 10,000), scraped by a real Prometheus
# every 5 s as one target with honor_labels, read by `lookout run --headless` every 5 s.
# Prints lookout's CPU (% of one core) and memory over a measured window, with machine load.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
set -eu
cd "$(dirname "$0")/.."
N=${N:-10000}
WINDOW=${WINDOW:-60}

[ -n "${NO_BUILD:-}" ] || cargo build --release --bin lookout --example synth_exporter
LOOKOUT=target/release/lookout
SYNTH=target/release/examples/synth_exporter

dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(port); PP=$(port); MP=$(port)

"$SYNTH" "$SP" "$N" 2>"$dir/synth.log" & pids="$pids $!"
cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  scrape_timeout: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: synth
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$SP']
EOF
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$PP" --log.level=warn 2>"$dir/prom.log" & pids="$pids $!"

q() { curl -sG "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'; }
echo "waiting for Prometheus to hold $N instances..."
i=0
until [ "$(q 'count(node_load1)' 2>/dev/null || echo 0)" = "$N" ]; do
    i=$((i + 1)); [ $i -lt 120 ] || { echo "Prometheus never got the page"; cat "$dir/prom.log"; exit 1; }
    sleep 1
done
sleep 15  # two more scrapes, so 30s rates exist

cat >"$dir/lookout.toml" <<EOF
[general]
interval = "5s"
[[prometheus]]
url = "http://127.0.0.1:$PP"
selector = '{job="node"}'
interval = "5s"
rate_window = "30s"
timeout = "10s"
EOF
"$LOOKOUT" run --headless --config "$dir/lookout.toml" --metrics-addr "127.0.0.1:$MP" >"$dir/events.jsonl" 2>"$dir/lookout.log" &
LP=$!; pids="$pids $LP"

ticks() { awk '{print $14 + $15}' "/proc/$LP/stat"; }
HZ=$(getconf CLK_TCK)
sleep 20  # warm-up: discovery of every host
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(ticks); s0=$(date +%s.%N)
sleep "$WINDOW"
t1=$(ticks); s1=$(date +%s.%N)
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$t0" "$t1" "$s0" "$s1" "$HZ" <<'EOF'
import sys
t0, t1, s0, s1, hz = map(float, sys.argv[1:])
print(f"lookout CPU: {100 * (t1 - t0) / hz / (s1 - s0):.1f}% of one core over {s1 - s0:.0f}s")
EOF
grep -E 'VmRSS|VmHWM' "/proc/$LP/status"
page=$(curl -s "http://127.0.0.1:$MP/metrics")
echo "$page" | grep '^lookout_hosts{' | grep -v ' 0.0$'
grep -o '"error":"[^"]*"' "$dir/events.jsonl" | sort | uniq -c | head -5
echo "$page" | grep '^lookout_host_poll_ms{host="prometheus' || true
echo "$page" | grep -c '^lookout_cpu_usage_ratio{' | sed 's/^/cpu.usage_pct series exported: /'
