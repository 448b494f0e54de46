//! The filter IR: one boolean tree with typed field predicates at the leaves.
//!
//! Shape:
//! * [`Node`] is `True`, `False`, `And(children)`, `Or(children)`, `Not(child)` or a leaf
//!   [`Pred`]. `And`/`Or` are flat (no `And` directly under an `And`) and evaluate their
//!   children left to right with short-circuit, in the order libpcap's generated code tests
//!   them. Constants are folded (`1 == 1`, `arp` on a raw-IP link, `x or 1 = 1`).
//! * Each leaf is a typed predicate on one header field — link-layer protocol
//!   ([`Pred::LinkProto`], i.e. "EtherType"), IP protocol, IPv4/IPv6 prefix, port range,
//!   MAC address, VLAN id, MPLS label, PPPoE session, Geneve header — or a generic
//!   [`Pred::Relation`] over byte loads for `proto[expr:size] op expr`.
//! * Every leaf carries the [`Encap`] in force where it was written: libpcap's offsets of the
//!   link header, link-layer type field and link payload after the `vlan`, `mpls`, `pppoes` and
//!   `geneve` primitives parsed before it (their shifts apply left to right, regardless of the
//!   and/or structure, as in libpcap 1.10 on savefiles). Offsets may be relative to a
//!   per-packet register ([`Base::Reg`]) for 802.11 (header length computed at run time) and
//!   after `geneve` (inner frame located at run time).
//!
//! Consumers: the exact evaluator ([`crate::eval`]) and the kernel-table compiler
//! ([`crate::kernel`]), which maps the common leaves (LinkProto at the outer Ethernet offset,
//! Ipv4Proto/Ipv6Proto, Ipv4Addr/Ipv6Addr, Port, VlanId) to per-field lookups and
//! over-approximates the rest (a rule with a leaf it cannot express is flagged, and its
//! matches are re-checked by the evaluator).
//!
//! Evaluation semantics shared by both: a load beyond the captured bytes, or a run-time
//! division by zero, rejects the whole packet (BPF returns 0), not just the sub-expression.

use como_packet::LinkType;

/// Where an offset is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    /// The first captured byte.
    Packet,
    /// The value of a per-packet register plus the constant (registers are computed by the
    /// 802.11 prologue and by [`Pred::GeneveEnter`]).
    Reg(u8),
}

/// An offset: base plus constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Off {
    /// Base.
    pub base: Base,
    /// Constant part, in bytes.
    pub k: u32,
}

impl Off {
    /// A constant offset from the packet start.
    pub const fn abs(k: u32) -> Self {
        Off {
            base: Base::Packet,
            k,
        }
    }
}

/// The link layer a predicate sees (the outer link type, or what `pppoes`/`geneve` switched to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// Ethernet (outer, or the inner frame after `geneve`).
    Ethernet,
    /// Linux cooked v1.
    LinuxSll,
    /// Linux cooked v2.
    LinuxSll2,
    /// Raw IP (version from the first nibble).
    Raw,
    /// Raw IPv4.
    Ipv4,
    /// Raw IPv6.
    Ipv6,
    /// BSD loopback, address family in the file's byte order.
    Null,
    /// OpenBSD loopback, address family in network order.
    Loop,
    /// PPP (the outer link type, or the session payload after `pppoes`).
    Ppp,
    /// Cisco HDLC.
    CHdlc,
    /// 802.11 without radio header.
    Ieee80211,
    /// 802.11 behind radiotap.
    Radiotap,
}

impl Link {
    /// The link kind for a supported outer link type.
    pub fn from_link_type(lt: LinkType) -> Option<Self> {
        Some(match lt {
            LinkType::Ethernet => Link::Ethernet,
            LinkType::LinuxSll => Link::LinuxSll,
            LinkType::LinuxSll2 => Link::LinuxSll2,
            LinkType::Raw => Link::Raw,
            LinkType::Ipv4 => Link::Ipv4,
            LinkType::Ipv6 => Link::Ipv6,
            LinkType::Null => Link::Null,
            LinkType::Loop => Link::Loop,
            LinkType::Ppp => Link::Ppp,
            LinkType::CHdlc => Link::CHdlc,
            LinkType::Ieee80211 => Link::Ieee80211,
            LinkType::Ieee80211Radiotap => Link::Radiotap,
            LinkType::Other(_) => return None,
        })
    }

    /// Whether this is 802.11 (IP behind LLC/SNAP in data frames).
    pub fn is_wlan(self) -> bool {
        matches!(self, Link::Ieee80211 | Link::Radiotap)
    }
}

/// The encapsulation context in force for a predicate (libpcap's compiler offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encap {
    /// Current link layer.
    pub link: Link,
    /// Start of the link-layer header.
    pub linkhdr: Off,
    /// The link-layer type field (EtherType, SLL protocol, PPP protocol), if the link has one.
    pub linktype: Option<Off>,
    /// Start of the link-layer payload (the LLC header on 802.11).
    pub linkpl: Off,
    /// Network header offset from the link payload (MPLS labels, 802.11 LLC/SNAP: 8).
    pub nl: u32,
    /// Number of `vlan` primitives parsed before.
    pub vlan_depth: u8,
    /// Number of `mpls` primitives parsed before.
    pub mpls_depth: u8,
    /// Whether a `geneve` was parsed before (link-layer checks then refer to the inner frame).
    pub geneve: bool,
}

impl Encap {
    /// The network-layer header offset (link payload + `nl`).
    pub fn net(&self) -> Off {
        Off {
            base: self.linkpl.base,
            k: self.linkpl.k.wrapping_add(self.nl),
        }
    }
}

/// Which IPv4 address field (byte offset in the IPv4 or ARP header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V4Field {
    /// IPv4 source (offset 12).
    IpSrc,
    /// IPv4 destination (offset 16).
    IpDst,
    /// ARP/RARP sender protocol address (offset 14).
    ArpSrc,
    /// ARP/RARP target protocol address (offset 24).
    ArpDst,
}

impl V4Field {
    /// Byte offset in the network header.
    pub fn offset(self) -> u32 {
        match self {
            V4Field::IpSrc => 12,
            V4Field::IpDst => 16,
            V4Field::ArpSrc => 14,
            V4Field::ArpDst => 24,
        }
    }
}

/// Source or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Source.
    Src,
    /// Destination.
    Dst,
}

/// Arithmetic operator of a [`Value`].
pub use crate::ast::ArOp;

/// Unsigned comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `!=`
    Ne,
}

impl Cmp {
    /// Applies the comparison.
    pub fn apply(self, a: u32, b: u32) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Le => a <= b,
            Cmp::Lt => a < b,
            Cmp::Ne => a != b,
        }
    }
}

/// What a `proto[index]` load is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadBase {
    /// `ether[...]`/`link[...]`: the link-layer header.
    Link(Encap),
    /// `ip[...]`, `ip6[...]`, `arp[...]`, `rarp[...]`: the network header.
    Net(Encap),
    /// `tcp[...]`, `udp[...]`, `icmp[...]` ...: after the IPv4 header (its IHL read at run time).
    TransportV4(Encap),
    /// `icmp6[...]`: 40 bytes after the IPv6 header start.
    TransportV6(Encap),
}

/// An arithmetic value (`u32`, wrapping, as BPF).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A constant.
    Const(u32),
    /// The packet's wire length.
    WireLen,
    /// A big-endian load of `size` (1, 2, 4) bytes at `base + index`.
    Load {
        /// Relative to what.
        base: LoadBase,
        /// Byte index.
        index: Box<Value>,
        /// Size in bytes.
        size: u8,
    },
    /// Binary arithmetic (division or modulo by zero at run time rejects the packet).
    Bin(ArOp, Box<Value>, Box<Value>),
    /// Two's complement negation.
    Neg(Box<Value>),
}

/// A typed predicate (a leaf of the tree).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pred {
    /// The link layer says the payload is `proto` (an EtherType, or an LLC SAP when
    /// `proto <= 1500`): libpcap's `gen_linktype` for `encap.link` (PPP maps IP to 0x0021 ...,
    /// 802.11 checks "data frame" then LLC/SNAP, after MPLS it tests the bottom-of-stack bit and
    /// the IP version nibble, on raw IP the version nibble, on NULL/LOOP the address family).
    LinkProto {
        /// Context.
        encap: Encap,
        /// EtherType (or SAP).
        proto: u32,
    },
    /// IPv4 protocol field (offset 9) equals `proto`.
    Ipv4Proto {
        /// Context.
        encap: Encap,
        /// Protocol number (values > 255 never match).
        proto: u32,
    },
    /// IPv6 next header equals `proto`; with `via_fragment`, also a fragment header (44)
    /// whose next header equals `proto` (libpcap's `ip6 proto`).
    Ipv6Proto {
        /// Context.
        encap: Encap,
        /// Protocol number.
        proto: u32,
        /// Also look behind one fragment header.
        via_fragment: bool,
    },
    /// IPv4 fragment offset is zero (first fragment or unfragmented).
    Ipv4FirstFragment {
        /// Context.
        encap: Encap,
    },
    /// An IPv4 (or ARP protocol) address field matches `addr` under `mask`.
    Ipv4Addr {
        /// Context.
        encap: Encap,
        /// Which field.
        field: V4Field,
        /// Address (host order).
        addr: u32,
        /// Mask (host order).
        mask: u32,
    },
    /// An IPv6 address field (source at 8, destination at 24) matches under `mask`.
    Ipv6Addr {
        /// Context.
        encap: Encap,
        /// Which address.
        side: Side,
        /// Address, four big-endian words.
        addr: [u32; 4],
        /// Mask, four words.
        mask: [u32; 4],
    },
    /// A TCP/UDP/SCTP port in `[lo, hi]` (the caller has checked the L4 protocol and, on IPv4,
    /// the fragment offset). On IPv4 the header length is read at run time; on IPv6 the
    /// transport header is assumed at 40 (libpcap does not walk extension headers for ports).
    Port {
        /// Context.
        encap: Encap,
        /// IPv6 (else IPv4).
        v6: bool,
        /// Source or destination port.
        side: Side,
        /// Lowest port.
        lo: u16,
        /// Highest port.
        hi: u16,
    },
    /// An Ethernet address field (relative to the link header: destination 0, source 6).
    EtherAddr {
        /// Context.
        encap: Encap,
        /// Which field.
        side: Side,
        /// The address.
        mac: [u8; 6],
    },
    /// A 6-byte MAC address at `offset` from the link header (802.11 address fields).
    MacAt {
        /// Context.
        encap: Encap,
        /// Byte offset from the link header.
        offset: u32,
        /// The address.
        mac: [u8; 6],
    },
    /// The Ethernet destination is a group address (first byte odd).
    EtherMulticast {
        /// Context.
        encap: Encap,
    },
    /// After `geneve`: the inner frame is Ethernet (protocol 0x6558), so link-layer address
    /// predicates make sense.
    GeneveIsEthernet {
        /// Context.
        encap: Encap,
    },
    /// 802.1Q VLAN id (low 12 bits of the TCI at the link payload).
    VlanId {
        /// Context.
        encap: Encap,
        /// The id.
        id: u16,
    },
    /// MPLS label (top 20 bits of the label entry at the network offset).
    MplsLabel {
        /// Context.
        encap: Encap,
        /// The label.
        label: u32,
    },
    /// The bottom-of-stack bit of the previous MPLS label entry is clear (another label
    /// follows): what libpcap tests for the second and later `mpls`.
    MplsNotBottom {
        /// Context.
        encap: Encap,
    },
    /// PPPoE session id.
    PppoeSession {
        /// Context.
        encap: Encap,
        /// The id.
        id: u16,
    },
    /// libpcap's `protochain`: walk IPv6 extension headers / AH (with libpcap 1.10's
    /// arithmetic) looking for `proto`.
    Protochain {
        /// Context.
        encap: Encap,
        /// IPv6 (else IPv4).
        v6: bool,
        /// Protocol looked for.
        proto: u32,
    },
    /// Geneve header after UDP port 6081: version 0 and, if given, the VNI.
    GeneveHeader {
        /// Context.
        encap: Encap,
        /// Over IPv6 (else IPv4).
        v6: bool,
        /// VNI to match.
        vni: Option<u32>,
    },
    /// Always true; locates the frame inside the Geneve packet just matched and stores the
    /// inner link header, link-type field and payload offsets in registers.
    GeneveEnter {
        /// Context (before the switch).
        encap: Encap,
        /// Register for the inner link header.
        hdr_reg: u8,
        /// Register for the inner link-type field.
        type_reg: u8,
        /// Register for the inner payload.
        pl_reg: u8,
    },
    /// `lhs op rhs` on packet values.
    Relation {
        /// Left side.
        lhs: Value,
        /// Comparison.
        op: Cmp,
        /// Right side.
        rhs: Value,
    },
}

/// A node of the boolean tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// Matches.
    True,
    /// Does not match.
    False,
    /// All children, left to right, short-circuit.
    And(Vec<Node>),
    /// Any child, left to right, short-circuit.
    Or(Vec<Node>),
    /// Negation.
    Not(Box<Node>),
    /// A predicate.
    Pred(Pred),
}

/// Registers the 802.11 prologue computes before the tree is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WlanPrologue {
    /// Radiotap header present: its length goes to `hdr_reg`.
    pub radiotap: bool,
    /// Register holding the radiotap length (link header offset), if computed.
    pub hdr_reg: Option<u8>,
    /// Register holding the 802.11 payload (LLC) offset, if computed.
    pub pl_reg: Option<u8>,
}

/// The compiled program: optional 802.11 prologue and the tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ir {
    /// Outer link type the filter was compiled for.
    pub link: Link,
    /// 802.11 offset computation run before the tree (loads happen only when the filter
    /// uses link-header or payload offsets, as in libpcap).
    pub prologue: Option<WlanPrologue>,
    /// The tree.
    pub root: Node,
    /// Number of registers used.
    pub regs: u8,
    /// Whether libpcap would optimize this program (it does not for `protochain`, `geneve`
    /// and 802.11 payload offsets); only optimized programs get path-sensitive folding and
    /// the "rejects all packets" refusal.
    pub optimized: bool,
}

/// Most registers a filter may use (BPF has 16 scratch words).
pub const MAX_REGS: u8 = 16;

impl Node {
    /// `And` of two nodes, flattened and folded.
    pub fn and(a: Node, b: Node) -> Node {
        Node::and_all(vec![a, b])
    }

    /// `Or` of two nodes, flattened and folded.
    pub fn or(a: Node, b: Node) -> Node {
        Node::or_all(vec![a, b])
    }

    /// `And` of many nodes, flattened and folded (a `False` makes the whole `False`: whatever
    /// ran before it could only reject).
    pub fn and_all(v: Vec<Node>) -> Node {
        let mut out = Vec::with_capacity(v.len());
        for n in v {
            match n {
                Node::True => {}
                Node::False => return Node::False,
                Node::And(c) => out.extend(c),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Node::True,
            1 => out.pop().unwrap_or(Node::True),
            _ => Node::And(out),
        }
    }

    /// `Or` of many nodes, flattened and folded (a `True` makes the whole `True`, as libpcap's
    /// optimizer does).
    pub fn or_all(v: Vec<Node>) -> Node {
        let mut out = Vec::with_capacity(v.len());
        for n in v {
            match n {
                Node::False => {}
                Node::True => return Node::True,
                Node::Or(c) => out.extend(c),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Node::False,
            1 => out.pop().unwrap_or(Node::False),
            _ => Node::Or(out),
        }
    }

    /// Negation, folded.
    pub fn negate(n: Node) -> Node {
        match n {
            Node::True => Node::False,
            Node::False => Node::True,
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }

    /// Nesting depth of the tree (computed without recursion).
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((n, d)) = stack.pop() {
            max = max.max(d);
            match n {
                Node::And(v) | Node::Or(v) => stack.extend(v.iter().map(|c| (c, d + 1))),
                Node::Not(c) => stack.push((c, d + 1)),
                _ => {}
            }
        }
        max
    }

    /// Number of nodes in the tree.
    pub fn size(&self) -> usize {
        match self {
            Node::And(v) | Node::Or(v) => 1 + v.iter().map(Node::size).sum::<usize>(),
            Node::Not(n) => 1 + n.size(),
            _ => 1,
        }
    }
}
