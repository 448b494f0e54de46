#!/usr/bin/env bash
#! The main job of CoMo-rs as it stands: reads a bundled real trace (nDPI's Microsoft Teams
#! capture) through `como read`, first packet by packet, then counting a few typical filters,
#! then runs two of CoMo's modules over it with `como inline` (top addresses, protocols).
#! (The live XDP demo replaces this when the kernel fast path lands.)
#!
#! Usage: scripts/demo.sh [EXPR...]   (the filter for the packet listing; default: none)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p como --quiet
como="${CARGO_TARGET_DIR:-target}/release/como"
trace=tests/data/traces/nDPI/teams.pcap

echo "== $como read -r $trace $* (first 25 lines)" >&2
# `head` closing the pipe early is fine: como stops quietly, as tcpdump does.
"$como" read -r "$trace" "$@" | head -n 25
for expr in "" "tcp" "udp port 3478 or udp portrange 50000-50059" "ip6" "tcp[tcpflags] & tcp-syn != 0" "not net 192.168.0.0/16"; do
    printf '== %s read -c -r %s %-45s -> ' "$como" "$trace" "'$expr'" >&2
    "$como" read -c -r "$trace" "$expr"
done
echo "== $como inline -r $trace --format pretty topaddr:topn=5,interval=30s tcp (first 20 lines)" >&2
"$como" inline -r "$trace" --format pretty topaddr:topn=5,interval=30s tcp | head -n 20
echo "== $como inline -r $trace --format csv protocol:interval=60s" >&2
"$como" inline -r "$trace" --format csv protocol:interval=60s
