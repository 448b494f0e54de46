//! Shared by the live capture tests (`live_*.rs`): a lab of two network namespaces joined by a
//! veth pair (the daemon captures on end `a` in `cap`, traffic comes from end `b` in `gen`), the
//! configuration of an `xdp` source, `/metrics` parsing, the normalised JSON records of a
//! module over HTTP and of `como inline`, and the packets of the trace window (`/trace`) next to
//! tcpdump's selection.
//!
//! Everything a test creates has a unique name and is removed when the [`Lab`] drops (also on
//! failure). Without root the tests skip with a printed reason, and fail under
//! `COMO_REQUIRE_PRIVILEGED=1` (`como_tests::netns::privileged`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use como_tests::netns::{privileged, NetNs, VethPair};

use crate::daemon::{como_bin, Daemon};

/// Two namespaces, a veth pair, a temporary folder.
pub struct Lab {
    /// The folder for configurations and databases.
    pub dir: tempfile::TempDir,
    /// The veth pair (dropped before the namespaces).
    pub veth: VethPair,
    /// The daemon's side.
    pub cap: NetNs,
    /// The traffic's side.
    pub gen: NetNs,
}

impl Lab {
    /// A new lab, or `None` when privileged tests cannot run here (skipped, or a failure under
    /// `COMO_REQUIRE_PRIVILEGED=1`).
    pub fn new(test: &str) -> Option<Lab> {
        Self::with_queues(test, 1)
    }

    /// [`Lab::new`] with `queues` RX/TX queues on each veth end (native XDP on veth spreads
    /// flows over them).
    pub fn with_queues(test: &str, queues: u32) -> Option<Lab> {
        if !privileged(test) {
            return None;
        }
        let cap = NetNs::new("lcap").expect("netns");
        let gen = NetNs::new("lgen").expect("netns");
        let veth = VethPair::with_queues(&cap, Some(&gen), queues).expect("veth pair");
        Some(Lab {
            dir: tempfile::tempdir().expect("tempdir"),
            veth,
            cap,
            gen,
        })
    }

    /// The `[[source]]` of an xdp source on the capture end, plus `extra` TOML lines.
    pub fn source(&self, extra: &str) -> String {
        format!(
            "[[source]]\ntype = \"xdp\"\ninterface = \"{}\"\nnetns = \"{}\"\n{extra}\n",
            self.veth.a,
            self.cap.name()
        )
    }

    /// Writes a configuration (database in the lab's folder, `listen`) and returns its path.
    pub fn config(&self, name: &str, listen: &str, sources: &str, modules: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!(
            "[node]\ndb_path = \"{}\"\n[query]\nlisten = \"{listen}\"\n{sources}\n{modules}\n",
            self.dir.path().join("db").display()
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// `tcpreplay` of `trace` from the traffic end at `pps`; the packets it sent.
    pub fn tcpreplay(&self, trace: &Path, pps: u64) -> u64 {
        let out = self
            .gen
            .exec(
                "tcpreplay",
                &[
                    "-i",
                    &self.veth.b,
                    "--pps",
                    &pps.to_string(),
                    &trace.to_string_lossy(),
                ],
            )
            .expect("tcpreplay");
        let text = String::from_utf8_lossy(&out.stdout);
        let sent = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Actual: ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or_else(|| panic!("tcpreplay output: {text}"));
        let failed = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Failed packets:"))
            .map(str::trim);
        assert_eq!(failed, Some("0"), "{text}");
        sent
    }

    /// `como send` of `trace` from the traffic end with `args` (`--pps N`, `--topspeed`,
    /// `--loop N`); the frames it reported sent.
    pub fn como_send(&self, trace: &Path, args: &[&str]) -> u64 {
        self.como_send_on(&self.veth.b, trace, args)
    }

    /// [`Lab::como_send`] out of interface `iface` of the traffic side (another veth pair's
    /// end).
    pub fn como_send_on(&self, iface: &str, trace: &Path, args: &[&str]) -> u64 {
        let out = Command::new(como_bin())
            .args(["send", "-i", iface, "--netns", self.gen.name(), "-r"])
            .arg(trace)
            .args(args)
            .output()
            .expect("como send");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "como send: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("como send output: {text}"))
    }

    /// Whether an XDP program is attached to the capture end (`ip link` shows `xdp`).
    pub fn xdp_attached(&self) -> bool {
        let out = self
            .cap
            .ip(&["link", "show", "dev", &self.veth.a])
            .expect("ip link");
        out.contains("xdp")
    }
}

/// GET `path_query` from the daemon; `None` when it does not answer (e.g. its query server
/// is restarting over a new module set).
pub fn try_get(d: &Daemon, path_query: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&format!("{}{path_query}", d.url())).call().ok()?;
    let mut body = String::new();
    resp.body_mut().as_reader().read_to_string(&mut body).ok()?;
    Some((resp.status().as_u16(), body))
}

/// `/metrics` as `series -> value` (series = name plus labels as printed).
pub fn metrics(d: &Daemon) -> BTreeMap<String, f64> {
    let (code, body) = d.get("/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Sum of the series of metric `name` whose labels contain every `label="value"` of `with`.
pub fn metric_sum(m: &BTreeMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name) && with.iter().all(|w| k.contains(w)))
        .map(|(_, v)| *v)
        .sum()
}

/// POST `path` to the daemon: status and body.
pub fn post(d: &Daemon, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&format!("{}{path}", d.url()))
        .send_empty()
        .expect("POST");
    let body = resp.body_mut().read_to_string().expect("body");
    (resp.status().as_u16(), body)
}

/// Waits (20 s at most) until the daemon captured `sent` packets, then asserts it captured
/// exactly that many and dropped none (`what` says why loss would be wrong); the metrics.
pub fn assert_captured_all(d: &Daemon, sent: u64, what: &str) -> BTreeMap<String, f64> {
    let m = wait_captured(d, sent, Duration::from_secs(20));
    assert_eq!(
        metric_sum(&m, "como_capture_packets_total", &[]) as u64,
        sent,
        "{what}: {m:?}"
    );
    assert_eq!(
        metric_sum(&m, "como_capture_drops_total", &[]),
        0.0,
        "{what}: drops {m:?}"
    );
    m
}

/// Waits (10 s at most) until `/modules` lists a module named `name` (a reload took effect).
pub fn wait_module(d: &Daemon, name: &str) {
    let t = Instant::now();
    let quoted = format!("\"{name}\"");
    loop {
        let (code, body) = try_get(d, "/modules").unwrap_or_default();
        if code == 200 && body.contains(&quoted) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "reload not seen: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `/metrics` until `como_capture_packets_total` reaches `n` (or `timeout`); the last
/// metrics.
pub fn wait_captured(d: &Daemon, n: u64, timeout: Duration) -> BTreeMap<String, f64> {
    let t = Instant::now();
    loop {
        let m = metrics(d);
        let got = metric_sum(&m, "como_capture_packets_total", &[]) as u64;
        if got >= n || t.elapsed() > timeout {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drops the time-dependent fields of a record (`ts`, `first`, `last`: wall clock live, the
/// trace's own time offline).
pub fn normalise(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["ts", "first", "last"] {
            o.remove(k);
        }
    }
    v
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| normalise(serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))))
        .collect()
}

/// A module's stored records over HTTP (JSON lines), normalised.
pub fn http_records(d: &Daemon, module: &str) -> Vec<serde_json::Value> {
    let (code, body) = d.get(&format!("/{module}?time=-2d:+1d&format=json"));
    assert_eq!(code, 200, "{module}: {body}");
    json_lines(&body)
}

/// Asserts that module `name` (`kind`, `como inline` args `args` ending in `,` or empty,
/// `filter`) stored live what `como inline` computes over `trace` with one-day intervals,
/// record by record (`tuple` per flow: the order of flows that start together depends on the
/// batching and on the interleaving of several interfaces). `what` starts the message. Returns
/// the offline records.
pub fn assert_live_equals_inline(
    r: &Daemon,
    trace: &Path,
    (name, kind, args, filter): (&str, &str, &str, &str),
    what: &str,
) -> Vec<serde_json::Value> {
    let mut live = http_records(r, name);
    let mut offline = inline_records(trace, &format!("{kind}:{args}interval=1d"), filter);
    if kind == "tuple" {
        let key = |v: &serde_json::Value| v.to_string();
        live.sort_by_key(key);
        offline.sort_by_key(key);
    }
    let differ: Vec<_> = live
        .iter()
        .zip(&offline)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .take(3)
        .collect();
    assert!(
        live.len() == offline.len() && differ.is_empty(),
        "{what}module {name} ({filter}): live {} records, como inline {}; first differences {differ:?}",
        live.len(),
        offline.len()
    );
    offline
}

/// `como inline -r TRACE --format json KIND:ARGS EXPR`, normalised.
pub fn inline_records(trace: &Path, kind_args: &str, filter: &str) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(como_bin());
    cmd.args(["inline", "-r"])
        .arg(trace)
        .args(["--format", "json", kind_args]);
    if !filter.is_empty() {
        cmd.arg(filter);
    }
    let out = cmd.output().expect("como inline");
    assert!(
        out.status.success(),
        "como inline {kind_args} {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&String::from_utf8_lossy(&out.stdout))
}

/// A daemon with no source over the lab's databases (to query what a live run stored).
pub fn reader(lab: &Lab, modules: &str) -> Daemon {
    let cfg = lab.config("reader.toml", "127.0.0.1:0", "", modules);
    Daemon::start(&cfg, &[])
}

/// One packet: captured bytes and original length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkt {
    /// The captured bytes.
    pub data: Vec<u8>,
    /// The original length.
    pub wire_len: u32,
}

/// The packets of a pcap or pcapng file (or answer).
pub fn read_packets(name: &str, bytes: Vec<u8>) -> Vec<Pkt> {
    let mut r = como_tracefile::TraceReader::from_bytes(name, bytes)
        .unwrap_or_else(|e| panic!("{name}: not a trace: {e}"));
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push(Pkt {
            data: p.data.to_vec(),
            wire_len: p.wire_len,
        });
    }
    out
}

/// What `tcpdump -r original EXPR` selects, cut at `snaplen` (the oracle).
pub fn tcpdump_select(original: &Path, expr: &str, snaplen: usize, tmp: &Path) -> Vec<Pkt> {
    let out = tmp.join("tcpdump-out.pcap");
    let st = Command::new("tcpdump")
        .arg("-r")
        .arg(original)
        .arg("-w")
        .arg(&out)
        .arg(expr)
        .output()
        .expect("run tcpdump");
    if String::from_utf8_lossy(&st.stderr).contains("expression rejects all packets") {
        return Vec::new();
    }
    assert!(
        st.status.success(),
        "tcpdump -r {} {expr}: {}",
        original.display(),
        String::from_utf8_lossy(&st.stderr)
    );
    let bytes = std::fs::read(&out).expect("tcpdump output");
    read_packets("tcpdump", bytes)
        .into_iter()
        .map(|mut p| {
            p.data.truncate(snaplen);
            p
        })
        .collect()
}

/// `tcpdump -r original --count EXPR`.
pub fn tcpdump_count(original: &Path, expr: &str) -> u64 {
    let out = Command::new("tcpdump")
        .arg("-r")
        .arg(original)
        .arg("--count")
        .arg(expr)
        .output()
        .expect("run tcpdump");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("tcpdump --count output: {text}"))
}

/// `GET /trace?filter=EXPR&format=FORMAT` as packets.
pub fn trace_answer(d: &Daemon, expr: &str, format: &str) -> Vec<Pkt> {
    let enc: String = expr
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let q = format!("/trace?filter={enc}&format={format}");
    let (code, body) = d.get_bytes(&q);
    assert_eq!(
        code,
        200,
        "GET {q}: {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>()
    );
    read_packets("answer", body)
}

/// Polls `/trace` (every packet) until it holds `n` packets or `timeout` passes.
pub fn wait_window(d: &Daemon, n: usize, timeout: Duration) -> usize {
    let t = Instant::now();
    loop {
        let got = trace_answer(d, "", "pcap").len();
        if got >= n || t.elapsed() > timeout {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Compares the window's answer with tcpdump's selection; a message naming the first
/// difference.
pub fn same_packets(expr: &str, got: &[Pkt], want: &[Pkt]) {
    let first = got.iter().zip(want).position(|(a, b)| a != b).map(|i| {
        format!(
            "first difference at packet {i}: got {:?}, want {:?}",
            got.get(i).map(|p| (p.wire_len, p.data.len())),
            want.get(i).map(|p| (p.wire_len, p.data.len()))
        )
    });
    assert!(
        got.len() == want.len() && first.is_none(),
        "/trace?filter={expr}: {} packets, tcpdump selects {}; {}",
        got.len(),
        want.len(),
        first.unwrap_or_default()
    );
}

/// Sorted by bytes (two workers interleave their buffers in the window).
pub fn sorted(mut v: Vec<Pkt>) -> Vec<Pkt> {
    v.sort_by(|a, b| a.data.cmp(&b.data).then(a.wire_len.cmp(&b.wire_len)));
    v
}
