//! The query interface over real HTTP (and `como query`): every parameter form of the time
//! range, the formats, print parameters, `source=` chaining, errors, streaming, `/status`,
//! `/modules`, `/metrics`. The expected records come from `como inline` over the same trace.

pub mod daemon;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{como, file_source, module, now_ns, synth_trace, write_config, Daemon};

const S: u64 = 1_000_000_000;

/// CSV rows (without header) of `como inline` over `file`.
fn inline_rows(file: &Path, spec: &str) -> (String, Vec<String>) {
    let f = file.to_string_lossy();
    let o = como(&["inline", "-r", &f, "--format", "csv", spec]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).expect("utf-8");
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().expect("header");
    (header, lines.collect())
}

fn ts_of(row: &str) -> u64 {
    row.split(',')
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .expect("integer ts")
}

/// The CSV (header + rows with `lo <= ts < hi` seconds) expected for a range.
fn csv_in(header: &str, rows: &[String], lo: u64, hi: u64) -> String {
    let mut out = format!("{header}\n");
    for r in rows.iter().filter(|r| (lo..hi).contains(&ts_of(r))) {
        out.push_str(r);
        out.push('\n');
    }
    out
}

fn utc(secs: u64) -> String {
    let o = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y%m%d%H%M%S"])
        .output()
        .expect("date");
    String::from_utf8(o.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    trace: std::path::PathBuf,
    daemon: Daemon,
    packets: u64,
    /// First second of the trace.
    t0: u64,
}

/// 290 s of synthetic traffic ending 10 s ago, stored by a daemon (file consumed).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let trace = dir.path().join("recent.pcap");
    let t0 = now_ns() / S / 10 * 10 - 300;
    let packets = synth_trace(&trace, t0 * S, 290, 20, 40);
    let modules = [
        module("traffic", "traffic", "10s", ""),
        module("top", "topaddr", "10s", ""),
        module("trace", "trace", "10s", ""),
        module("tuple", "tuple", "10s", "tcp or udp"),
    ]
    .concat();
    let cfg = write_config(dir.path(), "c.toml", &file_source(&trace, None), &modules);
    let daemon = Daemon::start(&cfg, &[]);
    daemon.wait_done();
    Fixture {
        _dir: dir,
        trace,
        daemon,
        packets,
        t0,
    }
}

#[test]
fn http_api() {
    let fx = fixture();
    let d = &fx.daemon;
    let (header, rows) = inline_rows(&fx.trace, "traffic:interval=10s");
    assert_eq!(rows.len(), 29);
    let all = csv_in(&header, &rows, 0, u64::MAX);

    // Absolute forms: @unix, @yyyymmddhhmmss, start/end; the range is [A, B).
    let (a, b) = (fx.t0 + 50, fx.t0 + 120);
    let want = csv_in(&header, &rows, a, b);
    assert_eq!(want.lines().count(), 8);
    for q in [
        format!("time=@{a}:@{b}"),
        format!("time=@{}:@{}", utc(a), utc(b)),
        format!("start={a}&end={b}"),
        format!("start={a}.0&end={b}&wait=no"),
    ] {
        let (code, body) = d.get(&format!("/traffic?{q}&format=csv"));
        assert_eq!((code, &body), (200, &want), "{q}");
    }
    // Relative forms. With an end in the future the answer streams, and ends because the
    // node's runtime has ended (its file is consumed).
    let (code, body) = d.get("/traffic?time=-1h:+1h&format=csv");
    assert_eq!((code, &body), (200, &all));
    let (_, body) = d.get("/traffic?format=csv");
    assert_eq!(body, all, "no range: everything up to now");
    let (_, body) = d.get("/traffic?time=-1h:-1h&format=csv");
    assert_eq!(body, format!("{header}\n"));
    let before = now_ns() / S;
    let (_, body) = d.get("/traffic?time=-1m30s:0&format=csv&wait=no");
    let after = now_ns() / S + 1;
    let options: Vec<String> = (before..=after)
        .map(|now| csv_in(&header, &rows, now - 90, now))
        .collect();
    assert!(options.contains(&body), "{body}");
    // 90 s of 10 s intervals: at least 6 whole ones, wherever "now" falls.
    assert!(body.lines().count() >= 7, "{body}");

    // Formats.
    let (_, json) = d.get(&format!("/traffic?time=@{a}:@{b}&format=json"));
    let objs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(objs.len(), 7);
    assert_eq!(objs[0]["ts"].as_f64(), Some(a as f64));
    let pkts: u64 = objs.iter().filter_map(|o| o["pkts"].as_u64()).sum();
    assert_eq!(pkts, 7 * 10 * 20);
    let (_, plain) = d.get(&format!("/traffic?time=@{a}:@{b}&format=plain"));
    assert_eq!(plain.lines().count(), 7);
    assert_eq!(plain.lines().next().map(|l| l.split(' ').count()), Some(3));
    let (_, pretty) = d.get(&format!("/traffic?time=@{a}:@{b}&format=pretty"));
    assert_eq!(pretty.lines().count(), 8);
    assert!(pretty.lines().next().is_some_and(|l| l.contains("pkts")));
    let (_, gp) = d.get(&format!("/traffic?time=@{a}:@{b}&format=gnuplot"));
    assert!(gp.starts_with('#'), "{gp}");
    assert_eq!(gp.lines().count(), 8);
    // pcap of the trace module, read back by tcpdump.
    let (code, pcap) = d.get_bytes(&format!("/trace?time=@{a}:@{b}&format=pcap"));
    assert_eq!(code, 200);
    let pcap_path = fx._dir.path().join("out.pcap");
    std::fs::write(&pcap_path, &pcap).expect("write");
    let o = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap_path)
        .arg("--count")
        .output()
        .expect("tcpdump");
    let count = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(count.trim(), "1400 packets", "{count}");

    // Print-time parameters.
    let (code, top) = d.get(&format!("/top?time=@{a}:@{b}&format=csv&topn=2"));
    assert_eq!(code, 200, "{top}");
    assert_eq!(top.lines().count(), 1 + 7 * 2, "{top}");
    let (_, top_all) = d.get(&format!("/top?time=@{a}:@{b}&format=csv"));
    assert!(top_all.lines().count() > top.lines().count());

    // Chaining: traffic and topaddr over the trace module's stored packets give what the
    // modules stored themselves.
    for m in ["traffic", "top"] {
        let (code, chained) = d.get(&format!("/{m}?time=@{a}:@{b}&format=csv&source=trace"));
        assert_eq!(code, 200, "{chained}");
        let (_, direct) = d.get(&format!("/{m}?time=@{a}:@{b}&format=csv"));
        assert_eq!(chained, direct, "{m}");
    }
    let (code, chained) = d.get("/traffic?format=csv&source=trace&wait=no");
    assert_eq!((code, chained), (200, all.clone()));

    // Errors.
    for (q, code, reason) in [
        ("/nope", 404, "no module `nope`"),
        ("/traffic?source=nope", 404, "no source module `nope`"),
        ("/traffic?time=yesterday", 400, "bad time"),
        ("/traffic?time=0:-1h", 400, "before its start"),
        ("/traffic?time=-1q:0", 400, "bad time `-1q`"),
        ("/traffic?time=@20231399000000:0", 400, "bad date"),
        ("/traffic?format=xml", 400, "unknown format `xml`"),
        ("/traffic?format=pcap", 400, "does not print format `pcap`"),
        ("/traffic?wait=maybe", 400, "bad wait"),
        ("/traffic?start=abc", 400, "bad start"),
        ("/traffic?time=-1h:0&start=5", 400, "not both"),
        ("/traffic?topn=3", 400, "no print parameter `topn`"),
        ("/top?colour=red", 400, "no print parameter `colour`"),
        ("/traffic?format=csv&format=json", 400, "twice"),
        ("/traffic?source=traffic", 200, ""),
    ] {
        let (c, body) = d.get(q);
        assert_eq!(c, code, "{q}: {body}");
        assert!(body.contains(reason), "{q}: {body}");
    }

    // /status, /modules, /metrics.
    let (_, status) = d.get("/status");
    let st: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(st["sources"][0]["packets"].as_u64(), Some(fx.packets));
    assert_eq!(st["sources"][0]["type"], "file");
    assert_eq!(st["running"], false);
    assert!(st["uptime_s"].as_f64().is_some_and(|u| u > 0.0));
    assert!(st["modules"][2]["stored_bytes"]
        .as_u64()
        .is_some_and(|b| b > 0));
    let (_, mods) = d.get("/modules");
    let mods: serde_json::Value = serde_json::from_str(&mods).expect("json");
    assert_eq!(mods[0]["name"], "traffic");
    assert_eq!(mods[0]["interval_s"].as_f64(), Some(10.0));
    assert_eq!(mods[3]["filter"], "tcp or udp");
    assert!(mods[2]["formats"]
        .as_array()
        .is_some_and(|f| f.contains(&"pcap".into())));
    assert_eq!(mods[1]["print_params"][0], "topn");
    let (code, metrics) = d.get("/metrics");
    assert_eq!(code, 200);
    let line = |prefix: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(
        line("como_source_packets_total{"),
        Some(fx.packets as f64),
        "{metrics}"
    );
    assert_eq!(
        line("como_module_packets_total{module=\"traffic\"}"),
        Some(fx.packets as f64)
    );
    assert_eq!(
        line("como_module_records_total{module=\"traffic\"}"),
        Some(29.0)
    );
    assert!(line("como_module_stored_bytes{module=\"tuple\"}").is_some_and(|b| b > 0.0));
    for m in ["traffic", "top", "trace", "tuple"] {
        let cpu = line(&format!("como_module_cpu_seconds_total{{module=\"{m}\"}}"));
        assert!(cpu.is_some_and(|c| c > 0.0 && c < 60.0), "{m}: {metrics}");
    }
    assert!(line("como_source_bytes_total{").is_some_and(|b| b > fx.packets as f64 * 40.0));

    // `como query`: the same bytes as HTTP; errors exit 1 with the server's reason.
    let server = d.url();
    let o = como(&[
        "query",
        "--server",
        &server,
        "traffic",
        "--time",
        &format!("@{a}:@{b}"),
        "--format",
        "csv",
    ]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    let o = como(&[
        "query", "--server", &server, "top", "--format", "csv", "topn=1", "wait=no",
    ]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1 + 29);
    let o = como(&["query", "--server", &server, "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("HTTP 404: no module `nope`"));
    let o = como(&["query", "--server", &server, "traffic", "--time", "0:-1h"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("HTTP 400"));
}

/// A query whose end is in the future streams the records of intervals as they complete.
#[test]
fn streaming_delivers_intervals_completing_after_the_request() {
    streams_intervals_as_they_complete("csv");
}

/// The same in `pretty` (`como query`'s default format): each completed interval's rows go out
/// as an aligned block when they complete, not at the end of the range.
#[test]
fn pretty_streaming_delivers_intervals_as_they_complete() {
    streams_intervals_as_they_complete("pretty");
}

/// A daemon replaying 10 s of synthetic traffic (50 packets per second) at wall-clock pace,
/// `traffic` per second, `query` added to its `[query]` table; the trace's first second.
/// Trace time = wall time minus about one second: packets of second k are read at k+1.
fn paced_daemon(dir: &Path, query: &str) -> (Daemon, u64) {
    let trace = dir.join("live.pcap");
    let start = now_ns() / S - 1;
    synth_trace(&trace, start * S, 10, 50, 5);
    let cfg = write_config(
        dir,
        "c.toml",
        &file_source(&trace, Some(1.0)),
        &module("traffic", "traffic", "1s", ""),
    );
    let text = std::fs::read_to_string(&cfg).expect("read config");
    let listen = "listen = \"127.0.0.1:0\"\n";
    std::fs::write(&cfg, text.replacen(listen, &format!("{listen}{query}"), 1))
        .expect("write config");
    (Daemon::start(&cfg, &[]), start)
}

/// Streams `traffic` in `format` (csv or pretty) from a daemon replaying a trace at wall-clock
/// pace; checks every interval arrives complete, and over time.
fn streams_intervals_as_they_complete(format: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, start) = paced_daemon(dir.path(), "");
    let request = now_ns() / S;
    let end = request + 4;
    let url = format!(
        "{}/traffic?time=@{}:@{end}&format={format}",
        d.url(),
        start - 5
    );
    let t = Instant::now();
    let mut resp = ureq::get(&url).call().expect("GET");
    let reader = BufReader::new(resp.body_mut().as_reader());
    let mut rows = Vec::new();
    for line in reader.lines() {
        let line = line.expect("line");
        rows.push((t.elapsed(), line));
    }
    let total = t.elapsed();
    let sep = if format == "csv" { ',' } else { ' ' };
    let header = rows
        .first()
        .map(|r| r.1.split(sep).filter(|c| !c.is_empty()).collect::<Vec<_>>());
    assert_eq!(header, Some(vec!["ts", "pkts", "bytes"]), "{rows:?}");
    // pretty: a header again (after a blank line) when a later interval needs wider columns.
    let data: Vec<(Duration, u64, u64)> = rows
        .iter()
        .skip(1)
        .filter(|(_, l)| !l.is_empty() && !l.starts_with("ts"))
        .map(|(at, l)| {
            let mut f = l.split(sep).filter(|c| !c.is_empty());
            let ts = f.next().and_then(|v| v.parse().ok()).expect("ts");
            let pkts = f.next().and_then(|v| v.parse().ok()).expect("pkts");
            (*at, ts, pkts)
        })
        .collect();
    // Every second from the trace's first to the range's end, each complete (50 packets).
    let want: Vec<u64> = (start..end).collect();
    let got: Vec<u64> = data.iter().map(|r| r.1).collect();
    assert_eq!(got, want, "{rows:?}");
    assert!(data.iter().all(|r| r.2 == 50), "{rows:?}");
    // Intervals that began after the request were delivered, and they arrived over time.
    assert!(data.iter().filter(|r| r.1 >= request).count() >= 3);
    let first = data.first().map(|r| r.0).expect("rows");
    let last = data.last().map(|r| r.0).expect("rows");
    assert!(last - first >= Duration::from_secs(2), "{rows:?}");
    assert!(
        total < Duration::from_secs(15),
        "stream did not end: {total:?}"
    );
}

/// `[query] max_queries` of the configuration limits the daemon's queries: with 1, a second
/// query while a stream is open gets 503 and `Retry-After`; the next one after it ends is served.
#[test]
fn max_queries_of_the_config_limits_the_daemon() {
    let dir = tempfile::tempdir().expect("tmp");
    let (d, start) = paced_daemon(dir.path(), "max_queries = 1\n");
    // One stream, open until its end 3 s from now.
    let url = format!(
        "{}/traffic?time=@{}:@{}&format=csv",
        d.url(),
        start - 5,
        now_ns() / S + 3
    );
    let mut stream = ureq::get(&url).call().expect("GET stream");
    let mut first = String::new();
    BufReader::new(stream.body_mut().as_reader())
        .read_line(&mut first)
        .expect("first line");
    assert_eq!(first.trim(), "ts,pkts,bytes");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let second = agent
        .get(format!("{}/traffic?wait=no", d.url()))
        .call()
        .expect("GET");
    assert_eq!(second.status().as_u16(), 503);
    assert_eq!(
        second
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // The stream ends; its place is free again.
    let mut rest = String::new();
    stream
        .body_mut()
        .as_reader()
        .read_to_string(&mut rest)
        .expect("rest of the stream");
    let t = Instant::now();
    loop {
        let r = agent
            .get(format!("{}/traffic?wait=no", d.url()))
            .call()
            .expect("GET");
        if r.status().as_u16() == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still refused");
        std::thread::sleep(Duration::from_millis(50));
    }
}
