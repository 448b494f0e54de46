#!/usr/bin/env bash
#! Filter evaluation per packet: CoMo-rs's evaluator vs libpcap's BPF (benches/benches/filter_eval.rs).
#
# Usage: scripts/bench-filter.sh [PACKETS]    (default 200000 synthetic packets in memory)
#
# Runs the criterion bench (both sides on the same packets in the same process; it aborts if a
# filter matches a different number of packets on the two sides), then repeats its summary
# table (ns per packet, speed-up = libpcap / CoMo-rs) at the end of the output.
# Environment: COMO_BENCH_SECONDS (criterion measurement time per function, default 3),
# COMO_BENCH_ROUNDS (passes for the summary's best-of, default 7), CARGO_TARGET_DIR.
set -euo pipefail

packets="${1:-200000}"
case "$packets" in '' | *[!0-9]*) echo "usage: $0 [PACKETS]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cd "$root"
COMO_BENCH_PACKETS="$packets" cargo bench -p como-benches --bench filter_eval 2>&1 | tee "$out"
echo
sed -n '/^filter_eval summary/,$p' "$out"
