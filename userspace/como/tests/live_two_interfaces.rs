//! Two `xdp` sources in one node, as on a network TAP that delivers each direction of a link on
//! its own port (privileged): two veth pairs, the daemon captures on one end of each; a real
//! trace is split by direction (the frames of its busiest source MAC address to one interface,
//! every other frame to the other, written as two pcap files) and both halves are replayed at a
//! paced rate with `como send`, both at once. With zero loss, the modules that do not depend on how the two
//! interfaces interleave (traffic, protocol, topaddr, tuple per flow, one-day intervals) store
//! what `como inline` gives on the whole trace; `/metrics` counts each interface under its own
//! device; `POST /reload` (adding a module before the replay) installs the new tables into both
//! programs, so the added module sees both directions too. The trace window's kernel rule is in
//! both programs: with modules on `tcp` and the window on `udp`, the window holds exactly the
//! UDP packets of both directions.

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use como_tests::netns::VethPair;
use como_tracefile::PcapWriter;
use daemon::{trace, Daemon};
use live_common::{
    assert_captured_all, assert_live_equals_inline, metric_sum, post, reader, sorted,
    tcpdump_count, tcpdump_select, trace_answer, wait_captured, wait_window, Lab,
};

/// (name, kind, `como inline` args, `[module.args]` TOML, filter).
const MODULES: &[(&str, &str, &str, &str, &str)] = &[
    ("traffic", "traffic", "", "", ""),
    ("traffic_tcp", "traffic", "", "", "tcp"),
    ("protocol", "protocol", "", "", ""),
    ("topaddr", "topaddr", "topn=5,", "topn = 5", "ip or ip6"),
    ("tuple", "tuple", "", "", "tcp or udp"),
];

/// The module the reload adds.
const ADDED: (&str, &str, &str, &str, &str) = ("udp", "traffic", "", "", "udp");

fn modules_toml(modules: &[(&str, &str, &str, &str, &str)]) -> String {
    let mut s = String::new();
    for (name, kind, _, args, filter) in modules {
        s.push_str(&format!(
            "[[module]]\nname = \"{name}\"\nkind = \"{kind}\"\ninterval = \"1d\"\nfilter = \"{filter}\"\n"
        ));
        if !args.is_empty() {
            s.push_str(&format!("[module.args]\n{args}\n"));
        }
    }
    s
}

/// Splits `trace` by direction: the frames whose Ethernet source is the trace's most frequent
/// one (one side of the link) to `one`, the others to `other`; the two counts.
fn split_by_direction(trace: &Path, one: &Path, other: &Path) -> (u64, u64) {
    let t = como_tests::load_trace(trace).expect("trace");
    let src = |d: &[u8]| -> [u8; 6] {
        let mut m = [0; 6];
        if let Some(s) = d.get(6..12) {
            m.copy_from_slice(s);
        }
        m
    };
    let mut seen: HashMap<[u8; 6], u64> = HashMap::new();
    for p in &t.packets {
        *seen.entry(src(&p.data)).or_default() += 1;
    }
    let side = seen
        .iter()
        .max_by_key(|(mac, n)| (**n, **mac))
        .map(|(mac, _)| *mac)
        .expect("a packet");
    let create = |p: &Path| {
        PcapWriter::new(
            std::io::BufWriter::new(std::fs::File::create(p).expect("create")),
            t.link,
            65535,
            true,
        )
        .expect("pcap header")
    };
    let (mut a, mut b) = (create(one), create(other));
    let (mut na, mut nb) = (0, 0);
    for p in &t.packets {
        if src(&p.data) == side {
            a.write_packet(&p.view()).expect("write");
            na += 1;
        } else {
            b.write_packet(&p.view()).expect("write");
            nb += 1;
        }
    }
    a.into_inner().expect("flush");
    b.into_inner().expect("flush");
    (na, nb)
}

/// nDPI/teams.pcap and its two directions written into the lab's folder (as
/// [`split_by_direction`]): (whole, one, other, packets of one, packets of other).
fn halves(lab: &Lab) -> (PathBuf, PathBuf, PathBuf, u64, u64) {
    let whole = trace("nDPI/teams.pcap");
    let one = lab.dir.path().join("one.pcap");
    let other = lab.dir.path().join("other.pcap");
    let (n_one, n_other) = split_by_direction(&whole, &one, &other);
    (whole, one, other, n_one, n_other)
}

#[test]
fn live_two_interfaces_of_a_tap_equal_inline_on_the_whole_trace() {
    let test = "live_two_interfaces_of_a_tap_equal_inline_on_the_whole_trace";
    let Some(lab) = Lab::new(test) else { return };
    // The second port: another veth pair between the same namespaces (dropped before them).
    let veth2 = VethPair::new(&lab.cap, Some(&lab.gen)).expect("second veth pair");
    let (whole, one, other, n_one, n_other) = halves(&lab);
    assert!(n_one > 100 && n_other > 100, "halves {n_one} / {n_other}");

    let second = format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"{}\"\nnetns = \"{}\"\n",
        veth2.a,
        lab.cap.name()
    );
    let sources = format!("{}{second}", lab.source(""));
    let cfg = lab.config("live.toml", "127.0.0.1:0", &sources, &modules_toml(MODULES));
    let d = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "XDP not attached to {}", lab.veth.a);
    let attached2 = lab
        .cap
        .ip(&["link", "show", "dev", &veth2.a])
        .expect("ip link");
    assert!(attached2.contains("xdp"), "XDP not attached to {}", veth2.a);

    // A reload before the traffic: the added module's filter must reach both programs.
    let mut all: Vec<_> = MODULES.to_vec();
    all.push(ADDED);
    lab.config("live.toml", "127.0.0.1:0", &sources, &modules_toml(&all));
    let (code, body) = post(&d, "/reload");
    assert_eq!(code, 200, "reload: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("reload JSON");
    assert_eq!(report["added"], serde_json::json!(["udp"]), "{body}");

    // Both directions at once, as a TAP delivers them.
    let (sent_one, sent_other) = std::thread::scope(|s| {
        let a = s.spawn(|| lab.como_send_on(&lab.veth.b, &one, &["--pps", "3000"]));
        let b = s.spawn(|| lab.como_send_on(&veth2.b, &other, &["--pps", "3000"]));
        (a.join().expect("send one"), b.join().expect("send other"))
    });
    assert_eq!((sent_one, sent_other), (n_one, n_other), "sent");
    let sent = sent_one + sent_other;
    let m = assert_captured_all(&d, sent, "packets captured (zero loss at a paced rate)");
    // Each interface under its own device, its program's counters included.
    for (dev, n) in [(&lab.veth.a, n_one), (&veth2.a, n_other)] {
        let device = format!("device=\"{dev}\"");
        assert_eq!(
            metric_sum(&m, "como_capture_packets_total", &[&device]) as u64,
            n,
            "{dev}: {m:?}"
        );
        assert_eq!(
            metric_sum(&m, "como_xdp_packets_total", &[&device, "action=\"seen\""]) as u64,
            n,
            "{dev}: XDP saw {m:?}"
        );
    }
    let (code, status) = d.get("/status");
    assert_eq!(code, 200);
    for dev in [&lab.veth.a, &veth2.a] {
        assert!(status.contains(&format!("xdp:{dev}")), "{dev}: {status}");
    }

    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    assert!(!lab.xdp_attached(), "XDP still attached after SIGTERM");
    let still = lab
        .cap
        .ip(&["link", "show", "dev", &veth2.a])
        .expect("ip link");
    assert!(!still.contains("xdp"), "XDP still attached to {}", veth2.a);

    let r = reader(&lab, &modules_toml(&all));
    for (name, kind, args, _, filter) in &all {
        let offline = assert_live_equals_inline(&r, &whole, (name, kind, args, filter), "");
        assert!(!offline.is_empty(), "{name}: no offline record");
    }
    drop(veth2);
}

#[test]
fn live_two_interfaces_one_missing_fails_and_detaches_the_other() {
    let test = "live_two_interfaces_one_missing_fails_and_detaches_the_other";
    let Some(lab) = Lab::new(test) else { return };
    // The first source attaches; the second names an interface that does not exist.
    let second = format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"nosuchif0\"\nnetns = \"{}\"\n",
        lab.cap.name()
    );
    let sources = format!("{}{second}", lab.source(""));
    let cfg = lab.config("live.toml", "127.0.0.1:0", &sources, &modules_toml(MODULES));
    let out = daemon::como(&["run", "-c", &cfg.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "como run with a missing interface: {stderr}"
    );
    assert!(
        stderr.contains("nosuchif0"),
        "the error names the interface: {stderr}"
    );
    assert!(
        !lab.xdp_attached(),
        "XDP left attached to {} after the start failed",
        lab.veth.a
    );
}

#[test]
fn live_two_interfaces_window_gets_both_directions() {
    let test = "live_two_interfaces_window_gets_both_directions";
    let Some(lab) = Lab::new(test) else { return };
    let veth2 = VethPair::new(&lab.cap, Some(&lab.gen)).expect("second veth pair");
    let (whole, one, other, _, _) = halves(&lab);
    let second = format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"{}\"\nnetns = \"{}\"\n",
        veth2.a,
        lab.cap.name()
    );
    let sources = format!("{}{second}", lab.source(""));
    let snaplen = 128;
    let modules = format!(
        "{}[trace]\npath = \"{}\"\nfilter = \"udp\"\nsnaplen = {snaplen}\n",
        modules_toml(&[("tcp", "traffic", "", "", "tcp")]),
        lab.dir.path().join("trace").display()
    );
    let cfg = lab.config("live.toml", "127.0.0.1:0", &sources, &modules);
    let d = Daemon::start(&cfg, &[]);
    std::thread::scope(|s| {
        s.spawn(|| lab.como_send_on(&lab.veth.b, &one, &["--pps", "3000"]));
        s.spawn(|| lab.como_send_on(&veth2.b, &other, &["--pps", "3000"]));
    });
    let (tcp, udp) = (tcpdump_count(&whole, "tcp"), tcpdump_count(&whole, "udp"));
    // Redirected to the workers by either program: what the module or the window wants.
    let m = wait_captured(&d, tcp + udp, Duration::from_secs(20));
    assert_eq!(
        metric_sum(&m, "como_capture_packets_total", &[]) as u64,
        tcp + udp,
        "packets redirected (module: tcp, window: udp) {m:?}"
    );
    assert_eq!(
        metric_sum(&m, "como_capture_drops_total", &[]),
        0.0,
        "{m:?}"
    );
    let got = wait_window(&d, udp as usize, Duration::from_secs(20));
    assert_eq!(got as u64, udp, "window packets");
    // The two interfaces interleave in the window: compare as sorted sets of packets.
    let want = sorted(tcpdump_select(&whole, "udp", snaplen, lab.dir.path()));
    let have = sorted(trace_answer(&d, "", "pcap"));
    assert!(
        have == want,
        "the window differs from tcpdump's udp packets"
    );
    assert_eq!(d.terminate(), Some(0), "daemon exit status");
    drop(veth2);
}
