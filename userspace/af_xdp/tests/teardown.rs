//! Dropping an `XskSocket` tears everything down: its file descriptor is closed, its ring
//! mappings are gone, and its queue can be bound again. Alone in its test binary so that no
//! other test opens or closes descriptors while this one counts them (privileged: fails under
//! `COMO_REQUIRE_PRIVILEGED=1` when it cannot run).

mod common;

use std::time::Duration;

use af_xdp::{HugePages, SocketConfig, Umem, UmemConfig, XskSocket};
use common::{Redirect, XdpMode};
use como_tests::netns::{
    ifindex, open_fds, privileged, test_frame, NetNs, Pace, PacketSender, VethPair,
};

/// Mappings of socket files in this process (the AF_XDP rings are mmaps of the socket).
fn socket_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("socket:["))
        .count()
}

fn config() -> (UmemConfig, SocketConfig) {
    (
        UmemConfig {
            frame_size: 2048,
            frame_count: 256,
            headroom: 0,
            hugepages: HugePages::Off,
        },
        SocketConfig {
            rx_size: 256,
            fill_size: 256,
            tx_size: 64,
            comp_size: 64,
            ..SocketConfig::default()
        },
    )
}

#[test]
fn drop_closes_the_socket_unmaps_the_rings_and_frees_the_queue() {
    if !privileged("drop_closes_the_socket_unmaps_the_rings_and_frees_the_queue") {
        return;
    }
    let fds_before = open_fds().expect("count fds");
    let maps_before = socket_mappings();
    {
        let rx = NetNs::new("xsk-fd").expect("netns");
        let tx = NetNs::new("xsk-fd").expect("netns");
        let veth = VethPair::new(&rx, Some(&tx)).expect("veth");
        let (umem_cfg, sock_cfg) = config();
        for round in 0..3 {
            let (mut sock, prog) = rx
                .run(|| {
                    let idx = ifindex(&veth.a).expect("ifindex");
                    let prog = Redirect::attach(idx, XdpMode::Native, 1).expect("attach");
                    let umem = Umem::new(&umem_cfg).expect("umem");
                    // Rounds 1 and 2 bind the queue the previous round's socket had.
                    let sock = XskSocket::new(umem, idx, 0, &sock_cfg).expect("socket");
                    prog.set_socket(0, sock.fd()).expect("xskmap");
                    (sock, prog)
                })
                .expect("run");
            let mut sender = PacketSender::in_ns(&tx, &veth.b).expect("sender");
            let open = open_fds().expect("count fds");
            assert!(
                open >= fds_before + 5,
                "socket, program, map, link and sender are open ({open} vs {fds_before})"
            );
            assert_eq!(
                socket_mappings(),
                maps_before + 4,
                "fill, completion, RX and TX rings are mapped"
            );
            let frames: Vec<Vec<u8>> = (0..100).map(|i| test_frame(i, 64)).collect();
            sender.send(&frames, Pace::Pps(10_000)).expect("send");
            let mut got = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while got < 100 && std::time::Instant::now() < deadline {
                got += sock.rx_batch(64, |_| {}).expect("rx");
                if got < 100 {
                    sock.wait(10).expect("poll");
                }
            }
            assert_eq!(got, 100, "round {round}: traffic flows");
            drop(sock);
            drop(prog);
            drop(sender);
            assert_eq!(
                socket_mappings(),
                maps_before,
                "round {round}: rings unmapped"
            );
        }
    }
    assert_eq!(
        open_fds().expect("count fds"),
        fds_before,
        "every descriptor closed"
    );
    assert_eq!(socket_mappings(), maps_before);
}
