//! The packet trace window fed by the daemon (privileged: veth in network namespaces, like
//! `live_results.rs`), plus the same for a trace-file source (unprivileged).
//!
//! - A real trace replayed through the live source (tcpreplay, paced, zero loss) with `[trace]`
//!   on: `GET /trace?filter=EXPR` returns exactly the packets `tcpdump -r original EXPR`
//!   selects among those the window's filter selects, bytes identical up to the snaplen and
//!   original lengths kept; while the daemon runs (workers flush when idle) and after SIGTERM
//!   (segment closed, indexed, tshark reads it).
//! - The window's filter shares nothing with the modules' (modules on `tcp`, window on `udp`):
//!   the window still gets every UDP packet (its own kernel rule), the modules only TCP.
//! - `GET /<module>?source=trace` gives the very records (timestamps included) the module
//!   stored when it ran live over the same traffic.

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{trace, Daemon};
use live_common::{
    assert_captured_all, metric_sum, metrics, read_packets, reader, same_packets, sorted,
    tcpdump_count, tcpdump_select, trace_answer, wait_captured, wait_window, Lab, Pkt,
};

/// The `[trace]` section of a window in `dir` with `extra` lines.
fn trace_section(dir: &Path, extra: &str) -> String {
    format!("[trace]\npath = \"{}\"\n{extra}\n", dir.display())
}

/// Segment files of the window folder (`.pcapng`), closed ones and open ones.
fn segments(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut closed = Vec::new();
    let mut open = Vec::new();
    for e in std::fs::read_dir(dir).expect("window folder") {
        let p = e.expect("entry").path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        if name.ends_with(".pcapng") {
            if name.starts_with("seg-") && p.with_extension("pcapng.idx").exists() {
                closed.push(p);
            } else {
                open.push(p);
            }
        }
    }
    (closed, open)
}

/// tshark's packet count of a file (fails the test when tshark cannot read it).
fn tshark_count(path: &Path) -> u64 {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

/// Modules on TCP only; the window on UDP only, cut at 128 bytes: the window gets its own
/// packets from the kernel, and `/trace` answers what tcpdump selects.
#[test]
fn live_window_trace_equals_tcpdump_with_a_filter_no_module_shares() {
    let test = "live_window_trace_equals_tcpdump_with_a_filter_no_module_shares";
    let Some(lab) = Lab::new(test) else { return };
    let original = trace("nDPI/teams.pcap");
    let snaplen = 128usize;
    let wdir = lab.dir.path().join("trace");
    let modules = format!(
        "[[module]]\nname = \"tcp_traffic\"\nkind = \"traffic\"\ninterval = \"1d\"\nfilter = \"tcp\"\n\
         [[module]]\nname = \"tcp_protocol\"\nkind = \"protocol\"\ninterval = \"1d\"\nfilter = \"tcp\"\n{}",
        trace_section(&wdir, &format!("filter = \"udp\"\nsnaplen = {snaplen}"))
    );
    let cfg = lab.config("live.toml", "127.0.0.1:0", &lab.source(""), &modules);
    let d = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "XDP not attached to {}", lab.veth.a);
    let sent = lab.tcpreplay(&original, 4000);
    let total = tcpdump_count(&original, "");
    assert_eq!(sent, total, "tcpreplay sent");
    let tcp = tcpdump_count(&original, "tcp");
    let udp = tcpdump_count(&original, "udp");
    assert!(udp > 100 && tcp > 100, "trace with tcp {tcp} and udp {udp}");
    // Redirected to the workers: what a module or the window wants (tcp or udp), no more.
    let m = wait_captured(&d, tcp + udp, Duration::from_secs(20));
    assert_eq!(
        metric_sum(&m, "como_capture_packets_total", &[]) as u64,
        tcp + udp,
        "packets redirected to the workers (modules: tcp, window: udp)"
    );
    assert_eq!(
        metric_sum(&m, "como_capture_drops_total", &[]),
        0.0,
        "{m:?}"
    );
    assert_eq!(
        metric_sum(&m, "como_module_packets_total", &["module=\"tcp_traffic\""]) as u64,
        tcp,
        "the tcp module's packets"
    );
    // While the daemon runs: the idle workers have handed their packets to the disk.
    let got = wait_window(&d, udp as usize, Duration::from_secs(20));
    assert_eq!(
        got as u64, udp,
        "packets in the window while the daemon runs"
    );
    let exprs = [
        "",
        "udp",
        "port 53",
        "host 192.168.1.2",
        "udp and not port 443 and greater 200",
        "ip[8] < 100 or udp[0:2] > 50000",
        "tcp",
    ];
    for expr in exprs {
        let want_expr = if expr.is_empty() {
            "udp".to_owned()
        } else {
            format!("udp and ({expr})")
        };
        let want = tcpdump_select(&original, &want_expr, snaplen, lab.dir.path());
        if expr == "tcp" {
            assert!(want.is_empty());
        } else if expr.is_empty() || expr == "udp" || expr == "port 53" {
            assert!(!want.is_empty(), "{want_expr}: tcpdump selects nothing");
        }
        same_packets(expr, &trace_answer(&d, expr, "pcap"), &want);
        same_packets(expr, &trace_answer(&d, expr, "pcapng"), &want);
    }
    let m = metrics(&d);
    assert_eq!(
        metric_sum(&m, "como_trace_packets_total", &[]) as u64,
        udp,
        "como_trace_packets_total"
    );
    assert_eq!(metric_sum(&m, "como_trace_drops_total", &[]), 0.0, "{m:?}");
    // SIGTERM: the open segment is closed (fsynced, indexed, renamed) and tshark reads it.
    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    let (closed, open) = segments(&wdir);
    assert!(
        open.is_empty(),
        "segments left open after SIGTERM: {open:?}"
    );
    assert!(!closed.is_empty(), "no closed segment");
    let in_segments: u64 = closed.iter().map(|p| tshark_count(p)).sum();
    assert_eq!(in_segments, udp, "packets tshark reads in the segments");
    // After the run, from the stored window (indexed this time).
    let modules = "[[module]]\nname = \"tcp_traffic\"\nkind = \"traffic\"\ninterval = \"1d\"\nfilter = \"tcp\"\n"
        .to_owned()
        + &trace_section(&wdir, &format!("filter = \"udp\"\nsnaplen = {snaplen}"));
    let r = reader(&lab, &modules);
    for expr in exprs {
        let want_expr = if expr.is_empty() {
            "udp".to_owned()
        } else {
            format!("udp and ({expr})")
        };
        let want = tcpdump_select(&original, &want_expr, snaplen, lab.dir.path());
        same_packets(expr, &trace_answer(&r, expr, "pcap"), &want);
    }
}

/// Modules' records over the window (`source=trace`) equal what they stored live, timestamps
/// included: 1 s intervals over a replay of a few seconds, the window on every packet.
#[test]
fn live_window_module_over_trace_equals_live_records() {
    let test = "live_window_module_over_trace_equals_live_records";
    let Some(lab) = Lab::new(test) else { return };
    let original = trace("nDPI/netflix.pcap");
    let wdir = lab.dir.path().join("trace");
    let mods: &[(&str, &str, &str, &str)] = &[
        ("traffic", "traffic", "", ""),
        ("tcp_traffic", "traffic", "", "tcp"),
        ("protocol", "protocol", "", ""),
        ("topports", "topports", "topn = 5", ""),
        ("topaddr", "topaddr", "topn = 5", "ip"),
        ("tuple", "tuple", "", "tcp or udp"),
        ("flowcount", "flowcount", "", "not arp"),
    ];
    let mut modules = String::new();
    for (name, kind, args, filter) in mods {
        modules.push_str(&format!(
            "[[module]]\nname = \"{name}\"\nkind = \"{kind}\"\ninterval = \"1s\"\nfilter = \"{filter}\"\n"
        ));
        if !args.is_empty() {
            modules.push_str(&format!("[module.args]\n{args}\n"));
        }
    }
    modules.push_str(&trace_section(&wdir, ""));
    let cfg = lab.config("live.toml", "127.0.0.1:0", &lab.source(""), &modules);
    let d = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "XDP not attached to {}", lab.veth.a);
    let total = tcpdump_count(&original, "");
    // About 3 s of traffic: several 1 s intervals.
    let sent = lab.tcpreplay(&original, 600);
    assert_eq!(sent, total, "tcpreplay sent");
    assert_captured_all(&d, sent, "zero loss at a paced rate");
    assert_eq!(
        wait_window(&d, sent as usize, Duration::from_secs(20)) as u64,
        sent,
        "packets in the window"
    );
    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    let r = reader(&lab, &modules);
    let mut intervals = 0;
    for (name, ..) in mods {
        let (code, live) = r.get(&format!("/{name}?time=-2d:+1d&format=json"));
        assert_eq!(code, 200, "{name}: {live}");
        let (code, past) = r.get(&format!("/{name}?source=trace&time=-2d:+1d&format=json"));
        assert_eq!(code, 200, "{name} source=trace: {past}");
        let live: Vec<&str> = live.lines().filter(|l| !l.trim().is_empty()).collect();
        let past: Vec<&str> = past.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!live.is_empty(), "{name}: no live record");
        let first = live.iter().zip(&past).position(|(a, b)| a != b);
        assert!(
            live.len() == past.len() && first.is_none(),
            "{name}: live {} records, over the window {}; first difference at {first:?}: live {:?}, window {:?}",
            live.len(),
            past.len(),
            first.and_then(|i| live.get(i)),
            first.and_then(|i| past.get(i)),
        );
        if *name == "traffic" {
            let ts: std::collections::BTreeSet<String> = live
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| v["ts"].to_string())
                .collect();
            intervals = ts.len();
        }
    }
    assert!(
        intervals >= 2,
        "the replay spans {intervals} interval(s); want several"
    );
}

/// A trace-file source writes every packet the window's filter selects (`write_wait`: none
/// lost); `/trace` and `como trace` answer what tcpdump selects (no privileges needed).
#[test]
fn window_fed_by_a_file_source_answers_like_tcpdump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = trace("nDPI/teams.pcap");
    let wdir = dir.path().join("trace");
    let sources = daemon::file_source(&original, None);
    let modules = daemon::module("tcp_traffic", "traffic", "1d", "tcp")
        + &trace_section(&wdir, "filter = \"udp or arp\"");
    let cfg = daemon::write_config(dir.path(), "file.toml", &sources, &modules);
    let d = Daemon::start(&cfg, &[]);
    d.wait_done();
    for expr in ["", "port 53", "arp", "tcp"] {
        let want_expr = if expr.is_empty() {
            "udp or arp".to_owned()
        } else {
            format!("(udp or arp) and ({expr})")
        };
        let want = tcpdump_select(&original, &want_expr, 65535, dir.path());
        if expr != "tcp" {
            assert!(!want.is_empty(), "{want_expr}");
        }
        same_packets(expr, &trace_answer(&d, expr, "pcap"), &want);
    }
    // Every source consumed: the segment is closed and indexed while the daemon serves.
    let (closed, open) = segments(&wdir);
    assert!(open.is_empty() && closed.len() == 1, "{closed:?} {open:?}");
    assert_eq!(d.terminate(), Some(0));
    let out = dir.path().join("cli.pcap");
    let st = Command::new(daemon::como_bin())
        .args(["trace", "-c"])
        .arg(&cfg)
        .arg("-w")
        .arg(&out)
        .arg("port 53")
        .output()
        .expect("como trace");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    same_packets(
        "port 53 (como trace)",
        &read_packets("cli", std::fs::read(&out).expect("output")),
        &tcpdump_select(&original, "(udp or arp) and port 53", 65535, dir.path()),
    );
    // Restarted on the same file: the window resumes after what it holds (no packet twice).
    let d = Daemon::start(&cfg, &[]);
    d.wait_done();
    same_packets(
        "after a restart",
        &trace_answer(&d, "", "pcap"),
        &tcpdump_select(&original, "udp or arp", 65535, dir.path()),
    );
    assert_eq!(d.terminate(), Some(0));
}

/// Polls `/trace` for `expr` until it holds `n` packets or `timeout` passes (`None` while the
/// query server restarts).
fn wait_window_expr(d: &Daemon, expr: &str, n: usize, timeout: Duration) -> Vec<Pkt> {
    let t = Instant::now();
    loop {
        let got = live_common::try_get(d, "/status")
            .map(|_| trace_answer(d, expr, "pcapng"))
            .unwrap_or_default();
        if got.len() >= n || t.elapsed() > timeout {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two queues (native mode, one pinned worker each), a window filter the kernel only
/// over-approximates (`ip[8]`, the TTL, is re-checked in userspace), and a SIGHUP that
/// replaces the module set: the window keeps its rule and gets exactly tcpdump's packets,
/// once per replay.
#[test]
fn live_window_two_queues_flagged_filter_survives_reload() {
    let test = "live_window_two_queues_flagged_filter_survives_reload";
    let Some(lab) = Lab::with_queues(test, 2) else {
        return;
    };
    let original = trace("nDPI/teams.pcap");
    let wdir = lab.dir.path().join("trace");
    let wexpr = "udp and ip[8] < 100";
    let section = trace_section(&wdir, &format!("filter = \"{wexpr}\""));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let source = lab.source("mode = \"native\"\ncpus = [0, 1]");
    let module_a = daemon::module("a", "traffic", "1d", "tcp");
    let cfg = lab.config(
        "live.toml",
        &listen,
        &source,
        &format!("{module_a}{section}"),
    );
    let d = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "XDP not attached to {}", lab.veth.a);
    let want = sorted(tcpdump_select(&original, wexpr, 65535, lab.dir.path()));
    let udp = tcpdump_count(&original, "udp") as usize;
    assert!(
        !want.is_empty() && want.len() < udp,
        "{wexpr}: {} of {udp} udp packets",
        want.len()
    );
    lab.tcpreplay(&original, 4000);
    let got = wait_window_expr(&d, "", want.len(), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let got = if got.len() == want.len() {
        trace_answer(&d, "", "pcapng")
    } else {
        got
    };
    same_packets("(first replay)", &sorted(got), &want);
    // Both workers wrote into the window.
    let m = metrics(&d);
    let per_queue: Vec<f64> = ["0", "1"]
        .iter()
        .map(|q| {
            metric_sum(
                &m,
                "como_capture_packets_total",
                &[&format!("queue=\"{q}\"")],
            )
        })
        .collect();
    assert!(
        per_queue.iter().all(|&n| n > 0.0),
        "traffic on both queues: {per_queue:?}"
    );
    // Replace the module set (a → b on udp); the window goes on with its own rule.
    let module_b = daemon::module("b", "protocol", "1d", "udp");
    lab.config(
        "live.toml",
        &listen,
        &source,
        &format!("{module_b}{section}"),
    );
    d.signal("HUP");
    live_common::wait_module(&d, "b");
    lab.tcpreplay(&original, 4000);
    let twice = sorted(want.iter().chain(&want).cloned().collect());
    let got = wait_window_expr(&d, "", twice.len(), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let got = if got.len() == twice.len() {
        trace_answer(&d, "", "pcapng")
    } else {
        got
    };
    same_packets("(after the reload)", &sorted(got), &twice);
    // A query narrower than the window's filter, over both runs.
    let narrow = sorted(tcpdump_select(
        &original,
        &format!("({wexpr}) and port 53"),
        65535,
        lab.dir.path(),
    ));
    let narrow2 = sorted(narrow.iter().chain(&narrow).cloned().collect());
    same_packets(
        "port 53",
        &sorted(trace_answer(&d, "port 53", "pcap")),
        &narrow2,
    );
    let m = metrics(&d);
    assert_eq!(metric_sum(&m, "como_trace_drops_total", &[]), 0.0, "{m:?}");
    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    let (closed, open) = segments(&wdir);
    assert!(open.is_empty(), "segments left open: {open:?}");
    let in_segments: u64 = closed.iter().map(|p| tshark_count(p)).sum();
    assert_eq!(in_segments, twice.len() as u64, "packets tshark reads");
}

/// The window takes the kernel's last rule bit: 64 modules and a window do not fit, and the
/// daemon says so before it attaches anything (exit status 2, no privileges needed).
#[test]
fn live_window_and_64_modules_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut modules = String::new();
    for i in 0..64 {
        modules.push_str(&daemon::module(&format!("m{i}"), "traffic", "1s", "tcp"));
    }
    let source = "[[source]]\ntype = \"xdp\"\ninterface = \"como-no-such-if\"\n";
    let with = modules.clone() + &trace_section(&dir.path().join("trace"), "");
    let cfg = daemon::write_config(dir.path(), "64.toml", source, &with);
    let out = daemon::como(&["run", "-c", &cfg.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("at most 63 modules"), "{err}");
    assert!(
        !dir.path().join("trace").exists(),
        "the window was opened before the refusal"
    );
}

/// A tmpfs mounted for a test, unmounted when dropped (also on failure).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn new(parent: &Path, size: &str) -> Tmpfs {
        let dir = parent.join("small-disk");
        std::fs::create_dir(&dir).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount -t tmpfs failed");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The window on a 1 MiB tmpfs that two replays of a 0.7 MB trace overflow: the window stops
/// writing and says so (`como_trace_disk_full`, drops), the capture loses nothing and the
/// module counts every packet; what the window kept is readable by tshark and is made of the
/// trace's packets.
#[test]
fn live_window_disk_full_leaves_the_modules_alone() {
    let test = "live_window_disk_full_leaves_the_modules_alone";
    let Some(lab) = Lab::new(test) else { return };
    let disk = Tmpfs::new(lab.dir.path(), "1m");
    let original = trace("nDPI/teams.pcap");
    let total = tcpdump_count(&original, "");
    let modules =
        daemon::module("all", "traffic", "1d", "") + &trace_section(&disk.dir.join("trace"), "");
    let cfg = lab.config("live.toml", "127.0.0.1:0", &lab.source(""), &modules);
    let d = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "XDP not attached to {}", lab.veth.a);
    let mut sent = 0;
    for _ in 0..2 {
        sent += lab.tcpreplay(&original, 4000);
    }
    assert_eq!(sent, 2 * total, "tcpreplay sent");
    assert_captured_all(
        &d,
        sent,
        "capture loses nothing while the window's disk is full",
    );
    // The workers hand their last buffer over once idle: wait for the window's verdict.
    let t = Instant::now();
    let m = loop {
        let m = metrics(&d);
        let written = metric_sum(&m, "como_trace_packets_total", &[]);
        let dropped = metric_sum(&m, "como_trace_drops_total", &[]);
        if (written + dropped) as u64 >= sent || t.elapsed() > Duration::from_secs(10) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        metric_sum(&m, "como_trace_disk_full", &[]),
        1.0,
        "the window does not say the disk is full: {m:?}"
    );
    let full = metric_sum(&m, "como_trace_drops_total", &["reason=\"disk_full\""])
        + metric_sum(&m, "como_trace_drops_total", &["reason=\"disk_slow\""]);
    assert!(full > 0.0, "no window drop counted: {m:?}");
    let kept = trace_answer(&d, "", "pcap");
    assert!(
        !kept.is_empty() && (kept.len() as u64) < sent,
        "{} packets kept of {sent}",
        kept.len()
    );
    let originals: std::collections::HashSet<Vec<u8>> =
        tcpdump_select(&original, "", 65535, lab.dir.path())
            .into_iter()
            .map(|p| p.data)
            .collect();
    assert!(
        kept.iter().all(|p| originals.contains(&p.data)),
        "the window holds packets that were not sent"
    );
    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    for e in std::fs::read_dir(disk.dir.join("trace")).expect("window folder") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "pcapng") {
            tshark_count(&p);
        }
    }
    let r = reader(&lab, &daemon::module("all", "traffic", "1d", ""));
    let (code, body) = r.get("/all?time=-2d:+1d&format=json");
    assert_eq!(code, 200, "{body}");
    let pkts: u64 = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["pkts"].as_u64())
        .sum();
    assert_eq!(pkts, sent, "the module's packets");
}
