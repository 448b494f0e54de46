//! The XDP socket: UMEM registration, the four rings, bind, receive, statistics.
//!
//! Frame ownership: every frame of the UMEM is at any time in exactly one place — the fill
//! ring (the kernel may write a packet into it), the kernel (between taking it from the fill
//! ring and posting it on the RX ring), the RX ring (a packet waiting for us), the callback of
//! [`XskSocket::rx_batch`] (a packet being read), or the socket's free list (ours, waiting for
//! room in the fill ring). [`XskSocket::rx_batch`] puts each frame back into the fill ring right
//! after its callback and then tops the fill ring up from the free list, so with a fill ring at
//! least as large as the UMEM every frame not holding a packet is always available to the kernel.
//!
//! Multi-buffer packets ([`SocketConfig::multi_buffer`], `XDP_USE_SG`): a packet longer than a
//! frame arrives as a chain of descriptors, every one but the last with `XDP_PKT_CONTD` set.
//! The chain is copied into one buffer of the socket (allocated once, at bind) frame by frame,
//! each frame going back to the fill ring as soon as it is copied, and the whole packet is
//! handed to the callback when its last descriptor comes — also when the chain spans two calls
//! of [`XskSocket::rx_batch`]. The metadata is the one in front of the first frame.

use std::fmt;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use ebpf_filters_common::XdpMeta;

use crate::ring::Ring;
use crate::sys;
use crate::umem::{Umem, MAX_META_LEN};
use crate::Error;

/// Zero-copy wish for [`SocketConfig::zero_copy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy when the driver supports it on that queue, else copy mode (logged).
    #[default]
    Auto,
    /// Zero-copy or an error.
    On,
    /// Copy mode.
    Off,
}

impl fmt::Display for ZeroCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// The mode a socket is bound in (what the kernel reports in `XDP_OPTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The driver DMAs packets straight into the UMEM.
    ZeroCopy,
    /// The kernel copies each packet into a UMEM frame (generic XDP, and drivers such as veth).
    Copy,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroCopy => "zero-copy",
            Self::Copy => "copy",
        })
    }
}

/// Busy polling of the device queue from the receive calls (`SO_PREFER_BUSY_POLL`,
/// `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`). Works with zero-copy drivers that support it and
/// `net.core.*` settings that allow it (see the kernel's AF_XDP documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: microseconds to busy-poll per receive call.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy-poll round (the kernel's default is 8).
    pub budget: u32,
}

/// How to build an [`XskSocket`]. Ring sizes must be powers of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// RX ring entries.
    pub rx_size: u32,
    /// TX ring entries (created and mapped; not used yet).
    pub tx_size: u32,
    /// Fill ring entries; at least the UMEM's frame count keeps every free frame in it.
    pub fill_size: u32,
    /// Completion ring entries.
    pub comp_size: u32,
    /// Zero-copy or copy mode.
    pub zero_copy: ZeroCopy,
    /// Bind with `XDP_USE_NEED_WAKEUP` (the kernel tells when it needs a syscall to go on).
    pub need_wakeup: bool,
    /// Optional busy polling.
    pub busy_poll: Option<BusyPoll>,
    /// Bytes in front of each packet handed out as [`Frame::meta`] (at most 32, the kernel's
    /// limit on XDP metadata). Default: the size of `XdpMeta`.
    pub meta_len: usize,
    /// Zero the `meta_len` bytes in front of each packet before its frame goes back to the
    /// kernel, so a packet that arrives without metadata is not read with a stale one.
    pub clear_meta: bool,
    /// How long `bind` retries while the queue is busy (`EBUSY`). A socket closed on that
    /// queue (by this process or a killed one) frees it only a few tens of milliseconds later,
    /// when the kernel's deferred release runs. Zero: fail at once.
    pub bind_busy_timeout: Duration,
    /// Bind with `XDP_USE_SG` when the kernel and driver allow it (Linux 6.6 for copy mode):
    /// packets longer than a frame (jumbo frames) arrive in several frames and are handed out
    /// whole. Without it, or when the bind refuses it (logged; [`XskSocket::multi_buffer`]
    /// tells), the kernel drops such packets and counts them in `rx_dropped`.
    pub multi_buffer: bool,
}

impl Default for SocketConfig {
    /// RX/TX/completion 2048, fill 4096 (the default UMEM's frame count), zero-copy when
    /// available, need_wakeup, no busy polling, `XdpMeta`-sized metadata cleared after use,
    /// bind retried for 1 s while the queue is busy, multi-buffer packets when the kernel has them.
    fn default() -> Self {
        Self {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 4096,
            comp_size: 2048,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
            busy_poll: None,
            meta_len: size_of::<XdpMeta>(),
            clear_meta: true,
            bind_busy_timeout: Duration::from_secs(1),
            multi_buffer: true,
        }
    }
}

impl SocketConfig {
    /// Checks the values the kernel would refuse, with a message naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, v) in [
            ("rx_size", self.rx_size),
            ("tx_size", self.tx_size),
            ("fill_size", self.fill_size),
            ("comp_size", self.comp_size),
        ] {
            if !v.is_power_of_two() {
                return Err(Error::Config(format!(
                    "{name} = {v}: ring sizes must be powers of two (and not 0)"
                )));
            }
        }
        if self.meta_len > MAX_META_LEN {
            return Err(Error::Config(format!(
                "meta_len = {}: XDP metadata is at most {MAX_META_LEN} bytes",
                self.meta_len
            )));
        }
        Ok(())
    }
}

/// The kernel's counters for one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statistics {
    /// Packets dropped for a reason other than a full RX ring or an empty fill ring
    /// (in copy mode also: no frame could be taken from the fill ring).
    pub rx_dropped: u64,
    /// Descriptors with an invalid address or length seen on the fill ring.
    pub rx_invalid_descs: u64,
    /// Descriptors with an invalid address or length seen on the TX ring.
    pub tx_invalid_descs: u64,
    /// Packets dropped because the RX ring was full (the application did not keep up).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty when it needed a frame.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when it looked for work.
    pub tx_ring_empty_descs: u64,
}

/// Where the UMEM's frames are, as seen from userspace (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames in the UMEM.
    pub total: u32,
    /// Frames in the fill ring that the kernel has not taken yet.
    pub fill: u32,
    /// Frames holding packets on the RX ring, not read yet.
    pub rx: u32,
    /// Frames on the socket's free list (waiting for room in the fill ring).
    pub free: u32,
}

impl FrameCounts {
    /// Frames in none of the places above: held by the kernel between the fill and RX rings
    /// (transient), or lost. 0 on an idle socket that leaks nothing.
    pub fn unaccounted(&self) -> u32 {
        self.total
            .saturating_sub(self.fill.saturating_add(self.rx).saturating_add(self.free))
    }
}

/// One received packet, valid during the [`XskSocket::rx_batch`] callback.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The packet (`len` bytes from `addr`, or a copy of a multi-buffer packet's frames).
    pub data: &'a [u8],
    /// The [`SocketConfig::meta_len`] bytes right in front of the packet, where the XDP program
    /// put its metadata (fewer if the frame has less headroom; zeros when it wrote none and
    /// [`SocketConfig::clear_meta`] is on).
    pub meta: &'a [u8],
    /// Offset of the packet in the UMEM (the descriptor's address; a multi-buffer packet's
    /// first descriptor's, its bytes being a copy).
    pub addr: u64,
    /// Length of the packet (the descriptor's length; a multi-buffer packet's whole length).
    pub len: u32,
    /// The descriptor's options (always 0: a multi-buffer packet is handed out whole).
    pub options: u32,
}

impl Frame<'_> {
    /// The `XdpMeta` CoMo's XDP program wrote in front of the packet: the last
    /// `size_of::<XdpMeta>()` bytes of [`Frame::meta`], if they are there and carry
    /// `META_MAGIC`.
    pub fn xdp_meta(&self) -> Option<XdpMeta> {
        XdpMeta::read_before_packet(self.meta)
    }
}

/// An AF_XDP socket bound to one queue of one interface, with its own UMEM (one UMEM per
/// socket: `XDP_SHARED_UMEM` is not used). Create it in the network namespace of the
/// interface; it may then be moved to the worker thread that reads it (`Send`, not `Sync`).
///
/// Dropping it unmaps the rings, closes the socket (the kernel unbinds it and removes it from
/// any XSK map) and unmaps the UMEM.
pub struct XskSocket {
    // Field order is drop order: rings, then the socket, then the UMEM.
    rx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    #[expect(dead_code, reason = "the TX ring is created and mapped for later use")]
    tx: Ring<libc::xdp_desc>,
    #[expect(dead_code, reason = "completions come with TX, later")]
    comp: Ring<u64>,
    fd: OwnedFd,
    umem: Umem,
    /// Frames owned by userspace and not in the fill ring (capacity: every frame).
    free: Vec<u64>,
    mode: Mode,
    ifindex: u32,
    queue: u32,
    config: SocketConfig,
    /// RX descriptors this side refused (outside the UMEM or their frame).
    invalid: u64,
    /// Wakeup syscalls made.
    wakeups: u64,
    /// Whether the bind took `XDP_USE_SG`.
    sg: bool,
    /// The multi-buffer packet being put together (see the module docs).
    chain: Chain,
}

/// A multi-buffer packet being copied together, frame by frame.
#[derive(Debug, Default)]
struct Chain {
    /// The packet's bytes so far (capacity: [`MAX_CHAIN_FRAMES`] frames, reserved at bind).
    data: Vec<u8>,
    /// The metadata in front of its first frame.
    meta: [u8; MAX_META_LEN],
    /// Bytes of `meta` used.
    meta_len: usize,
    /// The first descriptor's address.
    addr: u64,
    /// Whether a chain is open (its first descriptor seen, not its last).
    open: bool,
    /// Whether the open chain outgrew the buffer (the packet is dropped at its end).
    overflow: bool,
}

/// Most frames one multi-buffer packet spans: the kernel's `MAX_SKB_FRAGS` (17) plus the head.
const MAX_CHAIN_FRAMES: usize = 18;

impl Chain {
    /// A descriptor that cannot be read: the packet it belongs to (if it spans several) is
    /// dropped at its last descriptor.
    fn skip(&mut self, options: u32) {
        if self.open || options & libc::XDP_PKT_CONTD != 0 {
            self.overflow = true;
        }
        self.open = options & libc::XDP_PKT_CONTD != 0;
    }

    /// Copies one descriptor's frame into the chain (`meta`: what lies in front of it, kept
    /// for the first). Returns the whole packet when this was its last descriptor.
    fn add(&mut self, addr: u64, options: u32, data: &[u8], meta: &[u8]) -> Option<Frame<'_>> {
        if !self.open {
            self.open = true;
            self.overflow = false;
            self.addr = addr;
            self.data.clear();
            self.meta_len = meta.len().min(MAX_META_LEN);
            let from = meta.len() - self.meta_len;
            if let (Some(dst), Some(src)) = (self.meta.get_mut(..self.meta_len), meta.get(from..)) {
                dst.copy_from_slice(src);
            }
        }
        if self.data.len() + data.len() <= self.data.capacity() {
            self.data.extend_from_slice(data);
        } else {
            self.overflow = true;
        }
        if options & libc::XDP_PKT_CONTD != 0 {
            return None;
        }
        self.open = false;
        if self.overflow {
            return None;
        }
        Some(Frame {
            data: &self.data,
            meta: self.meta.get(..self.meta_len).unwrap_or_default(),
            addr: self.addr,
            len: u32::try_from(self.data.len()).unwrap_or(u32::MAX),
            options: 0,
        })
    }
}

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("umem", &self.umem)
            .field("config", &self.config)
            .finish()
    }
}

fn sockopt_err(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Sockopt { op, source }
}

impl XskSocket {
    /// Creates a socket in the calling thread's network namespace, registers `umem`, creates
    /// and maps the fill, completion, RX and TX rings, puts every frame it can into the fill
    /// ring, and binds to queue `queue` of interface `ifindex` (zero-copy or copy mode as
    /// [`SocketConfig::zero_copy`] says; [`XskSocket::mode`] tells which it got).
    ///
    /// Packets reach the socket only once an XDP program redirects them to it (put
    /// [`XskSocket::fd`] into an XSK map at index `queue`).
    pub fn new(umem: Umem, ifindex: u32, queue: u32, config: &SocketConfig) -> Result<Self, Error> {
        config.validate()?;
        let fd = sys::xdp_socket().map_err(Error::Socket)?;
        let b = fd.as_fd();

        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: umem.frame_size(),
            headroom: umem.config().headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::setsockopt(b, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
            .map_err(sockopt_err("XDP_UMEM_REG (register the UMEM)"))?;
        let sizes = [
            (
                libc::XDP_UMEM_FILL_RING,
                config.fill_size,
                "XDP_UMEM_FILL_RING",
            ),
            (
                libc::XDP_UMEM_COMPLETION_RING,
                config.comp_size,
                "XDP_UMEM_COMPLETION_RING",
            ),
            (libc::XDP_RX_RING, config.rx_size, "XDP_RX_RING"),
            (libc::XDP_TX_RING, config.tx_size, "XDP_TX_RING"),
        ];
        for (opt, size, name) in sizes {
            let size = libc::c_int::try_from(size)
                .map_err(|_| Error::Config(format!("{name}: {size} entries is too many")))?;
            sys::setsockopt(b, libc::SOL_XDP, opt, &size).map_err(sockopt_err(name))?;
        }
        // SAFETY: xdp_mmap_offsets is a repr(C) struct of u64 fields: every bit pattern is valid.
        let (off, off_len) = unsafe {
            sys::getsockopt::<libc::xdp_mmap_offsets>(b, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
        }
        .map_err(sockopt_err("XDP_MMAP_OFFSETS"))?;
        if off_len < size_of::<libc::xdp_mmap_offsets>() {
            return Err(Error::Config(
                "the kernel's XDP_MMAP_OFFSETS has no ring flags (Linux < 5.4): too old".into(),
            ));
        }
        let map_ring = |ring: &'static str, e: std::io::Error| Error::Ring { ring, source: e };
        let fill = Ring::<u64>::map(
            b,
            config.fill_size,
            &off.fr,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        )
        .map_err(|e| map_ring("fill", e))?;
        let comp = Ring::<u64>::map(
            b,
            config.comp_size,
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        )
        .map_err(|e| map_ring("completion", e))?;
        let rx = Ring::<libc::xdp_desc>::map(b, config.rx_size, &off.rx, libc::XDP_PGOFF_RX_RING)
            .map_err(|e| map_ring("RX", e))?;
        let tx = Ring::<libc::xdp_desc>::map(b, config.tx_size, &off.tx, libc::XDP_PGOFF_TX_RING)
            .map_err(|e| map_ring("TX", e))?;

        if let Some(bp) = config.busy_poll {
            let one: libc::c_int = 1;
            let usecs = libc::c_int::try_from(bp.usecs)
                .map_err(|_| Error::Config(format!("busy_poll usecs = {}: too large", bp.usecs)))?;
            let budget = libc::c_int::try_from(bp.budget).map_err(|_| {
                Error::Config(format!("busy_poll budget = {}: too large", bp.budget))
            })?;
            sys::setsockopt(b, libc::SOL_SOCKET, sys::SO_PREFER_BUSY_POLL, &one)
                .map_err(sockopt_err("SO_PREFER_BUSY_POLL"))?;
            sys::setsockopt(b, libc::SOL_SOCKET, sys::SO_BUSY_POLL, &usecs)
                .map_err(sockopt_err("SO_BUSY_POLL"))?;
            sys::setsockopt(b, libc::SOL_SOCKET, sys::SO_BUSY_POLL_BUDGET, &budget)
                .map_err(sockopt_err("SO_BUSY_POLL_BUDGET"))?;
        }

        let count = umem.frame_count();
        let fs = u64::from(umem.frame_size());
        let mut free = Vec::with_capacity(count as usize);
        // Highest address last, so the fill ring gets frames in address order (pop from the end).
        free.extend((0..u64::from(count)).rev().map(|i| i * fs));
        let mut sock = Self {
            rx,
            fill,
            tx,
            comp,
            fd,
            umem,
            free,
            mode: Mode::Copy,
            ifindex,
            queue,
            config: config.clone(),
            invalid: 0,
            wakeups: 0,
            sg: false,
            chain: Chain::default(),
        };
        sock.top_up();
        sock.bind()?;
        Ok(sock)
    }

    fn bind(&mut self) -> Result<(), Error> {
        let wake = if self.config.need_wakeup {
            libc::XDP_USE_NEED_WAKEUP
        } else {
            0
        };
        let addr = |flags: u16| libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags | wake,
            sxdp_ifindex: self.ifindex,
            sxdp_queue_id: self.queue,
            sxdp_shared_umem_fd: 0,
        };
        let bind_err = |mode: &'static str, source: std::io::Error| {
            let hint = match (mode, source.raw_os_error()) {
                ("zero-copy", Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                    " (the driver has no zero-copy AF_XDP on this queue: use zero_copy = \"auto\" or \"off\")"
                }
                (_, Some(libc::ENODEV)) => " (no such interface in this network namespace)",
                (_, Some(libc::EINVAL)) => " (no such queue, or the interface is down)",
                (_, Some(libc::EBUSY)) => " (another AF_XDP socket is bound to this queue)",
                _ => "",
            };
            Error::Bind {
                ifindex: self.ifindex,
                queue: self.queue,
                mode,
                source,
                hint,
            }
        };
        let fd = self.fd.as_fd();
        let deadline = Instant::now() + self.config.bind_busy_timeout;
        let bind_once = |sa: &libc::sockaddr_xdp| loop {
            match sys::bind_xdp(fd, sa) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                r => break r,
            }
        };
        // Multi-buffer first when wanted; a kernel (< 6.6) or zero-copy driver without it
        // refuses the flag (EINVAL / EOPNOTSUPP): then the same bind without it.
        let want_sg = self.config.multi_buffer;
        let mut sg = false;
        let mut sg_refused = None;
        let mut bind = |sa: &libc::sockaddr_xdp| {
            if want_sg {
                let with = libc::sockaddr_xdp {
                    sxdp_flags: sa.sxdp_flags | libc::XDP_USE_SG,
                    ..*sa
                };
                match bind_once(&with) {
                    Ok(()) => {
                        sg = true;
                        return Ok(());
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                        sg_refused = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            bind_once(sa)
        };
        match self.config.zero_copy {
            ZeroCopy::On => {
                bind(&addr(libc::XDP_ZEROCOPY)).map_err(|e| bind_err("zero-copy", e))?
            }
            ZeroCopy::Off => bind(&addr(libc::XDP_COPY)).map_err(|e| bind_err("copy", e))?,
            ZeroCopy::Auto => match bind(&addr(libc::XDP_ZEROCOPY)) {
                Ok(()) => {}
                Err(zc) => {
                    bind(&addr(libc::XDP_COPY)).map_err(|e| bind_err("copy", e))?;
                    tracing::info!(
                        ifindex = self.ifindex,
                        queue = self.queue,
                        error = %zc,
                        "zero-copy AF_XDP refused; bound in copy mode"
                    );
                }
            },
        }
        self.sg = sg;
        if let (false, Some(e)) = (sg, sg_refused) {
            tracing::info!(
                ifindex = self.ifindex,
                queue = self.queue,
                error = %e,
                "multi-buffer AF_XDP (XDP_USE_SG) refused: packets longer than a frame are dropped"
            );
        }
        if sg {
            let max = MAX_CHAIN_FRAMES * self.umem.frame_size() as usize;
            self.chain.data = Vec::with_capacity(max);
        }
        // SAFETY: xdp_options is a repr(C) struct of one u32: every bit pattern is valid.
        let (opts, _) =
            unsafe { sys::getsockopt::<libc::xdp_options>(fd, libc::SOL_XDP, libc::XDP_OPTIONS) }
                .map_err(sockopt_err("XDP_OPTIONS"))?;
        self.mode = if opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
            Mode::ZeroCopy
        } else {
            Mode::Copy
        };
        Ok(())
    }

    /// Moves frames from the free list into the fill ring while there is room.
    fn top_up(&mut self) {
        let want = self.free.len() as u32;
        if want == 0 {
            return;
        }
        let room = self.fill.prod_free(want).min(want);
        for i in 0..room {
            // room <= free.len(), so pop succeeds `room` times.
            if let Some(addr) = self.free.pop() {
                self.fill.prod_write(i, addr);
            }
        }
        self.fill.prod_submit(room);
    }

    /// Reads up to `max` packets from the RX ring, calls `f` on each (in arrival order), and
    /// returns each frame to the fill ring right after its callback; then tops the fill ring
    /// up from the free list. Returns the number of packets read.
    ///
    /// When nothing was ready and the kernel asked for a wakeup (need_wakeup, or busy polling),
    /// makes the wakeup syscall. No allocation, no syscall while packets flow in copy mode.
    pub fn rx_batch<F>(&mut self, max: u32, mut f: F) -> Result<u32, Error>
    where
        F: FnMut(&Frame<'_>),
    {
        let n = self.rx.cons_ready(max);
        if n == 0 {
            self.top_up();
            if self.config.busy_poll.is_some()
                || (self.config.need_wakeup && self.fill.needs_wakeup())
            {
                self.wake()?;
            }
            return Ok(0);
        }
        let room = self.fill.prod_free(n).min(n);
        let fs = u64::from(self.umem.frame_size());
        let umem_len = self.umem.len() as u64;
        let base_ptr = self.umem.as_ptr();
        let headroom = u64::from(self.umem.config().headroom);
        let meta_len = self.config.meta_len as u64;
        let mut put = 0u32;
        for i in 0..n {
            let d = self.rx.cons_read(i);
            let chunk = d.addr & !(fs - 1);
            let end = d.addr.checked_add(u64::from(d.len));
            let valid = chunk < umem_len && end.is_some_and(|e| e <= chunk + fs);
            if !valid {
                // Not a frame of ours (cannot happen with a sane kernel): count it, never hand
                // it out and never put it in the fill ring. A multi-buffer packet it belongs to
                // is dropped whole.
                self.invalid += 1;
                self.chain.skip(d.options);
                continue;
            }
            let meta_start = d.addr.saturating_sub(meta_len).max(chunk + headroom);
            let chained = self.chain.open || d.options & libc::XDP_PKT_CONTD != 0;
            // SAFETY: chunk + fs <= umem_len (chunk is a multiple of fs below umem_len, and
            // umem_len is a multiple of fs), and meta_start <= d.addr <= d.addr + len <=
            // chunk + fs, so both ranges lie inside the UMEM mapping. The frame came off the RX
            // ring, so the kernel does not write it until we put it back in the fill ring
            // below, after the callback; the slices do not outlive this iteration.
            let (data, meta) = unsafe {
                (
                    std::slice::from_raw_parts(base_ptr.add(d.addr as usize), d.len as usize),
                    std::slice::from_raw_parts(
                        base_ptr.add(meta_start as usize),
                        (d.addr - meta_start) as usize,
                    ),
                )
            };
            if !chained {
                f(&Frame {
                    data,
                    meta,
                    addr: d.addr,
                    len: d.len,
                    options: 0,
                });
            } else if let Some(whole) = self.chain.add(d.addr, d.options, data, meta) {
                f(&whole);
            } else if !self.chain.open && self.chain.overflow {
                // A chain longer than the buffer (not from a sane kernel): dropped, counted.
                self.invalid += 1;
            }
            if self.config.clear_meta && d.addr > meta_start {
                // SAFETY: the same in-bounds range as `meta` above, still owned by us (the
                // callback's borrows ended with the call).
                unsafe {
                    std::ptr::write_bytes(
                        base_ptr.add(meta_start as usize),
                        0,
                        (d.addr - meta_start) as usize,
                    )
                };
            }
            if put < room {
                self.fill.prod_write(put, chunk);
                put += 1;
            } else if self.free.len() < self.free.capacity() {
                self.free.push(chunk);
            } else {
                self.invalid += 1;
            }
        }
        self.rx.cons_release(n);
        self.fill.prod_submit(put);
        self.top_up();
        Ok(n)
    }

    /// The wakeup syscall (`recvfrom(MSG_DONTWAIT)`): lets a zero-copy driver refill from the
    /// fill ring, or busy-polls the queue. [`XskSocket::rx_batch`] calls it when needed.
    pub fn wake(&mut self) -> Result<(), Error> {
        self.wakeups += 1;
        sys::recv_wakeup(self.fd.as_fd()).map_err(Error::Wake)
    }

    /// Waits up to `timeout_ms` (negative: forever) for packets on the RX ring (`poll`);
    /// for an idle receiver that does not want to spin. Returns whether some are ready.
    pub fn wait(&mut self, timeout_ms: i32) -> Result<bool, Error> {
        if self.rx.cons_ready(1) > 0 {
            return Ok(true);
        }
        sys::poll_in(self.fd.as_fd(), timeout_ms).map_err(Error::Wake)
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub fn statistics(&self) -> Result<Statistics, Error> {
        // SAFETY: xdp_statistics is a repr(C) struct of u64 fields: every bit pattern is valid.
        let (s, _len) = unsafe {
            sys::getsockopt::<libc::xdp_statistics>(
                self.fd.as_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
            )
        }
        .map_err(sockopt_err("XDP_STATISTICS"))?;
        // An older kernel writes only the first three fields; the rest stay 0.
        Ok(Statistics {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Where the frames are now (see [`FrameCounts`]).
    pub fn frame_counts(&mut self) -> FrameCounts {
        FrameCounts {
            total: self.umem.frame_count(),
            fill: self.fill.prod_outstanding(),
            rx: self.rx.cons_pending(),
            free: self.free.len() as u32,
        }
    }

    /// The socket, for an XSK map (`bpf_map_update_elem(xsks, &queue, &fd)`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Zero-copy or copy: what the bind got.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether packets longer than a frame are received (the bind took `XDP_USE_SG`; see
    /// [`SocketConfig::multi_buffer`]).
    pub fn multi_buffer(&self) -> bool {
        self.sg
    }

    /// Whether the UMEM is on 2 MiB hugepages.
    pub fn hugepages(&self) -> bool {
        self.umem.hugepages()
    }

    /// The UMEM.
    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// The interface index bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    /// RX descriptors this side refused because they pointed outside the UMEM or their frame
    /// (0 with a sane kernel).
    pub fn invalid_descs(&self) -> u64 {
        self.invalid
    }

    /// Wakeup syscalls made so far.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebpf_filters_common::META_MAGIC;

    fn frame_with_meta(meta: &[u8]) -> Frame<'_> {
        Frame {
            data: &[],
            meta,
            addr: 256,
            len: 0,
            options: 0,
        }
    }

    #[test]
    fn xdp_meta_reads_the_last_bytes_and_checks_the_magic() {
        let want = XdpMeta {
            rules: 0x0102_0304_0506_0708,
            recheck: 5,
            magic: META_MAGIC,
            gen: 1,
        };
        let mut bytes = vec![0xEEu8; 8];
        bytes.extend_from_slice(&want.rules.to_ne_bytes());
        bytes.extend_from_slice(&want.recheck.to_ne_bytes());
        bytes.extend_from_slice(&want.magic.to_ne_bytes());
        bytes.extend_from_slice(&want.gen.to_ne_bytes());
        assert_eq!(frame_with_meta(&bytes).xdp_meta(), Some(want));
        assert_eq!(frame_with_meta(&bytes[9..]).xdp_meta(), None, "too short");
        let mut stale = bytes.clone();
        stale[8 + 16] ^= 1;
        assert_eq!(frame_with_meta(&stale).xdp_meta(), None, "bad magic");
        assert_eq!(frame_with_meta(&[0; 24]).xdp_meta(), None, "cleared");
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two() {
        let e = SocketConfig {
            rx_size: 1000,
            ..SocketConfig::default()
        }
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("rx_size = 1000"), "{e}");
        let e = SocketConfig {
            meta_len: 40,
            ..SocketConfig::default()
        }
        .validate();
        assert!(e.is_err());
        assert!(SocketConfig::default().validate().is_ok());
    }

    #[test]
    fn a_socket_moves_to_its_worker_thread() {
        fn is_send<T: Send>() {}
        is_send::<XskSocket>();
        is_send::<Umem>();
    }

    #[test]
    fn frame_counts_account_for_every_frame() {
        let c = FrameCounts {
            total: 64,
            fill: 60,
            rx: 3,
            free: 1,
        };
        assert_eq!(c.unaccounted(), 0);
        assert_eq!(FrameCounts { fill: 50, ..c }.unaccounted(), 10);
    }
}
