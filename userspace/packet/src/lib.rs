//! Zero-copy packet view for CoMo-rs.
//!
//! A [`Packet`] borrows its bytes from wherever they live (an mmapped trace file, an AF_XDP
//! frame, a staging buffer) and carries the capture metadata: timestamp in nanoseconds, wire
//! length, captured length, link type and input interface. [`Layers`] are the offsets of the
//! L2/L3/L4/payload headers, computed once per packet by [`Layers::parse`].

mod layers;
mod linktype;

pub use layers::{Layers, L3Proto, Truncation};
pub use linktype::LinkType;

/// One captured packet: metadata plus a borrowed view of its captured bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the packet on the wire, in bytes (may exceed `data.len()`).
    pub wire_len: u32,
    /// The captured bytes, starting at the link-layer header of `link`.
    pub data: &'a [u8],
    /// Link-layer type of `data`.
    pub link: LinkType,
    /// Input interface: pcapng interface id, ERF port, AF_XDP queue owner; 0 when unknown.
    pub interface: u32,
}

impl<'a> Packet<'a> {
    /// Captured length in bytes.
    #[inline]
    pub fn cap_len(&self) -> u32 {
        self.data.len() as u32
    }

    /// Whether fewer bytes were captured than were on the wire.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.wire_len)
    }
}
