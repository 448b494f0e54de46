#!/usr/bin/env bash
#! Builds every cargo-fuzz target of tests/fuzz and runs each for a bounded time.
#
# Usage: scripts/fuzz.sh [SECONDS]     (SECONDS per target, default 20)
#
# Targets: pcap, pcapng, erf (whole trace files), packet (one packet of any link type),
# filter (a filter expression), kernel_diff (filters compiled into the kernel tables against
# the exact evaluator, on generated and real packets), packet_key (the kernel field
# extraction against a model, on every cut of a frame), config (a configuration file, as
# `como validate` reads it), query_params (the parameters of a query URL), window_segment
# (trace-window segments torn by a crash or damaged: recovery, index, queries).
# Seed corpora are copied at run time into
# tests/fuzz/corpus/<target>/ (not committed): the trace files of tests/data/traces by
# extension (up to 64 KiB each), the first packets of each pcap trace for the packet target
# (tests/fuzz/seed_packets.py, when python3 is there; its Ethernet ones for packet_key), the
# expressions of tests/data/filters/corpus.txt, the committed seeds of tests/fuzz/seeds/<target>/,
# and the committed reproducers of crashes in tests/fuzz/regressions/<target>/ (so they are
# re-run every time).
# Needs nightly and cargo-fuzz (scripts/setup.sh installs both). Prints one line per target;
# exits non-zero if the build fails or any target finds a crash, leak, timeout or OOM
# (the reproducer is then in tests/fuzz/artifacts/<target>/).
# Environment: FUZZ_TARGET_DIR (default tests/fuzz/target) keeps the sanitizer build apart
# from the workspace's target directory; FUZZ_TARGETS (default "pcap pcapng erf packet
# filter kernel_diff packet_key config query_params window_segment") picks the targets: add filter_diff, the differential target against libpcap, for
# longer manual runs (e.g. FUZZ_TARGETS=filter_diff scripts/fuzz.sh 600).
set -euo pipefail

secs="${1:-20}"
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/tests/fuzz"
traces="$root/tests/data/traces"
target_dir="${FUZZ_TARGET_DIR:-$fuzz/target}"
read -r -a targets <<<"${FUZZ_TARGETS:-pcap pcapng erf packet filter kernel_diff packet_key config query_params window_segment}"

log() { printf 'fuzz: %s\n' "$*"; }

# --- seed corpora -----------------------------------------------------------------------------
seed_traces() { # target, find name patterns...
    local t="$1"; shift
    mkdir -p "$fuzz/corpus/$t"
    local args=() first=1 p
    for p in "$@"; do
        [ $first -eq 1 ] || args+=(-o)
        args+=(-iname "$p"); first=0
    done
    find "$traces" -type f \( "${args[@]}" \) -size -65k -print0 |
        while IFS= read -r -d '' f; do
            # Flatten the path into a unique file name.
            cp -f "$f" "$fuzz/corpus/$t/$(printf '%s' "${f#"$traces"/}" | tr '/' '_')"
        done
}
seed_traces pcap '*.pcap' '*.cap' '*.dmp'
seed_traces pcapng '*.pcapng' '*.ntar' '*.pcapng.*'
seed_traces erf '*.erf'
mkdir -p "$fuzz/corpus/filter" "$fuzz/corpus/filter_diff" "$fuzz/corpus/packet"
n=0
while IFS= read -r line; do
    case "$line" in '#'* | '') continue ;; esac
    n=$((n + 1))
    printf '%s' "$line" >"$fuzz/corpus/filter/corpus-$n"
    printf '%s' "$line" >"$fuzz/corpus/filter_diff/corpus-$n"
done <"$root/tests/data/filters/corpus.txt"
# packet: the first packets of every pcap trace (needs python3), plus two hand-made ones:
# link type 0 (Ethernet), wire length 60, a TCP SYN; link 3 (raw), an IPv4 UDP header.
printf '\x00\x3c\x00\x00\x00\x00\x1b\x21\x3c\x9d\xf8\x02\x00\x01\x02\x03\x04\x08\x00\x45\x00\x00\x28\x00\x01\x40\x00\x40\x06\x00\x00\x0a\x01\x02\x03\x0a\x00\x00\x01\x80\x00\x00\x50\x00\x00\x00\x01\x00\x00\x00\x00\x50\x02\xff\xff\x00\x00\x00\x00' >"$fuzz/corpus/packet/eth-tcp-syn"
printf '\x03\x1c\x00\x00\x00\x45\x00\x00\x1c\x00\x01\x00\x00\x40\x11\x00\x00\x0a\x01\x02\x03\x0a\x00\x00\x35\x80\x00\x00\x35\x00\x08\x00\x00' >"$fuzz/corpus/packet/raw-udp"
if command -v python3 >/dev/null; then
    python3 "$fuzz/seed_packets.py" "$traces" "$fuzz/corpus/packet" 2>/dev/null || log "packet seeds from traces failed; using the hand-made ones"
fi

# packet_key: the Ethernet packet seeds (link index 0; same layout).
mkdir -p "$fuzz/corpus/packet_key"
find "$fuzz/corpus/packet" -type f -size -2k -print0 |
    while IFS= read -r -d '' f; do
        if [ "$(head -c1 "$f" | od -An -tu1 | tr -d ' ')" = 0 ]; then
            cp -f "$f" "$fuzz/corpus/packet_key/"
        fi
    done
# Committed seeds (small hand-written or minimised inputs) of the newer targets.
for t in "${targets[@]}"; do
    if [ -d "$fuzz/seeds/$t" ]; then
        mkdir -p "$fuzz/corpus/$t"
        find "$fuzz/seeds/$t" -type f -exec cp -f -t "$fuzz/corpus/$t" {} +
    fi
done

for t in "${targets[@]}"; do
    if [ -d "$fuzz/regressions/$t" ]; then
        mkdir -p "$fuzz/corpus/$t"
        find "$fuzz/regressions/$t" -type f -exec cp -f -t "$fuzz/corpus/$t" {} +
    fi
done

# --- build ------------------------------------------------------------------------------------
cd "$fuzz"
start=$(date +%s)
: >"$fuzz/build.log"
features() { [ "$1" = filter_diff ] && echo "--features=diff" || echo "--features="; }
for t in "${targets[@]}"; do
    if ! cargo +nightly fuzz build -O --target-dir "$target_dir" "$(features "$t")" "$t" >>"$fuzz/build.log" 2>&1; then
        grep -E '^error' -A12 "$fuzz/build.log" | head -60 >&2
        log "build of $t FAILED (log: tests/fuzz/build.log)"
        exit 1
    fi
done
log "built ${#targets[@]} targets in $(($(date +%s) - start)) s"

# --- run --------------------------------------------------------------------------------------
# window_segment writes its segments in a scratch folder of its own, removed at the end.
COMO_FUZZ_SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/como-fuzz-scratch.XXXXXX")"
export COMO_FUZZ_SCRATCH
trap 'rm -rf "$COMO_FUZZ_SCRATCH"' EXIT
failed=()
for t in "${targets[@]}"; do
    out="$fuzz/artifacts/$t.log"
    mkdir -p "$fuzz/artifacts/$t" "$fuzz/corpus/$t"
    extra=()
    [ -f "$fuzz/dict/$t.dict" ] && extra+=("-dict=$fuzz/dict/$t.dict")
    [ "$t" = filter_diff ] && extra+=("-dict=$fuzz/dict/filter.dict" -detect_leaks=0)
    if cargo +nightly fuzz run -O --target-dir "$target_dir" "$(features "$t")" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${extra[@]}" >"$out" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "$out" | tail -1 | grep -o '[0-9]*' || true)
        cov=$(grep -o 'cov: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || true)
        log "$t: ok (${runs:-?} runs in ${secs} s, coverage ${cov:-?}, corpus $(find "corpus/$t" -type f | wc -l) inputs)"
    else
        failed+=("$t")
        artifact=$(grep -o 'Test unit written to [^ ]*' "$out" | tail -1 | sed 's/Test unit written to //' || true)
        grep -m1 -E 'panicked|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$out" >&2 || tail -20 "$out" >&2
        log "$t: FAILED (reproducer: ${artifact:-none}; log: tests/fuzz/artifacts/$t.log)"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    log "${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
    exit 1
fi
log "all ${#targets[@]} targets ran ${secs} s each without a crash"
