//! Overload (privileged): tiny UMEM and rings, a real trace sent at top speed in a loop with
//! `como send`. `/metrics` must show the losses by cause, and what the workers received plus
//! what was lost must account for every frame the XDP program redirected, which is every
//! frame sent.

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use std::time::{Duration, Instant};

use daemon::{trace, Daemon};
use live_common::{metric_sum, metrics, Lab};

#[test]
fn live_overload_counts_drops_by_cause() {
    let Some(lab) = Lab::new("live_overload_counts_drops_by_cause") else {
        return;
    };
    let modules = "[[module]]\nname = \"traffic\"\nkind = \"traffic\"\ninterval = \"1s\"\n\
                   [[module]]\nname = \"tuple\"\nkind = \"tuple\"\ninterval = \"1s\"\n";
    let cfg = lab.config(
        "over.toml",
        "127.0.0.1:0",
        &lab.source("frames = 64\nrx_ring = 64\nfill_ring = 64"),
        modules,
    );
    let d = Daemon::start(&cfg, &[]);
    let path = trace("nDPI/teams.pcap");
    let sent = lab.como_send(&path, &["--topspeed", "--loop", "30"]);
    assert_eq!(sent, 1540 * 30);
    // Every redirected frame is either received or counted lost.
    let t = Instant::now();
    let (m, received, lost) = loop {
        let m = metrics(&d);
        let dev = format!("device=\"{}\"", lab.veth.a);
        let received = metric_sum(&m, "como_capture_packets_total", &[&dev]) as u64;
        let reason = |r: &str| {
            metric_sum(
                &m,
                "como_capture_drops_total",
                &[&dev, &format!("reason=\"{r}\"")],
            ) as u64
        };
        // fill_ring_empty counts the same events as rx_dropped in copy mode: not added.
        let lost = reason("rx_dropped") + reason("rx_ring_full") + reason("redirect_failed");
        if received + lost >= sent || t.elapsed() > Duration::from_secs(15) {
            break (m, received, lost);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seen = metric_sum(&m, "como_xdp_packets_total", &["action=\"seen\""]) as u64;
    let redirected = metric_sum(&m, "como_xdp_packets_total", &["action=\"redirected\""]) as u64;
    assert_eq!(seen, sent, "the XDP program saw every frame sent: {m:?}");
    assert_eq!(redirected, sent, "every frame matched a module: {m:?}");
    assert!(lost > 0, "no loss at top speed with 64-frame rings: {m:?}");
    assert!(received > 0, "nothing received: {m:?}");
    assert_eq!(
        received + lost,
        sent,
        "received {received} + lost {lost} != sent {sent}: {m:?}"
    );
    // The modules saw what the workers received.
    assert_eq!(
        metric_sum(&m, "como_module_packets_total", &["module=\"traffic\""]) as u64,
        received
    );
    assert_eq!(d.terminate(), Some(0));
}
