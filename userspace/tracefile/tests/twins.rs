//! The same packets in several formats give the same packets.
//!
//! libtrace's `100_packets.erf`, `100_packets.pcapng` and `100_packetsns.pcap` hold the same 100
//! Ethernet frames. ERF's wlen counts the 4-byte Ethernet FCS; the reader reports
//! `wire_len = wlen - 4` (the frame length as libpcap on a NIC reports it). libtrace's converter
//! copied wlen unchanged into the twins' pcap/pcapng lengths, so for these files
//! `twin len == ERF wlen == our ERF wire_len + 4`. The Wireshark-converted files of
//! `converted-erf/` follow the ERF definition (wlen = pcap len + 4) and give exactly the wire
//! lengths of their pcap originals. The pcap and pcapng twins
//! were written with microsecond precision (the ns pcap's fractions are multiples of 1000), the
//! ERF original has 32.32 fixed point: the ERF timestamps rounded to the
//! nearest µs equal theirs.
//!
//! The pcap and pcapng twins in libtrace's repository carry a text-mode conversion scar: every
//! byte 0x0d of the frames (112 of them, in MAC addresses and payload) and of the record
//! headers' fields is 0x0a there; the frames contain no 0x0d at all. The test checks the bytes modulo exactly that substitution.

use std::path::Path;

use como_tracefile::{Format, LinkType, TraceReader};

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

/// (ts_ns, wire_len, data, link) of every packet of a file, which must read without error.
fn packets(file: &str) -> Vec<(u64, u32, Vec<u8>, LinkType)> {
    let mut r = TraceReader::open(Path::new(TRACES).join(file)).expect("open");
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("no damage");
        v.push((p.ts_ns, p.wire_len, p.data.to_vec(), p.link));
    }
    v
}

/// Raw ERF wlen of each packet record, read independently of the reader.
fn erf_wlens(file: &str) -> Vec<u32> {
    let d = std::fs::read(Path::new(TRACES).join(file)).expect("read");
    let mut pos = 0;
    let mut v = Vec::new();
    while pos + 16 <= d.len() {
        let rlen = usize::from(u16::from_be_bytes([d[pos + 10], d[pos + 11]]));
        let wlen = u32::from(u16::from_be_bytes([d[pos + 14], d[pos + 15]]));
        if d[pos + 8] & 0x7f == 2 {
            v.push(wlen);
        }
        pos += rlen.max(16);
    }
    v
}

/// The twins' scar applied to a little-endian 32-bit header field: each byte 0x0d becomes 0x0a.
fn scar(v: u32) -> u32 {
    u32::from_le_bytes(v.to_le_bytes().map(|b| if b == 0x0d { 0x0a } else { b }))
}

#[test]
fn libtrace_twins_give_identical_packets() {
    let erf = packets("libtrace/100_packets.erf");
    let ng = packets("libtrace/100_packets.pcapng");
    let pcap = packets("libtrace/100_packetsns.pcap");
    assert_eq!(erf.len(), 100);
    assert_eq!(ng.len(), 100);
    assert_eq!(pcap.len(), 100);
    let wlens = erf_wlens("libtrace/100_packets.erf");
    assert_eq!(wlens.len(), 100);
    let mut scars = 0;
    for i in 0..100 {
        let (e, n, p) = (&erf[i], &ng[i], &pcap[i]);
        assert_eq!(n.0, p.0, "packet {i}: pcapng and pcap timestamps");
        assert_eq!(p.0 % 1000, 0, "packet {i}: the pcap twin has µs precision");
        let us = (e.0 + 500) / 1000;
        let (sec, usec) = ((us / 1_000_000) as u32, (us % 1_000_000) as u32);
        let want = u64::from(scar(sec)) * 1_000_000_000 + u64::from(scar(usec)) * 1000;
        assert_eq!(
            want, p.0,
            "packet {i}: ERF timestamp rounded to the µs (0x0d -> 0x0a)"
        );
        assert_eq!(
            e.2.len(),
            n.2.len(),
            "packet {i}: ERF and pcapng captured lengths"
        );
        assert!(
            !n.2.contains(&0x0d),
            "packet {i}: the twins have no 0x0d byte"
        );
        let scarred: Vec<u8> =
            e.2.iter()
                .map(|&b| if b == 0x0d { 0x0a } else { b })
                .collect();
        scars += e.2.iter().filter(|&&b| b == 0x0d).count();
        assert_eq!(
            scarred, n.2,
            "packet {i}: ERF and pcapng bytes (0x0d -> 0x0a)"
        );
        assert_eq!(n.2, p.2, "packet {i}: pcapng and pcap bytes");
        assert_eq!(n.1, p.1, "packet {i}: pcapng and pcap wire length");
        assert_eq!(
            wlens[i],
            e.1 + 4,
            "packet {i}: ERF wire_len is wlen minus the 4-byte FCS"
        );
        assert_eq!(
            n.1,
            scar(wlens[i]),
            "packet {i}: libtrace copied ERF wlen into the length"
        );
        assert!(
            e.2.len() <= e.1 as usize,
            "packet {i}: captured bytes within the wire length"
        );
        assert_eq!(
            (e.3, n.3, p.3),
            (LinkType::Ethernet, LinkType::Ethernet, LinkType::Ethernet)
        );
    }
    assert_eq!(scars, 112, "0x0d bytes of the ERF frames");
    // Sanity: the three files really are three formats.
    let fmt = |f: &str| {
        TraceReader::open(Path::new(TRACES).join(f))
            .expect("open")
            .format()
    };
    assert_eq!(fmt("libtrace/100_packets.erf"), Format::Erf);
    assert_eq!(fmt("libtrace/100_packets.pcapng"), Format::PcapNg);
    assert_eq!(
        fmt("libtrace/100_packetsns.pcap"),
        Format::Pcap {
            nanos: true,
            big_endian: false,
            modified: false
        }
    );
}

#[test]
fn converted_erf_files_match_their_pcap_originals() {
    for (erf, pcap) in [
        ("converted-erf/vlan-qinqinq.erf", "zeek/vlan-qinqinq.pcap"),
        (
            "converted-erf/truncated-header.erf",
            "zeek/tcp/truncated-header.pcap",
        ),
        (
            "converted-erf/ipv6-fragmented-dns.erf",
            "zeek/ipv6-fragmented-dns.pcap",
        ),
    ] {
        let e = packets(erf);
        let p = packets(pcap);
        assert_eq!(e.len(), p.len(), "{erf}");
        assert!(!e.is_empty());
        for (i, (a, b)) in e.iter().zip(&p).enumerate() {
            assert_eq!(a.0 / 1000, b.0 / 1000, "{erf} packet {i}: timestamp (µs)");
            assert_eq!(a.2, b.2, "{erf} packet {i}: bytes");
            assert_eq!(a.3, b.3, "{erf} packet {i}: link type");
            assert_eq!(a.1, b.1, "{erf} packet {i}: wire length (ERF wlen - FCS)");
        }
    }
}

#[test]
fn pcapng_multi_interface_reports_interface_ids() {
    let mut r = TraceReader::open(Path::new(TRACES).join("zeek/pcapng-multi-interface.pcapng"))
        .expect("open");
    let mut ids = Vec::new();
    while let Some(p) = r.next_packet() {
        ids.push(p.expect("packet").interface);
    }
    assert_eq!(ids.len(), 6);
    assert!(
        ids.iter().any(|&i| i > 0),
        "several interfaces in use: {ids:?}"
    );
}
