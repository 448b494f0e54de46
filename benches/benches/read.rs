//! Trace reading in-process: como-tracefile's `TraceReader` against libpcap's
//! `pcap_next_ex` (through the `pcap` crate) on the same files, pcap and pcapng.
//!
//! Complements `scripts/bench-read.sh` (whole programs: `como read -c` vs tcpdump) without
//! process start-up or tcpdump's output. The files hold `COMO_BENCH_PACKETS` (default 1 000 000)
//! packets of the synthetic trace, written to a temporary directory at start-up; both readers
//! must see every packet and the same total of captured bytes (checked once, outside the
//! timing). Each iteration opens the file and reads it to the end, summing captured lengths.
//! ERF is read by CoMo-rs only (libpcap has no ERF file reader).
//!
//! Run with `cargo bench -p como-benches --bench read`.

use std::fs::File;
use std::hint::black_box;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use como_benches::erf::ErfWriter;
use como_benches::synth::{Generator, SynthConfig};
use como_packet::LinkType;
use como_tracefile::{PcapNgWriter, PcapWriter, TraceReader};
use criterion::{criterion_main, Criterion, Throughput};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes the synthetic trace in `format` to `path`.
fn write(path: &Path, format: &str, packets: u64) {
    let out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create trace"));
    let mut gen = Generator::new(SynthConfig {
        packets,
        ..SynthConfig::default()
    });
    match format {
        "pcap" => {
            let mut w = PcapWriter::new(out, LinkType::Ethernet, 96, false).expect("header");
            while let Some(p) = gen.next_packet() {
                w.write_packet(&p).expect("write");
            }
            w.into_inner().expect("flush");
        }
        "pcapng" => {
            let mut w = PcapNgWriter::new(out, LinkType::Ethernet, 96, false).expect("header");
            while let Some(p) = gen.next_packet() {
                w.write_packet(&p).expect("write");
            }
            w.into_inner().expect("flush");
        }
        _ => {
            let mut w = ErfWriter::new(out);
            while let Some(p) = gen.next_packet() {
                w.write_packet(&p).expect("write");
            }
            w.into_inner().expect("flush");
        }
    }
}

/// (packets, captured bytes) read by CoMo-rs.
fn read_como(path: &Path) -> (u64, u64) {
    let mut r = TraceReader::open(path).expect("open");
    let (mut n, mut bytes) = (0, 0);
    while let Some(p) = r.next_packet() {
        let p = p.expect("packet");
        n += 1;
        bytes += p.data.len() as u64;
    }
    (n, bytes)
}

/// (packets, captured bytes) read by libpcap.
fn read_libpcap(path: &Path) -> (u64, u64) {
    let mut cap = pcap::Capture::from_file(path).expect("pcap_open_offline");
    let (mut n, mut bytes) = (0, 0);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                n += 1;
                bytes += p.data.len() as u64;
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => panic!("libpcap: {e}"),
        }
    }
    (n, bytes)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(c: &mut Criterion) {
    let packets = env_u64("COMO_BENCH_PACKETS", 1_000_000);
    let dir = TempDir(std::env::temp_dir().join(format!("como-bench-read-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    for format in ["pcap", "pcapng", "erf"] {
        let path = dir.0.join(format!("synth.{format}"));
        write(&path, format, packets);
        let ours = read_como(&path);
        assert_eq!(ours.0, packets, "{format}: CoMo-rs packet count");
        let mut g = c.benchmark_group(format!("read {format}"));
        g.throughput(Throughput::Elements(packets));
        g.bench_function("como", |b| b.iter(|| black_box(read_como(&path))));
        if format != "erf" {
            assert_eq!(read_libpcap(&path), ours, "{format}: libpcap vs CoMo-rs");
            g.bench_function("libpcap", |b| b.iter(|| black_box(read_libpcap(&path))));
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(env_u64("COMO_BENCH_SECONDS", 3).max(1)))
}

/// Holds the criterion group: private, so the undocumented `pub fn` it generates is not exported.
mod group {
    use super::{config, read};
    use criterion::criterion_group;

    criterion_group! {
        name = benches;
        config = config();
        targets = read
    }
}
criterion_main!(group::benches);
