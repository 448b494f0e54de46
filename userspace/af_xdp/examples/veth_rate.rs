//! How fast one `XskSocket` receives on a veth pair: a sender in one network namespace sends
//! `COUNT` frames of `LEN` bytes at its top speed (or at `PPS`), a receiver in the other
//! namespace reads them through the test redirect program; prints sent/received rates, loss
//! and the kernel's socket statistics. Root only. `COMO_FRAMES` (4096) and `COMO_RX` (2048) size
//! the UMEM and the RX ring.
//!
//! ```text
//! [COMO_RT=1] cargo run --release -p como-af-xdp --example veth_rate -- [native|skb] [LEN] [COUNT] [PPS|top]
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use af_xdp::{HugePages, SocketConfig, Umem, UmemConfig, XskSocket};
use common::{Redirect, XdpMode};
use como_tests::netns::{ifindex, test_frame, NetNs, Pace, PacketSender, VethPair};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some("skb") => XdpMode::Skb,
        _ => XdpMode::Native,
    };
    let len: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let count: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let pace = match args.get(3).and_then(|a| a.parse().ok()) {
        Some(pps) => Pace::Pps(pps),
        None => Pace::TopSpeed,
    };
    let rx = NetNs::new("xsk-rate")?;
    let tx = NetNs::new("xsk-rate")?;
    let veth = VethPair::new(&rx, Some(&tx))?;
    let name = veth.a.clone();
    let (mut sock, _prog) = rx.run(|| -> Result<_, String> {
        let idx = ifindex(&name).map_err(|e| e.to_string())?;
        let prog = Redirect::attach(idx, mode, 1).map_err(|e| e.to_string())?;
        let umem = Umem::new(&UmemConfig {
            frame_size: 2048,
            frame_count: env_u32("COMO_FRAMES", 4096),
            headroom: 0,
            hugepages: HugePages::Auto,
        })
        .map_err(|e| e.to_string())?;
        let cfg = SocketConfig {
            rx_size: env_u32("COMO_RX", 2048),
            fill_size: env_u32("COMO_FRAMES", 4096).next_power_of_two(),
            ..SocketConfig::default()
        };
        let sock = XskSocket::new(umem, idx, 0, &cfg).map_err(|e| e.to_string())?;
        prog.set_socket(0, sock.fd()).map_err(|e| e.to_string())?;
        Ok((sock, prog))
    })??;
    let mut sender = PacketSender::in_ns(&tx, &veth.b)?;
    // 1024 distinct frames, sent in a loop.
    let frames: Vec<Vec<u8>> = (0..count).map(|i| test_frame(i % 1024, len)).collect();
    // COMO_RT=1: the receiver spins under SCHED_FIFO (takes a core; RT throttling still leaves
    // 5 % to others), so the figure is the socket's and not the machine's load.
    let _rt = match std::env::var("COMO_RT").as_deref() {
        Ok("1") => Some(como_tests::netns::realtime(10)?),
        _ => None,
    };
    let start = Instant::now();
    let (report, got, busy) = std::thread::scope(|s| {
        let h = s.spawn(|| sender.send(&frames, pace));
        let mut got = 0u64;
        let mut busy = Duration::ZERO;
        let mut last_rx = Instant::now();
        loop {
            let t = Instant::now();
            let k = sock.rx_batch(64, |_| {})?;
            if k > 0 {
                busy += t.elapsed();
                got += u64::from(k);
                last_rx = Instant::now();
            } else if h.is_finished() && last_rx.elapsed() > Duration::from_millis(200) {
                break;
            }
        }
        let report = h.join().map_err(|_| "sender panicked")??;
        Ok::<_, Box<dyn std::error::Error>>((report, got, busy))
    })?;
    let st = sock.statistics()?;
    println!(
        "mode={mode:?} len={len} sent={} in {:.3}s ({:.0} pps) received={got} ({:.0} pps over the send) loss={:.3}% \
         receiver busy={:.0}% hugepages={} stats={st:?}",
        report.sent,
        report.elapsed.as_secs_f64(),
        report.pps(),
        got as f64 / report.elapsed.as_secs_f64(),
        100.0 * (report.sent - got.min(report.sent)) as f64 / report.sent as f64,
        100.0 * busy.as_secs_f64() / start.elapsed().as_secs_f64(),
        sock.hugepages(),
    );
    Ok(())
}
