//! End to end on a veth pair in network namespaces (privileged): `como run` captures with XDP +
//! AF_XDP on one end while a real trace is replayed from the other (tcpreplay, and the
//! project's own `como send`) at a paced rate; with zero loss, every module's records over
//! HTTP equal `como inline` on the same trace, record by record (timestamps aside: wall clock
//! live, the trace's time offline). One-day intervals put the whole replay in one interval.

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use daemon::{trace, Daemon};
use live_common::{assert_captured_all, assert_live_equals_inline, metric_sum, reader, Lab};

/// (name, kind, `como inline` args, `[module.args]` TOML, filter).
const MODULES: &[(&str, &str, &str, &str, &str)] = &[
    ("traffic_tcp", "traffic", "", "", "tcp"),
    ("protocol", "protocol", "", "", ""),
    ("application", "application", "", "", "udp or tcp port 443"),
    ("topaddr", "topaddr", "topn=5,", "topn = 5", "ip or ip6"),
    ("topports", "topports", "topn=5,", "topn = 5", ""),
    ("ethtypes", "ethtypes", "", "", ""),
    ("flowcount", "flowcount", "", "", "not arp"),
    ("tuple", "tuple", "", "", "tcp or udp"),
    ("syn", "traffic", "", "", "tcp[tcpflags] & tcp-syn != 0"),
    (
        "dns",
        "traffic",
        "",
        "",
        "udp port 53 and not host 192.168.1.2",
    ),
];

fn modules_toml() -> String {
    let mut s = String::new();
    for (name, kind, _, args, filter) in MODULES {
        s.push_str(&format!(
            "[[module]]\nname = \"{name}\"\nkind = \"{kind}\"\ninterval = \"1d\"\nfilter = \"{filter}\"\n"
        ));
        if !args.is_empty() {
            s.push_str(&format!("[module.args]\n{args}\n"));
        }
    }
    s
}

/// Replays `file` with `send` while the daemon captures, checks zero loss, then compares every
/// module with `como inline`.
fn live_equals_inline(test: &str, file: &str, send: &dyn Fn(&Lab, &std::path::Path) -> u64) {
    let Some(lab) = Lab::new(test) else { return };
    live_equals_inline_in(&lab, "", &trace(file), send);
}

/// [`live_equals_inline`] in `lab`, with `extra` lines in the source; the metrics at the end.
fn live_equals_inline_in(
    lab: &Lab,
    extra: &str,
    path: &std::path::Path,
    send: &dyn Fn(&Lab, &std::path::Path) -> u64,
) -> std::collections::BTreeMap<String, f64> {
    let path = path.to_path_buf();
    let file = path.display();
    let want_packets = como_tests::load_trace(&path).expect("trace").packets.len() as u64;
    let modules = modules_toml();
    let cfg = lab.config("live.toml", "127.0.0.1:0", &lab.source(extra), &modules);
    let d = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "XDP not attached to {}", lab.veth.a);
    let sent = send(lab, &path);
    assert_eq!(sent, want_packets, "{file}: sender sent");
    let m = assert_captured_all(
        &d,
        sent,
        &format!("{file}: packets captured (zero loss at a paced rate)"),
    );
    assert_eq!(
        metric_sum(&m, "como_xdp_packets_total", &["action=\"seen\""]) as u64,
        sent,
        "{file}: XDP saw"
    );
    // Stop (flush and store every open interval), then read the stored records.
    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    assert!(!lab.xdp_attached(), "XDP still attached after SIGTERM");
    let r = reader(lab, &modules);
    for (name, kind, args, _, filter) in MODULES {
        let offline =
            assert_live_equals_inline(&r, &path, (name, kind, args, filter), &format!("{file}: "));
        if *name == "protocol" {
            assert!(!offline.is_empty(), "{file}: {name}: no offline record");
        }
    }
    m
}

#[test]
fn live_tcpreplay_results_equal_inline() {
    for file in ["nDPI/teams.pcap", "zeek/workshop_2011_browse.pcap"] {
        live_equals_inline("live_tcpreplay_results_equal_inline", file, &|lab, p| {
            lab.tcpreplay(p, 4000)
        });
    }
}

#[test]
fn live_como_send_results_equal_inline() {
    live_equals_inline(
        "live_como_send_results_equal_inline",
        "nDPI/teams.pcap",
        &|lab, p| lab.como_send(p, &["--pps", "4000"]),
    );
}

/// Writes the demo's generated traffic to `path` (`como demo --write PATH ARGS...`).
fn write_generated(path: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(daemon::como_bin())
        .args(["demo", "--write"])
        .arg(path)
        .args(args)
        .output()
        .expect("como demo --write");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Traffic written for this run, not a bundled trace: the demo's generator (IPv4 and IPv6,
/// TCP flows, DNS, ICMP, VLAN tags, ARP ...) with seeds drawn from the clock, printed so a
/// failure can be replayed with `COMO_TEST_SEEDS`.
#[test]
fn live_generated_traffic_results_equal_inline() {
    let test = "live_generated_traffic_results_equal_inline";
    let seeds: Vec<u64> = match std::env::var("COMO_TEST_SEEDS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            vec![now % 1_000_003]
        }
    };
    let dir = tempfile::tempdir().expect("tmp");
    for seed in seeds {
        eprintln!("{test}: seed {seed} (COMO_TEST_SEEDS={seed} to replay)");
        let path = dir.path().join(format!("generated-{seed}.pcap"));
        write_generated(&path, &["--seed", &seed.to_string(), "--frames", "3000"]);
        // A fresh lab (namespaces, database) per seed.
        let Some(lab) = Lab::new(test) else { return };
        live_equals_inline_in(&lab, "", &path, &|lab, p| {
            lab.como_send(p, &["--pps", "4000"])
        });
    }
}

/// Jumbo frames: a veth of MTU 9000, native XDP (the program is multi-buffer aware, so the
/// driver accepts it at that MTU) or generic XDP, and multi-buffer AF_XDP sockets: generated traffic whose full
/// TCP segments fill the MTU (frames up to 9014 bytes, several UMEM frames each) is captured
/// whole, without loss or drop, and every module's records equal `como inline` on the file.
#[test]
fn live_jumbo_frames_equal_inline() {
    let test = "live_jumbo_frames_equal_inline";
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("jumbo.pcap");
    write_generated(
        &path,
        &["--seed", "11", "--frames", "2000", "--mtu", "9000"],
    );
    let trace = como_tests::load_trace(&path).expect("generated trace");
    let jumbo = trace.packets.iter().filter(|p| p.data.len() > 4096).count();
    assert!(jumbo > 100, "{jumbo} frames longer than a UMEM frame");
    // Native: the program sees the first buffer of a frame; skb (generic XDP): a frame as the
    // stack built it, possibly a short head and page fragments.
    for mode in ["native", "skb"] {
        let Some(lab) = Lab::new(test) else { return };
        for (ns, iface) in [(&lab.cap, &lab.veth.a), (&lab.gen, &lab.veth.b)] {
            ns.ip(&["link", "set", iface, "mtu", "9000"])
                .expect("mtu 9000");
        }
        let m = live_equals_inline_in(&lab, &format!("mode = \"{mode}\""), &path, &|lab, p| {
            lab.como_send(p, &["--pps", "3000"])
        });
        assert_eq!(
            metric_sum(&m, "como_capture_bytes_total", &[]) as usize,
            trace.packets.iter().map(|p| p.data.len()).sum::<usize>(),
            "{mode}: every byte of every frame captured"
        );
    }
}

#[test]
fn live_two_queues_two_pinned_workers_equal_inline() {
    let test = "live_two_queues_two_pinned_workers_equal_inline";
    let Some(lab) = Lab::with_queues(test, 2) else {
        return;
    };
    // Native mode: veth spreads flows over its two RX queues; one worker per queue, pinned.
    let m = live_equals_inline_in(
        &lab,
        "mode = \"native\"\ncpus = [0, 1]",
        &trace("nDPI/teams.pcap"),
        &|lab, p| lab.tcpreplay(p, 4000),
    );
    for q in ["0", "1"] {
        let n = metric_sum(
            &m,
            "como_capture_packets_total",
            &[&format!("queue=\"{q}\"")],
        );
        assert!(n > 0.0, "queue {q} received nothing: {m:?}");
    }
    assert!(m
        .keys()
        .any(|k| k.contains("como_worker_busy_ratio{worker=\"1\"}")));
}
