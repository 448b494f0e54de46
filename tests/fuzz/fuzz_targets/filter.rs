//! Fuzz target `filter`: the input, as UTF-8, is a filter expression.
//!
//! It is compiled for Ethernet, Linux SLL and raw IP; each filter that compiles is matched
//! against a few real packets of that link type, read once at start-up from small traces of
//! tests/data/traces (so the evaluator runs on real headers, not only the parser), whole and
//! cut at every length up to 96 bytes; the verdict of `matches` (native or threaded code
//! first) must be the exact path's (`matches_exact`: the jump program alone).
#![no_main]

use std::sync::OnceLock;

use como_packet::{LinkType, Packet};
use como_tracefile::TraceReader;
use libfuzzer_sys::fuzz_target;

/// Link types the expression is compiled for.
const LINKS: [LinkType; 3] = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::Raw];

/// (trace relative to this crate, packets kept): Ethernet, Linux SLL and raw IPv4/IPv6.
const SOURCES: [(&str, usize); 4] = [
    ("../data/traces/libtrace/100_packetsns.pcap", 100),
    ("../data/traces/libtrace/sll.pcap", 50),
    ("../data/traces/zeek/tcp/payload-syn.pcap", 10),
    ("../data/traces/tcpdump/LINKTYPE_RAW_ipv6.pcap", 10),
];

/// Owned copy of a packet read at start-up.
struct Owned {
    link: LinkType,
    wire_len: u32,
    data: Vec<u8>,
}

fn load(path: &str, keep: usize, out: &mut Vec<Owned>) {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let Ok(mut reader) = TraceReader::open(&full) else {
        eprintln!("fuzz filter: cannot open {}", full.display());
        return;
    };
    let mut n = 0;
    while let Some(Ok(p)) = reader.next_packet() {
        out.push(Owned {
            link: p.link,
            wire_len: p.wire_len,
            data: p.data.to_vec(),
        });
        n += 1;
        if n >= keep {
            break;
        }
    }
}

fn packets() -> &'static [Owned] {
    static PACKETS: OnceLock<Vec<Owned>> = OnceLock::new();
    PACKETS.get_or_init(|| {
        let mut out = Vec::new();
        for (path, keep) in SOURCES {
            load(path, keep, &mut out);
        }
        out
    })
}

fuzz_target!(|input: &[u8]| {
    let Ok(expr) = std::str::from_utf8(input) else {
        return;
    };
    for link in LINKS {
        match ebpf_filters::compile(expr, link) {
            Ok(filter) => {
                for p in packets().iter().filter(|p| p.link == link) {
                    // Whole, and cut at every length up to 96 bytes: the fast code (native or
                    // threaded) must give the exact path's verdict.
                    let full = p.data.len();
                    for len in (0..full.min(97)).chain([full]) {
                        let pkt = Packet {
                            ts_ns: 0,
                            wire_len: p.wire_len,
                            data: &p.data[..len],
                            link,
                            interface: 0,
                        };
                        let (fast, exact) = (filter.matches(&pkt), filter.matches_exact(&pkt));
                        assert_eq!(fast, exact, "{expr:?} on {len} bytes of {:02x?}", p.data);
                    }
                }
            }
            Err(e) => {
                std::hint::black_box(e.to_string());
            }
        }
    }
});
