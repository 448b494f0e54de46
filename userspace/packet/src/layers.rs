//! Layer offsets of a packet, computed once: L2, L3, L4 and payload.
//!
//! (Skeleton: the parser is being written; see the issue "Trace files, packets and the filter
//! language".)

use crate::Packet;

/// Network-layer protocol found behind the link layer (and its encapsulations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3Proto {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP or RARP.
    Arp,
    /// Anything else, by EtherType (or the link's own protocol number).
    Other(u16),
}

/// How far the parser got when the captured bytes ran out before the headers did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truncation {
    /// The link-layer (or an encapsulation) header is incomplete.
    Link,
    /// The network-layer header is incomplete.
    Network,
    /// The transport-layer header is incomplete.
    Transport,
}

/// Offsets (from the start of the captured bytes) of each layer of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layers {
    /// Offset of the network-layer header, if one was found.
    pub l3: Option<u16>,
    /// Network-layer protocol at `l3`.
    pub l3_proto: Option<L3Proto>,
    /// Offset of the transport-layer header (None for non-first fragments).
    pub l4: Option<u16>,
    /// IP protocol number of the transport layer (after IPv6 extension headers).
    pub l4_proto: Option<u8>,
    /// Offset of the payload after the transport header.
    pub payload: Option<u16>,
    /// Set when the captured bytes end inside a header.
    pub truncated: Option<Truncation>,
}

impl Layers {
    /// Parses the headers of `pkt`.
    pub fn parse(_pkt: &Packet<'_>) -> Self {
        Self::default()
    }
}
