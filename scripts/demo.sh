#!/usr/bin/env bash
#! The README's main command: CoMo-rs on live traffic, in one command (root).
#!
#! Builds `como` (release), then runs `como demo`: two network namespaces joined by a veth pair,
#! the XDP program on the capture end with one AF_XDP socket per queue and pinned workers, the
#! standard modules (some with filters compiled into the kernel tables), generated traffic
#! replayed through the other end in a loop, and the query API on 127.0.0.1:44444. It prints
#! queries to try; Ctrl-C stops it and removes the namespaces, the veth pair and its database.
#!
#! Usage: sudo scripts/demo.sh [como demo options]
#!   --pps N          replay rate (default 2000)
#!   -r TRACE         replay the Ethernet frames of a trace file (repeatable) instead
#!   --listen ADDR    query server address (default 127.0.0.1:44444)
#!   --duration SECS  stop by itself after SECS seconds
#!   --offline        the previous, file-only demo: `como read` and `como inline` on a bundled
#!                    trace (no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" != "--offline" && "$(id -u)" != 0 ]]; then
    echo "scripts/demo.sh: the live demo needs root (network namespaces, veth, XDP): sudo $0 $*" >&2
    echo "scripts/demo.sh: or run the file-only demo: $0 --offline" >&2
    exit 1
fi

scripts/setup.sh
cargo build --release --locked -p como --quiet
como="${CARGO_TARGET_DIR:-target}/release/como"

if [[ "${1:-}" == "--offline" ]]; then
    shift
    trace=tests/data/traces/nDPI/teams.pcap
    echo "== $como read -r $trace (first 25 lines)" >&2
    # `head` closing the pipe early is fine: como stops quietly, as tcpdump does.
    "$como" read -r "$trace" | head -n 25
    for expr in "" "tcp" "udp port 3478 or udp portrange 50000-50059" "ip6" "tcp[tcpflags] & tcp-syn != 0" "not net 192.168.0.0/16"; do
        printf '== %s read -c -r %s %-45s -> ' "$como" "$trace" "'$expr'" >&2
        "$como" read -c -r "$trace" "$expr"
    done
    echo "== $como inline -r $trace --format pretty topaddr:topn=5,interval=30s tcp (first 20 lines)" >&2
    "$como" inline -r "$trace" --format pretty topaddr:topn=5,interval=30s tcp | head -n 20
    echo "== $como inline -r $trace --format csv protocol:interval=60s" >&2
    "$como" inline -r "$trace" --format csv protocol:interval=60s
    exit 0
fi

exec "$como" demo "$@"
