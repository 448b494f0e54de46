//! The XDP program redirecting matched frames into an AF_XDP socket (`como-af-xdp`) on a veth
//! in fresh network namespaces, native and skb mode: every matched frame arrives once, with the
//! program's `XdpMeta` in front of it (rules, generation), and the counters say so
//! (redirected, not redirect-failed); unmatched frames are not redirected. Privileged: under
//! `COMO_REQUIRE_PRIVILEGED=1` these fail instead of skipping when they cannot run.

use std::time::{Duration, Instant};

use af_xdp::{HugePages, SocketConfig, Umem, UmemConfig, XskSocket};
use como_packet::LinkType;
use como_tests::netns::{
    privileged, test_frame, test_frame_seq, NetNs, Pace, PacketSender, VethPair,
};
use como_xdp::{XdpMode, XdpProgram};
use ebpf_filters::compile;
use ebpf_filters::kernel::Tables;

const FRAMES: u64 = 300;

fn redirect(mode: XdpMode, test: &str) {
    if !privileged(test) {
        return;
    }
    let rx = NetNs::new("xrd").expect("netns");
    let tx = NetNs::new("xtd").expect("netns");
    let veth = VethPair::new(&rx, Some(&tx)).expect("veth");
    let a = veth.a.clone();
    let (prog, mut sock) = rx
        .run(move || {
            let mut prog = XdpProgram::load().unwrap_or_else(|e| panic!("load: {e}"));
            prog.attach(&a, mode)
                .unwrap_or_else(|e| panic!("attach {mode:?}: {e}"));
            let ifindex = como_tests::netns::ifindex(&a).expect("ifindex");
            let umem = Umem::new(&UmemConfig {
                frame_size: 2048,
                frame_count: 1024,
                headroom: 0,
                hugepages: HugePages::Off,
            })
            .expect("umem");
            let sock = XskSocket::new(umem, ifindex, 0, &SocketConfig::default()).expect("socket");
            prog.set_socket(0, sock.fd()).expect("xsk map");
            (prog, sock)
        })
        .expect("enter netns");
    // Rule 0 never matches; rule 1 takes the even test frames (the last byte of their
    // sequence number), rule 2 every test frame.
    let exprs = [
        "ether proto 0x88b6",
        "ether[21] & 1 = 0 and ether proto 0x88b5",
        "ether proto 0x88b5",
    ];
    let filters: Vec<_> = exprs
        .iter()
        .map(|e| compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let tables = Tables::compile(&filters.iter().map(Some).collect::<Vec<_>>()).expect("compile");
    let gen = prog.install(&tables).expect("install");
    let flagged = tables.gen_config().flagged;

    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|i| test_frame(i, 64)).collect();
    let before = prog.stats().expect("stats");
    let mut sender = PacketSender::in_ns(&tx, &veth.b).expect("sender");
    let mut got: Vec<(u64, como_xdp::XdpMeta)> = Vec::new();
    let mut bad = Vec::new();
    std::thread::scope(|s| {
        let h = s.spawn(|| sender.send(&frames, Pace::Pps(20_000)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while (got.len() as u64) < FRAMES && Instant::now() < deadline {
            let n = sock
                .rx_batch(64, |f| match (test_frame_seq(f.data), f.xdp_meta()) {
                    (Some(seq), Some(m)) => got.push((seq, m)),
                    other => bad.push(format!("{other:?} ({} bytes)", f.data.len())),
                })
                .expect("rx_batch");
            if n == 0 {
                sock.wait(1).expect("poll");
            }
        }
        let r = h.join().expect("sender thread").expect("send");
        assert_eq!(r.sent, FRAMES, "frames handed to the interface");
    });
    assert!(
        bad.is_empty(),
        "frames without a sequence number or metadata: {bad:?}"
    );
    assert_eq!(got.len() as u64, FRAMES, "every matched frame arrives once");
    for (i, (seq, m)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u64, "in order");
        let even = seq % 2 == 0;
        let want = 0b100 | if even { 0b010 } else { 0 };
        assert_eq!(m.gen, gen, "frame {seq}: generation");
        if flagged & 0b010 == 0 {
            assert_eq!(m.rules, want, "frame {seq}: rules");
        } else {
            assert_eq!(m.rules & !0b010, want & !0b010, "frame {seq}: rules");
            assert!(
                !even || m.rules & 0b010 != 0,
                "frame {seq}: flagged rule 1 superset"
            );
        }
    }
    let s = prog.stats().expect("stats");
    assert_eq!(s.seen - before.seen, FRAMES);
    assert_eq!(s.matched - before.matched, FRAMES);
    assert_eq!(s.redirected - before.redirected, FRAMES, "{s:?}");
    assert_eq!(s.redirect_failed - before.redirect_failed, 0);
    assert_eq!(s.per_rule[0] - before.per_rule[0], 0);
    assert_eq!(s.per_rule[2] - before.per_rule[2], FRAMES);

    // Unmatched frames pass to the stack: nothing reaches the socket.
    prog.install(&Tables::compile(&[Some(&filters[0])]).expect("compile"))
        .expect("install");
    let before = prog.stats().expect("stats");
    sender.send(&frames, Pace::Pps(20_000)).expect("send");
    std::thread::sleep(Duration::from_millis(200));
    let mut late = 0;
    sock.rx_batch(64, |_| late += 1).expect("rx_batch");
    assert_eq!(late, 0, "unmatched frames are not redirected");
    let s = prog.stats().expect("stats");
    assert_eq!(s.seen - before.seen, FRAMES);
    assert_eq!(s.redirected - before.redirected, 0);
    assert_eq!(s.passed - before.passed, FRAMES);
    drop(sock);
    drop(prog);
}

#[test]
fn xdp_redirect_to_af_xdp_native() {
    redirect(XdpMode::Native, "xdp_redirect_to_af_xdp_native");
}

#[test]
fn xdp_redirect_to_af_xdp_skb() {
    redirect(XdpMode::Skb, "xdp_redirect_to_af_xdp_skb");
}
