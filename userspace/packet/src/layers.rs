//! Layer offsets of a packet, computed once: L2, L3, L4 and payload.
//!
//! [`Layers::parse`] walks the headers of a [`Packet`] from its link layer down to the transport
//! layer, without allocating: VLAN and MPLS stacks are kept in fixed-size arrays (the first
//! [`MAX_VLANS`] / [`MAX_MPLS`] entries) with their total depth. Every read is bounds-checked: a
//! packet whose captured bytes end inside a header is parsed as far as the bytes go and
//! [`Layers::truncated`] says in which layer it stopped; a header whose fields are impossible
//! (bad IP version, IHL below 5, TCP data offset below 5) stops the walk and is reported in
//! [`Layers::malformed`].
//!
//! The accessors that return field values (`src_ip`, `src_port`, `tcp_flags` ...) read them from
//! the packet bytes on demand; [`crate::Parsed`] bundles the bytes with the layers so they can be
//! called without arguments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{LinkType, Packet};

/// How many VLAN ids [`Layers::vlan_ids`] keeps (outermost first); deeper tags are only counted.
pub const MAX_VLANS: usize = 4;
/// How many MPLS labels [`Layers::mpls_labels`] keeps (top of stack first); deeper labels are
/// only counted.
pub const MAX_MPLS: usize = 4;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of RARP.
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad service VLAN tag (QinQ).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ EtherType still seen in captures.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// EtherType of MPLS unicast.
pub const ETHERTYPE_MPLS: u16 = 0x8847;
/// EtherType of MPLS multicast.
pub const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
/// EtherType of PPPoE discovery.
pub const ETHERTYPE_PPPOE_DISCOVERY: u16 = 0x8863;
/// EtherType of a PPPoE session.
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of IGMP.
pub const IPPROTO_IGMP: u8 = 2;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;
/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IP protocol number of AH.
pub const IPPROTO_AH: u8 = 51;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const IPPROTO_NONE: u8 = 59;
/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: u8 = 132;
/// IP protocol number of UDP-Lite.
pub const IPPROTO_UDPLITE: u8 = 136;

/// TCP FIN flag (in [`Layers::tcp_flags`]).
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP PSH flag.
pub const TCP_PSH: u8 = 0x08;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;
/// TCP URG flag.
pub const TCP_URG: u8 = 0x20;
/// TCP ECE flag.
pub const TCP_ECE: u8 = 0x40;
/// TCP CWR flag.
pub const TCP_CWR: u8 = 0x80;

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

/// How far the parser got when the captured bytes ran out before the headers did; also used
/// by [`Layers::malformed`] to name the layer whose header is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truncation {
    /// The link-layer (or an encapsulation) header is incomplete.
    Link,
    /// The network-layer header is incomplete.
    Network,
    /// The transport-layer header is incomplete.
    Transport,
}

/// IPv4 or IPv6 fragmentation of a packet that is a fragment (offset > 0 or more-fragments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fragment {
    /// Fragment offset in bytes (the header field times 8).
    pub offset: u16,
    /// The more-fragments flag.
    pub more: bool,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
}

/// Offsets (from the start of the captured bytes) of each layer of a packet, plus the
/// encapsulation facts found on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layers {
    /// Offset of the link-layer header (0, or the 802.11 header behind a radiotap header).
    pub l2: Option<u16>,
    /// Offset just after the link-layer header (where VLAN tags, MPLS, PPPoE or L3 begin).
    pub link_end: Option<u16>,
    /// The protocol field of the link-layer header in the link's own numbering: EtherType for
    /// Ethernet (behind LLC/SNAP for 802.3 frames), SLL, SLL2, C_HDLC and 802.11; PPP protocol for
    /// PPP; address family for NULL/LOOP; None for raw IP and when the link has none.
    pub link_proto: Option<u16>,
    /// Offset of an 802.2 LLC header that is not SNAP (802.3 length frames, SLL protocol 4).
    pub llc: Option<u16>,
    /// EtherType identifying the network layer after every encapsulation (IP via PPP, NULL,
    /// raw or MPLS is mapped to 0x0800/0x86dd).
    pub ethertype: Option<u16>,
    /// Total number of VLAN tags (802.1Q 0x8100, 802.1ad 0x88a8, 0x9100), any depth.
    pub vlan_depth: u16,
    /// VLAN ids (12 bits) of the first [`MAX_VLANS`] tags, outermost first.
    pub vlan_ids: [u16; MAX_VLANS],
    /// Total number of MPLS label stack entries.
    pub mpls_depth: u16,
    /// Labels (20 bits) of the first [`MAX_MPLS`] stack entries, top first.
    pub mpls_labels: [u32; MAX_MPLS],
    /// PPPoE session id, when the packet is a PPPoE session frame.
    pub pppoe_session: Option<u16>,
    /// Offset of the network-layer header, if one was found.
    pub l3: Option<u16>,
    /// Network-layer protocol at `l3`.
    pub l3_proto: Option<L3Proto>,
    /// Fragmentation, when the packet is an IPv4 or IPv6 fragment.
    pub frag: Option<Fragment>,
    /// Offset of the transport-layer header (None for non-first fragments).
    pub l4: Option<u16>,
    /// IP protocol number of the transport layer (after IPv6 extension headers); set for
    /// non-first fragments too (from the IPv4 header or the IPv6 fragment header).
    pub l4_proto: Option<u8>,
    /// Offset of the payload after the transport header.
    pub payload: Option<u16>,
    /// Set when the captured bytes end inside a header.
    pub truncated: Option<Truncation>,
    /// Set when a header holds impossible values (the walk stops there).
    pub malformed: Option<Truncation>,
}

/// Reads a big-endian u16 at `o`.
#[inline]
pub(crate) fn be16(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*d.get(o..)?.first_chunk::<2>()?))
}

/// Reads a big-endian u32 at `o`.
#[inline]
pub(crate) fn be32(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*d.get(o..)?.first_chunk::<4>()?))
}

/// Reads a byte at `o`.
#[inline]
pub(crate) fn byte(d: &[u8], o: usize) -> Option<u8> {
    d.get(o).copied()
}

/// The source address (the destination with `dst`) of the `proto` header at `l3` of `d`,
/// when it is IPv4 or IPv6 and the address is captured.
#[inline(always)]
fn addr_in(d: &[u8], l3: usize, proto: L3Proto, dst: bool) -> Option<IpAddr> {
    match proto {
        L3Proto::Ipv4 => {
            let at = l3 + if dst { 16 } else { 12 };
            let b = *d.get(at..)?.first_chunk::<4>()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        L3Proto::Ipv6 => {
            let at = l3 + if dst { 24 } else { 8 };
            let b = *d.get(at..)?.first_chunk::<16>()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Maps a PPP protocol number to the EtherType of the same protocol, when there is one.
fn ppp_to_ethertype(proto: u16) -> Option<u16> {
    match proto {
        0x0021 => Some(ETHERTYPE_IPV4),
        0x0057 => Some(ETHERTYPE_IPV6),
        0x0281 => Some(ETHERTYPE_MPLS),
        0x0283 => Some(ETHERTYPE_MPLS_MULTICAST),
        _ => None,
    }
}

/// The parser's working state: the bytes and the layers found so far.
struct Walk<'d> {
    d: &'d [u8],
    l: Layers,
}

impl Walk<'_> {
    /// Checks that the captured bytes reach `end`; otherwise records truncation in `layer`.
    #[inline]
    fn need(&mut self, end: usize, layer: Truncation) -> Option<()> {
        if end <= self.d.len() {
            Some(())
        } else {
            self.l.truncated = Some(layer);
            None
        }
    }

    /// Converts an offset to u16; an offset past 65535 is reported as malformed in `layer`.
    #[inline]
    fn off(&mut self, o: usize, layer: Truncation) -> Option<u16> {
        match u16::try_from(o) {
            Ok(v) => Some(v),
            Err(_) => {
                self.l.malformed = Some(layer);
                None
            }
        }
    }

    /// Records a malformed header in `layer` and stops.
    #[inline]
    fn bad(&mut self, layer: Truncation) -> Option<()> {
        self.l.malformed = Some(layer);
        None
    }

    fn link(&mut self, link: LinkType) -> Option<()> {
        use Truncation::Link as L;
        match link {
            LinkType::Ethernet => self.ethernet(0),
            LinkType::LinuxSll => {
                self.l.l2 = Some(0);
                self.need(16, L)?;
                self.l.link_end = Some(16);
                let proto = be16(self.d, 14)?;
                self.sll_proto(proto, 16)
            }
            LinkType::LinuxSll2 => {
                self.l.l2 = Some(0);
                self.need(20, L)?;
                self.l.link_end = Some(20);
                let proto = be16(self.d, 0)?;
                self.sll_proto(proto, 20)
            }
            LinkType::Raw => {
                let v = byte(self.d, 0);
                match v.map(|b| b >> 4) {
                    Some(4) => self.ipv4(0),
                    Some(6) => self.ipv6(0),
                    Some(_) => {
                        self.l.l3 = Some(0);
                        self.bad(Truncation::Network)
                    }
                    None => self.need(1, Truncation::Network),
                }
            }
            LinkType::Ipv4 => self.ipv4(0),
            LinkType::Ipv6 => self.ipv6(0),
            LinkType::Null | LinkType::Loop => {
                self.l.l2 = Some(0);
                self.need(4, L)?;
                self.l.link_end = Some(4);
                let raw = *self.d.first_chunk::<4>()?;
                let known = |af: u32| matches!(af, 2 | 24 | 28 | 30);
                let af = if link == LinkType::Loop {
                    u32::from_be_bytes(raw)
                } else {
                    // "Host order" of the capturing host, which the file does not say: take
                    // whichever byte order gives a known family (they cannot both).
                    let le = u32::from_le_bytes(raw);
                    let be = u32::from_be_bytes(raw);
                    if known(le) || !known(be) {
                        le
                    } else {
                        be
                    }
                };
                self.l.link_proto = u16::try_from(af).ok();
                match af {
                    2 => self.ipv4(4),
                    24 | 28 | 30 => self.ipv6(4),
                    other => {
                        self.l.l3 = Some(4);
                        self.l.l3_proto = u16::try_from(other).ok().map(L3Proto::Other);
                        Some(())
                    }
                }
            }
            LinkType::Ppp => self.ppp(0),
            LinkType::CHdlc => self.chdlc(0),
            LinkType::Ieee80211 => self.wlan(0, false),
            LinkType::Ieee80211Radiotap => self.radiotap(),
            LinkType::Other(_) => None,
        }
    }

    fn ethernet(&mut self, off: usize) -> Option<()> {
        self.l.l2 = Some(self.off(off, Truncation::Link)?);
        self.need(off + 14, Truncation::Link)?;
        let tl = be16(self.d, off + 12)?;
        let p = off + 14;
        self.l.link_end = Some(self.off(p, Truncation::Link)?);
        if tl <= 1500 {
            // 802.3 length field: an 802.2 LLC header follows.
            self.llc(p)
        } else {
            self.l.link_proto = Some(tl);
            self.ethertype(tl, p)
        }
    }

    /// An 802.2 LLC header at `p`: SNAP carries an EtherType, anything else stops here.
    fn llc(&mut self, p: usize) -> Option<()> {
        self.need(p + 3, Truncation::Link)?;
        let hdr = self.d.get(p..p + 3)?;
        if hdr == [0xaa, 0xaa, 0x03] {
            self.need(p + 8, Truncation::Link)?;
            let et = be16(self.d, p + 6)?;
            self.l.link_proto = Some(et);
            self.ethertype(et, p + 8)
        } else {
            self.l.llc = Some(self.off(p, Truncation::Link)?);
            Some(())
        }
    }

    fn sll_proto(&mut self, proto: u16, p: usize) -> Option<()> {
        self.l.link_proto = Some(proto);
        match proto {
            // ETH_P_802_2: an LLC header follows.
            0x0004 => self.llc(p),
            // ETH_P_802_3 (Novell raw 802.3) and other values below 1536 that are not
            // EtherTypes.
            0..=0x05ff => None,
            et => self.ethertype(et, p),
        }
    }

    /// Walks VLAN/MPLS/PPPoE encapsulations from EtherType `et` whose payload starts at `p`.
    fn ethertype(&mut self, mut et: u16, mut p: usize) -> Option<()> {
        loop {
            match et {
                ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                    self.need(p + 4, Truncation::Link)?;
                    let tci = be16(self.d, p)?;
                    if let Some(slot) = self.l.vlan_ids.get_mut(usize::from(self.l.vlan_depth)) {
                        *slot = tci & 0x0fff;
                    }
                    self.l.vlan_depth = self.l.vlan_depth.saturating_add(1);
                    et = be16(self.d, p + 2)?;
                    p += 4;
                }
                ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => return self.mpls(p),
                ETHERTYPE_PPPOE_SESSION => {
                    self.need(p + 7, Truncation::Link)?;
                    self.l.pppoe_session = Some(be16(self.d, p + 2)?);
                    // PPP protocol after the 6-byte header: two bytes, or one when protocol
                    // field compression was negotiated (odd first byte).
                    let proto = if byte(self.d, p + 6)? & 1 == 1 {
                        p += 7;
                        u16::from(byte(self.d, p - 1)?)
                    } else {
                        self.need(p + 8, Truncation::Link)?;
                        p += 8;
                        be16(self.d, p - 2)?
                    };
                    match ppp_to_ethertype(proto) {
                        Some(e) => et = e,
                        None => {
                            self.l.l3 = Some(self.off(p, Truncation::Link)?);
                            self.l.l3_proto = Some(L3Proto::Other(proto));
                            return Some(());
                        }
                    }
                }
                ETHERTYPE_IPV4 => return self.ipv4(p),
                ETHERTYPE_IPV6 => return self.ipv6(p),
                ETHERTYPE_ARP | ETHERTYPE_RARP => {
                    self.l.ethertype = Some(et);
                    self.l.l3 = Some(self.off(p, Truncation::Link)?);
                    self.l.l3_proto = Some(L3Proto::Arp);
                    // Fixed part: hardware type, protocol type, lengths, operation.
                    return self.need(p + 8, Truncation::Network);
                }
                other => {
                    self.l.ethertype = Some(other);
                    self.l.l3 = Some(self.off(p, Truncation::Link)?);
                    self.l.l3_proto = Some(L3Proto::Other(other));
                    return Some(());
                }
            }
        }
    }

    /// An MPLS label stack at `p`; after the bottom of the stack, IP by its version nibble.
    fn mpls(&mut self, mut p: usize) -> Option<()> {
        loop {
            self.need(p + 4, Truncation::Link)?;
            let entry = be32(self.d, p)?;
            if let Some(slot) = self.l.mpls_labels.get_mut(usize::from(self.l.mpls_depth)) {
                *slot = entry >> 12;
            }
            self.l.mpls_depth = self.l.mpls_depth.saturating_add(1);
            p += 4;
            if entry & 0x100 != 0 {
                break;
            }
        }
        match byte(self.d, p).map(|b| b >> 4) {
            Some(4) => self.ipv4(p),
            Some(6) => self.ipv6(p),
            // Pseudowire, or anything else: not decoded.
            Some(_) => Some(()),
            None => self.need(p + 1, Truncation::Network),
        }
    }

    fn ppp(&mut self, off: usize) -> Option<()> {
        use Truncation::Link as L;
        self.l.l2 = Some(self.off(off, L)?);
        let mut p = off;
        self.need(p + 1, L)?;
        let first = byte(self.d, p)?;
        if first == 0x0f || first == 0x8f {
            // Cisco HDLC framing seen on PPP serial links.
            return self.chdlc(off);
        }
        if first == 0xff {
            self.need(p + 2, L)?;
            if byte(self.d, p + 1)? == 0x03 {
                p += 2;
            }
        }
        self.need(p + 1, L)?;
        let proto = if byte(self.d, p)? & 1 == 1 {
            // Protocol-field compression: one byte.
            p += 1;
            u16::from(byte(self.d, p - 1)?)
        } else {
            self.need(p + 2, L)?;
            p += 2;
            be16(self.d, p - 2)?
        };
        self.l.link_proto = Some(proto);
        self.l.link_end = Some(self.off(p, L)?);
        match ppp_to_ethertype(proto) {
            Some(et) => self.ethertype(et, p),
            None => {
                self.l.l3 = Some(self.off(p, L)?);
                self.l.l3_proto = Some(L3Proto::Other(proto));
                Some(())
            }
        }
    }

    fn chdlc(&mut self, off: usize) -> Option<()> {
        self.l.l2 = Some(self.off(off, Truncation::Link)?);
        self.need(off + 4, Truncation::Link)?;
        let et = be16(self.d, off + 2)?;
        let p = off + 4;
        self.l.link_proto = Some(et);
        self.l.link_end = Some(self.off(p, Truncation::Link)?);
        if et == ETHERTYPE_RARP {
            // 0x8035 is Cisco SLARP on HDLC, not RARP.
            self.l.l3 = Some(self.off(p, Truncation::Link)?);
            self.l.l3_proto = Some(L3Proto::Other(et));
            return Some(());
        }
        self.ethertype(et, p)
    }

    fn radiotap(&mut self) -> Option<()> {
        use Truncation::Link as L;
        self.need(4, L)?;
        let len = usize::from(u16::from_le_bytes(*self.d.get(2..)?.first_chunk::<2>()?));
        self.need(len.max(8), L)?;
        // Present words: the first at 4, more while bit 31 is set.
        let mut q = 4;
        let mut first_present = None;
        loop {
            let word = u32::from_le_bytes(*self.d.get(q..)?.first_chunk::<4>()?);
            first_present.get_or_insert(word);
            q += 4;
            if word & 0x8000_0000 == 0 {
                break;
            }
            if q + 4 > len {
                return self.bad(L);
            }
        }
        let mut datapad = false;
        if let Some(present) = first_present {
            if present & 1 != 0 {
                // TSFT: 8 bytes aligned on 8.
                q = q.next_multiple_of(8) + 8;
            }
            if present & 2 != 0 && q < len {
                datapad = byte(self.d, q)? & 0x20 != 0;
            }
        }
        self.wlan(len, datapad)
    }

    /// An 802.11 frame at `off`; `datapad`: the body is padded to a 4-byte boundary.
    fn wlan(&mut self, off: usize, datapad: bool) -> Option<()> {
        use Truncation::Link as L;
        self.l.l2 = Some(self.off(off, L)?);
        self.need(off + 2, L)?;
        let fc0 = byte(self.d, off)?;
        let fc1 = byte(self.d, off + 1)?;
        let ftype = (fc0 >> 2) & 3;
        let subtype = fc0 >> 4;
        if ftype != 2 {
            // Management or control frame: no network layer.
            return Some(());
        }
        let mut hlen = if fc1 & 3 == 3 { 30 } else { 24 };
        let qos = subtype & 8 != 0;
        if qos {
            hlen += 2;
            if fc1 & 0x80 != 0 {
                hlen += 4;
            }
        }
        self.need(off + hlen, L)?;
        if qos {
            let qos_ctl = byte(self.d, off + if fc1 & 3 == 3 { 30 } else { 24 })?;
            if qos_ctl & 0x80 != 0 {
                // A-MSDU: the body holds subframes, not one LLC header.
                return Some(());
            }
        }
        if datapad {
            hlen = hlen.next_multiple_of(4);
            self.need(off + hlen, L)?;
        }
        let p = off + hlen;
        self.l.link_end = Some(self.off(p, L)?);
        if subtype & 4 != 0 || fc1 & 0x40 != 0 {
            // Null (no body) or protected (encrypted body) frame.
            return Some(());
        }
        self.llc(p)
    }

    fn ipv4(&mut self, p: usize) -> Option<()> {
        use Truncation::Network as N;
        self.l.ethertype = Some(ETHERTYPE_IPV4);
        self.l.l3 = Some(self.off(p, Truncation::Link)?);
        self.l.l3_proto = Some(L3Proto::Ipv4);
        self.need(p + 20, N)?;
        let vihl = byte(self.d, p)?;
        if vihl >> 4 != 4 {
            return self.bad(N);
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        if ihl < 20 {
            return self.bad(N);
        }
        let fo = be16(self.d, p + 6)?;
        let offset = (fo & 0x1fff) << 3;
        let more = fo & 0x2000 != 0;
        if offset != 0 || more {
            self.l.frag = Some(Fragment {
                offset,
                more,
                id: u32::from(be16(self.d, p + 4)?),
            });
        }
        let proto = byte(self.d, p + 9)?;
        self.l.l4_proto = Some(proto);
        self.need(p + ihl, N)?;
        if offset != 0 {
            // Non-first fragment: the bytes after the header are not a transport header.
            return Some(());
        }
        self.transport(p + ihl, proto)
    }

    fn ipv6(&mut self, p: usize) -> Option<()> {
        use Truncation::Network as N;
        self.l.ethertype = Some(ETHERTYPE_IPV6);
        self.l.l3 = Some(self.off(p, Truncation::Link)?);
        self.l.l3_proto = Some(L3Proto::Ipv6);
        self.need(p + 40, N)?;
        if byte(self.d, p)? >> 4 != 6 {
            return self.bad(N);
        }
        let mut nh = byte(self.d, p + 6)?;
        let mut q = p + 40;
        // Every extension header is at least 8 bytes long, so the walk ends within the data.
        loop {
            match nh {
                0 | 43 | 60 => {
                    self.need(q + 2, N)?;
                    let next = byte(self.d, q)?;
                    let len = (usize::from(byte(self.d, q + 1)?) + 1) * 8;
                    self.need(q + len, N)?;
                    nh = next;
                    q += len;
                }
                44 => {
                    self.need(q + 8, N)?;
                    let next = byte(self.d, q)?;
                    let fo = be16(self.d, q + 2)?;
                    let offset = fo & 0xfff8;
                    let more = fo & 1 != 0;
                    if offset != 0 || more {
                        self.l.frag = Some(Fragment {
                            offset,
                            more,
                            id: be32(self.d, q + 4)?,
                        });
                    }
                    nh = next;
                    q += 8;
                    if offset != 0 {
                        self.l.l4_proto = Some(next);
                        return Some(());
                    }
                }
                IPPROTO_AH => {
                    self.need(q + 2, N)?;
                    let next = byte(self.d, q)?;
                    let len = (usize::from(byte(self.d, q + 1)?) + 2) * 4;
                    self.need(q + len, N)?;
                    nh = next;
                    q += len;
                }
                proto => return self.transport(q, proto),
            }
        }
    }

    /// The transport header of protocol `proto` at `p`.
    fn transport(&mut self, p: usize, proto: u8) -> Option<()> {
        use Truncation::Transport as T;
        self.l.l4_proto = Some(proto);
        if proto == IPPROTO_NONE {
            return Some(());
        }
        self.l.l4 = Some(self.off(p, Truncation::Network)?);
        let hlen = match proto {
            IPPROTO_TCP => {
                self.need(p + 13, T)?;
                let doff = usize::from(byte(self.d, p + 12)? >> 4) * 4;
                if doff < 20 {
                    return self.bad(T);
                }
                doff
            }
            IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_ICMP | IPPROTO_ICMPV6 | IPPROTO_IGMP
            | IPPROTO_ESP => 8,
            IPPROTO_SCTP => 12,
            IPPROTO_AH => {
                self.need(p + 2, T)?;
                (usize::from(byte(self.d, p + 1)?) + 2) * 4
            }
            IPPROTO_GRE => {
                self.need(p + 4, T)?;
                let flags = be16(self.d, p)?;
                match flags & 7 {
                    0 => {
                        if flags & 0x4000 != 0 {
                            // Source routing entries follow: not decoded.
                            return self.need(p + 4, T);
                        }
                        let opt = |bit: u16| if flags & bit != 0 { 4 } else { 0 };
                        4 + opt(0x8000) + opt(0x2000) + opt(0x1000)
                    }
                    1 => {
                        8 + if flags & 0x1000 != 0 { 4 } else { 0 }
                            + if flags & 0x0080 != 0 { 4 } else { 0 }
                    }
                    _ => return self.bad(T),
                }
            }
            _ => return Some(()),
        };
        self.need(p + hlen, T)?;
        self.l.payload = Some(self.off(p + hlen, T)?);
        Some(())
    }
}

impl Layers {
    /// Parses the headers of `pkt`: the fast path for the common kinds of packets (Ethernet,
    /// at most one 802.1Q tag, unfragmented IPv4 or IPv6 without extension headers, TCP, UDP,
    /// ICMP, ICMPv6), else the general walk ([`Layers::parse_walk`]); both give the same result.
    #[inline]
    pub fn parse(pkt: &Packet<'_>) -> Self {
        let mut out = Self::default();
        Self::parse_into(pkt, &mut out);
        out
    }

    /// [`Layers::parse`] written into `out` in place (on the fast path no copy of the result
    /// follows its stores, which would stall on store forwarding).
    #[inline(always)]
    pub fn parse_into(pkt: &Packet<'_>, out: &mut Self) {
        if !crate::fastparse::fast_into(pkt, out) {
            *out = Self::parse_walk(pkt);
        }
    }

    /// The fast path alone: `None` when the packet is not of the common kinds it serves (or is
    /// cut or malformed). Exposed so tests can check it against [`Layers::parse_walk`].
    pub fn parse_fast(pkt: &Packet<'_>) -> Option<Self> {
        let mut out = Self::default();
        crate::fastparse::fast_into(pkt, &mut out).then_some(out)
    }

    /// The general walk over the headers of `pkt`, every link type and encapsulation.
    pub fn parse_walk(pkt: &Packet<'_>) -> Self {
        let mut w = Walk {
            d: pkt.data,
            l: Self::default(),
        };
        // `None` only means the walk stopped early; what was found is in `w.l`.
        let _ = w.link(pkt.link);
        w.l
    }

    /// IP version (4 or 6) of the network layer.
    pub fn ip_version(&self) -> Option<u8> {
        match self.l3_proto? {
            L3Proto::Ipv4 => Some(4),
            L3Proto::Ipv6 => Some(6),
            _ => None,
        }
    }

    /// The stored VLAN ids, outermost first (at most [`MAX_VLANS`]; see `vlan_depth`).
    pub fn vlan_ids(&self) -> &[u16] {
        let n = usize::from(self.vlan_depth).min(MAX_VLANS);
        self.vlan_ids.get(..n).unwrap_or(&[])
    }

    /// The stored MPLS labels, top of stack first (at most [`MAX_MPLS`]; see `mpls_depth`).
    pub fn mpls_labels(&self) -> &[u32] {
        let n = usize::from(self.mpls_depth).min(MAX_MPLS);
        self.mpls_labels.get(..n).unwrap_or(&[])
    }

    /// Whether the packet is an IPv4 or IPv6 fragment (first or not).
    pub fn is_fragment(&self) -> bool {
        self.frag.is_some()
    }

    /// Whether the packet is the first fragment (offset 0, more fragments follow).
    pub fn is_first_fragment(&self) -> bool {
        self.frag.is_some_and(|f| f.offset == 0)
    }

    /// Fragment offset in bytes (0 when not a fragment).
    pub fn frag_offset(&self) -> u16 {
        self.frag.map_or(0, |f| f.offset)
    }

    /// Where the network header of `pkt` starts when it is Ethernet with at most one 802.1Q
    /// tag before IPv4 or IPv6: the EtherType's protocol and the offset. The walk takes the
    /// network header to start right after those whatever its contents ([`Layers::l3`]), so
    /// the fast accessors ([`Layers::ip_addr_of`], [`Layers::ip_proto_of`]) read its fields at
    /// fixed offsets from there; `None`: anything else, which they parse.
    #[inline(always)]
    fn plain_l3(pkt: &Packet<'_>) -> Option<(L3Proto, usize)> {
        if pkt.link != LinkType::Ethernet {
            return None;
        }
        let d = pkt.data;
        let (et, l3) = match be16(d, 12) {
            Some(ETHERTYPE_VLAN) => (be16(d, 16), 18),
            outer => (outer, 14),
        };
        match et {
            Some(ETHERTYPE_IPV4) => Some((L3Proto::Ipv4, l3)),
            Some(ETHERTYPE_IPV6) => Some((L3Proto::Ipv6, l3)),
            _ => None,
        }
    }

    /// The source IP address of `pkt` (its destination with `dst`): what
    /// `Layers::parse(pkt).src_ip(pkt.data)` (or `dst_ip`) gives, without parsing the rest of
    /// the headers when it can. For the module that wants the address and nothing else
    /// (`topaddr`), the whole parse was a third of its time per packet.
    ///
    /// Ethernet with at most one 802.1Q tag before IPv4 or IPv6 (`plain_l3`) reads
    /// the address at its fixed offset, when captured. Anything else is parsed.
    #[inline(always)]
    pub fn ip_addr_of(pkt: &Packet<'_>, dst: bool) -> Option<IpAddr> {
        match Self::plain_l3(pkt) {
            Some((proto, l3)) => addr_in(pkt.data, l3, proto, dst),
            None => Self::addr_by_parse(pkt, dst),
        }
    }

    /// The transport protocol of an IPv4 or IPv6 packet: what `Layers::parse(pkt)` gives as
    /// `l4_proto` when its `ip_version()` is some, else `None`; without parsing the rest of the
    /// headers when it can (the module that counts protocols reads nothing else).
    ///
    /// On Ethernet frames with at most one 802.1Q tag before IPv4 or IPv6 (`plain_l3`) the
    /// walk's rules are few: IPv4 has its protocol once the 20-byte header is captured with
    /// version 4 and a header length of at least 20 (a fragment keeps it); IPv6 has its next
    /// header once the 40-byte header is captured with version 6, unless it is an extension
    /// header, which the walk follows (those are parsed).
    #[inline(always)]
    pub fn ip_proto_of(pkt: &Packet<'_>) -> Option<u8> {
        let d = pkt.data;
        match Self::plain_l3(pkt) {
            Some((L3Proto::Ipv4, l3)) => {
                let h = d.get(l3..)?.first_chunk::<20>()?;
                (h[0] >> 4 == 4 && h[0] & 0x0f >= 5).then_some(h[9])
            }
            Some((L3Proto::Ipv6, l3)) => {
                let h = d.get(l3..)?.first_chunk::<40>()?;
                match h[6] {
                    _ if h[0] >> 4 != 6 => None,
                    0 | 43 | 44 | 60 | IPPROTO_AH => Self::proto_by_parse(pkt),
                    nh => Some(nh),
                }
            }
            _ => Self::proto_by_parse(pkt),
        }
    }

    /// [`Layers::ip_proto_of`] by the whole parse, out of the fast loop.
    #[inline(never)]
    fn proto_by_parse(pkt: &Packet<'_>) -> Option<u8> {
        let l = Self::parse(pkt);
        l.ip_version().and(l.l4_proto)
    }

    /// [`Layers::ip_addr_of`] by the whole parse, out of the fast loop.
    #[inline(never)]
    fn addr_by_parse(pkt: &Packet<'_>, dst: bool) -> Option<IpAddr> {
        let l = Self::parse(pkt);
        if dst {
            l.dst_ip(pkt.data)
        } else {
            l.src_ip(pkt.data)
        }
    }

    /// Source IP address, read from `data` (the bytes the layers were parsed from).
    pub fn src_ip(&self, data: &[u8]) -> Option<IpAddr> {
        addr_in(data, usize::from(self.l3?), self.l3_proto?, false)
    }

    /// Destination IP address, read from `data`.
    pub fn dst_ip(&self, data: &[u8]) -> Option<IpAddr> {
        addr_in(data, usize::from(self.l3?), self.l3_proto?, true)
    }

    /// IPv4 TTL or IPv6 hop limit, read from `data`.
    pub fn ttl(&self, data: &[u8]) -> Option<u8> {
        let l3 = usize::from(self.l3?);
        match self.l3_proto? {
            L3Proto::Ipv4 => byte(data, l3 + 8),
            L3Proto::Ipv6 => byte(data, l3 + 7),
            _ => None,
        }
    }

    /// Offset just past the IP datagram as its length field says (IPv4 total length, IPv6
    /// payload length + 40), limited to `data`; None when the field is 0 (TSO, jumbograms).
    pub fn ip_end(&self, data: &[u8]) -> Option<usize> {
        let l3 = usize::from(self.l3?);
        let end = match self.l3_proto? {
            L3Proto::Ipv4 => l3 + usize::from(be16(data, l3 + 2).filter(|&n| n != 0)?),
            L3Proto::Ipv6 => l3 + 40 + usize::from(be16(data, l3 + 4).filter(|&n| n != 0)?),
            _ => return None,
        };
        Some(end.min(data.len()))
    }

    /// Whether the transport protocol carries 16-bit ports at the start of its header.
    fn has_ports(&self) -> bool {
        matches!(
            self.l4_proto,
            Some(IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE)
        )
    }

    /// Source port (TCP, UDP, UDP-Lite, SCTP), read from `data`.
    pub fn src_port(&self, data: &[u8]) -> Option<u16> {
        if !self.has_ports() {
            return None;
        }
        be16(data, usize::from(self.l4?))
    }

    /// Destination port (TCP, UDP, UDP-Lite, SCTP), read from `data`.
    pub fn dst_port(&self, data: &[u8]) -> Option<u16> {
        if !self.has_ports() {
            return None;
        }
        be16(data, usize::from(self.l4?) + 2)
    }

    /// TCP flags byte (FIN 0x01 ... CWR 0x80, see [`TCP_SYN`] etc.), read from `data`.
    pub fn tcp_flags(&self, data: &[u8]) -> Option<u8> {
        if self.l4_proto != Some(IPPROTO_TCP) {
            return None;
        }
        byte(data, usize::from(self.l4?) + 13)
    }

    /// ICMP or ICMPv6 type and code, read from `data`.
    pub fn icmp_type_code(&self, data: &[u8]) -> Option<(u8, u8)> {
        if !matches!(self.l4_proto, Some(IPPROTO_ICMP | IPPROTO_ICMPV6)) {
            return None;
        }
        let l4 = usize::from(self.l4?);
        Some((byte(data, l4)?, byte(data, l4 + 1)?))
    }

    /// GRE protocol type (an EtherType), read from `data`; the GRE payload is not parsed.
    pub fn gre_protocol(&self, data: &[u8]) -> Option<u16> {
        if self.l4_proto != Some(IPPROTO_GRE) {
            return None;
        }
        be16(data, usize::from(self.l4?) + 2)
    }

    /// Source and destination MAC addresses, for Ethernet frames.
    pub fn ether_addrs<'d>(
        &self,
        link: LinkType,
        data: &'d [u8],
    ) -> Option<(&'d [u8; 6], &'d [u8; 6])> {
        if link != LinkType::Ethernet {
            return None;
        }
        let l2 = usize::from(self.l2?);
        let dst = data.get(l2..)?.first_chunk::<6>()?;
        let src = data.get(l2 + 6..)?.first_chunk::<6>()?;
        Some((src, dst))
    }
}
