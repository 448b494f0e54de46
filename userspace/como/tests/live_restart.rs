//! kill -9, then restart (privileged): a daemon capturing on a veth end is killed with SIGKILL
//! in the middle of a run; a new daemon on the same configuration and databases attaches
//! cleanly, captures the next replay without loss, and both runs' records are there.

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use std::time::Duration;

use daemon::{trace, Daemon};
use live_common::{http_records, metric_sum, reader, wait_captured, Lab};

#[test]
fn live_kill_9_then_restart_attaches_cleanly() {
    let Some(lab) = Lab::new("live_kill_9_then_restart_attaches_cleanly") else {
        return;
    };
    let modules = "[[module]]\nname = \"traffic\"\nkind = \"traffic\"\ninterval = \"1s\"\n";
    let cfg = lab.config("live.toml", "127.0.0.1:0", &lab.source(""), modules);
    let path = trace("nDPI/teams.pcap");

    let mut first = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached());
    let sent = lab.como_send(&path, &["--pps", "5000"]);
    let m = wait_captured(&first, sent, Duration::from_secs(20));
    assert_eq!(
        metric_sum(&m, "como_capture_packets_total", &[]) as u64,
        sent
    );
    // Let some intervals be stored, then SIGKILL: no flush, no detach by the daemon.
    std::thread::sleep(Duration::from_millis(1500));
    first.child.kill().expect("kill -9");
    first.child.wait().expect("wait");
    drop(first);

    let second = Daemon::start(&cfg, &[]);
    assert!(lab.xdp_attached(), "not attached after restart");
    let sent2 = lab.como_send(&path, &["--pps", "5000"]);
    let m = wait_captured(&second, sent2, Duration::from_secs(20));
    assert_eq!(
        metric_sum(&m, "como_capture_packets_total", &[]) as u64,
        sent2,
        "restarted daemon lost packets: {m:?}"
    );
    assert_eq!(
        metric_sum(&m, "como_capture_drops_total", &[]),
        0.0,
        "{m:?}"
    );
    assert_eq!(second.terminate(), Some(0));
    assert!(!lab.xdp_attached(), "still attached after SIGTERM");

    // The first run's stored intervals survived the SIGKILL; the second run's are there too.
    let r = reader(&lab, modules);
    let pkts: u64 = http_records(&r, "traffic")
        .iter()
        .filter_map(|v| v["pkts"].as_u64())
        .sum();
    assert!(
        pkts > sent2 && pkts <= sent + sent2,
        "stored {pkts} packets; first run {sent}, second {sent2}"
    );
}

#[test]
fn live_restart_within_an_interval_keeps_both_runs() {
    let Some(lab) = Lab::new("live_restart_within_an_interval_keeps_both_runs") else {
        return;
    };
    // One-day intervals: both runs fall in the same interval.
    let modules = "[[module]]\nname = \"traffic\"\nkind = \"traffic\"\ninterval = \"1d\"\n";
    let cfg = lab.config("live.toml", "127.0.0.1:0", &lab.source(""), modules);
    let path = trace("nDPI/teams.pcap");
    let mut total = 0;
    for run in 0..2 {
        let d = Daemon::start(&cfg, &[]);
        let sent = lab.como_send(&path, &["--pps", "5000"]);
        let m = wait_captured(&d, sent, Duration::from_secs(20));
        assert_eq!(
            metric_sum(&m, "como_capture_packets_total", &[]) as u64,
            sent,
            "run {run}"
        );
        total += sent;
        assert_eq!(d.terminate(), Some(0));
    }
    let r = reader(&lab, modules);
    let recs = http_records(&r, "traffic");
    let pkts: u64 = recs.iter().filter_map(|v| v["pkts"].as_u64()).sum();
    assert_eq!(
        pkts, total,
        "the second run's record was dropped as already stored: {recs:?}"
    );
}
