//! Rough per-packet timing on in-cache packets (diagnostic, ignored; the real benchmark is
//! `benches/benches/filter_eval.rs`). `cargo test --release -p ebpf-filters --test speed_probe
//! -- --ignored --nocapture`.

mod common;

use common::*;
use como_packet::LinkType;
use ebpf_filters::compile;

#[test]
#[ignore = "timing diagnostic"]
fn probe() {
    let zoo = ethernet_zoo();
    let pkts: Vec<_> = zoo.iter().map(|d| pkt(d, LinkType::Ethernet)).collect();
    for expr in [
        "",
        "ip",
        "ip or ip6",
        "tcp port 80",
        "host 10.1.2.3",
        "net 10.0.0.0/8 and udp",
        "port 53 or port 123",
        "not tcp",
        "vlan and ip",
    ] {
        let f = compile(expr, LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
        if std::env::var("PROBE_IR").is_ok() {
            println!("{expr}: {:?}", f.ir().root);
        }
        let rounds = 200_000;
        let t = std::time::Instant::now();
        let mut n = 0usize;
        for _ in 0..rounds {
            for p in &pkts {
                n += usize::from(f.matches(std::hint::black_box(p)));
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / (rounds * pkts.len()) as f64;
        println!("{expr:30} {ns:6.2} ns/pkt ({n})");
    }
}
