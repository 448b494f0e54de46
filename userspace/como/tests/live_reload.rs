//! Replacing the module set while traffic flows (privileged): `como send` loops a real trace
//! (TCP and UDP) through the veth pair; the configuration's module `a` (`protocol`, filter
//! `udp`) is replaced by `b` (`protocol`, filter `tcp`) with SIGHUP. `b` takes `a`'s rule bit in
//! the kernel tables, so a frame classified under the old tables but counted by the new module
//! set would put UDP into `b`; none may: `a`'s records hold only UDP, `b`'s only TCP. The
//! program is not reloaded (same kernel program id). The module `all` (`traffic`), unchanged
//! by the reload, goes on through it: one record per interval, the interval open at the
//! reload included (not one per module set).

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;
#[allow(dead_code, reason = "each live test file uses a part of the helpers")]
mod live_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{como_bin, trace, Daemon};
use live_common::{http_records, metric_sum, metrics, reader, try_get, Lab};

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
    // A fixed port: the query server restarts over the new module set.
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
    let pid = d.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    let t = Instant::now();
    loop {
        let (code, body) = try_get(&d, "/modules").unwrap_or_default();
        if code == 200 && body.contains("\"b\"") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "reload not seen: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
