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

bench_name=bench-read
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
filter="${BENCH_FILTER:-tcp port 80}"
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
