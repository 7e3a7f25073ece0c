#!/bin/sh
# Bytes the dashboard writes to its terminal per second at steady state, with 50 hosts
# (DESIGN.md target: under 2 KB/s, since it is watched over SSH).
#
# The real dashboard runs under `script` (which copies everything written to the pty into a
# file) inside a 160x45 tmux window, fed by a synthetic fleet (examples/fleet.rs: 50 hosts,
# every value changing every round). The file's growth after a warm-up is the figure.
#
# usage: scripts/term_bytes.sh [HOSTS] [INTERVAL_SECS] [SECONDS]   (default 50 2 60; needs
#        cargo build --release --example fleet)
set -eu
hosts=${1:-50}
interval=${2:-2}
secs=${3:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/examples/fleet"
[ -x "$bin" ] || { echo "build first: cargo build --release --example fleet" >&2; exit 1; }
dir=$(mktemp -d)
sock="$dir/tmux.sock"
trap 'tmux -S "$sock" kill-server 2>/dev/null; rm -rf "$dir"' EXIT INT TERM

tmux -S "$sock" new-session -d -s b -x 160 -y 45 \
    "script -q -f -c '$bin $hosts $interval' $dir/typescript"
sleep 10
b0=$(stat -c %s "$dir/typescript")
start=$(date +%s.%N)
sleep "$secs"
b1=$(stat -c %s "$dir/typescript")
end=$(date +%s.%N)
awk -v a="$b0" -v b="$b1" -v s="$start" -v e="$end" -v h="$hosts" -v i="$interval" 'BEGIN {
    printf "%d hosts, %ss interval, 160x45: %.0f bytes/s at steady state (%d bytes in %.1f s)\n",
        h, i, (b - a) / (e - s), b - a, e - s }'
