#!/bin/sh
# What one poll costs a watched host: the CPU of a real OpenSSH sshd and everything it
# starts for lookout's session (the remote sh, its df and head), by cgroup v2 accounting.
#
# The sshd runs in a cgroup v2 group of its own; `usage_usec` of its cpu.stat over a
# measuring window, divided by the polls lookout made in it (window / interval), is the
# figure. Each case runs with the build before (BEFORE_REV, built once from `git archive`)
# and the build after (this tree), alternating, in one run:
#   none        no process watched
#   2 names     NAMES watched (default "sshd" and the name of pid 1: a few pids), with the
#               machine's own processes
#   2 names+N   the same with EXTRA (default 300) `sleep` processes started for the run
#   many pids   MANY_NAMES watched (default "sshd bash": every shell of the machine)
# The window holds DF_EVERY- and FULL_EVERY-poll samples in proportion (30 polls by
# default: 3 with df, 1 reading every process), so the figure includes them.
#
# usage: scripts/remote-cost.sh
#   env: BEFORE_REV (git revision of the build before; default main), BEFORE_BIN / AFTER_BIN
#        (use these binaries instead of building), BEFORE_TARGET (cargo target dir for the
#        before build; default a fresh one, or share this tree's to reuse its dependencies),
#        INTERVAL (default 1), WINDOW seconds (default 30), ROUNDS per case and build
#        (default 2), NAMES, EXTRA, MANY_NAMES, CASES (default "none names extra many").
# Needs root (sshd, cgroups), openssh-server, a cgroup v2 hierarchy (/sys/fs/cgroup or
# /sys/fs/cgroup/unified). The client's optimisation level does not matter here: debug
# builds are used.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
interval=${INTERVAL:-1}
window=${WINDOW:-30}
rounds=${ROUNDS:-2}
names=${NAMES:-"sshd $(cat /proc/1/comm)"}
many_names=${MANY_NAMES:-"sshd bash"}
cases=${CASES:-"none names extra many"}
extra=${EXTRA:-300}
before_rev=${BEFORE_REV:-main}

[ "$(id -u)" -eq 0 ] || { echo "needs root (sshd, cgroups)" >&2; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "needs openssh-server: apt-get install -y openssh-server" >&2; exit 1; }
cgroot=""
for c in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [ -f "$c/cgroup.procs" ] && [ -f "$c/cpu.stat" ] || [ -f "$c/cgroup.controllers" ]; then
        cgroot=$c
        break
    fi
done
[ -n "$cgroot" ] || { echo "no cgroup v2 hierarchy found" >&2; exit 1; }
mkdir -p /run/sshd

dir=$(mktemp -d /tmp/remote-cost.XXXXXX)
cg="$cgroot/lookout-remote-cost-$$"
client=""
sleepers=""
cleanup() {
    [ -n "$client" ] && kill "$client" 2>/dev/null || true
    for p in $sleepers; do kill "$p" 2>/dev/null || true; done
    if [ -d "$cg" ]; then
        if [ -f "$cg/cgroup.kill" ]; then
            echo 1 > "$cg/cgroup.kill" 2>/dev/null || true
        else
            for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        fi
        i=0
        # (cgroup files have no size: -s cannot tell)
        while [ -n "$(cat "$cg/cgroup.procs" 2>/dev/null)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        rmdir "$cg" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the two builds
if [ -n "${BEFORE_BIN:-}" ]; then
    before=$BEFORE_BIN
else
    echo "building the build before ($before_rev, $(git rev-parse --short "$before_rev"))..." >&2
    mkdir "$dir/before"
    git archive "$before_rev" | tar -x -C "$dir/before"
    # git archive keeps the commit's mtimes, and cargo decides freshness by mtime (and names
    # the artifacts of both trees alike): in a shared target dir, older sources would be
    # taken for built already
    find "$dir/before" -name '*.rs' -exec touch {} +
    (cd "$dir/before" && CARGO_TARGET_DIR=${BEFORE_TARGET:-$dir/before/target} \
        cargo build -q --bin lookout)
    cp "${BEFORE_TARGET:-$dir/before/target}/debug/lookout" "$dir/lookout-before"
    before="$dir/lookout-before"
fi
if [ -n "${AFTER_BIN:-}" ]; then
    after=$AFTER_BIN
else
    echo "building this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes))..." >&2
    # the same for this tree after the build before went to a shared target dir
    [ -z "${BEFORE_TARGET:-}" ] || find "$root/src" "$root/benches" "$root/examples" -name '*.rs' -exec touch {} +
    cargo build -q --bin lookout
    cp "${CARGO_TARGET_DIR:-$root/target}/debug/lookout" "$dir/lookout-after"
    after="$dir/lookout-after"
fi

# --- the host: one sshd in its own cgroup, on a free loopback port
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
# Debian's bash sources ~/.bashrc for commands over SSH; SHLVL>1 skips root's here
SetEnv SHLVL=5
CONF
mkdir "$cg"
sh -c 'echo $$ > "$1/cgroup.procs"; exec /usr/sbin/sshd -f "$2/sshd_config" -E "$2/sshd.log"' \
    sh "$cg" "$dir"
i=0
while [ ! -s "$dir/sshd.pid" ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { cat "$dir/sshd.log" >&2; exit 1; }
    sleep 0.05
done
printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
printf 'Host cost\n  HostName 127.0.0.1\n  Port %s\n  User root\n' "$port" > "$dir/ssh_config"

config() { # $1: watched names ("" for none)
    cat <<CONF
[general]
interval = "${interval}s"

[ssh]
config_file = "$dir/ssh_config"
known_hosts = "$dir/known_hosts"
host_key_policy = "strict"
identity_files = ["$dir/id_ed25519"]

[[hosts]]
names = ["cost"]
CONF
    if [ -n "$1" ]; then
        list=$(printf '"%s", ' $1)
        printf '\n[[watch.processes]]\nhosts = ["cost"]\nnames = [%s]\n' "${list%, }"
    fi
}
config "" > "$dir/none.toml"
config "$names" > "$dir/names.toml"
config "$many_names" > "$dir/many.toml"

usage() { awk '$1 == "usage_usec" { print $2 }' "$cg/cpu.stat"; }
# on-CPU ns (schedstat) of the group's sshd processes and of the script's shell, "SSHD SH"
split() {
    d=0; s=0
    for p in $(cat "$cg/cgroup.procs"); do
        t=$(cut -d' ' -f1 "/proc/$p/schedstat" 2>/dev/null) || continue
        if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q '@@lookout'; then
            s=$((s + t))
        else
            d=$((d + t))
        fi
    done
    echo "$d $s"
}
nprocs() { ls /proc | grep -c '^[0-9]'; }
# how many processes the watched names match by name (the column "watched")
nmatch() { n=0; for w in $1; do n=$((n + $(pgrep -c -x "$w" || true))); done; echo $n; }

# one measurement: $1 build label, $2 binary, $3 config, $4 case label
measure() {
    "$2" run --headless --config "$3" > "$dir/client.log" 2>&1 &
    client=$!
    # connect, the first (full) sample, and a few polls more
    sleep $((3 * interval + 2))
    s0=$(split)
    u0=$(usage)
    t0=$(date +%s.%N)
    sleep "$window"
    u1=$(usage)
    t1=$(date +%s.%N)
    s1=$(split)
    n=$(nprocs)
    kill "$client" 2>/dev/null || true
    wait "$client" 2>/dev/null || true
    client=""
    awk -v b="$1" -v c="$4" -v u0="$u0" -v u1="$u1" -v t0="$t0" -v t1="$t1" -v iv="$interval" -v n="$n" \
        -v s0="$s0" -v s1="$s1" 'BEGIN {
        polls = (t1 - t0) / iv
        ms = (u1 - u0) / 1000 / polls
        split(s0, a, " "); split(s1, z, " ")
        d = (z[1] - a[1]) / 1e6 / polls; sh = (z[2] - a[2]) / 1e6 / polls
        printf "%-7s %-16s %6d %6.0f %10.2f %9.3f%% %7.2f %7.2f %7.2f\n", b, c, n, polls, ms, 100 * ms / 1000 / iv, d, sh, ms - d - sh }'
    sleep 1
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; before: $before_rev; interval ${interval}s, window ${window}s, watched names: $names (many pids: $many_names)" >&2
# case: what is watched / how many processes those names match; procs: processes on the host
# ms/poll splits into: the sshd processes, the script's shell, and what it starts (df, head)
printf '%-7s %-16s %6s %6s %10s %10s %7s %7s %7s\n' build case procs polls "ms/poll" "of a core" sshd sh started
for case in $cases; do
    if [ "$case" = extra ]; then
        i=0
        while [ $i -lt "$extra" ]; do
            sleep 100000 &
            sleepers="$sleepers $!"
            i=$((i + 1))
        done
    fi
    label=$case
    conf="$dir/names.toml"
    case $case in
        none) conf="$dir/none.toml" ;;
        names) label="2 names/$(nmatch "$names")" ;;
        extra) label="2 names+$extra/$(nmatch "$names")" ;;
        many) label="2 names/$(nmatch "$many_names")"; conf="$dir/many.toml" ;;
    esac
    r=0
    while [ $r -lt "$rounds" ]; do
        measure before "$before" "$conf" "$label"
        measure after "$after" "$conf" "$label"
        r=$((r + 1))
    done
    for p in $sleepers; do kill "$p" 2>/dev/null || true; done
    sleepers=""
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
