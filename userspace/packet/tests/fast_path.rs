//! The fast paths of `Layers::parse`, `Layers::ip_addr_of` and `Layers::ip_proto_of` give
//! exactly what the general walk gives, on every packet of every bundled trace and on every
//! cut of their headers.

use std::path::PathBuf;

use como_packet::{Layers, Packet};
use como_tracefile::TraceReader;

/// On every packet of every bundled trace, and on every prefix of those packets (cut
/// headers), the fast path agrees with `Layers::parse_walk` whenever it answers, and it does
/// answer for most packets of the traces that are plain Ethernet; the addresses of
/// `Layers::ip_addr_of` and the protocols of `Layers::ip_proto_of` are the walk's, always.
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
    let mut protos = 0u64;
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
                let want = walked.ip_version().and(walked.l4_proto);
                assert_eq!(
                    Layers::ip_proto_of(&q),
                    want,
                    "{} ip_proto_of: {:?}",
                    f.display(),
                    q.data
                );
                protos += u64::from(want.is_some());
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
    assert!(protos > total / 2, "{protos} protocols in {total} packets");
}

/// Headers the traces rarely have: a wrong IP version, a short IPv4 header length, IPv6
/// extension headers, an IPv4 fragment; `Layers::ip_proto_of` says what the walk says.
#[test]
fn ip_proto_of_follows_the_walk_on_odd_headers() {
    let eth = |et: [u8; 2], l3: &[u8]| {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&et);
        f.extend_from_slice(l3);
        f
    };
    let mut v4 = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    v4.extend_from_slice(&[0; 20]);
    let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    v6.extend_from_slice(&[0; 32]);
    v6.extend_from_slice(&[0; 16]);
    let mut frames = Vec::new();
    for (first, proto_at, protos) in [
        (&v4, 9, &[6u8, 17, 1, 47, 41, 4, 132][..]),
        (&v6, 6, &[17, 6, 58, 0, 43, 44, 60, 51, 59, 41][..]),
    ] {
        for &proto in protos {
            for b0 in [first[0], 0x44, 0x46, 0x4f, 0x55, 0x65, 0x60, 0x45] {
                let mut h = first.clone();
                h[0] = b0;
                h[proto_at] = proto;
                let et = if proto_at == 9 { [8, 0] } else { [0x86, 0xdd] };
                frames.push(eth(et, &h));
                // Tagged, and a non-first fragment.
                frames.push(eth([0x81, 0x00], &[&[0, 7], &et[..], &h[..]].concat()));
                if proto_at == 9 {
                    let mut frag = h.clone();
                    frag[6] = 0x20;
                    frag[7] = 0x10;
                    frames.push(eth(et, &frag));
                }
            }
        }
    }
    for f in &frames {
        let p = Packet {
            ts_ns: 0,
            wire_len: f.len() as u32,
            data: f,
            link: como_packet::LinkType::Ethernet,
            interface: 0,
        };
        let walked = Layers::parse_walk(&p);
        assert_eq!(
            Layers::ip_proto_of(&p),
            walked.ip_version().and(walked.l4_proto),
            "{f:?}"
        );
    }
}
