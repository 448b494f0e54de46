//! `como demo` (root): a live capture to look at in one command.
//!
//! Creates two network namespaces joined by a veth pair (unique names, removed at the end),
//! attaches the XDP program to the capture end, starts the daemon on it with an embedded
//! configuration (standard modules, some with filters), replays traffic through the other end
//! in a loop — generated traffic by default (HTTP, HTTPS, DNS, ICMP and IPv6 flows between
//! documentation addresses: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32), or
//! the frames of trace files given with `-r` — serves the query API (127.0.0.1:44444 by
//! default) and prints queries to try. Ctrl-C (SIGINT) or SIGTERM stops everything: the
//! daemon flushes and detaches, the namespaces, the veth pair and the demo's database folder
//! are removed. Traffic never leaves the two namespaces: they have no other interface and no
//! route.
//!
//! `como run` with neither `-c` nor `-r` runs this demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use como_config::Config;
use como_netlab::{NetNs, Pace, PacketSender, VethPair};

use crate::Failure;

/// Arguments of `como demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Address of the query server.
    #[arg(long, default_value = como_config::DEFAULT_LISTEN)]
    listen: Option<SocketAddr>,
    /// Frames per second replayed through the veth pair.
    #[arg(long, default_value_t = DEFAULT_PPS)]
    pps: u64,
    /// Trace files to replay (in a loop) instead of generated traffic.
    #[arg(short = 'r', value_name = "TRACE")]
    files: Vec<PathBuf>,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Keep the database folder at the end (printed at start).
    #[arg(long)]
    keep: bool,
    /// Write the generated traffic to this pcap file (at `--pps`, from now) and exit: no
    /// capture, no root needed.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// About how many frames to generate.
    #[arg(long, default_value_t = DEFAULT_FRAMES)]
    frames: usize,
    /// MTU of the generated traffic: full TCP segments fill it (e.g. 9000 for jumbo frames).
    #[arg(long, default_value_t = DEFAULT_MTU, value_parser = clap::value_parser!(u16).range(576..))]
    mtu: u16,
}

impl DemoArgs {
    /// The defaults (what `como run` without a configuration runs).
    pub(crate) fn defaults() -> Self {
        Self {
            listen: None,
            pps: DEFAULT_PPS,
            files: Vec::new(),
            duration: None,
            keep: false,
            write: None,
            seed: DEFAULT_SEED,
            frames: DEFAULT_FRAMES,
            mtu: DEFAULT_MTU,
        }
    }
}

/// Default replay rate of the demo.
const DEFAULT_PPS: u64 = 2_000;
/// Default seed of the generated traffic.
const DEFAULT_SEED: u64 = 0x00c0_4000;
/// Default number of generated frames (replayed in a loop).
const DEFAULT_FRAMES: usize = 20_000;
/// Default MTU of the generated traffic.
const DEFAULT_MTU: u16 = 1500;

/// Writes `frames` as a pcap file, one every `1/pps` seconds from now (what `--write` does).
fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>], pps: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut w = como_tracefile::PcapWriter::new(
        std::io::BufWriter::new(f),
        como_packet::LinkType::Ethernet,
        65_535,
        true,
    )?;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let gap = 1_000_000_000 / pps.max(1);
    for (i, data) in frames.iter().enumerate() {
        let wire_len = u32::try_from(data.len()).context("frame too long")?;
        w.write_packet(&como_packet::Packet {
            ts_ns: start.saturating_add(gap.saturating_mul(i as u64)),
            wire_len,
            data,
            link: como_packet::LinkType::Ethernet,
            interface: 0,
        })?;
    }
    let mut out = w.into_inner()?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// The demo's configuration (interface, namespace, database and address filled in).
fn demo_config(iface: &str, netns: &str, db: &std::path::Path, listen: SocketAddr) -> String {
    format!(
        r#"# como demo: live capture on a veth pair.
[node]
name = "como-demo"
location = "veth {iface} in network namespace {netns}"
db_path = "{db}"

[query]
listen = "{listen}"

[[source]]
type = "xdp"
interface = "{iface}"
netns = "{netns}"
mode = "auto"
rx_ring = 4096
fill_ring = 4096

[[module]]
name = "traffic"
kind = "traffic"
interval = "1s"

[[module]]
name = "protocol"
kind = "protocol"
interval = "1s"

[[module]]
name = "application"
kind = "application"
interval = "5s"

[[module]]
name = "topaddr"
kind = "topaddr"
filter = "ip or ip6"
interval = "5s"
[module.args]
topn = 5

[[module]]
name = "web"
kind = "traffic"
filter = "tcp port 80 or tcp port 443"
interval = "1s"

[[module]]
name = "dns"
kind = "traffic"
filter = "udp port 53"
interval = "1s"

[[module]]
name = "tuple"
kind = "tuple"
filter = "tcp or udp"
interval = "5s"
"#,
        db = db.display()
    )
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Ethernet addresses of the demo's two sides (locally administered).
const MAC_CLIENT: [u8; 6] = [0x02, 0xde, 0x00, 0x00, 0x00, 0x01];
const MAC_SERVER: [u8; 6] = [0x02, 0xde, 0x00, 0x00, 0x00, 0x02];

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        let hi = u32::from(c.first().copied().unwrap_or(0));
        let lo = u32::from(c.get(1).copied().unwrap_or(0));
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One direction of a flow.
#[derive(Clone, Copy)]
struct Ends {
    src: [u8; 16],
    dst: [u8; 16],
    v6: bool,
    sport: u16,
    dport: u16,
}

impl Ends {
    fn reverse(self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            v6: self.v6,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// A frame: Ethernet, IPv4 or IPv6, then `l4` (protocol `proto`) and `payload` zero bytes.
fn frame(e: &Ends, to_server: bool, proto: u8, l4: &[u8], payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 40 + l4.len() + payload);
    let (dmac, smac) = if to_server {
        (MAC_SERVER, MAC_CLIENT)
    } else {
        (MAC_CLIENT, MAC_SERVER)
    };
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    let l3_len = l4.len() + payload;
    if e.v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l3_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&e.src);
        f.extend_from_slice(&e.dst);
    } else {
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + l3_len) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&e.src[..4]);
        ip[16..20].copy_from_slice(&e.dst[..4]);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    }
    f.extend_from_slice(l4);
    f.resize(f.len() + payload, 0);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn tcp(e: &Ends, seq: u32, ack: u32, flags: u8) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&e.sport.to_be_bytes());
    t[2..4].copy_from_slice(&e.dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

fn udp(e: &Ends, payload: usize) -> [u8; 8] {
    let mut u = [0u8; 8];
    u[0..2].copy_from_slice(&e.sport.to_be_bytes());
    u[2..4].copy_from_slice(&e.dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    u
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A TCP connection: handshake, `exchanges` request/response pairs, close.
/// Full segments carry `mss` bytes, others 200 up to `mss`.
fn tcp_flow(out: &mut Vec<Vec<u8>>, rng: &mut Rng, e: Ends, exchanges: u64, mss: usize) {
    let r = e.reverse();
    let (mut c, mut s) = (rng.next() as u32, rng.next() as u32);
    out.push(frame(&e, true, 6, &tcp(&e, c, 0, SYN), 0));
    out.push(frame(&r, false, 6, &tcp(&r, s, c + 1, SYN | ACK), 0));
    c += 1;
    s += 1;
    out.push(frame(&e, true, 6, &tcp(&e, c, s, ACK), 0));
    for _ in 0..exchanges {
        let req = 100 + rng.below(500) as usize;
        out.push(frame(&e, true, 6, &tcp(&e, c, s, PSH | ACK), req));
        c += req as u32;
        let segments = 1 + rng.below(8);
        for _ in 0..segments {
            let len = if rng.below(3) == 0 {
                200 + rng.below(mss as u64 - 200) as usize
            } else {
                mss
            };
            out.push(frame(&r, false, 6, &tcp(&r, s, c, ACK), len));
            s += len as u32;
        }
        out.push(frame(&e, true, 6, &tcp(&e, c, s, ACK), 0));
    }
    out.push(frame(&e, true, 6, &tcp(&e, c, s, FIN | ACK), 0));
    out.push(frame(&r, false, 6, &tcp(&r, s, c + 1, FIN | ACK), 0));
    out.push(frame(&e, true, 6, &tcp(&e, c + 1, s + 1, ACK), 0));
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&[a, b, c, d]);
    x
}

fn v6(last: u16) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    x[14..16].copy_from_slice(&last.to_be_bytes());
    x
}

/// About `n` frames of generated traffic (see the module docs) for a link of MTU `mtu`,
/// deterministic.
pub(crate) fn generate(n: usize, seed: u64, mtu: u16) -> Vec<Vec<u8>> {
    // IPv6 and TCP headers with room to spare (1400 at 1500).
    let mss = usize::from(mtu).saturating_sub(100).max(300);
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(n + 64);
    while out.len() < n {
        let client = v4(192, 0, 2, 1 + rng.below(40) as u8);
        // A few servers get most of the traffic (top-N has something to show).
        let server = match rng.below(10) {
            0..=4 => v4(198, 51, 100, 10),
            5..=6 => v4(198, 51, 100, 20),
            _ => v4(203, 0, 113, 1 + rng.below(30) as u8),
        };
        let sport = 32768 + rng.below(28000) as u16;
        let exchanges = 1 + rng.below(4);
        let v6_client = v6(1 + rng.below(20) as u16);
        match rng.below(20) {
            0..=7 => tcp_flow(
                &mut out,
                &mut rng,
                Ends {
                    src: client,
                    dst: server,
                    v6: false,
                    sport,
                    dport: 443,
                },
                exchanges,
                mss,
            ),
            8..=10 => tcp_flow(
                &mut out,
                &mut rng,
                Ends {
                    src: client,
                    dst: server,
                    v6: false,
                    sport,
                    dport: 80,
                },
                exchanges,
                mss,
            ),
            11..=12 => tcp_flow(
                &mut out,
                &mut rng,
                Ends {
                    src: v6_client,
                    dst: v6(0x100),
                    v6: true,
                    sport,
                    dport: 443,
                },
                exchanges,
                mss,
            ),
            13..=16 => {
                // DNS query and answer.
                let e = Ends {
                    src: client,
                    dst: v4(198, 51, 100, 53),
                    v6: false,
                    sport,
                    dport: 53,
                };
                let q = 30 + rng.below(30) as usize;
                out.push(frame(&e, true, 17, &udp(&e, q), q));
                let r = e.reverse();
                let a = q + 16 + rng.below(200) as usize;
                out.push(frame(&r, false, 17, &udp(&r, a), a));
            }
            17 => {
                // Ping: echo request and reply.
                let e = Ends {
                    src: client,
                    dst: server,
                    v6: false,
                    sport: 0,
                    dport: 0,
                };
                let id = rng.next() as u16;
                for (dir, ty) in [(e, 8u8), (e.reverse(), 0u8)] {
                    let mut icmp = [0u8; 8];
                    icmp[0] = ty;
                    icmp[4..6].copy_from_slice(&id.to_be_bytes());
                    out.push(frame(&dir, ty == 8, 1, &icmp, 56));
                }
            }
            _ => {
                // Other UDP (e.g. a video call).
                let e = Ends {
                    src: client,
                    dst: v4(203, 0, 113, 200),
                    v6: false,
                    sport,
                    dport: 3478,
                };
                for _ in 0..(5 + rng.below(20)) {
                    let len = 100 + rng.below(1000) as usize;
                    out.push(frame(&e, true, 17, &udp(&e, len), len));
                }
            }
        }
    }
    out
}

/// Removes the demo's database folder on drop (unless kept).
struct DbDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for DbDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs `como demo`.
pub(crate) fn run(args: &DemoArgs) -> Result<(), Failure> {
    let file = |e: anyhow::Error| Failure::File(e);
    if let Some(path) = &args.write {
        let frames = generate(args.frames, args.seed, args.mtu);
        write_pcap(path, &frames, args.pps).map_err(file)?;
        eprintln!(
            "como demo: {} frames of generated traffic (seed {}) written to {}",
            frames.len(),
            args.seed,
            path.display()
        );
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(file(anyhow!(
            "como demo needs root (network namespaces, veth, XDP): run it with sudo"
        )));
    }
    let frames = if args.files.is_empty() {
        generate(args.frames, args.seed, args.mtu)
    } else {
        let mut all = Vec::new();
        for f in &args.files {
            let (mut fr, _) = crate::send::load_frames(f).map_err(file)?;
            all.append(&mut fr);
        }
        if all.is_empty() {
            return Err(file(anyhow!("no Ethernet frame in the trace files")));
        }
        all
    };
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 44444)));
    let cap = NetNs::new("demo-cap")
        .context("network namespace")
        .map_err(file)?;
    let gen = NetNs::new("demo-gen")
        .context("network namespace")
        .map_err(file)?;
    let veth = VethPair::new(&cap, Some(&gen))
        .context("veth pair")
        .map_err(file)?;
    let db = DbDir {
        path: std::env::temp_dir().join(format!("como-demo-{}", std::process::id())),
        keep: args.keep,
    };
    let text = demo_config(&veth.a, cap.name(), &db.path, listen);
    let config = Config::parse(&text, "<demo>").map_err(|e| Failure::Filter(anyhow!("{e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("signal handler")
            .map_err(file)?;
    }
    eprintln!(
        "como demo: capturing on {} (namespace {}), replaying {} {} frames in a loop at {} pps from {} (namespace {}); database {}",
        veth.a,
        cap.name(),
        frames.len(),
        if args.files.is_empty() { "generated" } else { "trace" },
        args.pps,
        veth.b,
        gen.name(),
        db.path.display()
    );
    // The sender: in the generator's namespace, until stopped.
    let sender_stop = Arc::clone(&stop);
    let pps = args.pps.max(1);
    let iface = veth.b.clone();
    let sender = gen.spawn(move || -> anyhow::Result<crate::send::Sent> {
        let mut s = PacketSender::new(&iface).with_context(|| format!("sender on {iface}"))?;
        // Let the daemon attach first.
        std::thread::sleep(Duration::from_millis(500));
        crate::send::send_loops(&mut s, &frames, Pace::Pps(pps), 0, &sender_stop)
    });
    let hints_stop = Arc::clone(&stop);
    let hints = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        if hints_stop.load(Ordering::Relaxed) {
            return;
        }
        let base = format!("http://{listen}");
        eprintln!(
            "\nTry (Ctrl-C stops the demo and removes everything):\n  \
             curl '{base}/traffic?time=-10s:0&format=pretty'\n  \
             curl '{base}/protocol?time=-10s:0&format=pretty'\n  \
             curl '{base}/topaddr?time=-30s:0&format=pretty'\n  \
             curl '{base}/web?time=-30s:0&format=csv'\n  \
             curl '{base}/status'\n  \
             curl -s '{base}/metrics' | grep -E 'como_(capture|xdp|module_packets)'\n  \
             como query --server {base} dns --time -30s:0 --format pretty\n"
        );
    });
    if let Some(secs) = args.duration {
        let t_stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(secs) && !t_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            t_stop.store(true, Ordering::SeqCst);
        });
    }
    let result = crate::live::run(crate::live::LiveRun {
        config_path: None,
        config,
        stop: Arc::clone(&stop),
        reload: Arc::new(AtomicBool::new(false)),
    });
    stop.store(true, Ordering::SeqCst);
    match sender.join() {
        Ok(Ok(Ok(s))) => eprintln!(
            "como demo: sent {} frames ({} bytes) in {:.1} s",
            s.frames, s.bytes, s.secs
        ),
        Ok(Ok(Err(e))) => eprintln!("como demo: sender: {e:#}"),
        Ok(Err(e)) => eprintln!("como demo: sender: {e}"),
        Err(_) => eprintln!("como demo: the sender panicked"),
    }
    let _ = hints.join();
    drop(veth);
    drop(gen);
    drop(cap);
    drop(db);
    eprintln!("como demo: namespaces, veth pair and database removed");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traffic_parses_and_has_every_kind() {
        let frames = generate(3000, 7, DEFAULT_MTU);
        assert!(frames.len() >= 3000);
        let count = |expr: &str| {
            let f = ebpf_filters::compile(expr, como_packet::LinkType::Ethernet).expect("filter");
            frames
                .iter()
                .filter(|d| {
                    f.matches(&como_packet::Packet {
                        ts_ns: 0,
                        wire_len: d.len() as u32,
                        data: d,
                        link: como_packet::LinkType::Ethernet,
                        interface: 0,
                    })
                })
                .count()
        };
        for expr in [
            "tcp port 443",
            "tcp port 80",
            "udp port 53",
            "icmp",
            "ip6 and tcp",
            "tcp[tcpflags] & tcp-syn != 0",
        ] {
            assert!(count(expr) > 0, "{expr}: none");
        }
        assert_eq!(count("ip or ip6"), frames.len());
        // Documentation addresses only.
        assert_eq!(
            count("net 192.0.2.0/24 or net 198.51.100.0/24 or net 203.0.113.0/24 or net 2001:db8::/32"),
            frames.len()
        );
        assert!(frames.iter().all(|f| f.len() >= 60 && f.len() <= 1514));
        let jumbo = generate(3000, 7, 9000);
        assert!(jumbo.iter().all(|f| f.len() >= 60 && f.len() <= 9014));
        assert!(
            jumbo.iter().any(|f| f.len() > 8000),
            "full segments fill a 9000 MTU"
        );
        // IPv4 header checksums are right.
        for f in frames.iter().filter(|f| f[12..14] == [8, 0]) {
            assert_eq!(checksum(&f[14..34]), 0);
        }
    }

    #[test]
    fn the_demo_config_validates() {
        let t = demo_config(
            "cva1",
            "como-demo-cap-1",
            std::path::Path::new("/tmp/x"),
            SocketAddr::from(([127, 0, 0, 1], 44444)),
        );
        let c = Config::parse(&t, "<demo>").expect("demo config");
        assert!(c.modules.len() >= 5);
    }
}
