//! `como inline` as a user runs it: CSV contract headers, totals against tshark's frame count,
//! pcap output read back by tcpdump, worker-count independence, exit statuses.

use std::path::Path;
use std::process::{Command, Output};

use como_tests::traces_dir;

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

/// Sum of column `col` over the CSV rows (after the header).
fn csv_sum(text: &str, col: usize) -> u64 {
    text.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(col)
                .expect("column")
                .parse::<u64>()
                .expect("number")
        })
        .sum()
}

/// Frames and bytes of a trace from tshark's per-packet oracle table.
fn tshark_totals(rel: &str) -> (u64, u64) {
    let path = traces_dir()
        .join("../oracle")
        .join(format!("{}.packets.tsv", rel.replace('/', "__")));
    let text = std::fs::read_to_string(&path).expect("oracle table");
    let mut n = 0;
    let mut bytes = 0;
    for l in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        n += 1;
        bytes += l
            .split('\t')
            .nth(1)
            .expect("len")
            .parse::<u64>()
            .expect("len");
    }
    (n, bytes)
}

#[test]
fn csv_contract_headers() {
    let f = trace("nDPI/teams.pcap");
    for (module, header) in [
        ("traffic", "ts,pkts,bytes"),
        ("protocol", "ts,proto,pkts,bytes"),
        ("topaddr", "ts,rank,addr,pkts,bytes"),
        (
            "tuple",
            "ts,proto,src,sport,dst,dport,first,last,pkts,bytes,tcp_flags",
        ),
    ] {
        let o = como(&["inline", "-r", &f, "--format", "csv", module]);
        assert_eq!(o.status.code(), Some(0), "{module}: {}", stderr(&o));
        let out = stdout(&o);
        assert_eq!(out.lines().next(), Some(header), "{module}");
        assert!(out.lines().count() > 1, "{module}: no rows");
        // ts is an interval start: whole seconds for the default 1 s interval.
        for l in out.lines().skip(1) {
            let ts = l.split(',').next().expect("ts");
            assert!(ts.parse::<u64>().is_ok(), "{module}: ts {ts}");
        }
    }
    // An empty result still has its header.
    let o = como(&[
        "inline", "-r", &f, "--format", "csv", "traffic", "port", "9",
    ]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "ts,pkts,bytes\n")
    );
}

#[test]
fn traffic_totals_equal_tshark_and_ts_has_decimals_for_subsecond_intervals() {
    for rel in [
        "nDPI/teams.pcap",
        "pcap-parser/wireshark_samples-test.pcapng",
    ] {
        let o = como(&[
            "inline",
            "-r",
            &trace(rel),
            "--format",
            "csv",
            "traffic:interval=250ms",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert_eq!(
            (csv_sum(&out, 1), csv_sum(&out, 2)),
            tshark_totals(rel),
            "{rel}"
        );
        assert!(
            out.lines()
                .skip(1)
                .any(|l| l.starts_with(|c: char| c.is_ascii_digit())
                    && l.split(',').next().is_some_and(|t| t.ends_with(".25")
                        || t.ends_with(".5")
                        || t.ends_with(".75"))),
            "{rel}: no sub-second interval start"
        );
    }
}

#[test]
fn workers_do_not_change_the_output() {
    let f = trace("pcap-parser/wireshark_samples-test.pcapng");
    for module in [
        "tuple:interval=10s",
        "topaddr:interval=30s,topn=4",
        "flowcount:interval=5s",
    ] {
        let one = como(&[
            "inline",
            "--workers",
            "1",
            "-r",
            &f,
            "--format",
            "csv",
            module,
        ]);
        let three = como(&[
            "inline",
            "--workers",
            "3",
            "-r",
            &f,
            "--format",
            "csv",
            module,
        ]);
        assert_eq!(one.status.code(), Some(0));
        assert!(stdout(&one).lines().count() > 2);
        assert_eq!(stdout(&one), stdout(&three), "{module}");
    }
}

#[test]
fn trace_prints_pcap_that_tcpdump_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = trace("nDPI/teams.pcap");
    let o = como(&[
        "inline",
        "-r",
        &f,
        "--format",
        "pcap",
        "trace:snaplen=80",
        "udp",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = dir.path().join("udp.pcap");
    std::fs::write(&out, &o.stdout).expect("write");
    let count = |file: &Path, expr: &str| -> String {
        let o = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(file)
            .args(["--count", expr])
            .output()
            .expect("tcpdump");
        stdout(&o)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let want = count(Path::new(&f), "udp");
    assert!(want.parse::<u64>().expect("count") > 0);
    assert_eq!(count(&out, ""), want);
    // snaplen cut the packets, wire lengths kept.
    let o = Command::new("tcpdump")
        .args(["-n", "-v", "-r"])
        .arg(&out)
        .output()
        .expect("tcpdump");
    assert!(stdout(&o).lines().count() > 0);
}

#[test]
fn bad_module_spec_format_or_filter_exit_2_before_output() {
    let f = trace("nDPI/teams.pcap");
    for (args, msg) in [
        (vec!["nosuch"], "unknown module kind"),
        (vec!["topaddr:topn=0"], "topn"),
        (vec!["topaddr:bogus=1"], "unknown field `bogus`"),
        (vec!["traffic:interval=5x"], "bad duration"),
        (vec!["traffic:topn"], "not k=v"),
        (vec!["--format", "xml", "traffic"], "unknown format"),
        (
            vec!["--format", "pcap", "traffic"],
            "does not print format `pcap`",
        ),
        (vec!["traffic", "tcp", "and"], "filter"),
    ] {
        let mut all = vec!["inline", "-r", f.as_str()];
        all.extend(args.iter().copied());
        let o = como(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn bad_file_exits_1_after_the_records_before_the_damage() {
    let o = como(&["inline", "-r", "/nonexistent/file.pcap", "traffic"]);
    assert_eq!(o.status.code(), Some(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(trace("nDPI/teams.pcap")).expect("read");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 7]).expect("write");
    let cut = cut.to_string_lossy().into_owned();
    let o = como(&[
        "inline",
        "-r",
        &cut,
        "--format",
        "csv",
        "traffic:interval=72h",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // tcpdump prints the packets before the damage too.
    let td = Command::new("tcpdump")
        .args(["-n", "-r", &cut])
        .output()
        .expect("tcpdump");
    let before = stdout(&td).lines().count() as u64;
    assert!(before > 0);
    assert_eq!(csv_sum(&stdout(&o), 1), before);
}
