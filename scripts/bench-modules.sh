#!/usr/bin/env bash
#! Module throughput: `como inline --workers 1 -r F --format csv M` against
#! `tcpdump -r F -w /dev/null`, for the traffic, protocol, topaddr and tuple modules.
#
# Usage: scripts/bench-modules.sh [PACKETS]    (default 4000000)
#
# Generates the synthetic trace of the foundation issue (benches/src/synth.rs: 200k Zipf flows,
# realistic mix, snaplen 96) as pcap into a temporary directory, then times, in the same run and
# on the same file, tcpdump reading it (`-w /dev/null`) and `como inline` running each module
# on one worker with CSV output to /dev/null. Timing: hyperfine (-N, 1 warm-up, BENCH_RUNS runs,
# default 3) when installed, else one warm-up and BENCH_RUNS runs timed with `date +%s%N`,
# keeping the best. Ratio = tcpdump time / como time (> 1: como is faster), printed next to the
# goal of issue 3 (twice CoMo v1.5's multiples). Before timing, each module's CSV is checked for
# sanity: traffic's packet total equals the trace's packet count, and the number of tuple flow
# lines is printed.
# Environment: CARGO_TARGET_DIR (where `cargo build --release` puts como and gen-trace),
# BENCH_RUNS, BENCH_TMP (parent of the temporary directory, default $TMPDIR or /tmp),
# BENCH_MODULES (default "traffic protocol topaddr tuple").
set -euo pipefail

packets="${1:-4000000}"
case "$packets" in '' | *[!0-9]*) echo "usage: $0 [PACKETS]" >&2; exit 2 ;; esac
runs="${BENCH_RUNS:-3}"
modules="${BENCH_MODULES:-traffic protocol topaddr tuple}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

log() { printf 'bench-modules: %s\n' "$*" >&2; }

command -v tcpdump >/dev/null || { log "tcpdump not found (scripts/setup.sh installs it)"; exit 1; }
log "cargo build --release -p como -p como-benches"
(cd "$root" && cargo build --release -q -p como --bin como && cargo build --release -q -p como-benches --bin gen-trace)
como="$target/release/como"
gen="$target/release/gen-trace"

tmp="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/como-bench-modules.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
trace="$tmp/synth.pcap"
"$gen" -q -n "$packets" -o "$trace"

# Sanity: traffic accounts every packet; tuple prints its flows (counted for the table).
got="$("$como" inline --workers 1 -r "$trace" --format csv traffic | awk -F, 'NR > 1 {n += $2} END {print n + 0}')"
[ "$got" = "$packets" ] || { log "traffic counted $got packets, expected $packets"; exit 1; }
declare -A lines
for m in $modules; do
    lines[$m]=$(("$("$como" inline --workers 1 -r "$trace" --format csv "$m" | wc -l)" - 1))
done

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

goal() {
    case "$1" in
        traffic) echo 5.4 ;; protocol) echo 4.4 ;; topaddr) echo 3.6 ;; tuple) echo 0.64 ;; *) echo - ;;
    esac
}

timer="best of $runs (loop)"
command -v hyperfine >/dev/null && timer="best of $runs (hyperfine -N, 1 warm-up)"
printf '%s packets (snaplen 96, 200000 Zipf flows, pcap %d MB), %s; %s; %s; load average %s\n' \
    "$packets" $(($(stat -c %s "$trace") / 1000000)) "$timer" \
    "$("$como" --version 2>/dev/null || echo como)" "$(tcpdump --version 2>&1 | head -1)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| module | CSV lines | como inline s | tcpdump -w /dev/null s | como Mpkt/s | ratio | goal |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for m in $modules; do
    # tcpdump is timed next to each module, so both see the same load.
    theirs="$(best_seconds tcpdump -r "$trace" -w /dev/null)"
    ours="$(best_seconds "$como" inline --workers 1 -r "$trace" --format csv "$m")"
    awk -v m="$m" -v l="${lines[$m]}" -v o="$ours" -v t="$theirs" -v n="$packets" -v g="$(goal "$m")" \
        'BEGIN {printf "| %s | %d | %.3f | %.3f | %.1f | %.2fx | %sx |\n", m, l, o, t, n / o / 1e6, t / o, g}'
done
