//! `como run` and `como validate` as an operator runs them: real processes, real files, real
//! sockets on 127.0.0.1.

pub mod daemon;

use std::time::Duration;

use daemon::{como, file_source, module, now_ns, synth_trace, trace, write_config, Daemon};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn inline(file: &std::path::Path, spec: &str, filter: &str) -> String {
    let f = file.to_string_lossy();
    let mut args = vec!["inline", "-r", &f, "--format", "csv", spec];
    if !filter.is_empty() {
        args.push(filter);
    }
    let o = como(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

#[test]
fn validate_ok_and_errors_with_position() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = como(&["validate"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "ok\n");
    let good = write_config(
        dir.path(),
        "good.toml",
        "",
        &module("t", "traffic", "1s", "ip"),
    );
    let o = como(&["validate", "-c", &good.to_string_lossy()]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "ok\n"));
    // Line 12 of the file (6 lines of header, an empty line, then the module): a bad filter.
    let bad = write_config(
        dir.path(),
        "bad.toml",
        "",
        &module("t", "traffic", "1s", "tcp port 99999"),
    );
    let o = como(&["validate", "-c", &bad.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!("{}:12:", bad.display())) && err.contains("bad filter"),
        "{err}"
    );
    let bad = write_config(
        dir.path(),
        "bad2.toml",
        "",
        "[[module]]\nname = \"t\"\nkind = \"traffic\"\ninterval = \"1 fortnight\"\n",
    );
    let o = como(&["validate", "-c", &bad.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!("{}:11:12: ", bad.display())),
        "{err}"
    );
    assert!(err.contains("bad duration"), "{err}");
}

/// `como run -e` stores; a daemon on the same db answers exactly what `como inline` prints.
#[test]
fn run_e_then_queries_equal_inline() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = trace("nDPI/netflix.pcap");
    let modules = [
        module("traffic", "traffic", "1s", ""),
        module("proto5", "protocol", "5s", ""),
        module("tuple", "tuple", "2s", "tcp or udp"),
    ]
    .concat();
    let cfg = write_config(dir.path(), "c.toml", &file_source(&t, None), &modules);
    // Two workers here; the daemon below has the default (results do not depend on it).
    let o = como(&["run", "-c", &cfg.to_string_lossy(), "-e", "--workers", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(stdout(&o).starts_with("listening on 127.0.0.1:"));
    // The daemon's log says what it does, not what the filter compiler's code generator did
    // (cranelift logs every function it defines at `info`).
    assert!(
        !err.contains("cranelift"),
        "{} log lines, code generator output among them",
        err.lines().count()
    );
    for m in ["traffic", "proto5", "tuple"] {
        assert!(dir.path().join("db").join(m).is_dir(), "{m} database");
    }
    // The same config again, as a daemon: the file is re-read, and nothing is stored twice.
    let d = Daemon::start(&cfg, &[]);
    let status = d.wait_done();
    assert_eq!(status["sources"][0]["state"], "done");
    assert_eq!(status["node"]["name"], "test-node");
    let expect = [
        ("traffic", inline(&t, "traffic:interval=1s", "")),
        ("proto5", inline(&t, "protocol:interval=5s", "")),
        ("tuple", inline(&t, "tuple:interval=2s", "tcp or udp")),
    ];
    for (name, want) in &expect {
        assert!(want.lines().count() > 3, "{name}: too small a test");
        let (code, body) = d.get(&format!("/{name}?time=@0:0&format=csv&wait=no"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(&body, want, "{name}");
    }
    let code = d.terminate();
    assert_eq!(code, Some(0));
}

/// A SIGKILL in the middle of a run, then a restart on the same db_path: what was stored is
/// intact, and the finished database equals one uninterrupted run (nothing lost or twice).
#[test]
fn survives_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path().join("paced.pcap");
    // 12 s of traffic paced at 3x: about 4 s of run time; killed after about 2 s.
    let start = (now_ns() / 1_000_000_000 - 3600) * 1_000_000_000;
    synth_trace(&t, start, 12, 2000, 400);
    let modules = [
        module("traffic", "traffic", "1s", ""),
        module("tuple", "tuple", "1s", ""),
    ]
    .concat();
    let paced = write_config(
        dir.path(),
        "paced.toml",
        &file_source(&t, Some(3.0)),
        &modules,
    );
    let fast = write_config(dir.path(), "fast.toml", &file_source(&t, None), &modules);
    let idle = write_config(dir.path(), "idle.toml", "", &modules);

    let mut d = Daemon::start(&paced, &[]);
    std::thread::sleep(Duration::from_millis(2000));
    d.child.kill().expect("SIGKILL");
    d.child.wait().expect("wait");
    drop(d);

    let full_traffic = inline(&t, "traffic:interval=1s", "");
    let full_tuple = inline(&t, "tuple:interval=1s", "");

    // What the killed run stored: complete intervals, a prefix of the uninterrupted output.
    let d = Daemon::start(&idle, &[]);
    d.wait_done();
    let (code, stored) = d.get("/traffic?time=@0:0&format=csv&wait=no");
    assert_eq!(code, 200);
    let n = stored.lines().count();
    assert!(n > 2, "the killed run stored too little:\n{stored}");
    assert!(n < full_traffic.lines().count(), "the kill came too late");
    assert!(
        full_traffic.starts_with(&stored),
        "{stored}\nvs\n{full_traffic}"
    );
    let (_, tuples) = d.get("/tuple?time=@0:0&format=csv&wait=no");
    let tuple_lines: Vec<&str> = tuples.lines().collect();
    let full_lines: Vec<&str> = full_tuple.lines().collect();
    assert!(tuple_lines.len() <= full_lines.len());
    assert_eq!(tuple_lines[..], full_lines[..tuple_lines.len()]);
    drop(d);

    // Restart on the same db with the file: it completes what is missing, once.
    let o = como(&["run", "-c", &fast.to_string_lossy(), "-e"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = Daemon::start(&idle, &[]);
    d.wait_done();
    let (_, traffic) = d.get("/traffic?time=@0:0&format=csv&wait=no");
    assert_eq!(traffic, full_traffic);
    let (_, tuples) = d.get("/tuple?time=@0:0&format=csv&wait=no");
    assert_eq!(tuples, full_tuple);
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path().join("slow.pcap");
    let start = (now_ns() / 1_000_000_000 - 3600) * 1_000_000_000;
    synth_trace(&t, start, 30, 100, 10);
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &file_source(&t, Some(1.0)),
        &module("traffic", "traffic", "1s", ""),
    );
    let d = Daemon::start(&cfg, &[]);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(d.terminate(), Some(0));
    let idle = write_config(
        dir.path(),
        "idle.toml",
        "",
        &module("traffic", "traffic", "1s", ""),
    );
    let d = Daemon::start(&idle, &[]);
    d.wait_done();
    let (_, body) = d.get("/traffic?time=@0:0&format=csv&wait=no");
    // Two or three complete seconds, plus the open one flushed at SIGTERM; not the whole trace.
    let rows: Vec<&str> = body.lines().skip(1).collect();
    assert!((2..=5).contains(&rows.len()), "{body}");
    let pkts: u64 = rows
        .iter()
        .map(|r| {
            r.split(',')
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("pkts")
        })
        .sum();
    assert!(pkts > 150 && pkts < 3000, "{body}");
}

#[test]
fn bad_source_and_busy_port() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing.pcap");
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &file_source(&missing, None),
        &module("t", "traffic", "1s", ""),
    );
    let o = como(&["run", "-c", &cfg.to_string_lossy(), "-e"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.pcap"));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace(&file_source(&missing, None), "");
    std::fs::write(&cfg, text).expect("write");
    let o = como(&["run", "-c", &cfg.to_string_lossy(), "-e"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("query server"));
}

/// SIGKILL at full speed while a module with thousands of records per interval is being
/// stored (so the kill is likely to land between the appends of one interval), then restart:
/// the finished databases equal one uninterrupted run.
#[test]
fn survives_kill_9_at_full_speed() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path().join("big.pcap");
    let start = (now_ns() / 1_000_000_000 - 7200) * 1_000_000_000;
    synth_trace(&t, start, 20, 20_000, 4000);
    let modules = [
        module("traffic", "traffic", "1s", ""),
        module("tuple", "tuple", "1s", ""),
    ]
    .concat();
    let cfg = write_config(dir.path(), "c.toml", &file_source(&t, None), &modules);
    let idle = write_config(dir.path(), "idle.toml", "", &modules);
    let mut d = Daemon::start(&cfg, &["--workers", "1"]);
    // Kill once a few intervals are stored.
    let t0 = std::time::Instant::now();
    loop {
        let (_, st) = d.get("/status");
        let st: serde_json::Value = serde_json::from_str(&st).expect("json");
        if st["modules"][1]["stored_bytes"].as_u64().unwrap_or(0) > 300_000 {
            assert_eq!(st["running"], true, "the run ended before the kill");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    d.child.kill().expect("SIGKILL");
    d.child.wait().expect("wait");
    drop(d);
    let o = como(&["run", "-c", &cfg.to_string_lossy(), "-e"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = Daemon::start(&idle, &[]);
    d.wait_done();
    for (name, spec) in [
        ("traffic", "traffic:interval=1s"),
        ("tuple", "tuple:interval=1s"),
    ] {
        let want = inline(&t, spec, "");
        let (_, got) = d.get(&format!("/{name}?time=@0:0&format=csv&wait=no"));
        assert_eq!(got.lines().count(), want.lines().count(), "{name}");
        assert!(
            got == want,
            "{name}: stored records differ from an uninterrupted run"
        );
    }
}
