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
    // IPv4 or IPv6, by arithmetic rather than branches too: IPv4 with version 4, a valid
    // header length and no fragment (offset 0, MF clear); IPv6 with version 6 (no extension
    // header: the transport protocol is checked below). That the headers are captured is
    // checked with the transport header's end.
    let is_v4 = et == ETHERTYPE_IPV4;
    if !is_v4 & (et != ETHERTYPE_IPV6) {
        return None;
    }
    let vihl = *d.get(l3)?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    let frag = be16(d, l3 + 6)?;
    let v4_ok = (vihl >> 4 == 4) & (ihl >= 20) & (frag & 0x3fff == 0);
    if !((is_v4 & v4_ok) | (!is_v4 & (vihl >> 4 == 6))) {
        return None;
    }
    let l3_proto = if is_v4 { L3Proto::Ipv4 } else { L3Proto::Ipv6 };
    let proto = *d.get(l3 + if is_v4 { 9 } else { 6 })?;
    let l4 = l3 + if is_v4 { ihl } else { 40 };
    // Which transport, by arithmetic rather than branches (the mix of TCP, UDP and ICMP in
    // traffic defeats branch prediction): a TCP header's length from its data offset (0 when
    // not captured, refused below), 8 bytes for the others.
    let is_tcp = proto == IPPROTO_TCP;
    let doff = usize::from(d.get(l4 + 12).copied().unwrap_or(0) >> 4) * 4;
    let known = is_tcp
        | (proto == IPPROTO_UDP)
        | ((proto == IPPROTO_ICMP) & is_v4)
        | ((proto == IPPROTO_ICMPV6) & !is_v4);
    if !known | (is_tcp & (doff < 20)) {
        return None;
    }
    let hlen = if is_tcp { doff } else { 8 };
    let payload = l4 + hlen;
    if d.len() < payload {
        return None;
    }
    Some((
        outer, et, l3, vlan_depth, vlan0, l3_proto, proto, l4, payload,
    ))
}
