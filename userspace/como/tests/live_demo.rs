//! `como demo` (privileged), the README's main command: it attaches to a veth pair of its own,
//! replays generated traffic, answers queries with live records while it runs (and 409 to a
//! reload: it has no configuration file), and removes its namespaces when it stops.

#[expect(dead_code, reason = "the daemon helpers serve several test files")]
mod daemon;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::como_bin;

fn get(url: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(url).call().ok()?;
    let mut body = String::new();
    resp.body_mut().as_reader().read_to_string(&mut body).ok()?;
    Some((resp.status().as_u16(), body))
}

#[test]
fn live_demo_serves_live_records_and_cleans_up() {
    if !como_tests::netns::privileged("live_demo_serves_live_records_and_cleans_up") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(como_bin())
        .args(["demo", "--duration", "10", "--pps", "3000", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("como demo");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let lines =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    // Live records while it runs.
    let t = Instant::now();
    let mut pkts = 0;
    while t.elapsed() < Duration::from_secs(7) && pkts == 0 {
        std::thread::sleep(Duration::from_millis(300));
        if let Some((200, body)) = get(&format!("{base}/web?time=-1m:0&format=csv")) {
            pkts = body
                .lines()
                .skip(1)
                .filter_map(|l| l.split(',').nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    assert!(pkts > 0, "no web traffic counted while the demo ran");
    // The demo runs an embedded configuration, no file to read again: a reload is refused.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(format!("{base}/reload"))
        .send_empty()
        .expect("POST /reload");
    assert_eq!(resp.status().as_u16(), 409, "POST /reload on the demo");
    let status = child.wait().expect("wait");
    assert!(status.success(), "como demo: {status}");
    let lines = lines.join().expect("stderr reader");
    let text = lines.join("\n");
    assert!(text.contains("curl '"), "no queries printed:\n{text}");
    assert!(text.contains("removed"), "{text}");
    // Its namespaces are gone.
    let ns: Vec<&str> = text
        .split("namespace ")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .collect();
    assert_eq!(ns.len(), 2, "{text}");
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let list = String::from_utf8_lossy(&list.stdout);
    for n in ns {
        assert!(!list.contains(n), "namespace {n} left behind:\n{list}");
    }
}
