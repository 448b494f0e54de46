//! Filter evaluation per packet: CoMo-rs's exact evaluator against libpcap's compiled BPF.
//!
//! Both run over the same packets in the same process: `COMO_BENCH_PACKETS` (default 200 000)
//! packets of the synthetic trace (`como_benches::synth`, seed 1, snaplen 96), held in memory.
//! libpcap's side is what `tcpdump` does per packet: `pcap_compile` on a dead Ethernet handle
//! with optimisation, then `pcap_offline_filter` (`BpfProgram::filter`) per packet.
//!
//! For each filter the number of matching packets must be the same on both sides (checked once,
//! outside the timing; the bench aborts otherwise). Criterion then times one pass over all
//! packets per iteration for each side; at the end a summary table (best of
//! `COMO_BENCH_ROUNDS`, default 7, plain passes per side, interleaved) gives ns per packet and
//! the ratio libpcap / CoMo-rs for `benches/RESULTS.md`.
//!
//! Run with `scripts/bench-filter.sh` or `cargo bench -p como-benches --bench filter_eval`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use como_benches::synth::{PacketBatch, SynthConfig};
use como_benches::BENCH_FILTERS as FILTERS;
use como_packet::{Layers, LinkType, Packet};
use criterion::{criterion_main, Criterion, Throughput};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Case {
    expr: &'static str,
    ours: ebpf_filters::Filter,
    bpf: pcap::BpfProgram,
    matches: usize,
}

fn count_ours(f: &ebpf_filters::Filter, pkts: &[Packet<'_>]) -> usize {
    pkts.iter().filter(|p| f.matches(black_box(p))).count()
}

fn count_bpf(f: &pcap::BpfProgram, pkts: &[Packet<'_>]) -> usize {
    pkts.iter().filter(|p| f.filter(black_box(p.data))).count()
}

fn prepare(pkts: &[Packet<'_>]) -> Vec<Case> {
    let dead = match pcap::Capture::dead(pcap::Linktype::ETHERNET) {
        Ok(d) => d,
        Err(e) => panic!("pcap_open_dead: {e}"),
    };
    FILTERS
        .iter()
        .map(|&expr| {
            let ours = match ebpf_filters::compile(expr, LinkType::Ethernet) {
                Ok(f) => f,
                Err(e) => panic!("como cannot compile {expr:?}: {e}"),
            };
            let bpf = match dead.compile(expr, true) {
                Ok(f) => f,
                Err(e) => panic!("libpcap cannot compile {expr:?}: {e}"),
            };
            let a = count_ours(&ours, pkts);
            let b = count_bpf(&bpf, pkts);
            assert_eq!(
                a,
                b,
                "{expr:?}: CoMo-rs matches {a} packets, libpcap {b}, of {}",
                pkts.len()
            );
            Case {
                expr,
                ours,
                bpf,
                matches: a,
            }
        })
        .collect()
}

fn timed(f: impl FnOnce() -> usize) -> Duration {
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

fn summary(cases: &[Case], pkts: &[Packet<'_>]) {
    let rounds = env_usize("COMO_BENCH_ROUNDS", 7).max(1);
    let n = pkts.len() as f64;
    println!();
    println!(
        "filter_eval summary: {} packets, best of {rounds} passes each",
        pkts.len()
    );
    println!("| filter | matches | CoMo-rs ns/pkt | libpcap ns/pkt | speed-up |");
    println!("|---|---:|---:|---:|---:|");
    let (mut sum_ours, mut sum_bpf) = (0.0, 0.0);
    for c in cases {
        let (mut ours, mut bpf) = (Duration::MAX, Duration::MAX);
        // Interleave the two sides so that noise from other processes hits both alike.
        for _ in 0..rounds {
            ours = ours.min(timed(|| count_ours(&c.ours, pkts)));
            bpf = bpf.min(timed(|| count_bpf(&c.bpf, pkts)));
        }
        let o = ours.as_secs_f64() * 1e9 / n;
        let b = bpf.as_secs_f64() * 1e9 / n;
        sum_ours += o;
        sum_bpf += b;
        println!(
            "| `{}` | {} | {o:.2} | {b:.2} | {:.2}x |",
            c.expr,
            c.matches,
            b / o
        );
    }
    println!(
        "| all filters (sum) | | {sum_ours:.2} | {sum_bpf:.2} | {:.2}x |",
        sum_bpf / sum_ours
    );
    // Reference points: what parsing the headers alone costs, and an empty loop.
    let mut parse = Duration::MAX;
    let mut empty = Duration::MAX;
    for _ in 0..rounds {
        parse = parse.min(timed(|| {
            pkts.iter()
                .map(|p| usize::from(Layers::parse(black_box(p)).l4.is_some()))
                .sum()
        }));
        empty = empty.min(timed(|| {
            pkts.iter().filter(|p| black_box(p).wire_len > 0).count()
        }));
    }
    println!(
        "reference: como_packet::Layers::parse alone {:.2} ns/pkt; loop over the packets {:.2} ns/pkt",
        parse.as_secs_f64() * 1e9 / n,
        empty.as_secs_f64() * 1e9 / n
    );
}

fn filter_eval(c: &mut Criterion) {
    let n = env_usize("COMO_BENCH_PACKETS", 200_000) as u64;
    let batch = PacketBatch::generate(SynthConfig {
        packets: n,
        ..SynthConfig::default()
    });
    let pkts: Vec<Packet<'_>> = batch.iter().collect();
    let cases = prepare(&pkts);
    for case in &cases {
        let mut g = c.benchmark_group(case.expr);
        g.throughput(Throughput::Elements(pkts.len() as u64));
        g.bench_function("como", |b| b.iter(|| count_ours(&case.ours, &pkts)));
        g.bench_function("libpcap", |b| b.iter(|| count_bpf(&case.bpf, &pkts)));
        g.finish();
    }
    summary(&cases, &pkts);
}

fn config() -> Criterion {
    let secs = env_usize("COMO_BENCH_SECONDS", 3) as u64;
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs.max(1)))
}

/// Holds the criterion group: private, so the undocumented `pub fn` it generates is not exported.
mod group {
    use super::{config, filter_eval};
    use criterion::criterion_group;

    criterion_group! {
        name = benches;
        config = config();
        targets = filter_eval
    }
}
criterion_main!(group::benches);
