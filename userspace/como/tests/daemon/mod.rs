//! Shared by the daemon tests: start `como run` as a real process on a free port, talk HTTP to
//! it, generate synthetic traces with timestamps near now.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use como_packet::{LinkType, Packet};
use como_tracefile::PcapWriter;

/// The `como` binary under test.
pub fn como_bin() -> &'static str {
    env!("CARGO_BIN_EXE_como")
}

/// Runs `como` to completion.
pub fn como(args: &[&str]) -> Output {
    Command::new(como_bin())
        .args(args)
        .output()
        .expect("run como")
}

/// A real trace of the test data.
pub fn trace(rel: &str) -> PathBuf {
    como_tests::traces_dir().join(rel)
}

/// Now, in ns since the epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A running `como run` (killed on drop).
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Where its query server listens.
    pub addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Daemon {
    /// Starts `como run -c CONFIG` plus `extra` and waits for its `listening on` line.
    pub fn start(config: &Path, extra: &[&str]) -> Daemon {
        let mut child = Command::new(como_bin())
            .arg("run")
            .arg("-c")
            .arg(config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn como run");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        Daemon {
            child,
            addr,
            _stdout: out,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET path (with query), returns status and body.
    pub fn get(&self, path_query: &str) -> (u16, String) {
        let (s, b) = self.get_bytes(path_query);
        (s, String::from_utf8(b).expect("utf-8 body"))
    }

    /// GET path, body as bytes.
    pub fn get_bytes(&self, path_query: &str) -> (u16, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .get(&format!("{}{path_query}", self.url()))
            .call()
            .expect("HTTP request");
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .expect("read body");
        (status, body)
    }

    /// Polls `/status` until the runtime has ended (all sources consumed, everything stored).
    pub fn wait_done(&self) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let (code, body) = self.get("/status");
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
            if v["running"] == serde_json::Value::Bool(false) {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "daemon never finished"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (`TERM`, `HUP` ...) to the daemon with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{signal} {pid}");
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        self.child.wait().expect("wait").code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config with `db`, listen on port 0, the given sources and modules (TOML snippets).
pub fn write_config(dir: &Path, name: &str, sources: &str, modules: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[node]\nname = \"test-node\"\nlocation = \"ci\"\ndb_path = \"{}\"\n[query]\nlisten = \"127.0.0.1:0\"\n{sources}\n{modules}\n",
        dir.join("db").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// A `[[source]]` for a file.
pub fn file_source(path: &Path, speed: Option<f64>) -> String {
    let mut s = format!(
        "[[source]]\ntype = \"file\"\npath = \"{}\"\n",
        path.display()
    );
    if let Some(sp) = speed {
        s.push_str(&format!("speed = {sp}\n"));
    }
    s
}

/// A `[[module]]`.
pub fn module(name: &str, kind: &str, interval: &str, filter: &str) -> String {
    format!(
        "[[module]]\nname = \"{name}\"\nkind = \"{kind}\"\ninterval = \"{interval}\"\nfilter = \"{filter}\"\n"
    )
}

/// An Ethernet/IPv4/UDP or TCP frame between hosts `a` and `b` (10.0.x.y).
pub fn frame(a: u16, b: u16, sport: u16, dport: u16, tcp: bool, payload: usize) -> Vec<u8> {
    let l4 = if tcp { 20 } else { 8 };
    let ip_len = 20 + l4 + payload;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00]);
    let src = Ipv4Addr::new(10, 0, (a >> 8) as u8, a as u8).octets();
    let dst = Ipv4Addr::new(10, 0, (b >> 8) as u8, b as u8).octets();
    f.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0, 0, 64]);
    f.push(if tcp { 6 } else { 17 });
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    if tcp {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0x10, 0, 0, 0, 0, 0]);
    } else {
        let ul = (8 + payload) as u16;
        f.extend_from_slice(&ul.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.resize(14 + ip_len, 0xab);
    f
}

/// Writes a pcap (ns) of `pps` packets per second from `start_ns` for `secs` seconds over
/// `flows` flows; returns the number of packets.
pub fn synth_trace(path: &Path, start_ns: u64, secs: u64, pps: u64, flows: u16) -> u64 {
    let file = std::fs::File::create(path).expect("create trace");
    let mut w = PcapWriter::new(
        std::io::BufWriter::new(file),
        LinkType::Ethernet,
        65535,
        true,
    )
    .expect("pcap writer");
    let n = secs * pps;
    for i in 0..n {
        let flow = (i % u64::from(flows.max(1))) as u16;
        let data = frame(
            1 + flow % 50,
            100 + flow,
            1000 + flow,
            if flow.is_multiple_of(3) { 80 } else { 53 },
            flow.is_multiple_of(3),
            (i % 200) as usize,
        );
        let p = Packet {
            ts_ns: start_ns + i * 1_000_000_000 / pps,
            wire_len: data.len() as u32,
            data: &data,
            link: LinkType::Ethernet,
            interface: 0,
        };
        w.write_packet(&p).expect("write packet");
    }
    w.into_inner().expect("finish trace");
    n
}
