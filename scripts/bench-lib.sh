#!/usr/bin/env bash
#! Shared set-up of the benchmark drivers (sourced by scripts/bench-read.sh and
#! scripts/bench-modules.sh, with `bench_name` set): the packet-count argument, BENCH_RUNS, the
#! release build of como and gen-trace, a temporary directory removed on exit, `log`, and
#! `best_seconds CMD...` (the best wall time of BENCH_RUNS runs: hyperfine -N when installed,
#! else one warm-up and a `date +%s%N` loop).
#! Environment: CARGO_TARGET_DIR (where `cargo build --release` puts como and gen-trace),
#! BENCH_RUNS (default 3), BENCH_TMP (parent of the temporary directory, default $TMPDIR or /tmp).

# Sourced: `bench_name` comes from the caller, and the variables set here are the caller's.
# shellcheck disable=SC2034,SC2154
packets="${1:-4000000}"
case "$packets" in '' | *[!0-9]*) echo "usage: $0 [PACKETS]" >&2; exit 2 ;; esac
runs="${BENCH_RUNS:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

log() { printf '%s: %s\n' "$bench_name" "$*" >&2; }

command -v tcpdump >/dev/null || { log "tcpdump not found (scripts/setup.sh installs it)"; exit 1; }
log "cargo build --release -p como -p como-benches"
(cd "$root" && cargo build --release -q -p como --bin como && cargo build --release -q -p como-benches --bin gen-trace)
como="$target/release/como"
gen="$target/release/gen-trace"

tmp="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/como-$bench_name.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# best_seconds CMD...: the best wall time of $runs runs, in seconds (stdout to /dev/null).
best_seconds() {
    if command -v hyperfine >/dev/null; then
        local csv="$tmp/hf.csv"
        hyperfine -N --style none --warmup 1 --runs "$runs" --export-csv "$csv" -- "$(printf '%q ' "$@")" >/dev/null 2>&1
        # command,mean,stddev,median,user,system,min,max
        tail -1 "$csv" | awk -F, '{printf "%.4f", $(NF-1)}'
    else
        "$@" >/dev/null 2>&1 # warm-up (page cache)
        local best="" i t0 t1
        for ((i = 0; i < runs; i++)); do
            t0=$(date +%s%N)
            "$@" >/dev/null 2>&1
            t1=$(date +%s%N)
            if [ -z "$best" ] || [ $((t1 - t0)) -lt "$best" ]; then best=$((t1 - t0)); fi
        done
        awk -v ns="$best" 'BEGIN {printf "%.4f", ns / 1e9}'
    fi
}

if command -v hyperfine >/dev/null; then
    timer="best of $runs (hyperfine -N, 1 warm-up)"
else
    timer="best of $runs (loop)"
fi
