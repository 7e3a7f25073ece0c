#!/bin/sh
# Idle overhead of the dashboard beside htop and btop, in the same run (DESIGN.md targets:
# at most half of htop's CPU, RSS no more than bottom's ~7.5 MB).
#
# Each program runs in its own 160x45 tmux window on a private socket, refreshing every
# second (lookout watches the local host at a 1 s interval). After a warm-up, CPU is
# utime+stime from /proc/PID/stat over the measuring window; RSS is VmRSS at the end.
#
# usage: scripts/idle_overhead.sh [SECONDS]   (default 60; needs a release build:
#        cargo build --release)
#   env: BIN (the lookout to measure, default target/release/lookout), BEFORE (another
#        lookout binary, e.g. the build before a change: measured beside it, same run)
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-"$root/target/release/lookout"}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v tmux >/dev/null || { echo "needs tmux" >&2; exit 1; }
dir=$(mktemp -d)
sock="$dir/tmux.sock"
trap 'tmux -S "$sock" kill-server 2>/dev/null; rm -rf "$dir"' EXIT INT TERM

cat > "$dir/lookout.toml" <<CONF
[general]
interval = "1s"
CONF
# btop refreshes every 2 s by default; give it 1 s like the others, in a private HOME.
mkdir -p "$dir/home/.config/btop"
printf 'update_ms = 1000\n' > "$dir/home/.config/btop/btop.conf"

tmux -S "$sock" new-session -d -s m -x 160 -y 45 -n lookout "$bin --config $dir/lookout.toml"
tmux -S "$sock" set-option -t m remain-on-exit on >/dev/null
if [ -n "${BEFORE:-}" ]; then
    tmux -S "$sock" new-window -t m -n before "$BEFORE --config $dir/lookout.toml"
fi
if command -v htop >/dev/null; then
    tmux -S "$sock" new-window -t m -n htop "htop -d 10"
fi
if command -v btop >/dev/null; then
    tmux -S "$sock" new-window -t m -n btop "env HOME=$dir/home btop"
fi
if command -v btm >/dev/null; then
    tmux -S "$sock" new-window -t m -n bottom "btm --rate 1000"
fi
sleep 5

pids() { tmux -S "$sock" list-panes -a -F '#{window_name} #{pane_pid}'; }
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

pids > "$dir/pids"
while read -r name pid; do
    echo "$name $pid $(ticks "$pid")"
done < "$dir/pids" > "$dir/t0"
start=$(date +%s.%N)
sleep "$secs"
end=$(date +%s.%N)
printf '%-8s %10s %12s %10s\n' program "cpu %" "cpu s/min" "RSS MB"
while read -r name pid t0; do
    t1=$(ticks "$pid")
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
    awk -v n="$name" -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$start" -v e="$end" -v r="$rss" 'BEGIN {
        cpu = (b - a) / hz; el = e - s;
        printf "%-8s %9.3f%% %12.3f %10.1f\n", n, 100 * cpu / el, 60 * cpu / el, r / 1024 }'
done < "$dir/t0"
