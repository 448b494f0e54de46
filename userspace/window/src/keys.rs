//! Index keys: what the index records per packet, and what a filter requires of a packet.
//!
//! Both sides read the same bytes at the same offsets, those libpcap 1.10 uses for a filter
//! written without `vlan`/`mpls`/`pppoes`/`geneve` ("plain" encapsulation), on the link types
//! whose network header sits at a fixed offset: Ethernet (14), Linux SLL (16), SLL2 (20) and
//! raw IP (0). Recorded per packet, each only when its bytes were captured:
//! * IPv4 source and destination (EtherType 0x0800, or version 4 on raw IP) and the ARP/RARP
//!   sender and target protocol addresses (0x0806/0x8035, offsets 14 and 24): [`Key::V4`];
//! * IPv6 source and destination (0x86dd, or version 6): [`Key::V6`];
//! * the IPv4 protocol byte, the IPv6 next header and, behind a fragment header, its next
//!   header: [`Key::Proto`];
//! * the two 16-bit words where libpcap reads ports (after the IPv4 header by its IHL, 40 bytes
//!   after the IPv6 header), whatever the protocol: [`Key::Port`].
//!
//! A filter's requirement ([`requirement`]) is a conjunction of clauses, each a set of keys of
//! which a matching packet has at least one. It is derived from the IR conservatively: only
//! leaves with the plain encapsulation and exact values (a full-length address, a port range
//! of at most [`MAX_PORT_RANGE`] ports, a protocol) give keys; `not` and anything else give no
//! constraint; `or` keeps pairwise unions of its children's clauses (a weaker but sound
//! constraint). So a packet the filter selects always has every clause satisfied by its
//! recorded keys, and pruning never loses a packet: the exact filter runs afterwards.

use como_packet::LinkType;
use ebpf_filters::ir::{Base, Encap, Ir, Link, Node, Pred};

/// Largest port range turned into keys.
pub const MAX_PORT_RANGE: u32 = 64;
/// Most clauses kept for one filter (further clauses are dropped: weaker, still sound).
const MAX_CLAUSES: usize = 32;

/// An index key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// An IPv4 (or ARP protocol) address, host order.
    V4(u32),
    /// An IPv6 address, big-endian as a number.
    V6(u128),
    /// A port (or the same 16-bit word of a non-TCP/UDP/SCTP packet).
    Port(u16),
    /// An IP protocol / next header.
    Proto(u8),
}

/// Offset of the network header for plain filters on `link`, if indexed.
pub fn plain_net(link: LinkType) -> Option<usize> {
    match link {
        LinkType::Ethernet => Some(14),
        LinkType::LinuxSll => Some(16),
        LinkType::LinuxSll2 => Some(20),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Some(0),
        _ => None,
    }
}

/// Same for the filter IR's link kinds.
fn plain_net_ir(link: Link) -> Option<u32> {
    match link {
        Link::Ethernet => Some(14),
        Link::LinuxSll => Some(16),
        Link::LinuxSll2 => Some(20),
        Link::Raw | Link::Ipv4 | Link::Ipv6 => Some(0),
        _ => None,
    }
}

/// Network-layer kind of a packet, as the plain link-type test sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L3 {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
    /// ARP or RARP.
    Arp,
}

#[inline]
fn be16(d: &[u8], i: usize) -> Option<u16> {
    d.get(i..i + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes)
}

#[inline]
fn be32(d: &[u8], i: usize) -> Option<u32> {
    d.get(i..i + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

#[inline]
fn be128(d: &[u8], i: usize) -> Option<u128> {
    d.get(i..i + 16)
        .and_then(|s| s.try_into().ok())
        .map(u128::from_be_bytes)
}

/// Appends the keys of one packet to the per-kind vectors. Returns false when the link type
/// is not indexed (the packet's group must then never be pruned by key).
#[inline]
pub fn packet_keys(link: LinkType, d: &[u8], out: &mut KeySink) -> bool {
    let Some(net) = plain_net(link) else {
        return false;
    };
    let ethertype = |i: usize| match be16(d, i) {
        Some(0x0800) => Some(L3::V4),
        Some(0x86dd) => Some(L3::V6),
        Some(0x0806 | 0x8035) => Some(L3::Arp),
        _ => None,
    };
    let l3 = match link {
        LinkType::Ethernet => ethertype(12),
        LinkType::LinuxSll => ethertype(14),
        LinkType::LinuxSll2 => ethertype(0),
        LinkType::Ipv4 => Some(L3::V4),
        LinkType::Ipv6 => Some(L3::V6),
        _ => match d.first().map(|b| b >> 4) {
            Some(4) => Some(L3::V4),
            Some(6) => Some(L3::V6),
            _ => None,
        },
    };
    match l3 {
        Some(L3::V4) => {
            out.v4.extend(be32(d, net + 12));
            out.v4.extend(be32(d, net + 16));
            if let Some(&p) = d.get(net + 9) {
                out.proto.push(p);
            }
            if let Some(&vihl) = d.get(net) {
                let t = net + usize::from(vihl & 0x0f) * 4;
                out.port.extend(be16(d, t));
                out.port.extend(be16(d, t + 2));
            }
        }
        Some(L3::V6) => {
            out.v6.extend(be128(d, net + 8));
            out.v6.extend(be128(d, net + 24));
            if let Some(&nh) = d.get(net + 6) {
                out.proto.push(nh);
                if nh == 44 {
                    out.proto.extend(d.get(net + 40).copied());
                }
            }
            out.port.extend(be16(d, net + 40));
            out.port.extend(be16(d, net + 42));
        }
        Some(L3::Arp) => {
            out.v4.extend(be32(d, net + 14));
            out.v4.extend(be32(d, net + 24));
        }
        None => {}
    }
    true
}

/// Keys of a group of packets, by kind (sorted and deduplicated by [`KeySink::finish`]).
#[derive(Debug, Default, Clone)]
pub struct KeySink {
    /// IPv4 addresses.
    pub v4: Vec<u32>,
    /// IPv6 addresses.
    pub v6: Vec<u128>,
    /// Ports.
    pub port: Vec<u16>,
    /// Protocols.
    pub proto: Vec<u8>,
}

impl KeySink {
    /// Sorts and deduplicates every kind.
    pub fn finish(&mut self) {
        self.v4.sort_unstable();
        self.v4.dedup();
        self.v6.sort_unstable();
        self.v6.dedup();
        self.port.sort_unstable();
        self.port.dedup();
        self.proto.sort_unstable();
        self.proto.dedup();
    }

    /// Empties every kind (keeps the memory).
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
        self.port.clear();
        self.proto.clear();
    }
}

/// What a filter requires: `None` when it can match nothing; otherwise clauses (all must hold),
/// each a set of keys of which one must be present. No clause: no constraint.
pub type Requirement = Option<Vec<Vec<Key>>>;

/// Whether `encap` is the plain encapsulation of `ir`'s link type.
fn plain(ir: &Ir, e: &Encap) -> bool {
    let Some(net) = plain_net_ir(ir.link) else {
        return false;
    };
    e.link == ir.link
        && e.vlan_depth == 0
        && e.mpls_depth == 0
        && !e.geneve
        && e.linkpl.base == Base::Packet
        && e.net() == ebpf_filters::ir::Off::abs(net)
}

/// The requirement of a compiled filter (see the module docs).
pub fn requirement(ir: &Ir) -> Requirement {
    node_req(ir, &ir.root)
}

fn node_req(ir: &Ir, n: &Node) -> Requirement {
    match n {
        Node::True | Node::Not(_) => Some(Vec::new()),
        Node::False => None,
        Node::Pred(p) => Some(pred_req(ir, p).map(|c| vec![c]).unwrap_or_default()),
        Node::And(children) => {
            let mut out = Vec::new();
            for c in children {
                out.extend(node_req(ir, c)?);
            }
            out.truncate(MAX_CLAUSES);
            Some(out)
        }
        Node::Or(children) => {
            let mut acc: Option<Vec<Vec<Key>>> = None;
            for c in children {
                let Some(r) = node_req(ir, c) else {
                    continue; // a child that never matches adds nothing
                };
                if r.is_empty() {
                    return Some(Vec::new());
                }
                acc = Some(match acc {
                    None => r,
                    Some(a) => {
                        let mut prod = Vec::new();
                        'outer: for x in &a {
                            for y in &r {
                                if prod.len() >= MAX_CLAUSES {
                                    break 'outer;
                                }
                                let mut u = x.clone();
                                u.extend_from_slice(y);
                                u.sort_unstable();
                                u.dedup();
                                prod.push(u);
                            }
                        }
                        prod
                    }
                });
            }
            acc
        }
    }
}

fn pred_req(ir: &Ir, p: &Pred) -> Option<Vec<Key>> {
    match p {
        Pred::Ipv4Addr {
            encap, addr, mask, ..
        } if *mask == u32::MAX && plain(ir, encap) => Some(vec![Key::V4(*addr)]),
        Pred::Ipv6Addr {
            encap, addr, mask, ..
        } if *mask == [u32::MAX; 4] && plain(ir, encap) => {
            let mut v = 0u128;
            for w in addr {
                v = (v << 32) | u128::from(*w);
            }
            Some(vec![Key::V6(v)])
        }
        Pred::Port { encap, lo, hi, .. }
            if plain(ir, encap) && lo <= hi && u32::from(*hi) - u32::from(*lo) < MAX_PORT_RANGE =>
        {
            Some((*lo..=*hi).map(Key::Port).collect())
        }
        Pred::Ipv4Proto { encap, proto } | Pred::Ipv6Proto { encap, proto, .. }
            if plain(ir, encap) =>
        {
            Some(vec![Key::Proto(u8::try_from(*proto).ok()?)])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(expr: &str) -> Requirement {
        let f = ebpf_filters::compile(expr, LinkType::Ethernet).expect("compiles");
        requirement(f.ir())
    }

    #[test]
    fn host_and_port() {
        let r = req("host 10.0.0.1 and port 80").expect("satisfiable");
        assert!(r.contains(&vec![Key::V4(0x0a00_0001)]), "{r:?}");
        assert!(r.iter().any(|c| c.contains(&Key::Port(80))), "{r:?}");
    }

    #[test]
    fn or_gives_unions_and_not_gives_nothing() {
        let r = req("host 10.0.0.1 or host 10.0.0.2").expect("satisfiable");
        assert!(r
            .iter()
            .any(|c| c.contains(&Key::V4(0x0a00_0001)) && c.contains(&Key::V4(0x0a00_0002))));
        assert!(r.iter().all(|c| c.len() >= 2), "{r:?}");
        assert_eq!(req("not host 10.0.0.1"), Some(vec![]));
        assert_eq!(
            req("host 10.0.0.1 or udp").map(|r| r.is_empty()),
            Some(false)
        );
        assert_eq!(req("host 10.0.0.1 or len > 100"), Some(vec![]));
    }

    #[test]
    fn vlan_and_nets_give_no_keys() {
        assert_eq!(req("vlan and host 10.0.0.1"), Some(vec![]));
        assert_eq!(req("net 10.0.0.0/8"), Some(vec![]));
        let r = req("ip6 host ::1").expect("satisfiable");
        assert_eq!(r, vec![vec![Key::V6(1)]]);
    }

    #[test]
    fn packet_keys_of_a_tcp_packet() {
        let mut d = vec![0u8; 14 + 20 + 20];
        d[12] = 0x08;
        d[14] = 0x45;
        d[14 + 9] = 6;
        d[14 + 12..14 + 16].copy_from_slice(&[10, 0, 0, 1]);
        d[14 + 16..14 + 20].copy_from_slice(&[10, 0, 0, 2]);
        d[34..36].copy_from_slice(&443u16.to_be_bytes());
        d[36..38].copy_from_slice(&5555u16.to_be_bytes());
        let mut s = KeySink::default();
        assert!(packet_keys(LinkType::Ethernet, &d, &mut s));
        s.finish();
        assert_eq!(s.v4, vec![0x0a00_0001, 0x0a00_0002]);
        assert_eq!(s.port, vec![443, 5555]);
        assert_eq!(s.proto, vec![6]);
        // Truncated after the source address: only the source is recorded.
        let mut s = KeySink::default();
        packet_keys(LinkType::Ethernet, &d[..30], &mut s);
        assert_eq!(s.v4, vec![0x0a00_0001]);
        assert!(!packet_keys(LinkType::Null, &d, &mut s));
    }
}
