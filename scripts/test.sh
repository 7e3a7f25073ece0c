#!/bin/sh
# Runs lookout's whole test suite, first installing (Debian, via apt-get) what the tests
# drive for real: OpenSSH server and client, ping, iproute2 (network namespaces), nftables
# and iptables (loss and delay inside namespaces), tmux (end-to-end terminal test), busybox
# and dash (the remote command under both shells: tests/remote_parse.rs, tests/ssh_busybox.rs), and
# Prometheus, node_exporter and Alertmanager (the Prometheus source, export and receiver).
# Tests that need root (namespaces, raw ICMP) run when this is run as root, as CI does.
set -eu
cd "$(dirname "$0")/.."

missing=""
want() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || missing="$missing $2"; }
want sshd openssh-server
want ssh openssh-client
want ssh-agent openssh-client
want ping iputils-ping
want ip iproute2
want nft nftables
want iptables iptables
want tmux tmux
want man man-db
want busybox busybox
want dash dash
want prometheus prometheus
want prometheus-node-exporter prometheus-node-exporter
want prometheus-alertmanager prometheus-alertmanager
# [[check]] tests: real plugins and the servers monscale's metric kinds read.
[ -x /usr/lib/nagios/plugins/check_load ] || missing="$missing monitoring-plugins-basic"
want redis-server redis-server
want redis-cli redis-tools
want snmpd snmpd
want snmpget snmp
want curl curl
want openssl openssl
want setpriv util-linux
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi

# Unit, integration and doc tests; benches are compiled and run once each in test mode.
cargo test --all-targets "$@"
cargo test --doc
