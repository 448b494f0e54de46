//! Receiving allocates nothing: 20 000 packets read with `rx_batch` (frames going back to the
//! fill ring and, with a fill ring smaller than the UMEM, through the free list), the idle
//! wait and the statistics, under a counting allocator (privileged: fails under
//! `COMO_REQUIRE_PRIVILEGED=1` when it cannot run).

mod common;

use std::time::{Duration, Instant};

use af_xdp::{HugePages, SocketConfig, Umem, UmemConfig, XskSocket};
use common::{Redirect, XdpMode};
use como_tests::alloc::{allocations_during, CountingAlloc};
use como_tests::netns::{ifindex, privileged, test_frame, NetNs, Pace, PacketSender, VethPair};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn receiving_allocates_nothing_per_packet() {
    if !privileged("receiving_allocates_nothing_per_packet") {
        return;
    }
    const N: usize = 20_000;
    let rx = NetNs::new("xsk-alloc").expect("netns");
    let tx = NetNs::new("xsk-alloc").expect("netns");
    let veth = VethPair::new(&rx, Some(&tx)).expect("veth");
    let name = veth.a.clone();
    let (mut sock, _prog) = rx
        .run(|| {
            let idx = ifindex(&name).expect("ifindex");
            let prog = Redirect::attach(idx, XdpMode::Native, 1).expect("attach");
            let umem = Umem::new(&UmemConfig {
                frame_size: 2048,
                frame_count: 1024,
                headroom: 0,
                hugepages: HugePages::Off,
            })
            .expect("umem");
            let cfg = SocketConfig {
                rx_size: 1024,
                fill_size: 512,
                tx_size: 64,
                comp_size: 64,
                ..SocketConfig::default()
            };
            let sock = XskSocket::new(umem, idx, 0, &cfg).expect("socket");
            prog.set_socket(0, sock.fd()).expect("xskmap");
            (sock, prog)
        })
        .expect("run");
    let mut sender = PacketSender::in_ns(&tx, &veth.b).expect("sender");
    let frames: Vec<Vec<u8>> = (0..N as u64).map(|i| test_frame(i, 64)).collect();
    let _rt = como_tests::netns::realtime(10).expect("SCHED_FIFO for the receiver");
    let ((got, bytes, meta_seen), allocs) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let _rt = como_tests::netns::realtime(10).expect("SCHED_FIFO for the sender");
            sender.send(&frames, Pace::Pps(20_000)).expect("send")
        });
        let counted = allocations_during(|| {
            let deadline = Instant::now() + Duration::from_secs(15);
            let (mut got, mut bytes, mut meta_seen) = (0usize, 0u64, 0u64);
            let mut idle = 0u32;
            while got < N && Instant::now() < deadline {
                let k = sock
                    .rx_batch(64, |f| {
                        bytes += f.data.len() as u64;
                        meta_seen += u64::from(f.xdp_meta().is_some());
                    })
                    .expect("rx");
                got += k as usize;
                if k == 0 {
                    idle += 1;
                    if idle > 64 {
                        sock.wait(1).expect("poll");
                    }
                } else {
                    idle = 0;
                }
            }
            let st = sock.statistics().expect("statistics");
            let counts = sock.frame_counts();
            assert_eq!(st.rx_dropped + st.rx_ring_full, 0, "{st:?}");
            assert_eq!(counts.unaccounted(), 0, "{counts:?}");
            (got, bytes, meta_seen)
        });
        h.join().expect("sender");
        counted
    });
    assert_eq!(got, N, "every packet received");
    assert_eq!(bytes, 64 * N as u64);
    assert_eq!(meta_seen, N as u64, "64-byte frames all carry metadata");
    assert_eq!(allocs, 0, "allocations while receiving {N} packets");
}
