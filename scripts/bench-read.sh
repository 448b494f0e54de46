#!/usr/bin/env bash
#! Reading throughput: `como read -c -r F` against `tcpdump -r F -w /dev/null`, per format.
#
# Usage: scripts/bench-read.sh [PACKETS]    (default 4000000)
#
# Generates the synthetic trace (benches/src/synth.rs: Zipf flows, realistic mix, snaplen 96)
# as pcap, pcapng and ERF into a temporary directory, checks that `como read -c` counts every
# packet, then times each reader on each file in the same run: hyperfine (-N, 1 warm-up,
# BENCH_RUNS runs, default 3) when installed, else a loop of BENCH_RUNS runs timed with
# `date +%s%N`, keeping the best. tcpdump cannot read ERF: for ERF it reads the pcap twin (the
# same packets). Prints one line per format with both times and the speed-up, then the same
# with a filter on both sides (BENCH_FILTER, default "tcp port 80"; its counts are compared and
# a difference is flagged in the row).
# Environment: CARGO_TARGET_DIR (where `cargo build --release` puts como and gen-trace),
# BENCH_RUNS, BENCH_TMP (parent of the temporary directory, default $TMPDIR or /tmp).
set -euo pipefail

packets="${1:-4000000}"
case "$packets" in '' | *[!0-9]*) echo "usage: $0 [PACKETS]" >&2; exit 2 ;; esac
runs="${BENCH_RUNS:-3}"
filter="${BENCH_FILTER:-tcp port 80}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

log() { printf 'bench-read: %s\n' "$*" >&2; }

command -v tcpdump >/dev/null || { log "tcpdump not found (scripts/setup.sh installs it)"; exit 1; }
log "cargo build --release -p como -p como-benches"
(cd "$root" && cargo build --release -q -p como --bin como && cargo build --release -q -p como-benches --bin gen-trace)
como="$target/release/como"
gen="$target/release/gen-trace"

tmp="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/como-bench-read.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
for f in pcap pcapng erf; do
    "$gen" -q -n "$packets" -f "$f" -o "$tmp/synth.$f"
done

# Sanity: both readers see every packet.
for f in pcap pcapng erf; do
    got="$("$como" read -c -r "$tmp/synth.$f")"
    [ "$got" = "$packets" ] || { log "como read -c -r synth.$f printed '$got', expected $packets"; exit 1; }
done
for f in pcap pcapng; do
    got="$(tcpdump -r "$tmp/synth.$f" --count 2>/dev/null | awk '{print $1}')"
    [ "$got" = "$packets" ] || { log "tcpdump --count on synth.$f printed '$got', expected $packets"; exit 1; }
done

# best_seconds CMD...: the best wall time of $runs runs, in seconds.
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

timer="best of $runs (loop)"
command -v hyperfine >/dev/null && timer="best of $runs (hyperfine -N, 1 warm-up)"
printf '%s packets (snaplen 96), %s; como %s; %s\n' "$packets" "$timer" "$("$como" --version 2>/dev/null || echo como)" "$(tcpdump --version 2>&1 | head -1)"
printf '| format | file MB | como read -c s | tcpdump -w /dev/null s | como Mpkt/s | speed-up |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for f in pcap pcapng erf; do
    file="$tmp/synth.$f"
    twin="$file"
    [ "$f" = erf ] && twin="$tmp/synth.pcap"
    ours="$(best_seconds "$como" read -c -r "$file")"
    theirs="$(best_seconds tcpdump -r "$twin" -w /dev/null)"
    mb=$(( $(stat -c %s "$file") / 1000000 ))
    note=""
    [ "$f" = erf ] && note=" (tcpdump on the pcap twin)"
    awk -v f="$f$note" -v mb="$mb" -v o="$ours" -v t="$theirs" -v n="$packets" \
        'BEGIN {printf "| %s | %d | %.3f | %.3f | %.1f | %.2fx |\n", f, mb, o, t, n / o / 1e6, t / o}'
done

# The same with a filter: both sides parse every packet and evaluate the expression.
read -r -a words <<<"$filter"
# shellcheck disable=SC2016 # the backquotes are Markdown
printf '\nWith the filter `%s` on both sides:\n\n' "$filter"
printf '| format | matches | como read -c s | tcpdump -w /dev/null s | como Mpkt/s | speed-up |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for f in pcap pcapng erf; do
    file="$tmp/synth.$f"
    twin="$file"
    [ "$f" = erf ] && twin="$tmp/synth.pcap"
    ours_n="$("$como" read -c -r "$file" "${words[@]}" 2>/dev/null || echo error)"
    theirs_n="$(tcpdump -r "$twin" --count "${words[@]}" 2>/dev/null | awk '{print $1}')"
    matches="$ours_n"
    [ "$ours_n" = "$theirs_n" ] || matches="COUNTS DIFFER: como $ours_n, tcpdump $theirs_n"
    ours="$(best_seconds "$como" read -c -r "$file" "${words[@]}")"
    theirs="$(best_seconds tcpdump -r "$twin" -w /dev/null "${words[@]}")"
    note=""
    [ "$f" = erf ] && note=" (tcpdump on the pcap twin)"
    awk -v f="$f$note" -v m="$matches" -v o="$ours" -v t="$theirs" -v n="$packets" \
        'BEGIN {printf "| %s | %s | %.3f | %.3f | %.1f | %.2fx |\n", f, m, o, t, n / o / 1e6, t / o}'
done
