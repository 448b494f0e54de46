//! A fast path of [`Layers::parse`] for the packets that make up nearly all traffic: Ethernet,
//! at most one 802.1Q tag, IPv4 (not a fragment) or IPv6 (no extension header), TCP, UDP,
//! ICMP or ICMPv6 with the whole transport header captured.
//!
//! [`Layers::parse`] tries it first and walks the headers in general ([`Layers::parse_walk`])
//! only when it does not apply. It gives exactly what the walk gives for such a packet (tested
//! on every packet of the bundled real traces, cut at every length: `tests/fast_path.rs`). Why
//! it exists: the walk goes field by field into a struct that is then copied; every packet is
//! parsed once on the capture path, so those few nanoseconds are a visible share of a module's
//! throughput. The result is built in one struct expression, written out in place.

use crate::layers::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
    IPPROTO_UDP,
};
use crate::{L3Proto, Layers, LinkType, Packet, MAX_MPLS, MAX_VLANS};

/// Big-endian u16 at `o`.
#[inline(always)]
fn be16(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*d.get(o..)?.first_chunk::<2>()?))
}

/// The fast path into `out`; false (and `out` untouched) when it does not apply.
#[inline(always)]
pub(crate) fn fast_into(pkt: &Packet<'_>, out: &mut Layers) -> bool {
    fast_parts(pkt).is_some_and(
        |(outer, et, l3, vlan_depth, vlan0, l3_proto, proto, l4, payload)| {
            let mut vlan_ids = [0u16; MAX_VLANS];
            if let Some(v) = vlan_ids.first_mut() {
                *v = vlan0;
            }
            // Offsets are below 18 + 60 + 60: they fit in u16.
            *out = Layers {
                l2: Some(0),
                link_end: Some(14),
                link_proto: Some(outer),
                llc: None,
                ethertype: Some(et),
                vlan_depth,
                vlan_ids,
                mpls_depth: 0,
                mpls_labels: [0; MAX_MPLS],
                pppoe_session: None,
                l3: Some(l3 as u16),
                l3_proto: Some(l3_proto),
                frag: None,
                l4: Some(l4 as u16),
                l4_proto: Some(proto),
                payload: Some(payload as u16),
                truncated: None,
                malformed: None,
            };
            true
        },
    )
}

/// What the fast path found: outer EtherType, EtherType, L3 offset, VLAN depth and first id,
/// L3 protocol, IP protocol, L4 offset, payload offset.
type Parts = (u16, u16, usize, u16, u16, L3Proto, u8, usize, usize);

#[inline(always)]
fn fast_parts(pkt: &Packet<'_>) -> Option<Parts> {
    if pkt.link != LinkType::Ethernet {
        return None;
    }
    let d = pkt.data;
    let outer = be16(d, 12)?;
    let (et, l3, vlan_depth, vlan0) = if outer == ETHERTYPE_VLAN {
        (be16(d, 16)?, 18usize, 1u16, be16(d, 14)? & 0x0fff)
    } else {
        (outer, 14usize, 0, 0)
    };
    let (l3_proto, proto, l4) = match et {
        ETHERTYPE_IPV4 => {
            let vihl = *d.get(l3)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            // Version 4, a valid header length, no fragment (offset 0, MF clear), all captured.
            if vihl >> 4 != 4 || ihl < 20 || be16(d, l3 + 6)? & 0x3fff != 0 || d.len() < l3 + ihl {
                return None;
            }
            (L3Proto::Ipv4, *d.get(l3 + 9)?, l3 + ihl)
        }
        ETHERTYPE_IPV6 => {
            if d.len() < l3 + 40 || *d.get(l3)? >> 4 != 6 {
                return None;
            }
            (L3Proto::Ipv6, *d.get(l3 + 6)?, l3 + 40)
        }
        _ => return None,
    };
    let hlen = match proto {
        IPPROTO_TCP => {
            let doff = usize::from(*d.get(l4 + 12)? >> 4) * 4;
            if doff < 20 {
                return None;
            }
            doff
        }
        IPPROTO_UDP => 8,
        IPPROTO_ICMP if l3_proto == L3Proto::Ipv4 => 8,
        IPPROTO_ICMPV6 if l3_proto == L3Proto::Ipv6 => 8,
        _ => return None,
    };
    let payload = l4 + hlen;
    if d.len() < payload {
        return None;
    }
    Some((
        outer, et, l3, vlan_depth, vlan0, l3_proto, proto, l4, payload,
    ))
}
