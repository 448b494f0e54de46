//! Measures `Layers::parse` per packet over the packets of trace files (loaded in memory first).
//!
//! `cargo run --release -p como-packet --example parse_speed -- FILE...`

use std::hint::black_box;
use std::time::Instant;

use como_packet::{Layers, LinkType, Packet};
use como_tracefile::TraceReader;

fn main() {
    let mut owned: Vec<(Vec<u8>, u32, LinkType)> = Vec::new();
    for path in std::env::args().skip(1) {
        let mut r = match TraceReader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        while let Some(Ok(p)) = r.next_packet() {
            owned.push((p.data.to_vec(), p.wire_len, p.link));
        }
    }
    let pkts: Vec<Packet<'_>> = owned
        .iter()
        .map(|(d, w, l)| Packet {
            ts_ns: 0,
            wire_len: *w,
            data: d,
            link: *l,
            interface: 0,
        })
        .collect();
    if pkts.is_empty() {
        eprintln!("no packets");
        std::process::exit(1);
    }
    let rounds = (2_000_000 / pkts.len()).max(1);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut l4 = 0u64;
        for _ in 0..rounds {
            for p in &pkts {
                let l = Layers::parse(black_box(p));
                l4 += u64::from(l.l4.is_some());
            }
        }
        black_box(l4);
        let ns = t.elapsed().as_nanos() as f64 / (rounds * pkts.len()) as f64;
        best = best.min(ns);
    }
    println!(
        "{} packets x {rounds} rounds: best {best:.1} ns/packet",
        pkts.len()
    );
}
