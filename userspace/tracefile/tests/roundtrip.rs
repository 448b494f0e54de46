//! Writers: what PcapWriter and PcapNgWriter write reads back as the same packets.

use std::path::Path;

use como_tracefile::{Format, LinkType, PcapNgWriter, PcapWriter, TraceReader};

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

/// An owned packet: (ts_ns, wire_len, data, link, interface).
type Owned = (u64, u32, Vec<u8>, LinkType, u32);

/// Every packet of a reader, owned.
fn collect(mut r: TraceReader) -> Vec<Owned> {
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("clean");
        v.push((p.ts_ns, p.wire_len, p.data.to_vec(), p.link, p.interface));
    }
    v
}

/// Every packet of a file under TRACES.
fn packets(file: &str) -> Vec<Owned> {
    collect(TraceReader::open(Path::new(TRACES).join(file)).expect("open"))
}

/// Packet view of an owned packet.
fn view(p: &Owned) -> como_tracefile::Packet<'_> {
    como_tracefile::Packet {
        ts_ns: p.0,
        wire_len: p.1,
        data: &p.2,
        link: p.3,
        interface: p.4,
    }
}

#[test]
fn pcap_nanosecond_round_trip_is_exact() {
    let src = packets("pcap-parser/wireshark_samples-test.pcapng");
    assert_eq!(src.len(), 5898);
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 65535, true).expect("header");
    for p in &src {
        w.write_packet(&view(p)).expect("write");
    }
    let bytes = w.into_inner().expect("flush");
    let r = TraceReader::from_bytes("out.pcap", bytes).expect("read back");
    assert_eq!(
        r.format(),
        Format::Pcap {
            nanos: true,
            big_endian: false,
            modified: false
        }
    );
    let back = collect(r);
    assert_eq!(back.len(), src.len());
    for (i, (a, b)) in src.iter().zip(&back).enumerate() {
        assert_eq!((a.0, a.1, &a.2, a.3), (b.0, b.1, &b.2, b.3), "packet {i}");
        assert_eq!(b.4, 0);
    }
}

#[test]
fn pcap_microsecond_round_trip_truncates_to_the_microsecond() {
    let src = packets("libtrace/100_packets.erf");
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 0, false).expect("header");
    for p in &src {
        w.write_packet(&view(p)).expect("write");
    }
    let back =
        collect(TraceReader::from_bytes("out.pcap", w.into_inner().expect("flush")).expect("read"));
    assert_eq!(back.len(), 100);
    for (a, b) in src.iter().zip(&back) {
        assert_eq!(a.0 / 1000 * 1000, b.0);
        assert_eq!((a.1, &a.2), (b.1, &b.2));
    }
}

#[test]
fn pcap_writer_cuts_to_snaplen_and_refuses_other_link_types() {
    let data = [7u8; 100];
    let p = como_tracefile::Packet {
        ts_ns: 1_500_000_000_000_000_123,
        wire_len: 100,
        data: &data,
        link: LinkType::Ethernet,
        interface: 0,
    };
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 64, true).expect("header");
    w.write_packet(&p).expect("write");
    let other = como_tracefile::Packet {
        link: LinkType::Raw,
        ..p
    };
    assert!(w.write_packet(&other).is_err());
    let back = collect(TraceReader::from_bytes("o", w.into_inner().expect("flush")).expect("read"));
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].0, back[0].1, back[0].2.len()),
        (1_500_000_000_000_000_123, 100, 64)
    );
}

#[test]
fn pcapng_round_trip_with_several_link_types() {
    let eth = packets("libtrace/100_packetsns.pcap");
    let null = packets("gopacket/pcap/test_loopback.pcap");
    let raw = packets("tcpdump/LINKTYPE_RAW_ipv6.pcap");
    assert_eq!(null[0].3, LinkType::Null);
    assert_eq!(raw[0].3, LinkType::Raw);
    let mut all: Vec<&Owned> = Vec::new();
    for i in 0..eth.len().max(null.len()) {
        all.extend(eth.get(i));
        all.extend(null.get(i));
        if i == 5 {
            all.extend(raw.first());
        }
    }
    for nanos in [true, false] {
        let mut w = PcapNgWriter::new(Vec::new(), LinkType::Ethernet, 0, nanos).expect("header");
        for p in &all {
            w.write_packet(&view(p)).expect("write");
        }
        let r =
            TraceReader::from_bytes("out.pcapng", w.into_inner().expect("flush")).expect("read");
        assert_eq!(
            (r.format(), r.link_type()),
            (Format::PcapNg, LinkType::Ethernet)
        );
        let back = collect(r);
        assert_eq!(back.len(), all.len());
        for (i, (a, b)) in all.iter().zip(&back).enumerate() {
            let ts = if nanos { a.0 } else { a.0 / 1000 * 1000 };
            assert_eq!(
                (ts, a.1, &a.2, a.3),
                (b.0, b.1, &b.2, b.3),
                "packet {i} nanos={nanos}"
            );
            // Interfaces in order of first use: Ethernet 0, NULL 1, RAW 2.
            let want = match a.3 {
                LinkType::Ethernet => 0,
                LinkType::Null => 1,
                _ => 2,
            };
            assert_eq!(b.4, want, "packet {i} interface");
        }
    }
}

/// tcpdump (the project's oracle, installed by the setup script) reads what we write, with the
/// same packet count and the same first timestamp.
#[test]
fn tcpdump_reads_our_files() {
    let src = packets("pcap-parser/wireshark_samples-test.pcapng");
    let dir = std::env::temp_dir().join(format!("como-tracefile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let pcap = dir.join("out.pcap");
    let pcapng = dir.join("out.pcapng");
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 65535, true).expect("header");
    let mut w2 = PcapNgWriter::new(Vec::new(), LinkType::Ethernet, 65535, true).expect("header");
    for p in &src {
        w.write_packet(&view(p)).expect("write");
        w2.write_packet(&view(p)).expect("write");
    }
    std::fs::write(&pcap, w.into_inner().expect("flush")).expect("write pcap");
    std::fs::write(&pcapng, w2.into_inner().expect("flush")).expect("write pcapng");
    let first = src[0].0;
    let want_ts = format!("{}.{:09}", first / 1_000_000_000, first % 1_000_000_000);
    for f in [&pcap, &pcapng] {
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-tt", "--nano", "-r"])
            .arg(f)
            .output()
            .expect("tcpdump is installed (scripts/setup)");
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), src.len(), "{}", f.display());
        assert!(
            text.starts_with(&want_ts),
            "{}: {}",
            f.display(),
            text.lines().next().unwrap_or("")
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
