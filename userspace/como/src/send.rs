//! `como send -i IFACE -r FILE [--pps N | --topspeed] [--loop N] [--netns NAME]`: the project's
//! own traffic sender. Replays the Ethernet frames of a trace file (pcap, pcapng, ERF) out of an
//! interface with an `AF_PACKET` socket and `sendmmsg` (the sender of the test fixture,
//! `como_netlab::PacketSender`, so tests and the CLI send the same way).
//!
//! Frames are sent as captured (a packet cut by the capture's snap length is sent cut). Packets of
//! other link types are skipped (counted). Pace: `--pps N` frames per second on a schedule from
//! the start, or `--topspeed`; the default is 10 000 pps. `--loop N` sends the file N times
//! (0: until SIGINT/SIGTERM). Prints one line: frames, bytes, seconds, rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use como_netlab::{Pace, PacketSender};
use como_packet::LinkType;
use como_tracefile::TraceReader;

use crate::Failure;

/// Default rate of `como send` (frames per second).
pub(crate) const DEFAULT_PPS: u64 = 10_000;

/// Arguments of `como send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// Interface to send on.
    #[arg(short = 'i', value_name = "IFACE")]
    interface: String,
    /// Trace file whose frames to send.
    #[arg(short = 'r', value_name = "FILE")]
    file: PathBuf,
    /// Frames per second (default 10000).
    #[arg(long, conflicts_with = "topspeed")]
    pps: Option<u64>,
    /// As fast as the interface takes them.
    #[arg(long)]
    topspeed: bool,
    /// Times to send the file (0: until interrupted).
    #[arg(long = "loop", default_value_t = 1)]
    loops: u64,
    /// Send from inside this network namespace (`/run/netns/NAME`).
    #[arg(long)]
    netns: Option<String>,
}

/// The Ethernet frames of a trace file, and how many packets were skipped (other link types).
pub(crate) fn load_frames(path: &std::path::Path) -> anyhow::Result<(Vec<Vec<u8>>, u64)> {
    let mut r = TraceReader::open(path).with_context(|| format!("{}", path.display()))?;
    let mut frames = Vec::new();
    let mut skipped = 0u64;
    while let Some(p) = r.next_packet() {
        let p = p.with_context(|| format!("{}", path.display()))?;
        if p.link == LinkType::Ethernet && p.data.len() >= 14 {
            frames.push(p.data.to_vec());
        } else {
            skipped += 1;
        }
    }
    Ok((frames, skipped))
}

/// What a send did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sent {
    /// Frames the kernel took.
    pub(crate) frames: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// Seconds from the first to the last frame.
    pub(crate) secs: f64,
}

/// Sends `frames` `loops` times (0: until `stop`) on `sender` at `pace`.
pub(crate) fn send_loops(
    sender: &mut PacketSender,
    frames: &[Vec<u8>],
    pace: Pace,
    loops: u64,
    stop: &AtomicBool,
) -> anyhow::Result<Sent> {
    let start = Instant::now();
    let mut out = Sent::default();
    let mut i = 0u64;
    // In chunks, so a stop request is seen within a chunk's time.
    let chunk = match pace {
        Pace::TopSpeed => 4096,
        Pace::Pps(r) => usize::try_from(r / 10)
            .unwrap_or(usize::MAX)
            .clamp(64, 4096),
    };
    'outer: while (loops == 0 || i < loops) && !stop.load(Ordering::Relaxed) {
        for part in frames.chunks(chunk) {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            let r = sender.send(part, pace).context("sending")?;
            out.frames += r.sent;
            out.bytes += part
                .iter()
                .take(usize::try_from(r.sent).unwrap_or(usize::MAX))
                .map(|f| f.len() as u64)
                .sum::<u64>();
        }
        i += 1;
    }
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

/// Runs `como send`.
pub(crate) fn run(args: &SendArgs) -> Result<(), Failure> {
    let file = |e: anyhow::Error| Failure::File(e);
    let pace = match (args.topspeed, args.pps) {
        (true, _) => Pace::TopSpeed,
        (false, Some(0)) => return Err(Failure::Filter(anyhow!("--pps must be at least 1"))),
        (false, Some(n)) => Pace::Pps(n),
        (false, None) => Pace::Pps(DEFAULT_PPS),
    };
    let (frames, skipped) = load_frames(&args.file).map_err(file)?;
    if skipped > 0 {
        tracing::warn!("{skipped} packets are not Ethernet frames: not sent");
    }
    if frames.is_empty() {
        return Err(file(anyhow!(
            "{}: no Ethernet frame to send",
            args.file.display()
        )));
    }
    let iface = args.interface.clone();
    let mut sender = crate::live::in_netns(args.netns.as_deref(), move || {
        PacketSender::new(&iface).with_context(|| format!("AF_PACKET socket on {iface}"))
    })
    .map_err(file)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("signal handler")
            .map_err(file)?;
    }
    let s = send_loops(&mut sender, &frames, pace, args.loops, &stop).map_err(file)?;
    println!(
        "sent {} frames ({} bytes) in {:.3} s: {:.0} pps",
        s.frames,
        s.bytes,
        s.secs,
        s.frames as f64 / s.secs.max(1e-9)
    );
    Ok(())
}
