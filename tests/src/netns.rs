//! The privileged tests' fixture: the gate [`privileged`], and the namespaces, veth pairs and
//! raw-frame sender of `como-netlab` (re-exported here), test frames carrying a sequence
//! number, a SCHED_FIFO guard and an fd counter.
//!
//! Everything a test creates has a unique name (the process id and a counter) and is removed
//! when its guard drops, also when the test fails; traffic stays inside the namespaces the test
//! creates (see `como_netlab`).
//!
//! ```no_run
//! use como_tests::netns::{privileged, NetNs, PacketSender, Pace, VethPair};
//! if !privileged("my_test") { return; }
//! let rx = NetNs::new("rx").unwrap();
//! let tx = NetNs::new("tx").unwrap();
//! let veth = VethPair::new(&rx, Some(&tx)).unwrap();
//! let ifindex = rx.ifindex(&veth.a).unwrap();
//! let mut sender = PacketSender::in_ns(&tx, &veth.b).unwrap();
//! sender.send(&[vec![0u8; 64]], Pace::TopSpeed).unwrap();
//! # let _ = ifindex;
//! ```

use std::io;
use std::process::Command;

pub use como_netlab::{ifindex, NetNs, Pace, PacketSender, SendReport, VethPair};

/// Whether a privileged test can run here (root, `ip` from iproute2, network namespaces).
///
/// When it cannot: with `COMO_REQUIRE_PRIVILEGED=1` in the environment this panics (the test
/// fails, as CI wants); otherwise it prints why `test` is skipped and returns `false`.
pub fn privileged(test: &str) -> bool {
    match check_privileged() {
        Ok(()) => true,
        Err(reason) => {
            if std::env::var("COMO_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                panic!("{test}: privileged test cannot run (COMO_REQUIRE_PRIVILEGED=1): {reason}");
            }
            eprintln!("{test}: SKIPPED (privileged test): {reason}");
            false
        }
    }
}

fn check_privileged() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("`ip -V` failed: {}", o.status)),
        Err(e) => return Err(format!("`ip` (iproute2) not found: {e}")),
    }
    if !std::path::Path::new("/proc/self/ns/net").exists() {
        return Err("no network namespaces (/proc/self/ns/net)".into());
    }
    Ok(())
}

/// An Ethernet frame of `len` bytes (at least 60) for tests: broadcast destination, a
/// locally administered source, EtherType 0x88B5 (IEEE "local experimental"), then `seq` as 8
/// big-endian bytes and a byte pattern derived from `seq`. No stack on the receiving side
/// reacts to it.
pub fn test_frame(seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x02, 0xc0, 0x40, 0x00, 0x00, 0x01]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.push(x as u8);
    }
    f
}

/// The sequence number [`test_frame`] put in a frame, if it is one.
pub fn test_frame_seq(frame: &[u8]) -> Option<u64> {
    if frame.get(12..14)? != [0x88, 0xb5] {
        return None;
    }
    Some(u64::from_be_bytes(frame.get(14..22)?.try_into().ok()?))
}

/// Runs the calling thread under `SCHED_FIFO` at `priority` (1-99) until the guard drops
/// (then back to `SCHED_OTHER`). For a test's receiving thread that blocks when idle: on a
/// shared, loaded machine it then wakes as soon as packets arrive instead of waiting for a
/// time slice. Needs root (CAP_SYS_NICE).
pub fn realtime(priority: i32) -> io::Result<RealtimeGuard> {
    set_sched(libc::SCHED_FIFO, priority)?;
    Ok(RealtimeGuard { _private: () })
}

fn set_sched(policy: libc::c_int, priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param read during the call.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returned by [`realtime`]: puts the thread back to `SCHED_OTHER` on drop.
#[derive(Debug)]
pub struct RealtimeGuard {
    _private: (),
}

impl Drop for RealtimeGuard {
    fn drop(&mut self) {
        let _ = set_sched(libc::SCHED_OTHER, 0);
    }
}

/// Number of open file descriptors of this process (entries of /proc/self/fd).
pub fn open_fds() -> io::Result<usize> {
    // The read_dir handle itself is one entry while it is open; subtract it.
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn namespaces_and_veth_pairs_are_removed_on_drop() {
        if !privileged("namespaces_and_veth_pairs_are_removed_on_drop") {
            return;
        }
        let ns = NetNs::new("fixture").expect("netns");
        let path = ns.path();
        assert!(path.exists());
        assert!(ns.name().starts_with("como-fixture-"));
        // Host end, two queues each way.
        let pair = VethPair::with_queues(&ns, None, 2).expect("veth");
        assert!(pair.a.len() <= 15 && pair.b.len() <= 15);
        let host_end = PathBuf::from("/sys/class/net").join(&pair.b);
        assert!(
            host_end.join("queues/rx-1").exists(),
            "2 RX queues on the host end"
        );
        assert!(ifindex(&pair.b).is_ok());
        assert!(
            ns.ifindex(&pair.a).is_ok(),
            "the other end is in the namespace"
        );
        assert!(ifindex(&pair.a).is_err(), "and not in ours");
        let flags = ns.ip(&["-o", "link", "show", &pair.a]).expect("ip link");
        assert!(flags.contains("UP"), "{flags}");
        // IPv6 is off in the namespace: the kernel sends nothing of its own on the link.
        let v6 = ns
            .run(|| std::fs::read_to_string("/proc/sys/net/ipv6/conf/default/disable_ipv6"))
            .expect("run");
        if let Ok(v) = v6 {
            assert_eq!(v.trim(), "1");
        }
        drop(pair);
        assert!(!host_end.exists(), "the host end is deleted with the pair");
        drop(ns);
        assert!(!path.exists(), "the namespace is deleted");
    }

    #[test]
    fn sender_sends_every_frame_at_the_asked_pace() {
        if !privileged("sender_sends_every_frame_at_the_asked_pace") {
            return;
        }
        let a = NetNs::new("fixture").expect("netns");
        let b = NetNs::new("fixture").expect("netns");
        let pair = VethPair::new(&a, Some(&b)).expect("veth");
        let mut sender = PacketSender::in_ns(&a, &pair.a).expect("sender");
        let frames: Vec<Vec<u8>> = (0..2000).map(|i| test_frame(i, 60)).collect();
        let report = sender.send(&frames, Pace::Pps(10_000)).expect("send");
        assert_eq!(report.sent, 2000);
        // 2000 frames at 10 kpps take 0.2 s; the sender never goes faster than asked.
        assert!(report.elapsed >= Duration::from_millis(195), "{report:?}");
        let rx = b
            .ip(&["-s", "-o", "link", "show", &pair.b])
            .expect("ip -s link");
        // `ip -s -o link` prints "RX: bytes packets ..." then the numbers.
        let packets = rx
            .split("RX:")
            .nth(1)
            .and_then(|r| r.split('\\').nth(1))
            .and_then(|n| n.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok());
        assert_eq!(packets, Some(2000), "{rx}");
    }

    #[test]
    fn test_frames_carry_their_sequence() {
        let f = test_frame(123_456, 64);
        assert_eq!(f.len(), 64);
        assert_eq!(test_frame_seq(&f), Some(123_456));
        assert_ne!(test_frame(1, 64), test_frame(2, 64));
        assert_eq!(test_frame(7, 10).len(), 60);
        assert_eq!(test_frame_seq(&[0u8; 30]), None);
    }
}
