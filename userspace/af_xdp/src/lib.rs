//! AF_XDP sockets for CoMo-rs, over the kernel ABI of `linux/if_xdp.h` and `libc` only.
//!
//! An XDP program redirects packets (`bpf_redirect_map` into an XSK map) to an AF_XDP socket
//! bound to one queue of one interface; the packets land in frames of a memory area shared with
//! the kernel (the [`Umem`]) and are announced on a ring. This crate owns all the `unsafe` that
//! takes (each block says why it is sound) and gives the rest of the project a safe API:
//!
//! ```no_run
//! use af_xdp::{SocketConfig, Umem, UmemConfig, XskSocket};
//! # fn main() -> Result<(), af_xdp::Error> {
//! let umem = Umem::new(&UmemConfig::default())?; // 4096 × 2 KiB frames, hugepages if possible
//! let mut sock = XskSocket::new(umem, 3 /* ifindex */, 0 /* queue */, &SocketConfig::default())?;
//! // ... put sock.fd() into the XDP program's XSK map at index 0, then:
//! loop {
//!     sock.rx_batch(64, |frame| {
//!         let _rules = frame.xdp_meta().map(|m| m.rules); // the XDP program's verdict
//!         let _packet: &[u8] = frame.data;
//!     })?;
//! }
//! # }
//! ```
//!
//! What is built: UMEM on 2 MiB hugepages when available ([`HugePages`]), registration with
//! headroom, fill/completion/RX/TX rings mapped with the offsets of `XDP_MMAP_OFFSETS` and
//! driven with Acquire/Release on the ring indexes (see the `ring` module's source), bind in
//! zero-copy or copy mode ([`ZeroCopy`], [`Mode`]) with `XDP_USE_NEED_WAKEUP`, optional busy
//! polling ([`BusyPoll`]), the kernel's `XDP_STATISTICS` ([`Statistics`]). Receiving hands out
//! each packet with the XDP metadata in front of it ([`Frame`]) and gives the frame back to the
//! fill ring right away; nothing is allocated per packet. The TX ring is created and mapped but
//! sending is not implemented yet.
//!
//! Sockets are created in the calling thread's network namespace (`bind` looks the interface
//! up there); once created they may move to any thread.

mod ring;
mod socket;
mod sys;
mod umem;

pub use socket::{
    BusyPoll, Frame, FrameCounts, Mode, SocketConfig, Statistics, XskSocket, ZeroCopy,
};
pub use umem::{HugePages, Umem, UmemConfig, HUGEPAGE_SIZE, MAX_META_LEN, XDP_PACKET_HEADROOM};

/// What can go wrong setting up or using an AF_XDP socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value the kernel would refuse.
    #[error("AF_XDP configuration: {0}")]
    Config(String),
    /// `mmap` of an area failed.
    #[error("cannot map {bytes} bytes for the {what}: {source}")]
    Mmap {
        /// What was being mapped.
        what: &'static str,
        /// Bytes asked for.
        bytes: usize,
        /// The system error.
        source: std::io::Error,
    },
    /// `hugepages = "on"` and the kernel could not give the hugepages.
    #[error(
        "hugepages = \"on\": cannot map the {bytes}-byte UMEM on {pages} 2 MiB hugepages: \
         {source} (reserve them, e.g. `echo {pages} > /proc/sys/vm/nr_hugepages` as root, or \
         set hugepages = \"auto\")"
    )]
    HugePages {
        /// UMEM bytes asked for.
        bytes: usize,
        /// 2 MiB pages needed.
        pages: usize,
        /// The system error.
        source: std::io::Error,
    },
    /// `socket(AF_XDP)` failed.
    #[error(
        "cannot create an AF_XDP socket: {0} (needs a kernel with CONFIG_XDP_SOCKETS and \
         CAP_NET_RAW)"
    )]
    Socket(std::io::Error),
    /// A socket option was refused.
    #[error("AF_XDP socket option {op}: {source}")]
    Sockopt {
        /// The option (and what it was for).
        op: &'static str,
        /// The system error.
        source: std::io::Error,
    },
    /// A ring could not be mapped.
    #[error("cannot map the AF_XDP {ring} ring: {source}")]
    Ring {
        /// Which ring.
        ring: &'static str,
        /// The system error.
        source: std::io::Error,
    },
    /// `bind` failed.
    #[error("cannot bind the AF_XDP socket to ifindex {ifindex} queue {queue} in {mode} mode: {source}{hint}")]
    Bind {
        /// Interface index.
        ifindex: u32,
        /// Queue.
        queue: u32,
        /// `zero-copy` or `copy`.
        mode: &'static str,
        /// The system error.
        source: std::io::Error,
        /// What the error most likely means (may be empty).
        hint: &'static str,
    },
    /// The wakeup or wait syscall failed (e.g. the interface went away).
    #[error("AF_XDP wakeup/poll: {0}")]
    Wake(std::io::Error),
}
