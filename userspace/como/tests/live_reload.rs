//! Replacing the module set while traffic flows (privileged): `como send` loops a real trace
//! (TCP and UDP) through the veth pair; the configuration's module `a` (`protocol`, filter
//! `udp`) is replaced by `b` (`protocol`, filter `tcp`) with SIGHUP. `b` takes `a`'s rule bit in
//! the kernel tables, so a frame classified under the old tables but counted by the new module
//! set would put UDP into `b`; none may: `a`'s records hold only UDP, `b`'s only TCP. The
//! program is not reloaded (same kernel program id). The module `all` (`traffic`), unchanged
//! by the reload, goes on through it: one record per interval, the interval open at the
//! reload included (not one per module set).
//!
//! The query server runs through reloads: a streaming query of a kept module opened before a
//! `POST /reload` delivers the intervals from before and after it, one record each and no
//! gap; `POST /reload` answers with what it did (JSON), or 400 naming the line and column of
//! a broken configuration while the running modules go on (`como reload` prints that error
//! and exits 2); `/metrics` shows the new set. A daemon reading files ignores SIGHUP and
//! answers `POST /reload` with 409 (`como reload`: exit 1).

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{como_bin, file_source, trace, write_config, Daemon};
use live_common::{http_records, metric_sum, metrics, post, reader, wait_module, Lab};

fn module(name: &str, filter: &str) -> String {
    format!("[[module]]\nname = \"{name}\"\nkind = \"protocol\"\ninterval = \"1s\"\nfilter = \"{filter}\"\n")
}

fn xdp_prog_id(lab: &Lab) -> String {
    let out = lab
        .cap
        .ip(&["link", "show", "dev", &lab.veth.a])
        .expect("ip link");
    out.split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn live_reload_replaces_modules_without_misattribution() {
    let Some(lab) = Lab::new("live_reload_replaces_modules_without_misattribution") else {
        return;
    };
    // A fixed port (the query server goes on through the reload on the address it started
    // with; the configuration names it again).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let all = "[[module]]\nname = \"all\"\nkind = \"traffic\"\ninterval = \"1s\"\n";
    let cfg = lab.config(
        "live.toml",
        &listen,
        &lab.source(""),
        &format!("{}{all}", module("a", "udp")),
    );
    let d = Daemon::start(&cfg, &[]);
    let prog_before = xdp_prog_id(&lab);
    assert!(!prog_before.is_empty(), "no XDP program on {}", lab.veth.a);
    let mut sender = Command::new(como_bin())
        .args(["send", "-i", &lab.veth.b, "--netns", lab.gen.name(), "-r"])
        .arg(trace("nDPI/teams.pcap"))
        .args(["--pps", "20000", "--loop", "0"])
        .stdout(Stdio::null())
        .spawn()
        .expect("como send");
    std::thread::sleep(Duration::from_millis(1500));
    // Replace a by b while the sender runs.
    lab.config(
        "live.toml",
        &listen,
        &lab.source(""),
        &format!("{}{all}", module("b", "tcp")),
    );
    d.signal("HUP");
    wait_module(&d, "b");
    std::thread::sleep(Duration::from_millis(1500));
    let m = metrics(&d);
    assert!(
        metric_sum(&m, "como_module_packets_total", &["module=\"b\""]) > 0.0,
        "b counted nothing: {m:?}"
    );
    assert_eq!(
        xdp_prog_id(&lab),
        prog_before,
        "the XDP program was reloaded"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &sender.id().to_string()])
        .status();
    let _ = sender.wait();
    assert_eq!(d.terminate(), Some(0));
    // Read both databases.
    let r = reader(
        &lab,
        &format!("{}{}{all}", module("a", "udp"), module("b", "tcp")),
    );
    let (code, all_csv) = r.get("/all?time=-2d:+1d&format=csv");
    assert_eq!(code, 200, "{all_csv}");
    let mut seconds: Vec<&str> = all_csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert!(seconds.len() >= 3, "all:\n{all_csv}");
    seconds.sort_unstable();
    let n = seconds.len();
    seconds.dedup();
    assert_eq!(seconds.len(), n, "an interval stored twice:\n{all_csv}");
    let check = |name: &str, proto: u64| {
        let recs = http_records(&r, name);
        assert!(!recs.is_empty(), "{name}: no record");
        let pkts: u64 = recs.iter().filter_map(|v| v["pkts"].as_u64()).sum();
        assert!(pkts > 100, "{name}: only {pkts} packets");
        for v in &recs {
            assert_eq!(v["proto"].as_u64(), Some(proto), "{name}: {v}");
        }
    };
    check("a", 17);
    check("b", 6);
}

/// `como send` looping `teams.pcap` from the traffic end at 20 000 packets/s until killed.
fn looping_sender(lab: &Lab) -> std::process::Child {
    Command::new(como_bin())
        .args(["send", "-i", &lab.veth.b, "--netns", lab.gen.name(), "-r"])
        .arg(trace("nDPI/teams.pcap"))
        .args(["--pps", "20000", "--loop", "0"])
        .stdout(Stdio::null())
        .spawn()
        .expect("como send")
}

/// Polls `/<module>?wait=no` until it has records; their number.
fn wait_records(d: &Daemon, module: &str) -> usize {
    let t = Instant::now();
    loop {
        let (code, body) = d.get(&format!("/{module}?time=-1h:%2B1h&wait=no&format=csv"));
        assert_eq!(code, 200, "{module}: {body}");
        let n = body.lines().count().saturating_sub(1);
        if n > 0 {
            return n;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{module}: no record");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn post_reload_keeps_streams_and_the_running_set_on_a_broken_config() {
    let Some(lab) = Lab::new("post_reload_keeps_streams_and_the_running_set_on_a_broken_config")
    else {
        return;
    };
    let all = "[[module]]\nname = \"all\"\nkind = \"traffic\"\ninterval = \"1s\"\n";
    let cfg = lab.config(
        "live.toml",
        "127.0.0.1:0",
        &lab.source(""),
        &format!("{}{all}", module("a", "udp")),
    );
    let d = Daemon::start(&cfg, &[]);
    let mut sender = looping_sender(&lab);
    // A streaming query of `all` (kept by the reload), over the next 8 seconds.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(&format!("{}/all?time=-1s:%2B8s&format=csv", d.url()))
        .call()
        .expect("GET /all");
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = BufReader::new(resp.into_body().into_reader());
    let mut got = String::new();
    // The header and two intervals before the reload.
    for _ in 0..3 {
        stream.read_line(&mut got).expect("a line");
    }
    assert_eq!(got.lines().next(), Some("ts,pkts,bytes"), "{got}");

    // Replace a by b over HTTP: the answer comes once b runs.
    lab.config(
        "live.toml",
        "127.0.0.1:0",
        &lab.source(""),
        &format!("{}{all}", module("b", "tcp")),
    );
    // Queries sent while the reload runs are answered (the server is never down).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = {
        let (done, url) = (std::sync::Arc::clone(&done), d.url());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut answered = 0u32;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let resp = agent.get(&format!("{url}/status")).call();
                match resp {
                    Ok(r) if r.status().as_u16() == 200 => answered += 1,
                    Ok(r) => panic!("/status during the reload: HTTP {}", r.status()),
                    Err(e) => panic!("/status during the reload: {e}"),
                }
            }
            answered
        })
    };
    let (code, body) = post(&d, "/reload");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reloaded_s = daemon::now_ns() / 1_000_000_000;
    assert_eq!(code, 200, "{body}");
    assert!(during.join().expect("queries during the reload") > 0);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["modules"], serde_json::json!(["b", "all"]), "{v}");
    assert_eq!(v["kept"], serde_json::json!(["all"]), "{v}");
    assert_eq!(v["added"], serde_json::json!(["b"]), "{v}");
    assert_eq!(v["removed"], serde_json::json!(["a"]), "{v}");
    assert_eq!(v["changed"], serde_json::json!([]), "{v}");
    assert!(v["tables_generation"].is_u64(), "{v}");
    // The new module answers (TCP only); the old one is gone from the server.
    wait_records(&d, "b");
    let (code, recs) = d.get("/b?time=-1h:%2B1h&wait=no&format=json");
    assert_eq!(code, 200, "{recs}");
    for l in recs.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
        assert_eq!(v["proto"].as_u64(), Some(6), "b: {l}");
    }
    assert_eq!(d.get("/a?wait=no").0, 404);
    let (_, modules) = d.get("/modules");
    let list: serde_json::Value = serde_json::from_str(&modules).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["b", "all"]);
    let m = metrics(&d);
    assert!(
        m.keys()
            .any(|k| k.starts_with("como_module_packets_total{module=\"b\"}")),
        "{m:?}"
    );
    assert!(!m.keys().any(|k| k.contains("module=\"a\"")), "{m:?}");

    // A broken configuration: 400 naming the file, line and column; b and all go on.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .expect("config")
            .replace("kind = \"protocol\"", "kind = \"nosuch\""),
    )
    .expect("write config");
    let line = std::fs::read_to_string(&cfg)
        .expect("config")
        .lines()
        .position(|l| l.contains("nosuch"))
        .expect("the broken line")
        + 1;
    let (code, body) = post(&d, "/reload");
    assert_eq!(code, 400, "{body}");
    // `como reload` prints it on stderr, as `como validate` does, with exit status 2.
    let out = Command::new(como_bin())
        .args(["reload", "--server", &d.url()])
        .output()
        .expect("como reload");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), body);
    let at = format!("{}:{line}:", cfg.display());
    assert!(body.starts_with(&at), "not at {at}: {body}");
    let column = body[at.len()..].split(':').next().unwrap_or_default();
    assert!(
        column.parse::<usize>().is_ok_and(|c| c > 0),
        "no column: {body}"
    );
    assert!(body.contains("nosuch"), "{body}");
    let before = wait_records(&d, "b");
    let t = Instant::now();
    while wait_records(&d, "b") <= before {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "b stopped after the refused reload"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The stream of `all` ends at its range's end: one record per second, before and after
    // the reload, none missing, none twice.
    stream
        .read_to_string(&mut got)
        .expect("the rest of the stream");
    let seconds: Vec<u64> = got
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("a record: {l}"))
        })
        .collect();
    assert!(seconds.len() >= 6, "{got}");
    assert!(
        seconds.first() < Some(&reloaded_s) && seconds.last() > Some(&reloaded_s),
        "the stream does not span the reload at {reloaded_s}:\n{got}"
    );
    for w in seconds.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a second missing or twice:\n{got}");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &sender.id().to_string()])
        .status();
    let _ = sender.wait();
    assert_eq!(d.terminate(), Some(0));
}

/// A daemon reading files has no module set to reload: SIGHUP is logged and ignored (its
/// default action would end the process) and `POST /reload` answers 409 saying why.
#[test]
fn file_daemon_ignores_sighup_and_refuses_post_reload() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = write_config(
        tmp.path(),
        "files.toml",
        &file_source(&trace("nDPI/teams.pcap"), None),
        "[[module]]\nname = \"all\"\nkind = \"traffic\"\ninterval = \"1s\"\n",
    );
    let d = Daemon::start(&cfg, &[]);
    d.wait_done();
    d.signal("HUP");
    let (code, body) = post(&d, "/reload");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no live source"), "{body}");
    let out = Command::new(como_bin())
        .args(["reload", "--server", &d.url()])
        .output()
        .expect("como reload");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 409") && err.contains("no live source"),
        "{err}"
    );
    let (code, _) = d.get("/all?wait=no");
    assert_eq!(code, 200);
    // Alive until SIGTERM, which it answers with exit status 0.
    assert_eq!(d.terminate(), Some(0));
}
