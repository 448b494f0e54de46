//! `live_rx`: the light live-capture path of `scripts/bench-live.sh` — the project's XDP program
//! (one rule: every packet) and one AF_XDP socket, with a loop that only counts what it reads,
//! without the module runtime of `como run`. Comparing it with the daemon separates the kernel
//! and ring cost from the daemon's own per-packet work.
//!
//! ```text
//! ip netns exec CAP taskset -c 1 live_rx -i veth0 --mode native
//! ```
//! Attaches to `-i` (in the calling namespace), binds queue `--queue` (default 0) with the
//! defaults of a `como run` xdp source (4096 frames of 4096 bytes, RX ring 2048, fill ring 4096,
//! need_wakeup, copy or zero-copy as the driver allows), prints `ready MODE SOCKET_MODE` once
//! attached, then spins on the RX ring (64 frames per poll, every frame's metadata decoded;
//! after 20 000 empty polls it sleeps 100 µs between polls, like an idle `como run` worker) and
//! every 100 ms prints one line of cumulative counters:
//! `packets P bytes B rx_dropped D rx_ring_full F fill_ring_empty E invalid I seen S redirected R redirect_failed X`.
//! It runs until killed; the program is detached when the process ends.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use af_xdp::{HugePages, SocketConfig, Umem, UmemConfig, XskSocket};
use anyhow::Context;
use clap::{Parser, ValueEnum};
use como_packet::LinkType;
use como_xdp::{XdpMode, XdpProgram};
use ebpf_filters::kernel::Tables;

/// XDP attach mode.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Native (driver) mode.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// Counts the frames the XDP program redirects to one AF_XDP socket (no module runtime).
#[derive(Debug, Parser)]
#[command(name = "live_rx", version)]
struct Args {
    /// Interface to attach to.
    #[arg(short = 'i', value_name = "IFACE")]
    interface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "native")]
    mode: Mode,
    /// RX queue to bind.
    #[arg(long, default_value_t = 0)]
    queue: u32,
}

/// Empty polls before the loop starts sleeping between polls.
const IDLE_POLLS: u32 = 20_000;
/// Sleep between the polls of an idle loop.
const IDLE_SLEEP: Duration = Duration::from_micros(100);

fn run(args: &Args) -> anyhow::Result<()> {
    let mut prog = XdpProgram::load().context("loading the XDP program (root?)")?;
    let mode = match args.mode {
        Mode::Native => XdpMode::Native,
        Mode::Skb => XdpMode::Skb,
    };
    let mode = prog
        .attach(&args.interface, mode)
        .with_context(|| format!("attaching to {}", args.interface))?;
    let all = ebpf_filters::compile("", LinkType::Ethernet).context("the empty filter")?;
    let tables = Tables::compile(&[Some(&all)]).context("kernel tables")?;
    prog.install(&tables).context("installing the tables")?;
    let ifindex = ifindex(&args.interface)?;
    let umem = Umem::new(&UmemConfig {
        frame_size: 4096,
        frame_count: 4096,
        headroom: 0,
        hugepages: HugePages::Auto,
    })
    .context("UMEM")?;
    let cfg = SocketConfig {
        rx_size: 2048,
        fill_size: 4096,
        comp_size: 64,
        tx_size: 64,
        ..SocketConfig::default()
    };
    let mut sock = XskSocket::new(umem, ifindex, args.queue, &cfg).context("AF_XDP socket")?;
    prog.set_socket(args.queue, sock.fd())
        .context("socket map")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {mode:?} {}", sock.mode())?;
    out.flush()?;
    let (mut packets, mut bytes, mut rules) = (0u64, 0u64, 0u64);
    let mut last = Instant::now();
    let mut idle = 0u32;
    loop {
        let n = sock
            .rx_batch(64, |f| {
                packets += 1;
                bytes += f.data.len() as u64;
                if let Some(m) = f.xdp_meta() {
                    rules |= m.rules;
                }
            })
            .context("reading the RX ring")?;
        // Spin while frames come; after IDLE_POLLS empty polls, sleep between polls (a
        // process that never sleeps is throttled under SCHED_FIFO).
        if n > 0 {
            idle = 0;
        } else if idle >= IDLE_POLLS {
            std::thread::sleep(IDLE_SLEEP);
        } else {
            idle += 1;
            std::hint::spin_loop();
        }
        if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            let s = sock.statistics().context("XDP_STATISTICS")?;
            let x = prog.stats().context("XDP program counters")?;
            writeln!(
                out,
                "packets {packets} bytes {bytes} rx_dropped {} rx_ring_full {} fill_ring_empty {} invalid {} seen {} redirected {} redirect_failed {} rules {rules:#x}",
                s.rx_dropped,
                s.rx_ring_full,
                s.rx_fill_ring_empty_descs,
                s.rx_invalid_descs,
                x.seen,
                x.redirected,
                x.redirect_failed
            )?;
            out.flush()?;
        }
    }
}

/// The index of interface `name` in the calling namespace.
fn ifindex(name: &str) -> anyhow::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    text.trim()
        .parse()
        .with_context(|| format!("{path}: {text:?}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("live_rx: {e:#}");
            ExitCode::FAILURE
        }
    }
}
