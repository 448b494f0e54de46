//! Every trace of tests/data/traces/SOURCES.tsv: detected format, link type and packet count
//! agree with the independent tools; damaged files give the error after the right packets.
//!
//! Which column is the truth:
//! - pcap (and modified pcap): `packets_tcpdump` (libpcap 1.10.3 is the project's oracle);
//! - pcapng: `packets_capinfos` (EPB + SPB blocks). tcpdump refuses files with several link
//!   types or snaplens (libpcap limitation, we read them as Wireshark does), and tshark also
//!   counts custom/unknown blocks as frames (test017/test018/test102/test202);
//! - ERF: `packets_libtrace`. capinfos counts META records, which are not packets
//!   (libtrace/provenance.erf: 100 META records, 0 packets).
//!
//! Damaged files are listed in [`DAMAGED`] with the packets before the damage, the offset and
//! the error; there the truth column is empty or counts what the tool read before failing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use como_tracefile::{ErrorKind, Format, LinkType, TraceReader};

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

/// What reading a damaged file must give.
struct Damaged {
    /// File under TRACES.
    file: &'static str,
    /// `None`: the open fails; `Some(n)`: n packets, then the error.
    packets: Option<u64>,
    /// Byte offset of the error.
    offset: u64,
    /// The error kind expected.
    check: fn(&ErrorKind) -> bool,
    /// Why (for the reader of the test).
    _why: &'static str,
}

/// Files that must fail, and how.
const DAMAGED: &[Damaged] = &[
    Damaged {
        file: "gopacket/pcapgo/tests/le/test901.pcapng",
        packets: Some(1),
        offset: 0x1e0 + 12,
        check: |k| matches!(k, ErrorKind::BadPcapNgVersion { major: 2, minor: 0 }),
        _why: "second section has SHB version 2.0: libpcap and tshark read 1 packet, then fail",
    },
    Damaged {
        file: "libpcap/tests/linktype-reserved-field-not-zero.pcap",
        packets: None,
        offset: 20,
        check: |k| matches!(k, ErrorKind::ReservedLinkTypeBits(0x0030_0000)),
        _why: "reserved link-type bits set: libpcap's own test expects rejection",
    },
    Damaged {
        file: "libpcap/tests/pcap-invalid-version-1.pcap",
        packets: None,
        offset: 4,
        check: |k| matches!(k, ErrorKind::BadPcapVersion { major: 1, .. }),
        _why: "pcap version 1.x: libpcap says archaic",
    },
    Damaged {
        file: "libpcap/tests/pcap-invalid-version-2.pcap",
        packets: None,
        offset: 4,
        check: |k| matches!(k, ErrorKind::BadPcapVersion { major: 2, minor: 5 }),
        _why: "pcap version 2.5: libpcap refuses (Wireshark reads 1 packet; we follow libpcap)",
    },
    Damaged {
        file: "libpcap/tests/pcapng-invalid-vers-1.pcapng",
        packets: None,
        offset: 12,
        check: |k| matches!(k, ErrorKind::BadPcapNgVersion { major: 0, minor: 1 }),
        _why: "SHB version 0.1",
    },
    Damaged {
        file: "libpcap/tests/pcapng-invalid-vers-2.pcapng",
        packets: None,
        offset: 12,
        check: |k| matches!(k, ErrorKind::BadPcapNgVersion { major: 1, minor: 1 }),
        _why: "SHB version 1.1",
    },
    Damaged {
        file: "libpcap/tests/shb-option-too-long.pcapng",
        packets: None,
        offset: 0,
        check: |k| matches!(k, ErrorKind::BlockLengthMismatch { header: 52, .. }),
        _why: "SHB option overruns the block: the trailer is not where the header says",
    },
    Damaged {
        file: "nDPI/fuzz-2021-10-13.pcap",
        packets: Some(1),
        offset: 237,
        check: |k| matches!(k, ErrorKind::TruncatedRecordHeader { needed: 16, got: 2 }),
        _why: "file cut 2 bytes into the second record header (tcpdump: same)",
    },
    Damaged {
        file: "suricata-verify/bug-1450-04/tls_DER-incomplete-header.pcap",
        packets: Some(6),
        offset: 5035,
        check: |k| {
            matches!(
                k,
                ErrorKind::CaplenTooLarge {
                    caplen: 4_325_376,
                    max: 262_144
                }
            )
        },
        _why: "corrupt 7th record header (tcpdump: 6 packets then the same error)",
    },
    Damaged {
        file: "suricata-verify/bug-6875-01/fuzz.pcap",
        packets: Some(1),
        offset: 228,
        check: |k| {
            matches!(
                k,
                ErrorKind::CaplenTooLarge {
                    caplen: 1_409_179_648,
                    ..
                }
            )
        },
        _why: "corrupt 2nd record header (tcpdump: 1 packet then the error; tshark 2)",
    },
];

/// One row of SOURCES.tsv, by column name.
fn rows() -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(Path::new(TRACES).join("SOURCES.tsv")).expect("SOURCES.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t'))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Reads a file to the end: (packets, error).
fn read_all(path: &Path) -> Result<(u64, Option<como_tracefile::Error>), como_tracefile::Error> {
    let mut r = TraceReader::open(path)?;
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        match p {
            Ok(_) => n += 1,
            Err(e) => return Ok((n, Some(e))),
        }
    }
    Ok((n, None))
}

#[test]
fn every_trace_has_the_expected_packet_count() {
    let rows = rows();
    assert!(rows.len() > 300, "SOURCES.tsv has {} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let file = &row["file"];
        let path: PathBuf = Path::new(TRACES).join(file);
        let format = row["format"].as_str();
        let column = if format.starts_with("ERF") {
            "packets_libtrace"
        } else if format.starts_with("pcapng") {
            "packets_capinfos"
        } else {
            "packets_tcpdump"
        };
        let truth: Option<u64> = row[column].parse().ok();
        let got = read_all(&path);
        if let Some(d) = DAMAGED.iter().find(|d| d.file == file) {
            let err = match (&got, d.packets) {
                (Err(e), None) => e,
                (Ok((n, Some(e))), Some(want)) if *n == want => e,
                _ => {
                    failures.push(format!("{file}: expected damage, got {got:?}"));
                    continue;
                }
            };
            if err.offset != d.offset || !(d.check)(&err.kind) {
                failures.push(format!("{file}: wrong error {err}"));
            }
            if !err
                .to_string()
                .starts_with(&format!("{}: at byte {}: ", path.display(), d.offset))
            {
                failures.push(format!("{file}: error text {err}"));
            }
            if let (Some(t), Some(n)) = (truth, d.packets) {
                if t != n {
                    failures.push(format!("{file}: {column} says {t}, damage list says {n}"));
                }
            }
            continue;
        }
        match got {
            Ok((n, None)) if Some(n) == truth => {}
            other => failures.push(format!("{file}: {column}={truth:?}, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_trace_has_the_expected_format_and_link_type() {
    let mut failures = Vec::new();
    let mut checked_links = 0;
    for row in rows() {
        let file = &row["file"];
        if DAMAGED
            .iter()
            .any(|d| d.file == file && d.packets.is_none())
        {
            continue;
        }
        let r = match TraceReader::open(Path::new(TRACES).join(file)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let format = row["format"].as_str();
        let ok = match r.format() {
            Format::Erf => format.starts_with("ERF"),
            Format::PcapNg => format.starts_with("pcapng"),
            Format::Pcap {
                nanos,
                big_endian,
                modified,
            } => {
                let prefix = if modified { "modpcap" } else { "pcap (" };
                format.starts_with(prefix)
                    && format.contains(if nanos { "(ns)" } else { "(us)" })
                    && format.ends_with(if big_endian { "BE" } else { "LE" })
            }
        };
        if !ok {
            failures.push(format!(
                "{file}: format {format} detected as {:?}",
                r.format()
            ));
        }
        let want = row["linktype"].split_whitespace().next().unwrap_or("");
        let link = r.link_type();
        if format.starts_with("ERF") {
            if link != LinkType::Ethernet {
                failures.push(format!("{file}: ERF ETH file gives {link:?}"));
            }
        } else if !matches!(link, LinkType::Other(_)) && want != "unknown" && want != "?" {
            checked_links += 1;
            if link.name() != want {
                failures.push(format!("{file}: link type {want}, got {}", link.name()));
            }
        }
    }
    assert!(
        checked_links > 250,
        "only {checked_links} link types checked"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_list_of_damaged_files_names_existing_traces() {
    let rows = rows();
    for d in DAMAGED {
        assert!(
            rows.iter().any(|r| r["file"] == d.file),
            "{} not in SOURCES.tsv",
            d.file
        );
    }
}
