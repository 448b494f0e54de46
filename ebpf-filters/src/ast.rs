//! Syntax tree of a pcap-filter expression, as the parser produces it.
//!
//! Qualifier inheritance (`host 1.2.3.4 or 5.6.7.8`) is already resolved here: every
//! [`Prim::Id`] carries the full qualifier it gets in libpcap's grammar. Lowering
//! ([`crate::lower`]) turns this tree into the [`crate::ir`] in source order, which is the
//! order libpcap generates code in (it matters for `vlan`, `mpls`, `pppoes`, `geneve`).

/// Protocol qualifier (`pqual` in libpcap's grammar), restricted to the supported set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// No protocol qualifier.
    Default,
    /// `link`, `ether`, `ppp`, `slip`, `fddi`, `tr`, `wlan`.
    Link,
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
    /// `arp`.
    Arp,
    /// `rarp`.
    Rarp,
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
    /// `sctp`.
    Sctp,
    /// `icmp`.
    Icmp,
    /// `icmp6`.
    Icmp6,
    /// `igmp`.
    Igmp,
    /// `igrp`.
    Igrp,
    /// `pim`.
    Pim,
    /// `vrrp`.
    Vrrp,
    /// `carp`.
    Carp,
    /// `ah`.
    Ah,
    /// `esp`.
    Esp,
}

impl Proto {
    /// The keyword, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Default => "(none)",
            Proto::Link => "ether",
            Proto::Ip => "ip",
            Proto::Ip6 => "ip6",
            Proto::Arp => "arp",
            Proto::Rarp => "rarp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            Proto::Icmp => "icmp",
            Proto::Icmp6 => "icmp6",
            Proto::Igmp => "igmp",
            Proto::Igrp => "igrp",
            Proto::Pim => "pim",
            Proto::Vrrp => "vrrp",
            Proto::Carp => "carp",
            Proto::Ah => "ah",
            Proto::Esp => "esp",
        }
    }
}

/// Direction qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// None given (same as `src or dst`).
    Default,
    /// `src`.
    Src,
    /// `dst`.
    Dst,
    /// `src or dst`.
    Or,
    /// `src and dst`.
    And,
}

/// Address-type qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrQ {
    /// None given.
    Default,
    /// `host`.
    Host,
    /// `net`.
    Net,
    /// `port`.
    Port,
    /// `portrange`.
    Portrange,
    /// `proto`.
    Proto,
    /// `protochain`.
    Protochain,
}

/// A full qualifier (protocol, direction, address type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qual {
    /// Protocol.
    pub proto: Proto,
    /// Direction.
    pub dir: Dir,
    /// Address type.
    pub addr: AddrQ,
}

/// The value of an `id` (what follows the qualifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdVal {
    /// A name (`smtp`, `\tcp`, `25-53`, a host name).
    Name(String),
    /// A number.
    Num(u32),
    /// A dotted IPv4 address or prefix.
    Hid(String),
    /// `A/len`.
    HidLen(String, u32),
    /// `A mask M`.
    HidMask(String, String),
    /// IPv6 address with prefix length (128 when none was written).
    Hid6(String, u32),
    /// MAC address.
    Eid(String),
}

/// Arithmetic expression (`arth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arth {
    /// Constant.
    Num(u32),
    /// `len`: the packet's wire length.
    Len,
    /// `proto[index:size]`.
    Load {
        /// Protocol the index is relative to.
        proto: Proto,
        /// Byte index.
        index: Box<Arth>,
        /// 1, 2 or 4.
        size: u32,
        /// Column of the protocol keyword.
        col: usize,
    },
    /// Binary operation.
    Bin(ArOp, Box<Arth>, Box<Arth>, usize),
    /// Unary minus.
    Neg(Box<Arth>),
}

/// Arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `&`
    And,
    /// `|`
    Or,
    /// `^`
    Xor,
    /// `<<`
    Lsh,
    /// `>>`
    Rsh,
}

/// Comparison operator as libpcap generates it (unsigned; `<`, `<=` and `!=` are the negation
/// of `>=`, `>` and `==`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=` / `==`
    Eq,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `!=`
    Ne,
}

/// A primitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prim {
    /// Qualified value: `host X`, `src net N`, `tcp port 80`, `proto 6` ...
    Id(Qual, IdVal),
    /// A protocol name alone: `tcp`, `ip6`, `arp` ...
    Abbrev(Proto),
    /// `arth relop arth`.
    Rel(RelOp, Arth, Arth),
    /// `[pqual] broadcast`.
    Broadcast(Proto),
    /// `[pqual] multicast`.
    Multicast(Proto),
    /// `less N`.
    Less(u32),
    /// `greater N`.
    Greater(u32),
    /// `vlan [id]`.
    Vlan(Option<u32>),
    /// `mpls [label]`.
    Mpls(Option<u32>),
    /// `pppoes [session]`.
    Pppoes(Option<u32>),
    /// `geneve [vni]`.
    Geneve(Option<u32>),
    /// `byte N op V` with op one of `= < > & |`.
    Byte(u32, char, u32),
}

/// Boolean expression tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ast {
    /// Both (left evaluated first).
    And(Box<Ast>, Box<Ast>),
    /// Either (left evaluated first).
    Or(Box<Ast>, Box<Ast>),
    /// Negation.
    Not(Box<Ast>),
    /// A primitive, with the column where it starts.
    Prim(usize, Prim),
}
