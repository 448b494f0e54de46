//! Attaching the XDP program to a veth in fresh network namespaces, native and skb mode,
//! with live traffic; re-attaching; replacing a program a crashed run left attached the old
//! way (netlink). Privileged: under `COMO_REQUIRE_PRIVILEGED=1` these fail instead of
//! skipping when they cannot run. Everything runs inside namespaces the test creates.

use std::process::Command;
use std::time::{Duration, Instant};

use como_packet::LinkType;
use como_tests::netns::{privileged, test_frame, NetNs, Pace, PacketSender, VethPair};
use como_xdp::{XdpMode, XdpProgram, XdpStats};
use ebpf_filters::compile;
use ebpf_filters::kernel::Tables;

/// Tables with one rule, `expr`.
fn tables(expr: &str) -> Tables {
    let f = compile(expr, LinkType::Ethernet).unwrap_or_else(|e| panic!("{expr}: {e}"));
    Tables::compile(&[Some(&f)]).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// `ip -d link show dev IFACE` in `ns`.
fn link_show(ns: &NetNs, iface: &str) -> String {
    ns.ip(&["-d", "link", "show", "dev", iface])
        .unwrap_or_else(|e| panic!("ip link show {iface}: {e}"))
}

/// The XDP program id `ip link` reports on `iface`, and whether it is generic (skb) mode.
fn attached_id(ns: &NetNs, iface: &str) -> Option<(u32, bool)> {
    let out = link_show(ns, iface);
    let generic = out.contains(" xdpgeneric");
    let id = out
        .split("prog/xdp id ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((id, generic))
}

const FRAMES: u64 = 200;

/// Sends `FRAMES` test frames (EtherType 0x88b5) from `tx` over `iface`, then waits (at most
/// 5 s) until the program has seen them all; the counters after that.
fn send(tx: &NetNs, iface: &str, prog: &XdpProgram, before: &XdpStats) -> XdpStats {
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|i| test_frame(i, 64)).collect();
    let mut s = PacketSender::in_ns(tx, iface).unwrap_or_else(|e| panic!("sender: {e}"));
    let r = s
        .send(&frames, Pace::Pps(20_000))
        .unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(r.sent, FRAMES, "frames handed to the interface");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = prog.stats().expect("stats");
        if now.seen - before.seen >= FRAMES || Instant::now() > deadline {
            // A little longer, so that a frame too many would show.
            std::thread::sleep(Duration::from_millis(50));
            return prog.stats().expect("stats");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn attach_mode_with_traffic(mode: XdpMode, test: &str) {
    if !privileged(test) {
        return;
    }
    let rx = NetNs::new("xrx").expect("netns");
    let tx = NetNs::new("xtx").expect("netns");
    let veth = VethPair::new(&rx, Some(&tx)).expect("veth");
    let a = veth.a.clone();
    let mut prog = rx
        .run(|| {
            let mut p = XdpProgram::load().unwrap_or_else(|e| panic!("load: {e}"));
            let got = p
                .attach(&a, mode)
                .unwrap_or_else(|e| panic!("attach {mode:?}: {e}"));
            assert_eq!(got, mode);
            // Attaching again (the same program) replaces the first attachment.
            let again = p
                .attach(&a, mode)
                .unwrap_or_else(|e| panic!("re-attach: {e}"));
            assert_eq!(again, mode);
            p
        })
        .expect("enter netns");
    let id = prog.id().expect("program id");
    assert_eq!(
        attached_id(&rx, &veth.a),
        Some((id, mode == XdpMode::Skb)),
        "ip link shows our program in {mode:?} mode:\n{}",
        link_show(&rx, &veth.a)
    );
    assert_eq!(prog.attached(), Some((veth.a.as_str(), mode)));

    // Live traffic: matched frames are counted, their redirect fails (no socket) and they pass.
    prog.install(&tables("ether proto 0x88b5"))
        .expect("install");
    let before = prog.stats().expect("stats");
    let s = send(&tx, &veth.b, &prog, &before);
    assert_eq!(s.seen - before.seen, FRAMES, "{s:?}");
    assert_eq!(s.matched - before.matched, FRAMES);
    assert_eq!(s.redirect_failed - before.redirect_failed, FRAMES);
    assert_eq!(s.passed - before.passed, FRAMES);
    assert_eq!(s.per_rule[0] - before.per_rule[0], FRAMES);
    assert_eq!(s.matched_bytes - before.matched_bytes, FRAMES * 64);

    // Unmatched frames are dropped when asked.
    prog.install(&tables("ether proto 0x88b6"))
        .expect("install");
    prog.set_drop_unmatched(true).expect("flags");
    let before = prog.stats().expect("stats");
    let s = send(&tx, &veth.b, &prog, &before);
    assert_eq!(s.seen - before.seen, FRAMES);
    assert_eq!(s.matched - before.matched, 0);
    assert_eq!(s.dropped - before.dropped, FRAMES);

    prog.detach().expect("detach");
    assert_eq!(attached_id(&rx, &veth.a), None, "detached");
    assert_eq!(prog.attached(), None);

    // Drop detaches too.
    let a = veth.a.clone();
    rx.run(move || {
        let mut p = XdpProgram::load().unwrap_or_else(|e| panic!("load: {e}"));
        p.attach(&a, mode).unwrap_or_else(|e| panic!("attach: {e}"));
        drop(p);
    })
    .expect("enter netns");
    assert_eq!(attached_id(&rx, &veth.a), None, "dropped program detached");
}

#[test]
fn xdp_attach_native_on_veth_with_traffic() {
    attach_mode_with_traffic(XdpMode::Native, "xdp_attach_native_on_veth_with_traffic");
}

#[test]
fn xdp_attach_skb_on_veth_with_traffic() {
    attach_mode_with_traffic(XdpMode::Skb, "xdp_attach_skb_on_veth_with_traffic");
}

/// A private BPF filesystem mount (for pinning), unmounted on drop.
struct BpfFs {
    dir: std::path::PathBuf,
}

impl BpfFs {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "como-xdp-bpffs-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t bpf: {st}");
        Self { dir }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A program attached through netlink by a run that then died (here: `ip link set ... pinned`
/// and the pin removed) is replaced by `attach`, in skb and in native mode.
#[test]
fn xdp_attach_replaces_leftover_netlink_program() {
    if !privileged("xdp_attach_replaces_leftover_netlink_program") {
        return;
    }
    let rx = NetNs::new("xlo").expect("netns");
    let veth = VethPair::new(&rx, None).expect("veth");
    let fs = BpfFs::new();
    for (ip_mode, mode, generic) in [
        ("xdpgeneric", XdpMode::Skb, true),
        ("xdpdrv", XdpMode::Native, false),
        ("xdpgeneric", XdpMode::Auto, false),
    ] {
        // The leftover: attached the old way, then its loader is gone (only the device
        // holds it).
        let pin = fs.dir.join("leftover");
        let old_id = {
            let mut old = XdpProgram::load().expect("load");
            old.pin(&pin).expect("pin");
            let out = Command::new("ip")
                .args([
                    "-n",
                    rx.name(),
                    "link",
                    "set",
                    "dev",
                    &veth.a,
                    ip_mode,
                    "pinned",
                ])
                .arg(&pin)
                .output()
                .expect("ip");
            assert!(
                out.status.success(),
                "ip link set {ip_mode} pinned: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::remove_file(&pin).expect("unpin");
            old.id().expect("id")
        };
        assert_eq!(
            attached_id(&rx, &veth.a).map(|(id, _)| id),
            Some(old_id),
            "the leftover is attached"
        );
        let a = veth.a.clone();
        let (new_id, got) = rx
            .run(move || {
                let mut p = XdpProgram::load().unwrap_or_else(|e| panic!("load: {e}"));
                let got = p
                    .attach(&a, mode)
                    .unwrap_or_else(|e| panic!("attach {mode:?} over a leftover: {e}"));
                let id = p.id().expect("id");
                // Keep it attached while we look, then drop (detach).
                (id, got, p)
            })
            .map(|(id, got, p)| {
                let shown = attached_id(&rx, &veth.a);
                drop(p);
                assert_eq!(
                    shown,
                    Some((id, got == XdpMode::Skb)),
                    "ours replaced the leftover"
                );
                (id, got)
            })
            .expect("enter netns");
        assert_ne!(new_id, old_id);
        assert_eq!(got == XdpMode::Skb, generic, "{mode:?} attached as {got:?}");
        assert_eq!(attached_id(&rx, &veth.a), None, "nothing left after drop");
    }
}

/// `rx-vlan-offload` of `iface` in `ns` as `ethtool -k` prints it.
fn rx_vlan_offload(ns: &NetNs, iface: &str) -> bool {
    let out = ns
        .exec("ethtool", &["-k", iface])
        .unwrap_or_else(|e| panic!("ethtool -k {iface}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rx-vlan-offload:"))
        .unwrap_or_else(|| panic!("no rx-vlan-offload in ethtool -k {iface}:\n{text}"));
    line.split(':')
        .nth(1)
        .is_some_and(|v| v.trim().starts_with("on"))
}

/// A NIC that strips 802.1Q tags on receive would hide them from the program: while attached,
/// the program turns the interface's RX VLAN stripping off, detach turns it back on, and an
/// interface where it was off stays off. (What stripping does to the frames the program sees
/// needs a NIC: on veth a tag is never stripped, and this kernel has no 802.1Q devices to make
/// an offloaded one.)
#[test]
fn xdp_attach_turns_rx_vlan_stripping_off_while_attached() {
    if !privileged("xdp_attach_turns_rx_vlan_stripping_off_while_attached") {
        return;
    }
    let rx = NetNs::new("xvrx").expect("netns");
    let veth = VethPair::new(&rx, None).expect("veth");
    let a = veth.a.clone();
    assert!(rx_vlan_offload(&rx, &a), "veth strips tags by default");
    let attach = |a: String| {
        rx.run(move || {
            let mut p = XdpProgram::load().unwrap_or_else(|e| panic!("load: {e}"));
            p.attach(&a, XdpMode::Native)
                .unwrap_or_else(|e| panic!("attach: {e}"));
            p
        })
        .expect("enter netns")
    };
    let mut prog = attach(a.clone());
    assert!(!rx_vlan_offload(&rx, &a), "stripping off while attached");
    rx.run(move || prog.detach().expect("detach"))
        .expect("enter netns");
    assert!(rx_vlan_offload(&rx, &a), "stripping back on after detach");
    // Dropping the program (no explicit detach) restores it too.
    let prog = attach(a.clone());
    assert!(!rx_vlan_offload(&rx, &a));
    rx.run(move || drop(prog)).expect("enter netns");
    assert!(rx_vlan_offload(&rx, &a), "stripping back on after drop");

    // Off before: left off.
    rx.exec("ethtool", &["-K", &a, "rxvlan", "off"])
        .expect("ethtool -K");
    assert!(!rx_vlan_offload(&rx, &a));
    let mut prog = attach(a.clone());
    rx.run(move || prog.detach().expect("detach"))
        .expect("enter netns");
    assert!(!rx_vlan_offload(&rx, &a), "left off");
}

/// An MTU that needs multi-buffer frames (jumbo frames): the program is multi-buffer aware
/// (`xdp.frags`), so the driver takes it in native mode, and `auto` picks native. (veth refuses
/// a program without it at this MTU with `ERANGE`; a driver that has no multi-buffer XDP still
/// does, which `XdpError::MtuTooLarge` names.)
#[test]
fn xdp_attach_native_at_a_jumbo_mtu() {
    if !privileged("xdp_attach_native_at_a_jumbo_mtu") {
        return;
    }
    let rx = NetNs::new("xmtu").expect("netns");
    let veth = VethPair::new(&rx, None).expect("veth");
    rx.ip(&["link", "set", &veth.a, "mtu", "9000"])
        .expect("mtu a");
    std::process::Command::new("ip")
        .args(["link", "set", &veth.b, "mtu", "9000"])
        .status()
        .expect("mtu b");
    let a = veth.a.clone();
    let (mtu, native, auto) = rx
        .run(move || {
            let mtu = como_xdp::mtu(&a).expect("mtu");
            let mut p = XdpProgram::load().unwrap_or_else(|e| panic!("load: {e}"));
            let native = p.attach(&a, XdpMode::Native).map_err(|e| e.to_string());
            let auto = p.attach(&a, XdpMode::Auto).map_err(|e| e.to_string());
            p.detach().expect("detach");
            (mtu, native, auto)
        })
        .expect("enter netns");
    assert_eq!(mtu, 9000);
    assert_eq!(native, Ok(XdpMode::Native), "native attach with MTU 9000");
    assert_eq!(auto, Ok(XdpMode::Native));
}
