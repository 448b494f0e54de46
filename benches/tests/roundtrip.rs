//! The synthetic trace written as pcap, pcapng and ERF reads back, through como-tracefile,
//! as exactly the packets the generator produced (timestamps, wire lengths, bytes).

use como_benches::erf::ErfWriter;
use como_benches::synth::{Generator, PacketBatch, SynthConfig};
use como_packet::{LinkType, Packet};
use como_tracefile::{Format, PcapNgWriter, PcapWriter, TraceReader};

const PACKETS: u64 = 20_000;

fn cfg() -> SynthConfig {
    SynthConfig {
        packets: PACKETS,
        ..SynthConfig::default()
    }
}

fn write(format: &str, nanos: bool) -> Vec<u8> {
    let mut gen = Generator::new(cfg());
    match format {
        "pcap" => {
            let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 96, nanos).expect("header");
            while let Some(p) = gen.next_packet() {
                w.write_packet(&p).expect("write");
            }
            w.into_inner().expect("flush")
        }
        "pcapng" => {
            let mut w =
                PcapNgWriter::new(Vec::new(), LinkType::Ethernet, 96, nanos).expect("header");
            while let Some(p) = gen.next_packet() {
                w.write_packet(&p).expect("write");
            }
            w.into_inner().expect("flush")
        }
        _ => {
            let mut w = ErfWriter::new(Vec::new());
            while let Some(p) = gen.next_packet() {
                w.write_packet(&p).expect("write");
            }
            w.into_inner().expect("flush")
        }
    }
}

/// Reads `bytes` back and compares with the generator's packets; `ts_div` is the timestamp
/// resolution of the file in ns.
fn check(name: &str, bytes: Vec<u8>, ts_div: u64) -> Format {
    let expected = PacketBatch::generate(cfg());
    let mut reader = TraceReader::from_bytes(name, bytes).expect("detected");
    assert_eq!(reader.link_type(), LinkType::Ethernet, "{name}");
    let format = reader.format();
    let mut n = 0u64;
    for want in expected.iter() {
        let got: Packet<'_> = match reader.next_packet() {
            Some(Ok(p)) => p,
            other => panic!("{name}: packet {n}: {other:?}"),
        };
        assert_eq!(
            got.ts_ns,
            want.ts_ns / ts_div * ts_div,
            "{name}: ts of packet {n}"
        );
        assert_eq!(
            got.wire_len, want.wire_len,
            "{name}: wire_len of packet {n}"
        );
        assert_eq!(got.data, want.data, "{name}: bytes of packet {n}");
        assert_eq!(got.link, LinkType::Ethernet);
        n += 1;
    }
    assert!(reader.next_packet().is_none(), "{name}: extra packets");
    assert_eq!(n, PACKETS);
    format
}

#[test]
fn pcap_microseconds_round_trip() {
    let f = check("synth.pcap", write("pcap", false), 1000);
    assert!(matches!(f, Format::Pcap { nanos: false, .. }), "{f:?}");
}

#[test]
fn pcap_nanoseconds_round_trip() {
    let f = check("synth-ns.pcap", write("pcap", true), 1);
    assert!(matches!(f, Format::Pcap { nanos: true, .. }), "{f:?}");
}

#[test]
fn pcapng_round_trip() {
    let f = check("synth.pcapng", write("pcapng", true), 1);
    assert_eq!(f, Format::PcapNg);
}

#[test]
fn erf_round_trip() {
    let f = check("synth.erf", write("erf", true), 1);
    assert_eq!(f, Format::Erf);
}

#[test]
fn formats_differ_only_in_framing() {
    // Same packets, three framings: sizes differ by the per-record overhead only.
    let caps = PacketBatch::generate(cfg())
        .iter()
        .map(|p| p.data.len() as u64)
        .sum::<u64>();
    assert_eq!(write("pcap", false).len() as u64, 24 + 16 * PACKETS + caps);
    assert_eq!(write("erf", false).len() as u64, 18 * PACKETS + caps);
}
