//! Zero-copy packet view for CoMo-rs.
//!
//! A [`Packet`] borrows its bytes from wherever they live (an mmapped trace file, an AF_XDP
//! frame, a staging buffer) and carries the capture metadata: timestamp in nanoseconds, wire
//! length, captured length, link type and input interface. [`Layers`] are the offsets of the
//! L2/L3/L4/payload headers, computed once per packet by [`Layers::parse`]; [`Parsed`] bundles
//! a packet with its layers so field accessors need no arguments, and [`Summary`] prints the
//! one-line, `tcpdump -n`-like description used by `como read`.

mod fastparse;
pub mod layers;
mod linktype;
mod prefetch;
mod summary;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub use layers::{Fragment, L3Proto, Layers, Truncation, MAX_MPLS, MAX_VLANS};
pub use linktype::LinkType;
pub use prefetch::prefetch;
pub use summary::Summary;

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
    /// A packet with no bytes at time 0: the filler of fixed-size packet arrays (batches).
    pub const EMPTY: Packet<'static> = Packet {
        ts_ns: 0,
        wire_len: 0,
        data: &[],
        link: LinkType::Ethernet,
        interface: 0,
    };

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

    /// Parses the headers of this packet (see [`Layers::parse`]).
    #[inline]
    pub fn layers(&self) -> Layers {
        Layers::parse(self)
    }

    /// Parses the headers of this packet and bundles them with it.
    #[inline]
    pub fn parse(&self) -> Parsed<'a> {
        Parsed::new(*self)
    }
}

/// A packet together with its parsed layers: field accessors read from the packet's bytes.
///
/// Dereferences to [`Layers`] for the offsets and encapsulation facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The packet.
    pub packet: Packet<'a>,
    /// Its layers, parsed once.
    pub layers: Layers,
}

impl<'a> Parsed<'a> {
    /// Parses `packet`.
    #[inline]
    pub fn new(packet: Packet<'a>) -> Self {
        Self {
            layers: Layers::parse(&packet),
            packet,
        }
    }

    /// Source IP address.
    #[inline]
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.layers.src_ip(self.packet.data)
    }

    /// Destination IP address.
    #[inline]
    pub fn dst_ip(&self) -> Option<IpAddr> {
        self.layers.dst_ip(self.packet.data)
    }

    /// Source port (TCP, UDP, UDP-Lite, SCTP).
    #[inline]
    pub fn src_port(&self) -> Option<u16> {
        self.layers.src_port(self.packet.data)
    }

    /// Destination port (TCP, UDP, UDP-Lite, SCTP).
    #[inline]
    pub fn dst_port(&self) -> Option<u16> {
        self.layers.dst_port(self.packet.data)
    }

    /// TCP flags byte.
    #[inline]
    pub fn tcp_flags(&self) -> Option<u8> {
        self.layers.tcp_flags(self.packet.data)
    }

    /// ICMP or ICMPv6 type and code.
    #[inline]
    pub fn icmp_type_code(&self) -> Option<(u8, u8)> {
        self.layers.icmp_type_code(self.packet.data)
    }

    /// GRE protocol type.
    #[inline]
    pub fn gre_protocol(&self) -> Option<u16> {
        self.layers.gre_protocol(self.packet.data)
    }

    /// IPv4 TTL or IPv6 hop limit.
    #[inline]
    pub fn ttl(&self) -> Option<u8> {
        self.layers.ttl(self.packet.data)
    }

    /// Source and destination MAC addresses of an Ethernet frame.
    #[inline]
    pub fn ether_addrs(&self) -> Option<(&'a [u8; 6], &'a [u8; 6])> {
        self.layers.ether_addrs(self.packet.link, self.packet.data)
    }

    /// The transport payload bytes that were captured, without link-layer padding or trailer
    /// beyond the IP datagram's length (empty when there is no payload offset).
    pub fn payload(&self) -> &'a [u8] {
        let data = self.packet.data;
        let Some(start) = self.layers.payload.map(usize::from) else {
            return &[];
        };
        let end = self.layers.ip_end(data).unwrap_or(data.len());
        data.get(start..end).unwrap_or(&[])
    }

    /// The one-line summary of this packet.
    #[inline]
    pub fn summary(&self) -> Summary<'a> {
        Summary::from_parsed(*self)
    }
}

impl std::ops::Deref for Parsed<'_> {
    type Target = Layers;

    #[inline]
    fn deref(&self) -> &Layers {
        &self.layers
    }
}
