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

bench_name=bench-modules
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
modules="${BENCH_MODULES:-traffic protocol topaddr tuple}"
trace="$tmp/synth.pcap"
"$gen" -q -n "$packets" -o "$trace"

# Sanity: traffic accounts every packet; tuple prints its flows (counted for the table).
got="$("$como" inline --workers 1 -r "$trace" --format csv traffic | awk -F, 'NR > 1 {n += $2} END {print n + 0}')"
[ "$got" = "$packets" ] || { log "traffic counted $got packets, expected $packets"; exit 1; }
declare -A lines
for m in $modules; do
    lines[$m]=$(("$("$como" inline --workers 1 -r "$trace" --format csv "$m" | wc -l)" - 1))
done

goal() {
    case "$1" in
        traffic) echo 5.4 ;; protocol) echo 4.4 ;; topaddr) echo 3.6 ;; tuple) echo 0.64 ;; *) echo - ;;
    esac
}

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
