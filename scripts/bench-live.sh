#!/usr/bin/env bash
#! Live capture on veth: `como run` with an xdp source against `tcpdump -i VETH -w /dev/null`
#! (AF_PACKET), same veth, same sender, same offered loads, in one run (issue 4, Benchmarks).
#
# Usage: scripts/bench-live.sh            (root: network namespaces, veth, XDP)
#
# Lab: two network namespaces created here (unique names with the pid; removed on exit, also on
# failure or Ctrl-C), joined by a single-queue veth pair: the receiver's end `bla<pid>` in the
# capture namespace, the sender's end `blb<pid>` in the traffic namespace. No addresses, IPv6
# off: the only frames on the wire are the sender's.
# Traffic: `live_frames` (benches/src/bin/live_frames.rs) writes IPv4/UDP frames of each size
# (BENCH_LIVE_SIZES, default "64 1514": bytes handed to the interface, no FCS on veth);
# `como send -i blb --netns ... -r FRAMES --pps N | --topspeed --loop L` (AF_PACKET sendmmsg)
# sends them, pinned to CPU 0 (on veth the receiving end's XDP program and AF_PACKET taps run in
# the sender's softirq, so on this CPU too); the receiver has CPU 1 (como: `cpus = [1]`, the
# worker; tcpdump: taskset -c 1).
# Receivers, each measured the same way:
#   como-native / como-skb: `como run -c CFG`, one `[[source]] type = "xdp"` on the capture end
#     (mode = "native" | "skb", queues "all" = queue 0, cpus = [1], other options default), one
#     `traffic` module with no filter (every frame is redirected to the socket and counted).
#     Received = the increase of como_capture_packets_total on /metrics over the step (after the
#     worker drained), with the drop reasons (como_capture_drops_total) and the XDP program's
#     `seen` counter. One daemon per mode and size, kept over all its steps.
#   tcpdump: `tcpdump -i bla -n -w /dev/null` (default buffer), a fresh process per step, stopped
#     with SIGINT: received = "packets captured"; its "dropped by kernel" is shown too.
# Per receiver: a step at the sender's top speed (--topspeed) gives the offered top rate and the
# loss there; then a binary search on --pps (BENCH_LIVE_STEPS steps, default 7) between 0 and that
# top rate for the highest rate with zero loss (received == sent). A step sends about
# BENCH_LIVE_SECS seconds of frames (default 3). Loss = sent - received, where sent is what
# `como send` reports the kernel took.
# Goals (issue 4): at top speed >= 99.9 % received; zero-loss rate >= 2x tcpdump's.
# Environment: CARGO_TARGET_DIR (release builds of como, gen-trace, live_frames), BENCH_TMP,
# BENCH_LIVE_SIZES, BENCH_LIVE_MODES (default "native skb"), BENCH_LIVE_SECS, BENCH_LIVE_STEPS,
# BENCH_LIVE_TCPDUMP (0: skip tcpdump).
set -euo pipefail

bench_name=bench-live # read by bench-lib.sh
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
sizes="${BENCH_LIVE_SIZES:-64 1514}"
modes="${BENCH_LIVE_MODES:-native skb}"
secs="${BENCH_LIVE_SECS:-3}"
steps="${BENCH_LIVE_STEPS:-7}"
with_tcpdump="${BENCH_LIVE_TCPDUMP:-1}"

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces, veth, XDP)"; exit 1; }
for t in ip taskset curl; do
    command -v "$t" >/dev/null || { log "$t not found"; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { log "needs 2 CPUs (sender on 0, receiver on 1)"; exit 1; }
log "cargo build --release -p como-benches --bin live_frames"
(cd "$root" && cargo build --release -q -p como-benches --bin live_frames)
frames_bin="$target/release/live_frames"

ns_cap="blcap$$"
ns_gen="blgen$$"
dev_a="bla$$"
dev_b="blb$$"
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    ip -n "$ns_cap" link del "$dev_a" 2>/dev/null || true
    ip netns del "$ns_cap" 2>/dev/null || true
    ip netns del "$ns_gen" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns_cap"
ip netns add "$ns_gen"
for ns in "$ns_cap" "$ns_gen"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$dev_a" netns "$ns_cap" type veth peer name "$dev_b" netns "$ns_gen"
ip -n "$ns_cap" link set "$dev_a" up
ip -n "$ns_gen" link set "$dev_b" up

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# send ARGS...: `como send` from the traffic end on CPU 0; prints "FRAMES SECONDS".
send() {
    local out
    out="$(taskset -c 0 "$como" send -i "$dev_b" --netns "$ns_gen" -r "$frames" "$@")"
    # sent N frames (B bytes) in S s: R pps
    awk '{print $2, $7}' <<<"$out"
}

# loops_for PPS: how many times to send the frames file for about $secs seconds at PPS.
loops_for() {
    awk -v p="$1" -v s="$secs" -v n="$nframes" 'BEGIN {l = int(p * s / n + 0.999); print (l < 1 ? 1 : l)}'
}

# metric NAME [LABEL=VALUE...]: the sum of the daemon's series of NAME with every given label.
scrape() { curl -fsS "http://$daemon_addr/metrics" >"$tmp/metrics"; }
metric() {
    local name="$1"
    shift
    awk -v name="$name" -v want="$*" '
        /^#/ || NF < 2 { next }
        {
            series = $1; for (i = 2; i < NF; i++) series = series " " $i
            split(series, parts, "{"); if (parts[1] != name) next
            n = split(want, w, " "); ok = 1
            for (i = 1; i <= n; i++) {
                split(w[i], kv, "="); if (index(series, kv[1] "=\"" kv[2] "\"") == 0) ok = 0
            }
            if (ok) sum += $NF
        }
        END { printf "%.0f", sum }' "$tmp/metrics"
}

# como_counts: "RECEIVED SEEN RX_DROPPED RX_RING_FULL REDIRECT_FAILED FILL_RING_EMPTY INVALID".
como_counts() {
    scrape
    local r
    printf '%s %s' "$(metric como_capture_packets_total "device=$dev_a")" \
        "$(metric como_xdp_packets_total action=seen)"
    for r in rx_dropped rx_ring_full redirect_failed fill_ring_empty invalid_descriptors; do
        printf ' %s' "$(metric como_capture_drops_total "device=$dev_a" "reason=$r")"
    done
    printf '\n'
}

start_daemon() { # MODE
    local cfg="$tmp/como-$1.toml"
    cat >"$cfg" <<EOF
[node]
db_path = "$tmp/db-$1"
[query]
listen = "127.0.0.1:0"
[[source]]
type = "xdp"
interface = "$dev_a"
netns = "$ns_cap"
mode = "$1"
cpus = [1]
[[module]]
name = "traffic"
kind = "traffic"
interval = "1s"
EOF
    rm -rf "$tmp/db-$1"
    "$como" run -c "$cfg" >"$tmp/daemon.out" 2>"$tmp/daemon.err" &
    daemon_pid=$!
    local i
    for ((i = 0; i < 100; i++)); do
        daemon_addr="$(sed -n 's/^listening on //p' "$tmp/daemon.out")"
        [ -n "$daemon_addr" ] && break
        kill -0 "$daemon_pid" 2>/dev/null || { log "como run exited: $(cat "$tmp/daemon.err")"; exit 1; }
        sleep 0.1
    done
    [ -n "$daemon_addr" ] || { log "como run never printed 'listening on'"; exit 1; }
    # Attached once the capture series shows up.
    for ((i = 0; i < 100; i++)); do
        scrape 2>/dev/null && grep -q "^como_capture_packets_total.*device=\"$dev_a\"" "$tmp/metrics" && break
        sleep 0.1
    done
    ip -n "$ns_cap" link show dev "$dev_a" | grep -q xdp || { log "no XDP program on $dev_a"; exit 1; }
}

stop_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || log "como run exited with $?: $(tail -3 "$tmp/daemon.err")"
    daemon_pid=""
}

# step_como ARGS...: one send into the running daemon; prints
# "SENT SECONDS RECEIVED SEEN RX_DROPPED RX_RING_FULL REDIRECT_FAILED FILL_RING_EMPTY INVALID"
# (counters as increases over the step).
step_como() {
    local before after s prev="" i
    read -r -a before <<<"$(como_counts)"
    s="$(send "$@")"
    # Wait until the worker has drained: counters still for 300 ms (at most 5 s).
    for ((i = 0; i < 50; i++)); do
        sleep 0.3
        after="$(como_counts)"
        [ "$after" = "$prev" ] && break
        prev="$after"
    done
    read -r -a after <<<"$after"
    printf '%s' "$s"
    for i in "${!after[@]}"; do printf ' %s' $((after[i] - before[i])); done
    printf '\n'
}

# step_tcpdump ARGS...: tcpdump started, one send, tcpdump stopped; prints
# "SENT SECONDS CAPTURED DROPPED_BY_KERNEL".
step_tcpdump() {
    local pid s i
    : >"$tmp/tcpdump.err"
    ip netns exec "$ns_cap" taskset -c 1 tcpdump -i "$dev_a" -n -w /dev/null 2>"$tmp/tcpdump.err" &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        grep -q '^listening on' "$tmp/tcpdump.err" && break
        sleep 0.05
    done
    s="$(send "$@")"
    sleep 0.5
    kill -INT "$pid"
    wait "$pid" || true
    printf '%s %s %s\n' "$s" \
        "$(awk '/packets captured/ {print $1}' "$tmp/tcpdump.err")" \
        "$(awk '/dropped by kernel/ {print $1}' "$tmp/tcpdump.err")"
}

# measure RECEIVER: top-speed step, then the zero-loss search; prints one table row.
measure() {
    local who="$1" stepf r sent sec recv top_sent top_sec top_recv extra="" i
    case "$who" in tcpdump) stepf=step_tcpdump ;; *) stepf=step_como ;; esac
    local load0
    load0="$(loadavg)"
    read -r -a r <<<"$($stepf --topspeed --loop "$(loops_for 1000000)")"
    top_sent="${r[0]}" top_sec="${r[1]}" top_recv="${r[2]:-0}"
    if [ "$who" = tcpdump ]; then
        extra="dropped by kernel ${r[3]}"
    else
        extra="seen ${r[3]}, rx_dropped ${r[4]}, rx_ring_full ${r[5]}, redirect_failed ${r[6]}, fill_ring_empty ${r[7]}, invalid ${r[8]}"
    fi
    log "$who $size B top speed: sent $top_sent in $top_sec s, received $top_recv ($extra)"
    local top_pps lo=0 hi best_pps=0 best_desc="none" mid
    top_pps="$(awk -v n="$top_sent" -v s="$top_sec" 'BEGIN {printf "%.0f", n / s}')"
    hi="$top_pps"
    if [ "$top_recv" -ge "$top_sent" ]; then
        best_pps="$top_pps"
        best_desc="top speed"
    else
        for ((i = 0; i < steps; i++)); do
            mid=$(((lo + hi) / 2))
            read -r -a r <<<"$($stepf --pps "$mid" --loop "$(loops_for "$mid")")"
            sent="${r[0]}" sec="${r[1]}" recv="${r[2]:-0}"
            local achieved
            achieved="$(awk -v n="$sent" -v s="$sec" 'BEGIN {printf "%.0f", n / s}')"
            if [ "$recv" -ge "$sent" ]; then
                lo="$mid"
                if [ "$achieved" -gt "$best_pps" ]; then best_pps="$achieved"; best_desc="--pps $mid"; fi
                log "$who $size B --pps $mid: sent $sent ($achieved pps), received all"
            else
                hi="$mid"
                log "$who $size B --pps $mid: sent $sent ($achieved pps), lost $((sent - recv))"
            fi
        done
    fi
    local mode="-"
    case "$who" in como-*) mode="${who#como-}" ;; esac
    awk -v who="$who" -v mode="$mode" -v size="$size" -v ts="$top_sent" -v tsec="$top_sec" \
        -v tr="$top_recv" -v best="$best_pps" -v bd="$best_desc" -v extra="$extra" \
        -v load="$load0 / $(loadavg)" \
        'BEGIN {
            loss = ts > tr ? ts - tr : 0
            printf "| %s B | %s | %s | %.0f | %.0f | %.3f %% | %.1f %% | %.0f (%s) | %s | %s |\n",
                size, who, mode, ts / tsec, tr / tsec, 100 * loss / ts, 100 * tr / ts, best, bd, extra, load
        }'
    eval "zero_loss_${who//-/_}=$best_pps"
}

printf 'como %s; %s; kernel %s; %s CPUs; %s s per step, %s search steps; start %s UTC, load average %s\n\n' \
    "$("$como" --version 2>/dev/null | awk '{print $2}')" "$(tcpdump --version 2>&1 | head -1)" \
    "$(uname -r)" "$(nproc)" "$secs" "$steps" "$(date -u +%H:%M)" "$(loadavg)"
printf '| frame | receiver | XDP mode | offered at top speed pps | received pps | loss at top | received at top | zero-loss pps (step) | counters at top speed | load average (start / end) |\n'
printf '|---|---|---|---:|---:|---:|---:|---:|---|---|\n'
for size in $sizes; do
    frames="$tmp/frames-$size.pcap"
    nframes=$((size > 1000 ? 5000 : 20000))
    "$frames_bin" -o "$frames" --size "$size" -n "$nframes"
    for mode in $modes; do
        start_daemon "$mode"
        measure "como-$mode"
        stop_daemon
    done
    zero_loss_tcpdump=""
    if [ "$with_tcpdump" != 0 ]; then
        measure tcpdump
    fi
    if [ -n "$zero_loss_tcpdump" ] && [ "$zero_loss_tcpdump" -gt 0 ]; then
        for mode in $modes; do
            v="zero_loss_como_$mode"
            awk -v m="$mode" -v s="$size" -v c="${!v}" -v t="$zero_loss_tcpdump" \
                'BEGIN {printf "| %s B | zero-loss ratio como-%s / tcpdump | | | | | | %.2fx | | |\n", s, m, c / t}'
        done
    fi
done
printf '\nend %s UTC, load average %s\n' "$(date -u +%H:%M)" "$(loadavg)"
