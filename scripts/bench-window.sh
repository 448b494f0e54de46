#!/usr/bin/env bash
#! Benchmark of the packet trace window (issue 5), on one filesystem, in one run:
#!  1. sustained write rate of the window (io_uring, O_DIRECT, index built while writing) over
#!     real traces replayed into it, against `dd if=/dev/zero bs=1M oflag=direct` of as many
#!     bytes as the window on the same filesystem (dd runs before and after the window; the
#!     better dd counts: a disk whose rate falls over a long write is compared over as long a
#!     write);
#!  2. the same write with blocking pwrite (no io_uring), for comparison;
#!  3. the indexing CPU per Gb/s of traffic (writer thread time in the indexer / traffic);
#!  4. `host X` over the whole window (>= WINDOW_GB): the indexed query against
#!     `tcpdump -r SEG host X` over every segment, both from a warm page cache and with the
#!     page cache dropped first (echo 3 > /proc/sys/vm/drop_caches, when root), and checks that
#!     both return the same number of packets.
#! Usage: scripts/bench-window.sh [WINDOW_GB]   (default 5)
#! Environment: CARGO_TARGET_DIR (release build of the window examples), BENCH_DIR (a folder on
#! the filesystem to measure, default /work/bench-window or ./bench-window; removed at the end),
#! BENCH_HOST (the host of the query, default one of nDPI/dns.pcap's).
set -euo pipefail
gb="${1:-5}"
case "$gb" in '' | *[!0-9]*) echo "usage: $0 [WINDOW_GB]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
log() { printf 'bench-window: %s\n' "$*" >&2; }
command -v tcpdump >/dev/null || { log "tcpdump not found (scripts/setup.sh installs it)"; exit 1; }

log "cargo build --release -p como-window --examples"
(cd "$root" && cargo build --release -q -p como-window --example window_write --example window_query)
w="$target/release/examples/window_write"
q="$target/release/examples/window_query"

base="${BENCH_DIR:-}"
if [ -z "$base" ]; then
    if [ -d /work ] && [ -w /work ]; then base=/work/bench-window; else base="$root/bench-window"; fi
fi
mkdir -p "$base"
# The window plus dd's file of the same size must fit, with room to spare for the other users
# of the disk.
free_gb=$(df -P --block-size=1G "$base" | awk 'NR==2 {print $4}')
if [ "$free_gb" -lt $(( 2 * gb + 5 )) ]; then
    log "only $free_gb GB free on $base: need $(( 2 * gb + 5 )) GB for a $gb GB window"; exit 1
fi
dir="$(mktemp -d "$base/run.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
fs="$(df -P "$dir" | awk 'NR==2 {print $1 " (" $6 ")"}')"

# The input: real traces (nDPI's captures and libtrace's MPLS trace), read into memory once and
# replayed with shifted timestamps until the window holds about $gb GB.
# Ethernet only: tcpdump, the baseline, refuses a pcapng whose interfaces differ in link type.
traces=()
for f in "$root"/tests/data/traces/nDPI/*.pcap "$root"/tests/data/traces/nDPI/*.pcapng "$root"/tests/data/traces/libtrace/ip-in-mpls.pcap; do
    if tcpdump -r "$f" -c 1 2>&1 >/dev/null | grep -q 'link-type EN10MB'; then traces+=("$f"); fi
done
once=$("$w" --dir "$dir/probe" --repeat 1 "${traces[@]}" 2>/dev/null)
rm -rf "$dir/probe"
pass_bytes=$(sed -n 's/.* file_bytes=\([0-9]*\).*/\1/p' <<<"$once")
repeat=$(( gb * 1000000000 / pass_bytes + 1 ))
log "input: ${#traces[@]} trace files, $pass_bytes bytes of segment per pass, $repeat passes"

dd_rate() { # MB/s of an O_DIRECT write of the window's size (dd's own figure)
    local out
    out=$(dd if=/dev/zero of="$dir/dd.bin" bs=1M count=$(( gb * 1000 )) oflag=direct 2>&1 | tail -1)
    rm -f "$dir/dd.bin"
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.,]+$/ && $(i+1) ~ /^[GMk]B\/s$/) {v = $i; gsub(",", ".", v); u = $(i+1)}}
         END {if (u == "GB/s") v *= 1000; else if (u == "kB/s") v /= 1000; printf "%.0f", v}' <<<"$out"
}

# Warm up: the staging memory and the disk path.
"$w" --dir "$dir/warm" --repeat 2 "${traces[@]}" >/dev/null 2>&1; rm -rf "$dir/warm"

dd1=$(dd_rate); log "dd oflag=direct: $dd1 MB/s"
log "window write, io_uring (${gb} GB)"
wu=$("$w" --dir "$dir/window" --repeat "$repeat" "${traces[@]}" 2>/dev/null)
log "$wu"
dd2=$(dd_rate); log "dd oflag=direct: $dd2 MB/s"
log "window write, blocking pwrite (1/4 of the input, then deleted)"
wb=$("$w" --dir "$dir/blocking" --no-uring --repeat $(( repeat / 4 + 1 )) "${traces[@]}" 2>/dev/null)
rm -rf "$dir/blocking"
log "$wb"
log "window write, live path (write(): drops instead of waiting), 1/4 of the input"
wd=$("$w" --dir "$dir/drop" --drop --repeat $(( repeat / 4 + 1 )) "${traces[@]}" 2>/dev/null)
rm -rf "$dir/drop"
log "$wd"

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
dd_best=$(( dd1 > dd2 ? dd1 : dd2 ))
ratio_u=$(awk -v a="$(kv file_mb_s "$wu")" -v b="$dd_best" 'BEGIN {printf "%.1f", 100 * a / b}')
ratio_b=$(awk -v a="$(kv file_mb_s "$wb")" -v b="$dd_best" 'BEGIN {printf "%.1f", 100 * a / b}')
# Indexing CPU per Gb/s: seconds of indexer CPU per second of 1 Gb/s traffic.
idx=$(awk -v c="$(kv index_cpu_s "$wu")" -v b="$(kv packet_bytes "$wu")" 'BEGIN {printf "%.2f", 100 * c / (b * 8 / 1e9)}')

# The query: one host of a small trace (present in every pass, in few index groups).
host="${BENCH_HOST:-$(tcpdump -nr "$root/tests/data/traces/nDPI/dns.pcap" 2>/dev/null | awk '$2 == "IP" {split($3, a, "."); print a[1] "." a[2] "." a[3] "." a[4]; exit}')}"
segs=("$dir"/window/seg-*.pcapng)
wbytes=$(du -sb "$dir/window" | awk '{print $1}')
log "query host $host over ${#segs[@]} segments, $wbytes bytes"
tcpdump_all() { local n=0 s; for s in "${segs[@]}"; do n=$(( n + $(tcpdump -nr "$s" "host $host" 2>/dev/null | wc -l) )); done; echo "$n"; }
secs() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); awk -v ns=$((t1 - t0)) 'BEGIN {printf "%.3f", ns / 1e9}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

n_idx=$(kv packets "$("$q" --dir "$dir/window" host "$host")")
n_tcp=$(tcpdump_all)
[ "$n_idx" = "$n_tcp" ] || { log "MISMATCH: window $n_idx packets, tcpdump $n_tcp"; exit 1; }
# Warm: the best of 3 runs of each (the first runs after the writes still fault pages in).
qline=$("$q" --dir "$dir/window" host "$host")
t_idx_warm=$(for _ in 1 2 3; do kv secs "$("$q" --dir "$dir/window" host "$host")"; echo; done | grep . | sort -n | head -1)
t_tcp_warm=$(for _ in 1 2 3; do secs tcpdump_all; echo; done | grep . | sort -n | head -1)
drop_caches; t_idx_cold=$(kv secs "$("$q" --dir "$dir/window" host "$host")")
drop_caches; t_tcp_cold=$(secs tcpdump_all)
sp_warm=$(awk -v a="$t_tcp_warm" -v b="$t_idx_warm" 'BEGIN {printf "%.1f", a / b}')
sp_cold=$(awk -v a="$t_tcp_cold" -v b="$t_idx_cold" 'BEGIN {printf "%.1f", a / b}')

cat <<EOF

## Packet trace window (scripts/bench-window.sh $gb), $(date -u +%Y-%m-%dT%H:%MZ), commit $(cd "$root" && git rev-parse --short HEAD)
Filesystem: $fs. Input: ${#traces[@]} real Ethernet traces (tests/data/traces/nDPI, libtrace/ip-in-mpls.pcap) replayed $repeat times, snaplen 65535, 32 staging buffers of 1 MiB, 1 GiB segments.

| write | MB/s of segment file | % of dd oflag=direct ($dd_best MB/s: $dd1 before, $dd2 after) |
|---|---:|---:|
| window, io_uring ($(kv uring "$wu"), registered buffers $(kv registered_buffers "$wu"), fixed file $(kv fixed_file "$wu")) | $(kv file_mb_s "$wu") | **$ratio_u %** |
| window, blocking pwrite (1/4 of the input) | $(kv file_mb_s "$wb") | $ratio_b % |

- drops in the runs: io_uring $(kv drops_disk_slow "$wu") disk_slow / $(kv drops_disk_full "$wu") disk_full, blocking $(kv drops_disk_slow "$wb") / $(kv drops_disk_full "$wb").
- io_uring run: $(kv packets "$wu") packets, $(kv file_bytes "$wu") bytes in $(kv secs "$wu") s, $(kv segments "$wu") segments, process CPU $(kv process_cpu_s "$wu") s, hugepages $(kv hugepages "$wu"), drops $(kv drops_disk_slow "$wu") (write_wait: the driver waits for buffers).
- live path (\`write()\`, never waits), 1/4 of the input: $(kv packets "$wd") offered, $(kv stored "$wd") stored, $(kv drops_disk_slow "$wd") dropped as disk_slow, $(kv file_mb_s "$wd") MB/s.
- Indexing CPU: $(kv index_cpu_s "$wu") s for $(kv packet_bytes "$wu") packet bytes = **$idx % of a core per Gb/s** of this traffic (goal < 10 %).

| \`host $host\` over $wbytes bytes, ${#segs[@]} segments ($n_idx packets) | indexed query s | tcpdump -r every segment s | speed-up |
|---|---:|---:|---:|
| warm page cache | $t_idx_warm | $t_tcp_warm | **${sp_warm}x** |
| page cache dropped | $t_idx_cold | $t_tcp_cold | **${sp_cold}x** |

Index groups read: $(kv groups_read "$qline") of $(kv groups "$qline") ($(kv bytes_read "$qline") bytes read).
EOF
