//! Hand-made damaged files: every packet before the damage, then one error with the right
//! offset and kind, then nothing; never a panic. Plus truncation and corruption sweeps over
//! real traces.

use std::path::Path;

use como_tracefile::{Error, ErrorKind, LinkType, Packet, TraceReader};

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

/// Reads `bytes` to the end: packets read, then the error (if any). Checks that the reader
/// stops after the error, and that the batch reader (its own loops per format) reads the same
/// packets and stops on the same error.
fn read(bytes: Vec<u8>) -> Result<(usize, Option<Error>), Error> {
    let by_batch = read_by_batches(bytes.clone());
    let mut r = TraceReader::from_bytes("mem.trace", bytes)?;
    let mut n = 0;
    let mut got = Vec::new();
    while let Some(p) = r.next_packet() {
        match p {
            Ok(p) => {
                n += 1;
                got.push((p.ts_ns, p.wire_len, p.data.to_vec()));
            }
            Err(e) => {
                assert!(r.next_packet().is_none(), "nothing after the error");
                assert_eq!(by_batch, (got, Some(e.to_string())), "batches differ");
                return Ok((n, Some(e)));
            }
        }
    }
    assert!(r.next_packet().is_none(), "nothing after the end");
    assert_eq!(by_batch, (got, None), "batches differ");
    Ok((n, None))
}

/// A packet as the comparison of [`read`] sees it.
type Seen = (u64, u32, Vec<u8>);

/// [`read`] through `next_batch`, 3 packets at a time.
fn read_by_batches(bytes: Vec<u8>) -> (Vec<Seen>, Option<String>) {
    let Ok(mut r) = TraceReader::from_bytes("mem.trace", bytes) else {
        return (Vec::new(), None);
    };
    let mut got = Vec::new();
    loop {
        let mut buf = [Packet::EMPTY; 3];
        let (n, err) = r.next_batch(&mut buf);
        got.extend(
            buf.iter()
                .take(n)
                .map(|p| (p.ts_ns, p.wire_len, p.data.to_vec())),
        );
        if let Some(e) = err {
            return (got, Some(e.to_string()));
        }
        if n < buf.len() {
            return (got, None);
        }
    }
}

/// A little-endian µs pcap file header.
fn pcap_header(snaplen: u32, link: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&snaplen.to_le_bytes());
    v.extend_from_slice(&link.to_le_bytes());
    v
}

/// A pcap record header + `data`.
fn pcap_record(v: &mut Vec<u8>, caplen: u32, len: u32, data: &[u8]) {
    for x in [1_000_000_000u32, 5, caplen, len] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(data);
}

#[test]
fn empty_and_unknown_files_are_refused() {
    let e = read(Vec::new()).expect_err("empty");
    assert!(matches!(e.kind, ErrorKind::Empty));
    let e = read(b"hello, this is not a trace file at all....".to_vec()).expect_err("text");
    assert!(matches!(e.kind, ErrorKind::UnknownFormat), "{e}");
    assert_eq!(
        e.to_string(),
        "mem.trace: at byte 0: unknown file format (not pcap, pcapng or ERF)"
    );
}

#[test]
fn pcap_truncated_file_header() {
    let mut v = pcap_header(65535, 1);
    v.truncate(10);
    let e = read(v).expect_err("short header");
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedFileHeader {
                needed: 24,
                got: 10
            }
        ),
        "{e}"
    );
}

#[test]
fn pcap_header_only_is_an_empty_trace() {
    assert_eq!(read(pcap_header(65535, 1)).expect("ok").0, 0);
}

#[test]
fn pcap_truncated_record_header_after_good_packets() {
    let mut v = pcap_header(65535, 1);
    pcap_record(&mut v, 60, 60, &[0xaa; 60]);
    pcap_record(&mut v, 4, 70, &[1, 2, 3, 4]);
    let end = v.len();
    v.extend_from_slice(&[0; 7]);
    let (n, e) = read(v).expect("opens");
    let e = e.expect("error");
    assert_eq!(n, 2);
    assert_eq!(e.offset, end as u64);
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedRecordHeader { needed: 16, got: 7 }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("mem.trace: at byte {end}: truncated record header: 16 bytes needed, 7 present")
    );
}

#[test]
fn pcap_truncated_record_body() {
    let mut v = pcap_header(65535, 1);
    pcap_record(&mut v, 60, 60, &[0xaa; 60]);
    let start = v.len();
    pcap_record(&mut v, 100, 100, &[0xbb; 50]);
    let (n, e) = read(v).expect("opens");
    let e = e.expect("error");
    assert_eq!((n, e.offset), (1, start as u64));
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedRecord {
                len: 100,
                remaining: 50
            }
        ),
        "{e}"
    );
}

#[test]
fn pcap_absurd_caplen() {
    let mut v = pcap_header(65535, 1);
    pcap_record(&mut v, 262_145, 262_145, &[0; 16]);
    let (n, e) = read(v).expect("opens");
    assert_eq!(n, 0);
    assert!(matches!(
        e.expect("error").kind,
        ErrorKind::CaplenTooLarge {
            caplen: 262_145,
            max: 262_144
        }
    ));
    // 262144 itself is accepted (if present).
    let mut v = pcap_header(0, 1);
    pcap_record(&mut v, 262_144, 262_144, &vec![0; 262_144]);
    assert_eq!(read(v).expect("ok").0, 1);
}

#[test]
fn pcap_caplen_above_snaplen_is_cut_like_libpcap() {
    let mut v = pcap_header(40, 1);
    pcap_record(&mut v, 60, 60, &[7; 60]);
    pcap_record(&mut v, 10, 10, &[8; 10]);
    let mut r = TraceReader::from_bytes("m", v.clone()).expect("open");
    let p = r.next_packet().expect("one").expect("ok");
    assert_eq!((p.data.len(), p.wire_len), (40, 60));
    let p = r.next_packet().expect("two").expect("ok");
    assert_eq!(p.data, &[8; 10]);
    // The batch reader cuts the same way.
    assert_eq!(read(v).expect("open").0, 2);
}

#[test]
fn pcap_big_endian_nanosecond_and_fcs_bits() {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
    v.extend_from_slice(&2u16.to_be_bytes());
    v.extend_from_slice(&4u16.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_be_bytes());
    // LINKTYPE_ETHERNET with the FCS-present flag and FCS length 4 (0x14000000 | 0x04000000).
    v.extend_from_slice(&(0x1400_0000u32 | 0x0400_0000 | 1).to_be_bytes());
    for x in [1_600_000_000u32, 123_456_789, 2, 64] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&[9, 9]);
    let mut r = TraceReader::from_bytes("m", v).expect("open");
    assert_eq!(r.link_type(), LinkType::Ethernet);
    let p = r.next_packet().expect("one").expect("ok");
    assert_eq!(p.ts_ns, 1_600_000_000_123_456_789);
    assert_eq!((p.wire_len, p.data), (64, &[9u8, 9][..]));
}

/// A little-endian pcapng block of type `t` with `body` (padded), total length computed.
fn block(t: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().next_multiple_of(4);
    let total = (12 + padded) as u32;
    let mut v = Vec::new();
    v.extend_from_slice(&t.to_le_bytes());
    v.extend_from_slice(&total.to_le_bytes());
    v.extend_from_slice(body);
    v.resize(8 + padded, 0);
    v.extend_from_slice(&total.to_le_bytes());
    v
}

/// SHB + IDB (Ethernet, with `idb_opts` options).
fn pcapng_start(idb_opts: &[u8]) -> Vec<u8> {
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut v = block(0x0a0d_0d0a, &shb);
    let mut idb = vec![1, 0, 0, 0];
    idb.extend_from_slice(&0u32.to_le_bytes());
    idb.extend_from_slice(idb_opts);
    v.extend(block(1, &idb));
    v
}

/// An EPB body.
fn epb(iface: u32, ts: u64, caplen: u32, len: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for x in [iface, (ts >> 32) as u32, ts as u32, caplen, len] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn pcapng_zero_and_odd_block_lengths() {
    for bad in [0u32, 8, 13, 30] {
        let mut v = pcapng_start(&[]);
        v.extend(block(6, &epb(0, 1, 4, 4, &[1, 2, 3, 4])));
        let at = v.len();
        v.extend_from_slice(&6u32.to_le_bytes());
        v.extend_from_slice(&bad.to_le_bytes());
        v.extend_from_slice(&[0; 40]);
        let (n, e) = read(v).expect("opens");
        let e = e.expect("error");
        assert_eq!((n, e.offset), (1, at as u64), "length {bad}");
        assert!(
            matches!(e.kind, ErrorKind::BadBlockLength { len } if len == bad),
            "{e}"
        );
    }
}

#[test]
fn pcapng_absurd_and_mismatched_lengths() {
    let mut v = pcapng_start(&[]);
    let at = v.len();
    v.extend_from_slice(&6u32.to_le_bytes());
    v.extend_from_slice(&0x7fff_fff0u32.to_le_bytes());
    v.extend_from_slice(&[0; 40]);
    let e = read(v).expect("opens").1.expect("error");
    assert_eq!(e.offset, at as u64);
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedRecord {
                len: 0x7fff_fff0,
                remaining: 48
            }
        ),
        "{e}"
    );

    let mut v = pcapng_start(&[]);
    let mut b = block(6, &epb(0, 1, 4, 4, &[1, 2, 3, 4]));
    let last = b.len() - 4;
    b[last] = 0x99;
    v.extend(b);
    let e = read(v).expect("opens").1.expect("error");
    assert!(
        matches!(
            e.kind,
            ErrorKind::BlockLengthMismatch {
                header: 36,
                trailer: 0x99
            }
        ),
        "{e}"
    );
}

#[test]
fn pcapng_truncated_block_header_and_body() {
    let mut v = pcapng_start(&[]);
    v.extend(block(6, &epb(0, 1, 4, 4, &[1, 2, 3, 4])));
    let at = v.len();
    let mut cut = v.clone();
    cut.extend_from_slice(&[6, 0, 0]);
    let (n, e) = read(cut).expect("opens");
    let e = e.expect("error");
    assert_eq!((n, e.offset), (1, at as u64));
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedRecordHeader { needed: 8, got: 3 }
        ),
        "{e}"
    );

    let mut cut = v;
    let b = block(6, &epb(0, 1, 8, 8, &[1; 8]));
    cut.extend_from_slice(&b[..b.len() - 6]);
    let (n, e) = read(cut).expect("opens");
    assert_eq!(n, 1);
    assert!(matches!(
        e.expect("error").kind,
        ErrorKind::TruncatedRecord {
            len: 40,
            remaining: 34
        }
    ));
}

#[test]
fn pcapng_packet_errors() {
    // Caplen beyond the block.
    let mut v = pcapng_start(&[]);
    v.extend(block(6, &epb(0, 1, 100, 100, &[1; 8])));
    let e = read(v).expect("opens").1.expect("error");
    assert!(
        matches!(
            e.kind,
            ErrorKind::CaplenExceedsBlock {
                caplen: 100,
                available: 8
            }
        ),
        "{e}"
    );
    // Unknown interface.
    let mut v = pcapng_start(&[]);
    v.extend(block(6, &epb(3, 1, 4, 4, &[1; 4])));
    let e = read(v).expect("opens").1.expect("error");
    assert!(
        matches!(e.kind, ErrorKind::UnknownInterface { id: 3, count: 1 }),
        "{e}"
    );
    // EPB too short for its fixed fields.
    let mut v = pcapng_start(&[]);
    v.extend(block(6, &[0; 8]));
    let e = read(v).expect("opens").1.expect("error");
    assert!(
        matches!(
            e.kind,
            ErrorKind::BlockTooShort {
                block_type: 6,
                len: 20,
                needed: 32
            }
        ),
        "{e}"
    );
    // Option running past the block.
    let (n, e) = read(pcapng_start(&[9, 0, 40, 0, 6, 0, 0, 0])).expect("opens: the SHB is fine");
    let e = e.expect("error");
    assert_eq!((n, e.offset), (0, 28 + 16));
    assert!(
        matches!(e.kind, ErrorKind::BadOption { code: 9, len: 40 }),
        "{e}"
    );
}

#[test]
fn pcapng_tsresol_tsoffset_spb_and_unknown_blocks() {
    // if_tsresol = 2^-10 (0x8a), if_tsoffset = 100 s, then end of options.
    let mut opts = vec![9, 0, 1, 0, 0x8a, 0, 0, 0, 14, 0, 8, 0];
    opts.extend_from_slice(&100i64.to_le_bytes());
    opts.extend_from_slice(&[0, 0, 0, 0]);
    let mut v = pcapng_start(&opts);
    v.extend(block(0x0bad, &[1, 2, 3]));
    v.extend(block(6, &epb(0, 3 * 1024 + 512, 2, 2, &[5, 5])));
    let mut spb = 10u32.to_le_bytes().to_vec();
    spb.extend_from_slice(&[6; 12]);
    v.extend(block(3, &spb));
    let mut r = TraceReader::from_bytes("m", v).expect("open");
    let p = r.next_packet().expect("epb").expect("ok");
    assert_eq!(p.ts_ns, 103_500_000_000);
    assert_eq!(p.data, &[5, 5]);
    let p = r.next_packet().expect("spb").expect("ok");
    assert_eq!((p.wire_len, p.data.len(), p.ts_ns), (10, 10, 0));
    assert!(r.next_packet().is_none());
}

/// An ERF ETH record: 2 bytes padding + `frame`, wlen = frame length + 4 (FCS).
fn erf_eth(ts: u64, frame: &[u8], rlen: Option<u16>) -> Vec<u8> {
    let len = 16 + 2 + frame.len();
    let mut v = Vec::new();
    v.extend_from_slice(&ts.to_le_bytes());
    v.push(2);
    v.push(0x04 | 1);
    v.extend_from_slice(&rlen.unwrap_or(len as u16).to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&((frame.len() + 4) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(frame);
    v
}

#[test]
fn erf_records_and_damage() {
    let ts = (1_700_000_000u64 << 32) | (1 << 31);
    let mut v = erf_eth(ts, &[0x11; 60], None);
    v.extend(erf_eth(ts, &[0x22; 60], None));
    let mut r = TraceReader::from_bytes("m", v.clone()).expect("open");
    assert_eq!(r.format(), como_tracefile::Format::Erf);
    let p = r.next_packet().expect("one").expect("ok");
    assert_eq!(
        (p.ts_ns, p.wire_len, p.data, p.interface),
        (1_700_000_000_500_000_000, 60, &[0x11u8; 60][..], 1)
    );

    // Truncated last record.
    let mut cut = v.clone();
    cut.truncate(v.len() - 5);
    let (n, e) = read(cut).expect("opens");
    let e = e.expect("error");
    assert_eq!((n, e.offset), (1, 78));
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedRecord {
                len: 78,
                remaining: 73
            }
        ),
        "{e}"
    );

    // Second record with rlen 8.
    let mut bad = erf_eth(ts, &[0x11; 60], None);
    bad.extend(erf_eth(ts, &[0x22; 60], Some(8)));
    let (n, e) = read(bad).expect("opens");
    let e = e.expect("error");
    assert_eq!((n, e.offset), (1, 78 + 10));
    assert!(
        matches!(
            e.kind,
            ErrorKind::ErfRecordTooShort {
                rlen: 8,
                needed: 16
            }
        ),
        "{e}"
    );

    // Truncated record header.
    let mut cut = v;
    cut.truncate(78 + 9);
    let e = read(cut).expect("opens").1.expect("error");
    assert!(
        matches!(
            e.kind,
            ErrorKind::TruncatedRecordHeader { needed: 16, got: 9 }
        ),
        "{e}"
    );
}

#[test]
fn erf_extension_headers_ipv4_and_meta() {
    let ts = 5u64 << 32;
    // META record (skipped), then an IPv4 record with two extension headers.
    let mut v = Vec::new();
    v.extend_from_slice(&ts.to_le_bytes());
    v.extend_from_slice(&[27, 0]);
    v.extend_from_slice(&24u16.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&ts.to_le_bytes());
    v.extend_from_slice(&[22 | 0x80, 2]);
    v.extend_from_slice(&(16u16 + 16 + 20).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&40u16.to_be_bytes());
    v.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0x45; 20]);
    let mut r = TraceReader::from_bytes("m", v).expect("open");
    assert_eq!(r.link_type(), LinkType::Ipv4);
    let p = r.next_packet().expect("one").expect("ok");
    assert_eq!(
        (p.link, p.wire_len, p.data, p.interface),
        (LinkType::Ipv4, 40, &[0x45u8; 20][..], 2)
    );
    assert!(r.next_packet().is_none());
}

/// Offsets where each packet record of `bytes` ends.
fn record_ends(bytes: &[u8]) -> Vec<u64> {
    let mut r = TraceReader::from_bytes("m", bytes.to_vec()).expect("open");
    let mut ends = Vec::new();
    while let Some(p) = r.next_packet() {
        p.expect("clean file");
        ends.push(r.offset());
    }
    ends
}

#[test]
fn truncation_sweep_over_real_traces() {
    for file in [
        "libtrace/100_packetsns.pcap",
        "libtrace/100_packets.erf",
        "pcap-parser/modified-format.pcap",
        "nDPI/sctp.cap",
        "zeek/pcapng-multi-interface.pcapng",
        "pcapng-test-generator/output_be/difficult/test202.pcapng",
        "pcapng-test-generator/output_le/basic/test010.pcapng",
    ] {
        let full = std::fs::read(Path::new(TRACES).join(file)).expect("read");
        let ends = record_ends(&full);
        assert!(!ends.is_empty(), "{file}");
        let is_pcap = !file.ends_with(".pcapng");
        for cut in 0..full.len() {
            let bytes = full[..cut].to_vec();
            let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
            match read(bytes) {
                // Cut inside the file header (or the first section header).
                Err(e) => assert!(complete == 0, "{file} cut at {cut}: {e}"),
                Ok((n, err)) => {
                    assert_eq!(n, complete, "{file} cut at {cut}");
                    let last_end = if n == 0 { 0 } else { ends[n - 1] };
                    match err {
                        None => {
                            // Only at a record boundary (pcap, ERF) or block boundary (pcapng).
                            if is_pcap {
                                let at_boundary = cut as u64 == last_end || (n == 0 && cut == 24);
                                assert!(at_boundary, "{file} cut {cut}: no error");
                            }
                        }
                        Some(e) => {
                            assert!(
                                e.offset >= last_end && e.offset <= cut as u64,
                                "{file} cut {cut}: {e}"
                            );
                            if is_pcap {
                                // The first incomplete record starts where the last complete
                                // one ends (or after the 24-byte pcap file header).
                                let first = if file.ends_with(".erf") { 0 } else { 24 };
                                let want = if n == 0 { first } else { last_end };
                                assert_eq!(e.offset, want, "{file} cut {cut}: {e}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn corruption_sweep_never_panics() {
    // Deterministic byte flips in many positions of several traces, each read to the end.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for file in [
        "libtrace/100_packetsns.pcap",
        "libtrace/100_packets.erf",
        "libtrace/100_packets.pcapng",
        "pcapng-test-generator/output_be/advanced/test102.pcapng",
        "zeek/pcapng-multi-interface.pcapng",
        "pcap-parser/modified-format.pcap",
    ] {
        let full = std::fs::read(Path::new(TRACES).join(file)).expect("read");
        for _ in 0..400 {
            let mut bytes = full.clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            let mut packets = 0;
            if let Ok((n, _)) = read(bytes) {
                packets = n;
            }
            assert!(
                packets <= full.len() / 16,
                "{file}: {packets} packets from {} bytes",
                full.len()
            );
        }
    }
}
