//! `como read` as a user runs it: counts, lines, exit statuses and messages.
//!
//! Expected counts come from tcpdump's table (`tests/data/filters/tcpdump-counts.tsv`), not
//! from this file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use como_tests::{traces_dir, unsupported_expressions, CountTable};

fn como(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_como"))
        .args(args)
        .output()
        .expect("run como")
}

fn trace(rel: &str) -> String {
    traces_dir().join(rel).to_string_lossy().into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// tcpdump's count for `expr` on `file`, from the generated table.
fn tcpdump_count(table: &CountTable, file: &str, expr: &str) -> u64 {
    let col = table
        .columns
        .iter()
        .position(|c| c == file)
        .unwrap_or_else(|| panic!("{file} not in table"));
    if expr.is_empty() {
        return table.totals[col].expect("total");
    }
    let (_, cells) = table
        .rows
        .iter()
        .find(|(e, _)| e == expr)
        .unwrap_or_else(|| panic!("{expr} not in table"));
    cells[col].unwrap_or_else(|| panic!("tcpdump refuses {expr} on {file}"))
}

#[test]
fn count_equals_tcpdump() {
    let table = CountTable::load("tcpdump-counts.tsv").expect("table");
    let cases = [
        ("nDPI/teams.pcap", ""),
        ("nDPI/teams.pcap", "icmp"),
        ("nDPI/teams.pcap", "udp port 53 or tcp port 53"),
        ("nDPI/teams.pcap", "ip and (tcp or udp) and not port 22"),
        ("zeek/vlan-qinqinq.pcap", "vlan and vlan and ip"),
        ("pcap-parser/wireshark_samples-test.pcapng", "icmp or icmp6"),
        ("libtrace/100_packetsns.pcap", "greater 1000 and tcp"),
    ];
    for (file, expr) in cases {
        let want = tcpdump_count(&table, file, expr);
        let out = como(&["read", "-c", "-r", &trace(file), expr]);
        assert!(out.status.success(), "{file} {expr:?}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), want.to_string(), "{file} {expr:?}");
    }
}

#[test]
fn filter_words_are_joined_like_tcpdump() {
    let joined = como(&[
        "read",
        "-c",
        "-r",
        &trace("nDPI/teams.pcap"),
        "udp port 53 or tcp port 53",
    ]);
    let words = como(&[
        "read",
        "-c",
        "-r",
        &trace("nDPI/teams.pcap"),
        "udp",
        "port",
        "53",
        "or",
        "tcp",
        "port",
        "53",
    ]);
    assert!(joined.status.success() && words.status.success());
    assert_eq!(stdout(&joined), stdout(&words));
}

#[test]
fn one_line_per_matching_packet() {
    let file = trace("nDPI/teams.pcap");
    let count = como(&["read", "-c", "-r", &file, "tcp"]);
    let lines = como(&["read", "-r", &file, "tcp"]);
    assert!(lines.status.success(), "{}", stderr(&lines));
    let text = stdout(&lines);
    assert_eq!(text.lines().count().to_string(), stdout(&count).trim());
    for line in text.lines() {
        // seconds.nanoseconds, then an IP or IPv6 line with "length N" (wire length).
        let (ts, rest) = line.split_once(' ').expect("timestamp");
        let (secs, nanos) = ts.split_once('.').expect("seconds.nanoseconds");
        assert!(secs.parse::<u64>().is_ok() && nanos.len() == 9, "{line}");
        assert!(
            rest.starts_with("IP ") || rest.starts_with("IP6 "),
            "{line}"
        );
        assert!(rest.contains("length "), "{line}");
    }
}

#[test]
fn format_is_detected_by_content_not_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (src, fake) in [
        ("libtrace/100_packets.erf", "erf-named.pcap"),
        ("libtrace/100_packets.pcapng", "pcapng-named.erf"),
        ("libtrace/100_packetsns.pcap", "pcap-named.txt"),
    ] {
        let dst = dir.path().join(fake);
        std::fs::copy(traces_dir().join(src), &dst).expect("copy");
        let out = como(&["read", "-c", "-r", &dst.to_string_lossy()]);
        assert!(out.status.success(), "{src}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "100", "{src} renamed {fake}");
    }
}

#[test]
fn invalid_filter_exits_2_naming_the_column() {
    let out = como(&[
        "read",
        "-c",
        "-r",
        &trace("nDPI/teams.pcap"),
        "tcp and and port 80",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "nothing is read before the filter is known good"
    );
    assert!(stderr(&out).contains("column 9"), "{}", stderr(&out));
}

#[test]
fn unsupported_filters_exit_2_naming_the_construct() {
    let file = trace("nDPI/teams.pcap");
    for (expr, construct) in unsupported_expressions() {
        let out = como(&["read", "-c", "-r", &file, &expr]);
        assert_eq!(out.status.code(), Some(2), "{expr:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&construct),
            "{expr:?} must name {construct:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn filter_refused_for_the_link_type_exits_2() {
    // tcpdump: "ether host" on a raw-IP link is refused (table cell E).
    let table = CountTable::load("tcpdump-counts.tsv").expect("table");
    let file = "tcpdump/LINKTYPE_RAW_ipv4.pcap";
    let col = table
        .columns
        .iter()
        .position(|c| c == file)
        .expect("column");
    let (_, cells) = table
        .rows
        .iter()
        .find(|(e, _)| e == "ether host ab:cd:ef:0:0:1")
        .expect("row");
    assert_eq!(cells[col], None, "tcpdump refuses it");
    let out = como(&[
        "read",
        "-c",
        "-r",
        &trace(file),
        "ether host ab:cd:ef:0:0:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Writes the first `keep` bytes of `src` to a temp file.
fn truncated_copy(dir: &Path, src: &str, keep: usize) -> PathBuf {
    let bytes = std::fs::read(traces_dir().join(src)).expect("read");
    let dst = dir.join("cut");
    std::fs::write(&dst, &bytes[..keep]).expect("write");
    dst
}

#[test]
fn corrupt_file_exits_1_after_the_packets_before_the_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 100_packetsns.pcap: 24-byte header, then records; cut inside the 11th record's data.
    let bytes = std::fs::read(traces_dir().join("libtrace/100_packetsns.pcap")).expect("read");
    let mut off = 24;
    for _ in 0..10 {
        let caplen =
            u32::from_le_bytes(bytes[off + 8..off + 12].try_into().expect("4 bytes")) as usize;
        off += 16 + caplen;
    }
    let cut = truncated_copy(dir.path(), "libtrace/100_packetsns.pcap", off + 20);
    let out = como(&["read", "-c", "-r", &cut.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "10");
    let err = stderr(&out);
    assert!(
        err.contains(&*cut.to_string_lossy()),
        "names the file: {err}"
    );
    assert!(
        err.contains(&format!("byte {off}")),
        "names the offset {off}: {err}"
    );

    let lines = como(&["read", "-r", &cut.to_string_lossy()]);
    assert_eq!(lines.status.code(), Some(1));
    assert_eq!(
        stdout(&lines).lines().count(),
        10,
        "the packets before the damage are printed"
    );
}

#[test]
fn real_corrupt_traces_exit_1_with_tcpdumps_count() {
    let table = CountTable::load("tcpdump-counts.tsv").expect("table");
    for file in [
        "nDPI/fuzz-2021-10-13.pcap",
        "suricata-verify/bug-6875-01/fuzz.pcap",
    ] {
        let out = como(&["read", "-c", "-r", &trace(file)]);
        assert_eq!(out.status.code(), Some(1), "{file}: {}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            tcpdump_count(&table, file, "").to_string(),
            "{file}"
        );
        assert!(
            stderr(&out).contains("at byte "),
            "{file}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn missing_file_exits_1() {
    let out = como(&["read", "-c", "-r", "/nonexistent/trace.pcap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/trace.pcap"),
        "{}",
        stderr(&out)
    );
}
