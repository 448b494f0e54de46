//! Fuzz target `filter_diff` (not in the default run of `scripts/fuzz.sh`): differential
//! fuzzing of the filter language against libpcap.
//!
//! The input, as UTF-8, is a filter expression. When both libpcap (`pcap_compile` with
//! optimisation on a dead Ethernet handle, through the `pcap` crate) and CoMo-rs compile it for
//! Ethernet, both must give the same verdict on every packet of a fixed set: the Ethernet
//! packets of a real trace and 3000 synthetic ones (`como_benches::synth`: VLAN/QinQ, MPLS,
//! PPPoE, GRE, IPv4 options and fragments, IPv6 extension headers ...). A difference panics with
//! the expression and the packet. Expressions only one side compiles are not checked here
//! (tcpdump's own tests cover what must be rejected).
//!
//! Known divergence, skipped unless `COMO_FUZZ_DIFF_ALL` is set: libpcap 1.10.3 drops the
//! protocol check of the right operand of an arithmetic operator (`ether[5] & ip[26] >= 9`
//! matches IPv6 packets, `ip[26] & ether[5] >= 9` does not); expressions where a `proto[...]`
//! follows an arithmetic operator are not compared (see [`rhs_protocol_load`]).
//!
//! The `pcap` crate passes len = caplen to `pcap_offline_filter`, so CoMo-rs gets
//! `wire_len = data.len()` too. Run it with `FUZZ_TARGETS=filter_diff scripts/fuzz.sh 300`
//! (leak detection is off for it: libpcap's compiler keeps state between calls).
#![no_main]

use std::sync::OnceLock;

use como_benches::synth::{PacketBatch, SynthConfig};
use como_packet::{LinkType, Packet};
use como_tracefile::TraceReader;
use libfuzzer_sys::fuzz_target;

fn packets() -> &'static [Vec<u8>] {
    static PACKETS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PACKETS.get_or_init(|| {
        let mut out = Vec::new();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/traces/libtrace/100_packetsns.pcap");
        if let Ok(mut r) = TraceReader::open(&path) {
            while let Some(Ok(p)) = r.next_packet() {
                if p.link == LinkType::Ethernet {
                    out.push(p.data.to_vec());
                }
            }
        }
        let batch = PacketBatch::generate(SynthConfig {
            packets: 3000,
            seed: 11,
            ..SynthConfig::default()
        });
        out.extend(batch.iter().map(|p| p.data.to_vec()));
        out
    })
}

thread_local! {
    /// The dead libpcap handle that compiles expressions (not `Sync`: one per thread).
    static DEAD: pcap::Capture<pcap::Dead> = match pcap::Capture::dead(pcap::Linktype::ETHERNET) {
        Ok(d) => d,
        Err(e) => panic!("pcap_open_dead: {e}"),
    };
}

/// Whether some `proto[` in `expr` directly follows an arithmetic operator (`+ - * / % ^ << >>`,
/// a single `&` or `|`): the case where libpcap 1.10.3 loses the protocol check.
fn rhs_protocol_load(expr: &str) -> bool {
    let b = expr.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c != b'[' {
            continue;
        }
        // Back over the protocol name, then over spaces and an opening parenthesis.
        let mut j = i;
        while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_') {
            j -= 1;
        }
        while j > 0 && (b[j - 1] == b' ' || b[j - 1] == b'(') {
            j -= 1;
        }
        let prev = if j > 0 { b[j - 1] } else { 0 };
        let prev2 = if j > 1 { b[j - 2] } else { 0 };
        let arith = match prev {
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => true,
            b'&' => prev2 != b'&',
            b'|' => prev2 != b'|',
            b'>' => prev2 == b'>',
            b'<' => prev2 == b'<',
            _ => false,
        };
        if arith {
            return true;
        }
    }
    false
}

fn skip_known() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("COMO_FUZZ_DIFF_ALL").is_none())
}

fuzz_target!(|input: &[u8]| {
    let Ok(expr) = std::str::from_utf8(input) else {
        return;
    };
    // libpcap's lexer stops at NUL; CString would refuse it anyway.
    if expr.contains('\0') || (skip_known() && rhs_protocol_load(expr)) {
        return;
    }
    let Ok(ours) = ebpf_filters::compile(expr, LinkType::Ethernet) else {
        return;
    };
    let Ok(bpf) = DEAD.with(|d| d.compile(expr, true)) else {
        return;
    };
    for (i, data) in packets().iter().enumerate() {
        let pkt = Packet {
            ts_ns: 0,
            wire_len: data.len() as u32,
            data,
            link: LinkType::Ethernet,
            interface: 0,
        };
        let (a, b) = (ours.matches(&pkt), bpf.filter(data));
        if a != b {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{expr:?}: packet {i}: CoMo-rs {a}, libpcap {b}; bytes {hex}");
        }
    }
});
