//! The fast paths of `Layers::parse` and `Layers::ip_addr_of` give exactly what the general
//! walk gives, on every packet of every bundled trace and on every cut of their headers.

use std::path::PathBuf;

use como_packet::{Layers, Packet};
use como_tracefile::TraceReader;

/// On every packet of every bundled trace, and on every prefix of those packets (cut
/// headers), the fast path agrees with `Layers::parse_walk` whenever it answers, and it does
/// answer for most packets of the traces that are plain Ethernet; the addresses of
/// `Layers::ip_addr_of` are the walk's, always.
#[test]
fn agrees_with_the_general_parser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/traces");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let (mut total, mut fast_hits, mut checked, mut addrs) = (0u64, 0u64, 0u64, 0u64);
    for f in &files {
        let Ok(mut r) = TraceReader::open(f) else {
            continue;
        };
        while let Some(Ok(p)) = r.next_packet() {
            total += 1;
            // The whole packet, then every cut inside the headers.
            let len = p.data.len();
            for cut in std::iter::once(len).chain(0..len.min(140)) {
                let q = Packet {
                    data: p.data.get(..cut).unwrap_or_default(),
                    ..p
                };
                let walked = Layers::parse_walk(&q);
                for dst in [false, true] {
                    let want = if dst {
                        walked.dst_ip(q.data)
                    } else {
                        walked.src_ip(q.data)
                    };
                    assert_eq!(
                        Layers::ip_addr_of(&q, dst),
                        want,
                        "{} dst={dst}: {:?}",
                        f.display(),
                        q.data
                    );
                    addrs += u64::from(want.is_some());
                }
                if let Some(l) = Layers::parse_fast(&q) {
                    assert_eq!(l, walked, "{}: {:?}", f.display(), q.data);
                    checked += 1;
                    if cut == len {
                        fast_hits += 1;
                    }
                }
            }
            assert_eq!(Layers::parse(&p), Layers::parse_walk(&p));
        }
    }
    assert!(total > 10_000, "only {total} packets in the bundled traces");
    assert!(
        fast_hits * 2 > total,
        "fast path taken for {fast_hits} of {total} packets"
    );
    assert!(checked > fast_hits);
    assert!(addrs > total, "{addrs} addresses in {total} packets");
}
