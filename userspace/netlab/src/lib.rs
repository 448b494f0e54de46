//! Network namespaces, veth pairs and a raw-frame sender: the test bench of `como demo` and
//! `como send`, and the fixture of the privileged tests (`como_tests::netns` re-exports it).
//!
//! Everything made here has a unique name (the process id and a counter) and is removed when
//! its guard drops. Traffic stays inside the namespaces: a new namespace has only `lo`, a veth
//! pair joins two of them (or one and the caller's), and no route leads out. IPv6 is turned off
//! in the namespaces made here (so the kernel sends no router or neighbour solicitations of its
//! own onto the links). Needs root and `ip` from iproute2.
//!
//! ```no_run
//! use como_netlab::{NetNs, PacketSender, Pace, VethPair};
//! let rx = NetNs::new("rx").unwrap();
//! let tx = NetNs::new("tx").unwrap();
//! let veth = VethPair::new(&rx, Some(&tx)).unwrap();
//! let mut sender = PacketSender::in_ns(&tx, &veth.b).unwrap();
//! sender.send(&[vec![0u8; 64]], Pace::TopSpeed).unwrap();
//! ```

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// A unique name: `{prefix}{pid in base 36}x{counter}`, at most `max` characters (the prefix
/// is shortened to fit).
fn unique_name(prefix: &str, max: usize) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tail = format!("{}x{}", base36(std::process::id()), base36(n));
    let keep = max.saturating_sub(tail.len()).min(prefix.len());
    let prefix: String = prefix.chars().take(keep).collect();
    format!("{prefix}{tail}")
}

fn base36(mut v: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Runs a command, turning a non-zero exit into an error carrying its stderr.
fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// `ip netns add` of two processes (or threads) at once can race on the first mount of
/// /run/netns; serialise ours and retry.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

/// Deletes the `como-*` namespaces left by processes that no longer exist (a test killed
/// before its guards ran). The name carries the creator's pid: `como-{prefix}-{pid36}x{n36}`.
fn remove_stale_namespaces() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(tail) = name
            .strip_prefix("como-")
            .and_then(|r| r.rsplit('-').next())
        else {
            continue;
        };
        let Some((pid36, _)) = tail.split_once('x') else {
            continue;
        };
        let Ok(pid) = u32::from_str_radix(pid36, 36) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

impl NetNs {
    /// Creates a namespace named after `prefix` (made unique), with `lo` up and IPv6 off.
    /// The first call in a process also deletes namespaces this fixture created in processes
    /// that are gone.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static CLEANUP: std::sync::Once = std::sync::Once::new();
        // Never truncated after the prefix: the tail must stay whole for remove_stale_namespaces.
        let short: String = prefix.chars().filter(|c| *c != '/').take(24).collect();
        let name = format!("como-{short}-{}", unique_name("", 15));
        {
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            CLEANUP.call_once(remove_stale_namespaces);
            let mut last = None;
            for attempt in 0..5 {
                match run(Command::new("ip").args(["netns", "add", &name])) {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        last = Some(e);
                        thread::sleep(Duration::from_millis(20 * (attempt + 1)));
                    }
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        let ns = Self { name };
        ns.run(|| -> io::Result<()> {
            for f in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6");
                match std::fs::write(&path, "1") {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io::Error::other(format!("{path}: {e}"))),
                }
            }
            Ok(())
        })??;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip -n NAME` or `ip netns exec NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Enters the namespace on the calling thread (`setns(CLONE_NEWNET)`). Only for a thread
    /// made for it: the thread stays in the namespace.
    pub fn enter(&self) -> io::Result<()> {
        let f = File::open(self.path())?;
        // SAFETY: setns with a valid namespace fd; it changes only this thread's namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `f` in the namespace, on a thread made for it, and returns its result. Sockets and
    /// other objects `f` creates belong to the namespace and may be used from any thread after.
    /// A panic in `f` is propagated.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> io::Result<T> {
        thread::scope(|s| {
            let h = s.spawn(|| -> io::Result<T> {
                self.enter()?;
                Ok(f())
            });
            match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Spawns a thread that enters the namespace and then runs `f`.
    pub fn spawn<T, F>(&self, f: F) -> thread::JoinHandle<io::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = self.path();
        thread::spawn(move || {
            let file = File::open(&path)?;
            // SAFETY: setns with a valid namespace fd; it changes only this new thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
    }

    /// `ip -n NAME ARGS...`; its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip netns exec NAME PROGRAM ARGS...`, waiting for it; fails on a non-zero exit.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args))
    }

    /// A `Command` that runs `program` in the namespace (`ip netns exec`), to spawn yourself.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The index of interface `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> io::Result<u32> {
        let name = ifname.to_owned();
        self.run(move || ifindex(&name))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("netns: cannot delete {}: {e}", self.name);
        }
    }
}

/// The index of interface `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    let c = CString::new(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated string, read during the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::other(format!(
            "no interface {ifname:?}: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(i)
}

/// A veth pair: end `a` in one namespace, end `b` in another (or the host's). Both ends are up
/// with IPv6 off and no addresses. Dropping it deletes the pair (deleting a namespace does too).
#[derive(Debug)]
pub struct VethPair {
    /// Name of the end in the first namespace (at most 15 characters).
    pub a: String,
    /// Name of the end in the second namespace or the host (at most 15 characters).
    pub b: String,
    ns_a: String,
    ns_b: Option<String>,
}

impl VethPair {
    /// One queue each way; `b` in `ns_b`, or in the host's namespace when `None`.
    pub fn new(ns_a: &NetNs, ns_b: Option<&NetNs>) -> io::Result<Self> {
        Self::with_queues(ns_a, ns_b, 1)
    }

    /// `queues` RX and TX queues on each end (`numrxqueues`/`numtxqueues`; with native XDP,
    /// veth spreads flows over its RX queues).
    pub fn with_queues(ns_a: &NetNs, ns_b: Option<&NetNs>, queues: u32) -> io::Result<Self> {
        let a = unique_name("cva", 15);
        let b = unique_name("cvb", 15);
        let q = queues.max(1).to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["-n", ns_a.name(), "link", "add", &a]);
        cmd.args(["numrxqueues", &q, "numtxqueues", &q]);
        cmd.args(["type", "veth", "peer", "name", &b]);
        cmd.args(["numrxqueues", &q, "numtxqueues", &q]);
        match ns_b {
            Some(ns) => cmd.args(["netns", ns.name()]),
            // A number is a process id to `ip`: this process's own namespace.
            None => cmd.args(["netns", &std::process::id().to_string()]),
        };
        run(&mut cmd)?;
        let pair = Self {
            a,
            b,
            ns_a: ns_a.name().to_owned(),
            ns_b: ns_b.map(|n| n.name().to_owned()),
        };
        if ns_b.is_none() {
            // The host's default may have IPv6 on: turn it off on our end before it goes up.
            let path = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", pair.b);
            match std::fs::write(&path, "1") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::other(format!("{path}: {e}"))),
            }
        }
        run(Command::new("ip").args(["-n", &pair.ns_a, "link", "set", &pair.a, "up"]))?;
        let mut up_b = Command::new("ip");
        if let Some(ns) = &pair.ns_b {
            up_b.args(["-n", ns]);
        }
        run(up_b.args(["link", "set", &pair.b, "up"]))?;
        Ok(pair)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both; the namespace may already be gone.
        let _ = Command::new("ip")
            .args(["-n", &self.ns_a, "link", "del", &self.a])
            .output();
        if self.ns_b.is_none() {
            let _ = Command::new("ip").args(["link", "del", &self.b]).output();
        }
    }
}

/// How fast [`PacketSender::send`] sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as `sendmmsg` goes (batches of 64).
    TopSpeed,
    /// This many packets per second: batches of up to 64 frames and at most 1 ms of schedule
    /// each. A sender that fell behind (descheduled) does not catch up in a burst: when it is
    /// more than 2 ms late the schedule restarts from now, so no window of the send exceeds
    /// the rate by more than about 2 ms worth of packets.
    Pps(u64),
}

/// What [`PacketSender::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Frames the kernel accepted.
    pub sent: u64,
    /// Time from the first to the last `sendmmsg`.
    pub elapsed: Duration,
    /// `sendmmsg` calls retried after `ENOBUFS`/`EAGAIN`.
    pub retries: u64,
}

impl SendReport {
    /// Frames per second achieved.
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends raw Ethernet frames out of one interface with an `AF_PACKET` socket and `sendmmsg`.
/// The socket receives nothing (protocol 0).
#[derive(Debug)]
pub struct PacketSender {
    fd: OwnedFd,
    ifindex: u32,
}

const BATCH: usize = 64;

impl PacketSender {
    /// A sender on `ifname` in the calling thread's namespace.
    pub fn new(ifname: &str) -> io::Result<Self> {
        let ifindex = ifindex(ifname)?;
        // SAFETY: socket(2) takes no pointers; a non-negative result is a fresh fd we own.
        let fd = unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0;
        sll.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        // SAFETY: a valid sockaddr_ll of the given size, read during the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, ifindex })
    }

    /// A sender on `ifname` in namespace `ns`.
    pub fn in_ns(ns: &NetNs, ifname: &str) -> io::Result<Self> {
        let name = ifname.to_owned();
        ns.run(move || Self::new(&name))?
    }

    /// The interface index it sends on.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends every frame once, in order, at `pace`. A frame the kernel refuses for lack of
    /// buffer space (`ENOBUFS`, `EAGAIN`) is retried after a short pause, so every frame is
    /// handed to the interface; any other error stops and is returned.
    pub fn send<B: AsRef<[u8]>>(&mut self, frames: &[B], pace: Pace) -> io::Result<SendReport> {
        // SAFETY: iovec and mmsghdr are plain data; all-zero values are valid (null pointers,
        // zero lengths) and every used entry is filled below before the call.
        let mut iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
        // SAFETY: as above.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let per_batch = match pace {
            Pace::TopSpeed => BATCH,
            // At most 1 ms worth of schedule per call.
            Pace::Pps(r) => (r / 1000).clamp(1, BATCH as u64) as usize,
        };
        let start = Instant::now();
        let mut sent = 0usize;
        let mut retries = 0u64;
        // The schedule: frame `sent` is due at `epoch + (sent - epoch_sent) / r`.
        let mut epoch = start;
        let mut epoch_sent = 0usize;
        while sent < frames.len() {
            if let Pace::Pps(r) = pace {
                let due =
                    epoch + Duration::from_secs_f64((sent - epoch_sent) as f64 / r.max(1) as f64);
                let now = Instant::now();
                if now > due + Duration::from_millis(2) {
                    epoch = now;
                    epoch_sent = sent;
                } else {
                    wait_until(due);
                }
            }
            let n = per_batch.min(frames.len() - sent);
            for i in 0..n {
                let f = frames[sent + i].as_ref();
                iov[i].iov_base = f.as_ptr() as *mut libc::c_void;
                iov[i].iov_len = f.len();
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_len = 0;
            }
            // SAFETY: msgs[..n] are valid mmsghdrs whose iovecs point into `frames`, which
            // outlives the call; the socket is bound, so no address is needed.
            let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => {
                        retries += 1;
                        thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            sent += rc as usize;
        }
        Ok(SendReport {
            sent: sent as u64,
            elapsed: start.elapsed(),
            retries,
        })
    }
}

/// Sleeps most of the way to `due`, then spins.
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(300) {
            thread::sleep(left - Duration::from_micros(200));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_interface_limit_and_are_unique() {
        let a = unique_name("cva", 15);
        let b = unique_name("cva", 15);
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, b);
        assert!(unique_name("a-very-long-prefix-indeed", 15).len() <= 15);
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36), "100");
    }
}
