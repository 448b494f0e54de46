#!/usr/bin/env bash
#! Live capture on veth: `como run` with an xdp source (and the light path `live_rx`: the XDP
#! program and one AF_XDP socket alone) against `tcpdump -i VETH -w /dev/null` (AF_PACKET), on
#! the same veth, with the same sender and offered loads, in one run (issue 4, Benchmarks).
#
# Usage: scripts/bench-live.sh            (root: network namespaces, veth, XDP)
#
# Lab: two network namespaces created here (unique names with the pid; removed on exit, also on
# failure or Ctrl-C), joined by a single-queue veth pair: the receiver's end `bla<pid>` in the
# capture namespace, the sender's end `blb<pid>` in the traffic namespace. No addresses, IPv6
# off: the only frames on the wire are the sender's.
# Traffic: `live_frames` (benches/src/bin/live_frames.rs) writes IPv4/UDP frames of each size
# (BENCH_LIVE_SIZES, default "64 1514": bytes handed to the interface, no FCS on veth);
# `como send -i blb --netns ... -r FRAMES --loop 0 --pps N | --topspeed` (AF_PACKET sendmmsg)
# sends them, pinned to CPU 0 (on veth the receiving end's XDP program, the copy into the UMEM
# and the AF_PACKET taps run in the sender's softirq, so on this CPU too); the receiver gets
# CPU 1 (como: `cpus = [1]` pins the worker; live_rx and tcpdump: taskset -c 1).
# Priority (BENCH_LIVE_RT, default 50): the sender and the receiver run under `chrt -f N`
# (SCHED_FIFO), so the builds of a shared machine do not take their cores (0: normal priority).
# The kernel throttles real-time tasks to 950 ms per second (sched_rt_runtime_us, left as it
# is): a receiver that spins longer is stopped for 50 ms, far more than its rings hold. So under
# SCHED_FIFO a step lasts 0.9 s (BENCH_LIVE_SECS), and the receivers stop spinning when idle
# between steps (the como worker backs off by design, live_rx likewise); otherwise 3 s.
# Receivers (BENCH_LIVE_RECEIVERS, default "rx-native como-native como-skb tcpdump"):
#   como-native / como-skb: `como run -c CFG`: one `[[source]] type = "xdp"` on the capture end
#     (mode = "native" | "skb", queues "all" = queue 0, cpus = [1], plus BENCH_LIVE_SOURCE: extra
#     TOML lines such as "rx_ring = 32768", default none = the defaults), one `traffic` module
#     with no filter (every frame is redirected to the socket and counted). Received = the
#     increase of como_capture_packets_total on /metrics over the step (once the counters stop
#     moving), with the drop reasons (como_capture_drops_total) and the program's `seen`. One
#     daemon per receiver and size, kept over its steps.
#   rx-native / rx-skb: `live_rx -i bla --mode M` (benches/src/bin/live_rx.rs): the same XDP
#     program (one rule: every packet) and one AF_XDP socket with the same defaults, a loop that
#     only counts (no module runtime); its 100 ms counter lines are read like /metrics.
#   tcpdump: `tcpdump -i bla -n -w /dev/null` (default buffer, 2 MiB), a fresh process per step,
#     stopped with SIGINT: received = "packets captured"; "dropped by kernel" is shown too.
# Per receiver: BENCH_LIVE_TOP_RUNS steps (default 3, counters summed) at the sender's top speed
# (--topspeed) give the offered top rate and the loss there; then a binary search on --pps (BENCH_LIVE_STEPS steps, default 7) between 0 and that
# top rate for the highest rate with zero loss (received == sent). A step sends about
# BENCH_LIVE_SECS seconds (`como send --loop 0` stopped by SIGINT). Loss = sent - received, where sent is what
# `como send` reports the kernel took. The first row of each size is the sender alone (nothing
# capturing; the frames die in the capture namespace's stack).
# Receive path off the sender's CPU (BENCH_LIVE_NAPI_CPU=N, default unset: off): GRO on and
# threaded NAPI on the capture end, so that veth's receive work (the XDP program and the copy
# into the UMEM, or AF_PACKET's tap) runs in the kernel thread napi/bla<pid>-* instead of the
# sender's softirq; that thread is pinned to CPU N under SCHED_FIFO (one above the receivers,
# 50 at normal priority: it preempts the receiver as a NIC's softirq would). The receivers
# then go to BENCH_LIVE_RX_CPU (default 1; give it a CPU of its own, e.g. 2 with NAPI on 1).
# Needs ethtool. On the 2-vCPU test VM this puts the NAPI thread and the receiver on one core
# (benches/RESULTS.md, "threaded NAPI"); with 3 CPUs or more, sender, NAPI thread and receiver
# each have one: the set-up in which goal 2 can be measured on veth.
# Goals (issue 4): at top speed >= 99.9 % received; zero-loss rate >= 2x tcpdump's.
# Environment: CARGO_TARGET_DIR (release builds of como, gen-trace, live_frames, live_rx),
# BENCH_TMP, BENCH_LIVE_SIZES, BENCH_LIVE_RECEIVERS, BENCH_LIVE_SOURCE, BENCH_LIVE_SECS,
# BENCH_LIVE_STEPS, BENCH_LIVE_TOP_RUNS, BENCH_LIVE_RT, BENCH_LIVE_NAPI_CPU, BENCH_LIVE_RX_CPU.
set -euo pipefail

bench_name=bench-live # read by bench-lib.sh
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
sizes="${BENCH_LIVE_SIZES:-64 1514}"
receivers="${BENCH_LIVE_RECEIVERS:-rx-native como-native como-skb tcpdump}"
source_extra="${BENCH_LIVE_SOURCE:-}"
steps="${BENCH_LIVE_STEPS:-7}"
top_runs="${BENCH_LIVE_TOP_RUNS:-3}"
rt="${BENCH_LIVE_RT:-50}"
napi_cpu="${BENCH_LIVE_NAPI_CPU:-}"
rx_cpu="${BENCH_LIVE_RX_CPU:-1}"
if [ "$rt" != 0 ]; then secs="${BENCH_LIVE_SECS:-0.9}"; else secs="${BENCH_LIVE_SECS:-3}"; fi

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces, veth, XDP)"; exit 1; }
for t in ip taskset chrt curl; do
    command -v "$t" >/dev/null || { log "$t not found"; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { log "needs 2 CPUs (sender on 0, receiver on 1)"; exit 1; }
if [ -n "$napi_cpu" ]; then
    command -v ethtool >/dev/null || { log "ethtool not found (BENCH_LIVE_NAPI_CPU)"; exit 1; }
    [ "$napi_cpu" -lt "$(nproc)" ] && [ "$rx_cpu" -lt "$(nproc)" ] || { log "no CPU $napi_cpu or $rx_cpu"; exit 1; }
fi
log "cargo build --release -p como-benches --bin live_frames --bin live_rx"
(cd "$root" && cargo build --release -q -p como-benches --bin live_frames --bin live_rx)
frames_bin="$target/release/live_frames"
rx_bin="$target/release/live_rx"

ns_cap="blcap$$"
ns_gen="blgen$$"
dev_a="bla$$"
dev_b="blb$$"
rx_pid=""
cleanup() {
    if [ -n "$rx_pid" ]; then
        kill -TERM "$rx_pid" 2>/dev/null || true
        wait "$rx_pid" 2>/dev/null || true
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
if [ -n "$napi_cpu" ]; then
    # GRO gives the capture end a NAPI instance even without XDP (tcpdump's runs), and
    # `threaded` moves its poll into a kernel thread (pinned by pin_napi).
    ip netns exec "$ns_cap" ethtool -K "$dev_a" gro on >/dev/null
    ip netns exec "$ns_cap" sh -c "echo 1 > /sys/class/net/$dev_a/threaded"
fi

# pin_napi: the capture end's NAPI threads to $napi_cpu under SCHED_FIFO (nothing when off).
pin_napi() {
    [ -n "$napi_cpu" ] || return 0
    local pids pid
    pids="$(pgrep "^napi/$dev_a-" || true)"
    [ -n "$pids" ] || { log "no NAPI thread for $dev_a (threaded NAPI refused?)"; exit 1; }
    for pid in $pids; do
        taskset -pc "$napi_cpu" "$pid" >/dev/null
        chrt -f -p $((rt > 0 ? rt + 1 : 50)) "$pid"
    done
}
pin_napi

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# send ARGS...: `como send ... --loop 0` from the traffic end on CPU 0, stopped by SIGINT after
# $secs seconds; prints "FRAMES SECONDS".
send() {
    local out
    local cmd=(timeout -s INT "$secs" taskset -c 0 "$como" send -i "$dev_b" --netns "$ns_gen" -r "$frames" --loop 0 "$@")
    # timeout must be able to preempt the sender: one priority above it.
    [ "$rt" = 0 ] || cmd=(chrt -f $((rt + 1)) timeout -s INT "$secs" chrt -f "$rt" "${cmd[@]:4}")
    out="$("${cmd[@]}")" || true
    # sent N frames (B bytes) in S s: R pps
    awk '/^sent / {print $2, $7}' <<<"$out"
}

# metric NAME [LABEL=VALUE...]: the sum of the scraped series of NAME with every given label.
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

# counts: "RECEIVED SEEN RX_DROPPED RX_RING_FULL REDIRECT_FAILED FILL_RING_EMPTY INVALID" of the
# running receiver (como run: /metrics; live_rx: its last counter line).
counts() {
    if [ "$kind" = rx ]; then
        tail -1 "$tmp/rx.out" | awk '{print $2, $14, $6, $8, $18, $10, $12}'
        return
    fi
    curl -fsS "http://$daemon_addr/metrics" >"$tmp/metrics"
    local r
    printf '%s %s' "$(metric como_capture_packets_total "device=$dev_a")" \
        "$(metric como_xdp_packets_total action=seen)"
    for r in rx_dropped rx_ring_full redirect_failed fill_ring_empty invalid_descriptors; do
        printf ' %s' "$(metric como_capture_drops_total "device=$dev_a" "reason=$r")"
    done
    printf '\n'
}

# start_receiver: como run or live_rx for $who, in the background ($rx_pid).
start_receiver() {
    local mode="${who#*-}" i
    if [ "$kind" = rx ]; then
        : >"$tmp/rx.out"
        if [ "$rt" != 0 ]; then
            ip netns exec "$ns_cap" chrt -f "$rt" taskset -c "$rx_cpu" "$rx_bin" -i "$dev_a" --mode "$mode" >"$tmp/rx.out" 2>"$tmp/rx.err" &
        else
            ip netns exec "$ns_cap" taskset -c "$rx_cpu" "$rx_bin" -i "$dev_a" --mode "$mode" >"$tmp/rx.out" 2>"$tmp/rx.err" &
        fi
        rx_pid=$!
        for ((i = 0; i < 100; i++)); do
            grep -q '^packets' "$tmp/rx.out" && break
            kill -0 "$rx_pid" 2>/dev/null || { log "live_rx exited: $(cat "$tmp/rx.err")"; exit 1; }
            sleep 0.1
        done
        grep -q '^packets' "$tmp/rx.out" || { log "live_rx printed no counters"; exit 1; }
        log "$who: $(head -1 "$tmp/rx.out")"
    else
        local cfg="$tmp/$who.toml"
        cat >"$cfg" <<EOF
[node]
db_path = "$tmp/db-$who"
[query]
listen = "127.0.0.1:0"
[[source]]
type = "xdp"
interface = "$dev_a"
netns = "$ns_cap"
mode = "$mode"
cpus = [$rx_cpu]
$source_extra
[[module]]
name = "traffic"
kind = "traffic"
interval = "1s"
EOF
        rm -rf "$tmp/db-$who"
        : >"$tmp/daemon.out"
        if [ "$rt" != 0 ]; then
            chrt -f "$rt" "$como" run -c "$cfg" >"$tmp/daemon.out" 2>"$tmp/daemon.err" &
        else
            "$como" run -c "$cfg" >"$tmp/daemon.out" 2>"$tmp/daemon.err" &
        fi
        rx_pid=$!
        daemon_addr=""
        for ((i = 0; i < 100; i++)); do
            daemon_addr="$(sed -n 's/^listening on //p' "$tmp/daemon.out")"
            [ -n "$daemon_addr" ] && break
            kill -0 "$rx_pid" 2>/dev/null || { log "como run exited: $(cat "$tmp/daemon.err")"; exit 1; }
            sleep 0.1
        done
        [ -n "$daemon_addr" ] || { log "como run never printed 'listening on'"; exit 1; }
        for ((i = 0; i < 100; i++)); do
            curl -fsS "http://$daemon_addr/metrics" 2>/dev/null | grep -q "^como_capture_packets_total.*device=\"$dev_a\"" && break
            sleep 0.1
        done
    fi
    ip -n "$ns_cap" link show dev "$dev_a" | grep -q xdp || { log "no XDP program on $dev_a"; exit 1; }
}

stop_receiver() {
    local st=0
    kill -TERM "$rx_pid"
    wait "$rx_pid" || st=$?
    if [ "$kind" = como ] && [ "$st" != 0 ]; then
        log "como run exited with $st: $(tail -3 "$tmp/daemon.err")"
    fi
    rx_pid=""
}

# step_xdp ARGS...: one send into the running receiver; prints
# "SENT SECONDS RECEIVED SEEN RX_DROPPED RX_RING_FULL REDIRECT_FAILED FILL_RING_EMPTY INVALID"
# (counters as increases over the step).
step_xdp() {
    local before after s prev="" i
    read -r -a before <<<"$(counts)"
    s="$(send "$@")"
    # Wait until the receiver has drained: counters still for 300 ms (at most 5 s).
    for ((i = 0; i < 17; i++)); do
        sleep 0.3
        after="$(counts)"
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
    if [ "$rt" != 0 ]; then
        ip netns exec "$ns_cap" chrt -f "$rt" taskset -c "$rx_cpu" tcpdump -i "$dev_a" -n -w /dev/null 2>"$tmp/tcpdump.err" &
    else
        ip netns exec "$ns_cap" taskset -c "$rx_cpu" tcpdump -i "$dev_a" -n -w /dev/null 2>"$tmp/tcpdump.err" &
    fi
    pid=$!
    for ((i = 0; i < 100; i++)); do
        grep -q 'listening on' "$tmp/tcpdump.err" && break
        sleep 0.05
    done
    s="$(send "$@")"
    # Longer than the 1 s block timeout of tcpdump's TPACKET_V3 ring: the last, partly filled
    # block reaches tcpdump before SIGINT (else its frames count as lost).
    sleep 1.5
    kill -INT "$pid"
    wait "$pid" || true
    printf '%s %s %s\n' "$s" \
        "$(awk '/packets captured/ {print $1}' "$tmp/tcpdump.err")" \
        "$(awk '/dropped by kernel/ {print $1}' "$tmp/tcpdump.err")"
}

# measure: top-speed step, then the zero-loss search, for receiver $who; prints one table row.
measure() {
    local stepf r sent sec recv top_sent top_sec top_recv extra="" i load0 achieved
    case "$kind" in tcpdump) stepf=step_tcpdump ;; *) stepf=step_xdp ;; esac
    load0="$(loadavg)"
    # The top-speed step, $top_runs times; the counters summed.
    local sum=() j
    for ((i = 0; i < top_runs; i++)); do
        read -r -a r <<<"$($stepf --topspeed)"
        for j in "${!r[@]}"; do
            if [ "$j" = 1 ]; then
                sum[j]="$(awk -v a="${sum[j]:-0}" -v b="${r[j]}" 'BEGIN {print a + b}')"
            else
                sum[j]=$((${sum[j]:-0} + ${r[j]:-0}))
            fi
        done
    done
    r=("${sum[@]}")
    top_sent="${r[0]}" top_sec="${r[1]}" top_recv="${r[2]:-0}"
    if [ "$kind" = tcpdump ]; then
        extra="dropped by kernel ${r[3]:-?}"
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
            read -r -a r <<<"$($stepf --pps "$mid")"
            sent="${r[0]}" sec="${r[1]}" recv="${r[2]:-0}"
            achieved="$(awk -v n="$sent" -v s="$sec" 'BEGIN {printf "%.0f", n / s}')"
            if [ "$recv" -ge "$sent" ]; then
                lo="$mid"
                if [ "$achieved" -gt "$best_pps" ]; then
                    best_pps="$achieved"
                    best_desc="--pps $mid"
                fi
                log "$who $size B --pps $mid: sent $sent ($achieved pps), received all"
            else
                hi="$mid"
                log "$who $size B --pps $mid: sent $sent ($achieved pps), lost $((sent - recv))"
            fi
        done
    fi
    local mode="-"
    case "$who" in *-native | *-skb) mode="${who#*-}" ;; esac
    awk -v who="$who" -v mode="$mode" -v size="$size" -v ts="$top_sent" -v tsec="$top_sec" \
        -v tr="$top_recv" -v best="$best_pps" -v bd="$best_desc" -v extra="$extra" \
        -v load="$load0 / $(loadavg)" \
        'BEGIN {
            loss = ts > tr ? ts - tr : 0
            printf "| %s B | %s | %s | %.0f | %.0f | %.3f %% | %.0f (%s) | %s | %s |\n",
                size, who, mode, ts / tsec, tr / tsec, 100 * loss / ts, best, bd, extra, load
        }'
    zero_loss["$who"]="$best_pps"
    zero_loss_at["$who"]="$best_desc"
}

declare -A zero_loss zero_loss_at
napi_desc="in the softirq of the sender's CPU"
[ -z "$napi_cpu" ] || napi_desc="threaded on CPU $napi_cpu, GRO on"
printf 'como %s (%s); %s; kernel %s; %s CPUs; %s s per step, %s top-speed steps, %s search steps; SCHED_FIFO %s; receiver on CPU %s; NAPI %s; extra source lines: %s; start %s UTC, load average %s\n\n' \
    "$("$como" --version 2>/dev/null | awk '{print $2}')" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || cat "$root/.commit" 2>/dev/null || echo "no git")" \
    "$(tcpdump --version 2>&1 | head -1)" "$(uname -r)" "$(nproc)" "$secs" "$top_runs" "$steps" "$rt" "$rx_cpu" \
    "$napi_desc" "${source_extra:-none}" "$(date -u +%H:%M)" "$(loadavg)"
printf '| frame | receiver | XDP mode | offered at top speed, pps | received, pps | loss at top speed | zero-loss pps (step) | counters at top speed | load average (start / end) |\n'
printf '|---|---|---|---:|---:|---:|---:|---|---|\n'
for size in $sizes; do
    frames="$tmp/frames-$size.pcap"
    nframes=$((size > 1000 ? 5000 : 20000))
    "$frames_bin" -o "$frames" --size "$size" -n "$nframes"
    read -r -a r <<<"$(send --topspeed)"
    awk -v size="$size" -v n="${r[0]}" -v s="${r[1]}" -v load="$(loadavg)" \
        'BEGIN {printf "| %s B | (sender alone) | - | %.0f | | | | | %s |\n", size, n / s, load}'
    for who in $receivers; do
        case "$who" in
            rx-native | rx-skb) kind=rx ;;
            como-native | como-skb) kind=como ;;
            tcpdump) kind=tcpdump ;;
            *) log "unknown receiver $who"; exit 2 ;;
        esac
        [ "$kind" = tcpdump ] || start_receiver
        # An XDP attach may have given the capture end a new NAPI instance (and thread).
        pin_napi
        measure
        [ "$kind" = tcpdump ] || stop_receiver
    done
    if [ -n "${zero_loss[tcpdump]:-}" ] && [ "${zero_loss[tcpdump]}" -gt 0 ]; then
        for who in $receivers; do
            [ "$who" = tcpdump ] && continue
            note=""
            if [ "${zero_loss_at[$who]}" = "top speed" ] && [ "${zero_loss_at[tcpdump]}" = "top speed" ]; then
                note=" (both lossless at the sender's top speed: a ratio of sender rates)"
            fi
            awk -v w="$who" -v s="$size" -v c="${zero_loss[$who]}" -v t="${zero_loss[tcpdump]}" -v note="$note" \
                'BEGIN {printf "| %s B | zero-loss rate %s / tcpdump | | | | | %.2fx%s | | |\n", s, w, c / t, note}'
        done
    fi
done
printf '\nend %s UTC, load average %s\n' "$(date -u +%H:%M)" "$(loadavg)"
