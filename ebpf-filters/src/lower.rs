//! Lowering: syntax tree → [`crate::ir`], with libpcap 1.10.3's code-generation semantics
//! (`gencode.c`): which checks a primitive expands to, in which order, at which offsets, and
//! which qualifier combinations or link types are errors.
//!
//! The tree is walked in source order and the encapsulation state ([`Encap`]) is updated by
//! `vlan`, `mpls`, `pppoes` and `geneve` as they are met, so their shifts apply to everything
//! written after them, whatever the and/or structure — libpcap's behaviour on savefiles.

use std::net::Ipv6Addr;

use crate::ast::{AddrQ, ArOp, Arth, Ast, Dir, IdVal, Prim, Proto, Qual, RelOp};
use crate::ir::{
    Base, Cmp, Encap, Ir, Link, LoadBase, Node, Off, Pred, Side, V4Field, Value, WlanPrologue,
    MAX_REGS,
};
use crate::names;
use crate::parser::unsupported;
use crate::{ErrorKind, FilterError};

const ETHERTYPE_IP: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
const ETHERTYPE_ARP: u32 = 0x0806;
const ETHERTYPE_REVARP: u32 = 0x8035;
const ETHERTYPE_8021Q: u32 = 0x8100;
const ETHERTYPE_8021AD: u32 = 0x88a8;
const ETHERTYPE_8021QINQ: u32 = 0x9100;
const ETHERTYPE_MPLS: u32 = 0x8847;
const ETHERTYPE_PPPOES: u32 = 0x8864;
const PPP_MPLS_UCAST: u32 = 0x0281;
const GENEVE_PORT: u16 = 6081;

type LResult<T> = Result<T, FilterError>;

fn err(col: usize, msg: impl Into<String>) -> FilterError {
    FilterError {
        column: col,
        message: msg.into(),
        kind: ErrorKind::Syntax,
    }
}

fn link_err(col: usize, msg: impl Into<String>) -> FilterError {
    FilterError {
        column: col,
        message: msg.into(),
        kind: ErrorKind::LinkType,
    }
}

/// Port protocol: TCP, UDP, SCTP, or all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4 {
    Tcp,
    Udp,
    Sctp,
    Any,
}

impl L4 {
    fn num(self) -> u32 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
            L4::Sctp => 132,
            L4::Any => 0,
        }
    }
}

struct Lower {
    encap: Encap,
    outer: Link,
    regs: u8,
    wlan_hdr_reg: Option<u8>,
    wlan_pl_reg: Option<u8>,
    used_hdr: bool,
    used_pl: bool,
    /// libpcap turns its optimizer off for this program (protochain, geneve, 802.11 offsets).
    no_optimize: bool,
}

/// Lowers a parsed expression for the outer link type `link`.
pub(crate) fn lower(ast: &Ast, link: Link) -> LResult<Ir> {
    let mut l = Lower::new(link);
    let root = l.node(ast)?;
    let prologue = if link.is_wlan() && (l.used_hdr || l.used_pl) {
        Some(WlanPrologue {
            radiotap: link == Link::Radiotap,
            hdr_reg: l.wlan_hdr_reg,
            pl_reg: if l.used_pl { l.wlan_pl_reg } else { None },
        })
    } else {
        None
    };
    let no_optimize = l.no_optimize || prologue.is_some_and(|p| p.pl_reg.is_some());
    Ok(Ir {
        link,
        prologue,
        root,
        regs: l.regs,
        optimized: !no_optimize,
    })
}

impl Lower {
    fn new(link: Link) -> Self {
        let abs = Off::abs;
        let (linkhdr, linktype, linkpl, nl) = match link {
            Link::Ethernet => (abs(0), Some(abs(12)), abs(14), 0),
            Link::LinuxSll => (abs(0), Some(abs(14)), abs(16), 0),
            Link::LinuxSll2 => (abs(0), Some(abs(0)), abs(20), 0),
            Link::Raw | Link::Ipv4 | Link::Ipv6 => (abs(0), None, abs(0), 0),
            Link::Null | Link::Loop => (abs(0), Some(abs(0)), abs(4), 0),
            Link::Ppp | Link::CHdlc => (abs(0), Some(abs(2)), abs(4), 0),
            Link::Ieee80211 => (
                abs(0),
                Some(abs(24)),
                Off {
                    base: Base::Reg(0),
                    k: 0,
                },
                8,
            ),
            Link::Radiotap => (
                Off {
                    base: Base::Reg(0),
                    k: 0,
                },
                Some(abs(24)),
                Off {
                    base: Base::Reg(1),
                    k: 0,
                },
                8,
            ),
        };
        let (regs, wlan_hdr_reg, wlan_pl_reg) = match link {
            Link::Ieee80211 => (1, None, Some(0)),
            Link::Radiotap => (2, Some(0), Some(1)),
            _ => (0, None, None),
        };
        Lower {
            encap: Encap {
                link,
                linkhdr,
                linktype,
                linkpl,
                nl,
                vlan_depth: 0,
                mpls_depth: 0,
                geneve: false,
            },
            outer: link,
            regs,
            wlan_hdr_reg,
            wlan_pl_reg,
            used_hdr: false,
            used_pl: false,
            no_optimize: false,
        }
    }

    fn node(&mut self, ast: &Ast) -> LResult<Node> {
        // Left-deep and/or chains (`a and b or c ...`) are walked iteratively.
        let mut spine: Vec<(bool, &Ast)> = Vec::new();
        let mut cur = ast;
        loop {
            match cur {
                Ast::And(a, b) => {
                    spine.push((true, b));
                    cur = a;
                }
                Ast::Or(a, b) => {
                    spine.push((false, b));
                    cur = a;
                }
                _ => break,
            }
        }
        let mut acc = match cur {
            Ast::Not(a) => Node::negate(self.node(a)?),
            Ast::Prim(col, p) => self.prim(*col, p)?,
            Ast::And(..) | Ast::Or(..) => Node::True,
        };
        while let Some((is_and, right)) = spine.pop() {
            let r = self.node(right)?;
            acc = if is_and {
                Node::and(acc, r)
            } else {
                Node::or(acc, r)
            };
        }
        Ok(acc)
    }

    // --- usage tracking (for the 802.11 prologue) ---

    fn touch_hdr(&mut self) {
        self.used_hdr = true;
    }

    fn touch_pl(&mut self) {
        self.used_pl = true;
        self.used_hdr = true;
    }

    fn pred(&mut self, p: Pred) -> Node {
        // Any predicate that loads relative to the link payload needs the prologue; link-type
        // checks on 802.11 read the frame control (link header) and the LLC (payload).
        match &p {
            Pred::LinkProto { encap, .. } => {
                if encap.link.is_wlan() || encap.mpls_depth > 0 {
                    self.touch_pl();
                } else {
                    self.touch_hdr();
                }
            }
            Pred::EtherAddr { .. } | Pred::EtherMulticast { .. } | Pred::MacAt { .. } => {
                self.touch_hdr()
            }
            Pred::Relation { .. } => {}
            _ => self.touch_pl(),
        }
        Node::Pred(p)
    }

    fn touch_value(&mut self, v: &Value) {
        match v {
            Value::Load { base, index, .. } => {
                match base {
                    LoadBase::Link(_) => self.touch_hdr(),
                    _ => self.touch_pl(),
                }
                self.touch_value(index);
            }
            Value::Bin(_, a, b) => {
                self.touch_value(a);
                self.touch_value(b);
            }
            Value::Neg(a) => self.touch_value(a),
            Value::Const(_) | Value::WireLen => {}
        }
    }

    fn link_name(&self) -> &'static str {
        match self.encap.link {
            Link::Ethernet => "EN10MB (Ethernet)",
            Link::LinuxSll => "LINUX_SLL (Linux cooked v1)",
            Link::LinuxSll2 => "LINUX_SLL2 (Linux cooked v2)",
            Link::Raw => "RAW (raw IP)",
            Link::Ipv4 => "IPV4 (raw IPv4)",
            Link::Ipv6 => "IPV6 (raw IPv6)",
            Link::Null => "NULL (BSD loopback)",
            Link::Loop => "LOOP (OpenBSD loopback)",
            Link::Ppp if self.outer != Link::Ppp => "PPP (inside PPPoE)",
            Link::Ppp => "PPP",
            Link::CHdlc => "C_HDLC (Cisco HDLC)",
            Link::Ieee80211 => "IEEE802_11 (802.11)",
            Link::Radiotap => "IEEE802_11_RADIO (802.11 with radiotap)",
        }
    }

    // --- gen_linktype ---

    /// libpcap's `gen_linktype(proto)` in the current context, with constants folded.
    fn link_proto(&mut self, col: usize, proto: u32) -> LResult<Node> {
        let e = self.encap;
        if e.mpls_depth > 0 {
            if proto != ETHERTYPE_IP && proto != ETHERTYPE_IPV6 {
                return Err(err(col, "unsupported protocol over mpls (only ip and ip6)"));
            }
            return Ok(self.pred(Pred::LinkProto { encap: e, proto }));
        }
        let unsupported_proto = |p: u32| -> bool {
            // IPX (SAP 0xe0) and AppleTalk/AARP need SNAP matching; outside the supported set.
            matches!(p, 0xe0 | 0x809b | 0x80f3)
        };
        match e.link {
            Link::Raw => Ok(match proto {
                ETHERTYPE_IP | ETHERTYPE_IPV6 => self.pred(Pred::LinkProto { encap: e, proto }),
                _ => Node::False,
            }),
            Link::Ipv4 => Ok(if proto == ETHERTYPE_IP {
                Node::True
            } else {
                Node::False
            }),
            Link::Ipv6 => Ok(if proto == ETHERTYPE_IPV6 {
                Node::True
            } else {
                Node::False
            }),
            Link::Null | Link::Loop => Ok(match proto {
                ETHERTYPE_IP | ETHERTYPE_IPV6 => self.pred(Pred::LinkProto { encap: e, proto }),
                _ => Node::False,
            }),
            _ => {
                if unsupported_proto(proto)
                    && !matches!(e.link, Link::Ppp | Link::CHdlc | Link::LinuxSll2)
                {
                    return Err(unsupported(col, format!("link-layer protocol 0x{proto:x} (IPX/AppleTalk) is not supported by this filter compiler")));
                }
                Ok(self.pred(Pred::LinkProto { encap: e, proto }))
            }
        }
    }

    fn abbrev(&mut self, col: usize, p: Proto) -> LResult<Node> {
        Ok(match p {
            Proto::Ip => self.link_proto(col, ETHERTYPE_IP)?,
            Proto::Ip6 => self.link_proto(col, ETHERTYPE_IPV6)?,
            Proto::Arp => self.link_proto(col, ETHERTYPE_ARP)?,
            Proto::Rarp => self.link_proto(col, ETHERTYPE_REVARP)?,
            Proto::Tcp => self.proto(col, 6, Proto::Default)?,
            Proto::Udp => self.proto(col, 17, Proto::Default)?,
            Proto::Sctp => self.proto(col, 132, Proto::Default)?,
            Proto::Pim => self.proto(col, 103, Proto::Default)?,
            Proto::Ah => self.proto(col, 51, Proto::Default)?,
            Proto::Esp => self.proto(col, 50, Proto::Default)?,
            Proto::Icmp => self.proto(col, 1, Proto::Ip)?,
            Proto::Igmp => self.proto(col, 2, Proto::Ip)?,
            Proto::Igrp => self.proto(col, 9, Proto::Ip)?,
            Proto::Vrrp | Proto::Carp => self.proto(col, 112, Proto::Ip)?,
            Proto::Icmp6 => self.proto(col, 58, Proto::Ip6)?,
            Proto::Link => return Err(err(col, "link layer (ether) applied in wrong context")),
            Proto::Default => Node::True,
        })
    }

    /// `gen_proto(v, proto, Q_DEFAULT)`.
    fn proto(&mut self, col: usize, v: u32, p: Proto) -> LResult<Node> {
        Ok(match p {
            Proto::Default => {
                let a = self.proto(col, v, Proto::Ip)?;
                let b = self.proto(col, v, Proto::Ip6)?;
                Node::or(a, b)
            }
            Proto::Link => self.link_proto(col, v)?,
            Proto::Ip => {
                let lt = self.link_proto(col, ETHERTYPE_IP)?;
                let e = self.encap;
                let pr = self.pred(Pred::Ipv4Proto { encap: e, proto: v });
                Node::and(lt, pr)
            }
            Proto::Ip6 => {
                let lt = self.link_proto(col, ETHERTYPE_IPV6)?;
                let e = self.encap;
                let pr = self.pred(Pred::Ipv6Proto {
                    encap: e,
                    proto: v,
                    via_fragment: true,
                });
                Node::and(lt, pr)
            }
            Proto::Arp | Proto::Rarp => {
                return Err(err(
                    col,
                    format!("{} does not encapsulate another protocol", p.name()),
                ))
            }
            other => return Err(err(col, format!("'{} proto' is bogus", other.name()))),
        })
    }

    fn prim(&mut self, col: usize, p: &Prim) -> LResult<Node> {
        match p {
            Prim::Abbrev(proto) => self.abbrev(col, *proto),
            Prim::Id(q, v) => self.id(col, *q, v),
            Prim::Rel(op, a, b) => self.relation(col, *op, a, b),
            Prim::Less(n) => Ok(Node::Pred(Pred::Relation {
                lhs: Value::WireLen,
                op: Cmp::Le,
                rhs: Value::Const(*n),
            })),
            Prim::Greater(n) => Ok(Node::Pred(Pred::Relation {
                lhs: Value::WireLen,
                op: Cmp::Ge,
                rhs: Value::Const(*n),
            })),
            Prim::Broadcast(proto) => self.broadcast(col, *proto),
            Prim::Multicast(proto) => self.multicast(col, *proto),
            Prim::Vlan(id) => self.vlan(col, *id),
            Prim::Mpls(label) => self.mpls(col, *label),
            Prim::Pppoes(id) => self.pppoes(col, *id),
            Prim::Geneve(vni) => self.geneve(col, *vni),
            Prim::Byte(idx, op, v) => Ok(self.byte(*idx, *op, *v)),
        }
    }

    // --- ids ---

    fn id(&mut self, col: usize, q: Qual, v: &IdVal) -> LResult<Node> {
        match v {
            IdVal::Name(name) => self.scode(col, q, name),
            IdVal::Num(n) => self.ncode(col, q, None, *n),
            IdVal::Hid(s) => {
                let what = match q.addr {
                    AddrQ::Port => Some("port"),
                    AddrQ::Portrange => Some("portrange"),
                    AddrQ::Proto => Some("proto"),
                    AddrQ::Protochain => Some("protochain"),
                    _ => None,
                };
                if let Some(w) = what {
                    return Err(err(col, format!("'{w}' modifier applied to ip host {s}")));
                }
                self.ncode(col, q, Some(s), 0)
            }
            IdVal::HidLen(s, len) => self.mcode(col, q, s, None, *len),
            IdVal::HidMask(s, m) => self.mcode(col, q, s, Some(m), 0),
            IdVal::Hid6(s, len) => self.mcode6(col, q, s, *len),
            IdVal::Eid(s) => self.ecode(col, q, s),
        }
    }

    fn scode(&mut self, col: usize, q: Qual, name: &str) -> LResult<Node> {
        match q.addr {
            AddrQ::Net => Err(unsupported(
                col,
                format!("network name '{name}' (net by name needs /etc/networks) is not supported"),
            )),
            AddrQ::Default | AddrQ::Host => {
                if q.proto == Proto::Link {
                    Err(unsupported(col, format!("ether host name '{name}' (needs /etc/ethers) is not supported; use a MAC address")))
                } else {
                    Err(unsupported(
                        col,
                        format!("host name '{name}' (needs DNS) is not supported; use an address"),
                    ))
                }
            }
            AddrQ::Port => {
                let l4 = port_qual(col, q.proto, "port")?;
                let (port, real) = names::port(name).ok_or_else(|| unknown_port(col, name))?;
                let real = restrict(col, l4, real, name, "port")?;
                self.ports(col, port, port, real, q.dir, false)
            }
            AddrQ::Portrange => {
                let l4 = port_qual(col, q.proto, "portrange")?;
                let (lo, hi, real) = names::port_range(name)
                    .ok_or_else(|| unknown_port(col, &format!("range {name}")))?;
                let real = restrict(col, l4, real, name, "port in range")?;
                self.ports(col, lo, hi, real, q.dir, true)
            }
            AddrQ::Proto | AddrQ::Protochain => {
                let v = match q.proto {
                    Proto::Default | Proto::Ip | Proto::Ip6 => names::ip_proto(name)
                        .ok_or_else(|| err(col, format!("unknown ip proto '{name}'")))?,
                    Proto::Link => match names::ether_proto(name) {
                        Some(v) => v,
                        None => {
                            if names::unsupported_ether_proto(name) {
                                return Err(unsupported(col, format!("ether proto '{name}' (non-IP protocol family) is not supported")));
                            }
                            return Err(err(col, format!("unknown ether proto '{name}'")));
                        }
                    },
                    other => {
                        return Err(err(
                            col,
                            format!(
                                "unknown protocol: {name} ('{}' cannot take a protocol name)",
                                other.name()
                            ),
                        ))
                    }
                };
                if q.addr == AddrQ::Proto {
                    self.gen_proto_dir(col, v, q)
                } else {
                    self.protochain(col, v, q.proto)
                }
            }
        }
    }

    fn gen_proto_dir(&mut self, col: usize, v: u32, q: Qual) -> LResult<Node> {
        if q.dir != Dir::Default {
            return Err(err(col, "direction applied to 'proto'"));
        }
        self.proto(col, v, q.proto)
    }

    fn ncode(&mut self, col: usize, q: Qual, s: Option<&str>, v: u32) -> LResult<Node> {
        let (mut v, vlen) = match s {
            None => (v, 32),
            Some(s) => {
                let (a, len) =
                    atoin(s).ok_or_else(|| err(col, format!("invalid IPv4 address '{s}'")))?;
                (a, len)
            }
        };
        match q.addr {
            AddrQ::Default | AddrQ::Host | AddrQ::Net => {
                if q.proto == Proto::Link {
                    return Err(err(col, "illegal link layer address"));
                }
                let mut mask: u32 = 0xffff_ffff;
                if s.is_none() && q.addr == AddrQ::Net {
                    while v != 0 && (v & 0xff00_0000) == 0 {
                        v <<= 8;
                        mask <<= 8;
                    }
                } else {
                    let sh = 32 - vlen;
                    v = v.checked_shl(sh).unwrap_or(0);
                    mask = mask.checked_shl(sh).unwrap_or(0);
                }
                self.host(col, v, mask, q.proto, q.dir, q.addr == AddrQ::Net)
            }
            AddrQ::Port | AddrQ::Portrange => {
                let what = if q.addr == AddrQ::Port {
                    "port"
                } else {
                    "portrange"
                };
                let l4 = port_qual(col, q.proto, what)?;
                if v > 65535 {
                    return Err(err(col, format!("illegal port number {v} > 65535")));
                }
                self.ports(
                    col,
                    v as u16,
                    v as u16,
                    l4,
                    q.dir,
                    q.addr == AddrQ::Portrange,
                )
            }
            AddrQ::Proto => self.gen_proto_dir(col, v, q),
            AddrQ::Protochain => self.protochain(col, v, q.proto),
        }
    }

    fn mcode(
        &mut self,
        col: usize,
        q: Qual,
        s1: &str,
        s2: Option<&str>,
        masklen: u32,
    ) -> LResult<Node> {
        let (n, nlen) =
            atoin(s1).ok_or_else(|| err(col, format!("invalid IPv4 address '{s1}'")))?;
        let n = n.checked_shl(32 - nlen).unwrap_or(0);
        let m = match s2 {
            Some(s2) => {
                let (m, mlen) =
                    atoin(s2).ok_or_else(|| err(col, format!("invalid IPv4 address '{s2}'")))?;
                let m = m.checked_shl(32 - mlen).unwrap_or(0);
                if n & !m != 0 {
                    return Err(err(
                        col,
                        format!("non-network bits set in \"{s1} mask {s2}\""),
                    ));
                }
                m
            }
            None => {
                if masklen > 32 {
                    return Err(err(col, "mask length must be <= 32"));
                }
                let m = if masklen == 0 {
                    0
                } else {
                    u32::MAX << (32 - masklen)
                };
                if n & !m != 0 {
                    return Err(err(
                        col,
                        format!("non-network bits set in \"{s1}/{masklen}\""),
                    ));
                }
                m
            }
        };
        if q.addr != AddrQ::Net {
            return Err(err(col, "Mask syntax for networks only"));
        }
        self.host(col, n, m, q.proto, q.dir, true)
    }

    fn mcode6(&mut self, col: usize, q: Qual, s: &str, masklen: u32) -> LResult<Node> {
        let a: Ipv6Addr = s
            .parse()
            .map_err(|_| err(col, format!("invalid ip6 address {s}")))?;
        if masklen > 128 {
            return Err(err(col, "mask length must be <= 128"));
        }
        let ab = u128::from(a);
        let m: u128 = if masklen == 0 {
            0
        } else {
            u128::MAX << (128 - masklen)
        };
        if ab & !m != 0 {
            return Err(err(
                col,
                format!("non-network bits set in \"{s}/{masklen}\""),
            ));
        }
        match q.addr {
            AddrQ::Default | AddrQ::Host if masklen != 128 => {
                return Err(err(col, "Mask syntax for networks only"));
            }
            AddrQ::Default | AddrQ::Host | AddrQ::Net => {}
            _ => return Err(err(col, "invalid qualifier against IPv6 address")),
        }
        let words = |x: u128| {
            [
                (x >> 96) as u32,
                (x >> 64) as u32,
                (x >> 32) as u32,
                x as u32,
            ]
        };
        let (addr, mask) = (words(ab), words(m));
        match q.proto {
            Proto::Default | Proto::Ip6 => {}
            Proto::Link => return Err(err(col, "link-layer modifier applied to ip6 host")),
            other => {
                return Err(err(
                    col,
                    format!("'{}' modifier applied to ip6 host", other.name()),
                ))
            }
        }
        self.hostop6(col, addr, mask, q.dir)
    }

    fn hostop6(&mut self, col: usize, addr: [u32; 4], mask: [u32; 4], dir: Dir) -> LResult<Node> {
        Ok(match dir {
            Dir::Src | Dir::Dst => {
                let lt = self.link_proto(col, ETHERTYPE_IPV6)?;
                let e = self.encap;
                let side = if dir == Dir::Src {
                    Side::Src
                } else {
                    Side::Dst
                };
                let p = self.pred(Pred::Ipv6Addr {
                    encap: e,
                    side,
                    addr,
                    mask,
                });
                Node::and(lt, p)
            }
            Dir::And => {
                let a = self.hostop6(col, addr, mask, Dir::Src)?;
                let b = self.hostop6(col, addr, mask, Dir::Dst)?;
                Node::and(a, b)
            }
            Dir::Or | Dir::Default => {
                let a = self.hostop6(col, addr, mask, Dir::Src)?;
                let b = self.hostop6(col, addr, mask, Dir::Dst)?;
                Node::or(a, b)
            }
        })
    }

    /// `gen_host`.
    fn host(
        &mut self,
        col: usize,
        addr: u32,
        mask: u32,
        proto: Proto,
        dir: Dir,
        net: bool,
    ) -> LResult<Node> {
        let what = if net { "net" } else { "host" };
        match proto {
            Proto::Default => {
                let a = self.host(col, addr, mask, Proto::Ip, dir, net)?;
                if self.encap.mpls_depth > 0 {
                    return Ok(a);
                }
                let b = self.host(col, addr, mask, Proto::Arp, dir, net)?;
                let c = self.host(col, addr, mask, Proto::Rarp, dir, net)?;
                Ok(Node::or_all(vec![a, b, c]))
            }
            Proto::Ip => self.hostop(col, addr, mask, dir, ETHERTYPE_IP),
            Proto::Arp => self.hostop(col, addr, mask, dir, ETHERTYPE_ARP),
            Proto::Rarp => self.hostop(col, addr, mask, dir, ETHERTYPE_REVARP),
            Proto::Link => Err(err(col, format!("link-layer modifier applied to {what}"))),
            Proto::Ip6 => Err(err(col, "'ip6' modifier applied to ip host")),
            other => Err(err(
                col,
                format!("'{}' modifier applied to {what}", other.name()),
            )),
        }
    }

    fn hostop(&mut self, col: usize, addr: u32, mask: u32, dir: Dir, ll: u32) -> LResult<Node> {
        let arp = ll != ETHERTYPE_IP;
        Ok(match dir {
            Dir::Src | Dir::Dst => {
                let field = match (arp, dir == Dir::Src) {
                    (false, true) => V4Field::IpSrc,
                    (false, false) => V4Field::IpDst,
                    (true, true) => V4Field::ArpSrc,
                    (true, false) => V4Field::ArpDst,
                };
                let lt = self.link_proto(col, ll)?;
                if lt == Node::False {
                    return Ok(Node::False);
                }
                let e = self.encap;
                let p = if mask == 0 {
                    Node::True
                } else {
                    self.pred(Pred::Ipv4Addr {
                        encap: e,
                        field,
                        addr,
                        mask,
                    })
                };
                Node::and(lt, p)
            }
            Dir::And => {
                let a = self.hostop(col, addr, mask, Dir::Src, ll)?;
                let b = self.hostop(col, addr, mask, Dir::Dst, ll)?;
                Node::and(a, b)
            }
            Dir::Or | Dir::Default => {
                let a = self.hostop(col, addr, mask, Dir::Src, ll)?;
                let b = self.hostop(col, addr, mask, Dir::Dst, ll)?;
                Node::or(a, b)
            }
        })
    }

    fn ecode(&mut self, col: usize, q: Qual, s: &str) -> LResult<Node> {
        if !(matches!(q.addr, AddrQ::Host | AddrQ::Default) && q.proto == Proto::Link) {
            return Err(err(
                col,
                format!("ethernet address {s} used in non-ether expression"),
            ));
        }
        let mac = parse_mac(s).ok_or_else(|| err(col, format!("bad ethernet address {s}")))?;
        self.ether_addr(col, mac, q.dir, "ether host")
    }

    fn ether_addr(&mut self, col: usize, mac: [u8; 6], dir: Dir, what: &str) -> LResult<Node> {
        match self.encap.link {
            Link::Ethernet => {}
            Link::Ieee80211 | Link::Radiotap => return Ok(self.wlanhostop(mac, dir)),
            _ => {
                return Err(link_err(col, format!("{what} is not valid on link type {}: ethernet addresses are supported only on Ethernet-like links", self.link_name())));
            }
        }
        let check = self.geneve_check();
        let body = self.ehostop(mac, dir);
        Ok(Node::and(check, body))
    }

    /// `linkhdr[byte] & mask != 0` (a BPF `jset`).
    fn bit(&mut self, byte: u32, mask: u32) -> Node {
        let e = self.encap;
        let load = Value::Load {
            base: LoadBase::Link(e),
            index: Box::new(Value::Const(byte)),
            size: 1,
        };
        let lhs = Value::Bin(ArOp::And, Box::new(load), Box::new(Value::Const(mask)));
        self.touch_hdr();
        Node::Pred(Pred::Relation {
            lhs,
            op: Cmp::Ne,
            rhs: Value::Const(0),
        })
    }

    fn mac_at(&mut self, offset: u32, mac: [u8; 6]) -> Node {
        let e = self.encap;
        self.pred(Pred::MacAt {
            encap: e,
            offset,
            mac,
        })
    }

    /// libpcap's `gen_wlanhostop`: which address field is the source or destination depends
    /// on the frame type and the To DS / From DS bits.
    fn wlanhostop(&mut self, mac: [u8; 6], dir: Dir) -> Node {
        match dir {
            Dir::Src => {
                let not_tods = Node::negate(self.bit(1, 0x01));
                let a16 = self.mac_at(16, mac);
                let tods = self.bit(1, 0x01);
                let a24 = self.mac_at(24, mac);
                let inner = Node::or(Node::and(not_tods, a16), Node::and(tods, a24));
                let not_fromds = Node::negate(self.bit(1, 0x02));
                let a10 = self.mac_at(10, mac);
                let fromds = self.bit(1, 0x02);
                let mid = Node::or(Node::and(not_fromds, a10), Node::and(fromds, inner));
                let not_data = Node::negate(self.bit(0, 0x08));
                let a10b = self.mac_at(10, mac);
                let data = self.bit(0, 0x08);
                let outer = Node::or(Node::and(not_data, a10b), Node::and(data, mid));
                let not_ctl = Node::negate(self.bit(0, 0x04));
                Node::and(not_ctl, outer)
            }
            Dir::Dst => {
                let not_tods = Node::negate(self.bit(1, 0x01));
                let a4 = self.mac_at(4, mac);
                let tods = self.bit(1, 0x01);
                let a16 = self.mac_at(16, mac);
                let inner = Node::or(Node::and(not_tods, a4), Node::and(tods, a16));
                let not_data = Node::negate(self.bit(0, 0x08));
                let a4b = self.mac_at(4, mac);
                let data = self.bit(0, 0x08);
                let outer = Node::or(Node::and(not_data, a4b), Node::and(data, inner));
                let not_ctl = Node::negate(self.bit(0, 0x04));
                Node::and(not_ctl, outer)
            }
            Dir::And => {
                let x = self.wlanhostop(mac, Dir::Src);
                let y = self.wlanhostop(mac, Dir::Dst);
                Node::and(x, y)
            }
            Dir::Or | Dir::Default => {
                let x = self.wlanhostop(mac, Dir::Src);
                let y = self.wlanhostop(mac, Dir::Dst);
                Node::or(x, y)
            }
        }
    }

    /// libpcap's 802.11 `multicast`: the group bit of the destination address field.
    fn wlan_multicast(&mut self) -> Node {
        let not_tods = Node::negate(self.bit(1, 0x01));
        let m4 = self.bit(4, 0x01);
        let tods = self.bit(1, 0x01);
        let m16 = self.bit(16, 0x01);
        let inner = Node::or(Node::and(not_tods, m4), Node::and(tods, m16));
        let not_data = Node::negate(self.bit(0, 0x08));
        let m4b = self.bit(4, 0x01);
        let data = self.bit(0, 0x08);
        let outer = Node::or(Node::and(not_data, m4b), Node::and(data, inner));
        let not_ctl = Node::negate(self.bit(0, 0x04));
        Node::and(not_ctl, outer)
    }

    fn geneve_check(&mut self) -> Node {
        if self.encap.geneve {
            let e = self.encap;
            self.pred(Pred::GeneveIsEthernet { encap: e })
        } else {
            Node::True
        }
    }

    fn ehostop(&mut self, mac: [u8; 6], dir: Dir) -> Node {
        let e = self.encap;
        match dir {
            Dir::Src => self.pred(Pred::EtherAddr {
                encap: e,
                side: Side::Src,
                mac,
            }),
            Dir::Dst => self.pred(Pred::EtherAddr {
                encap: e,
                side: Side::Dst,
                mac,
            }),
            Dir::And => {
                let a = self.ehostop(mac, Dir::Src);
                let b = self.ehostop(mac, Dir::Dst);
                Node::and(a, b)
            }
            Dir::Or | Dir::Default => {
                let a = self.ehostop(mac, Dir::Src);
                let b = self.ehostop(mac, Dir::Dst);
                Node::or(a, b)
            }
        }
    }

    // --- ports ---

    /// `gen_port`/`gen_portrange` for IPv6 then IPv4, or-ed (libpcap's order).
    fn ports(
        &mut self,
        col: usize,
        lo: u16,
        hi: u16,
        l4: L4,
        dir: Dir,
        _range: bool,
    ) -> LResult<Node> {
        let (lo, hi) = if lo > hi { (hi, lo) } else { (lo, hi) };
        let v6 = self.port_family(col, lo, hi, l4, dir, true)?;
        let v4 = self.port_family(col, lo, hi, l4, dir, false)?;
        Ok(Node::or(v6, v4))
    }

    fn port_family(
        &mut self,
        col: usize,
        lo: u16,
        hi: u16,
        l4: L4,
        dir: Dir,
        v6: bool,
    ) -> LResult<Node> {
        let lt = self.link_proto(col, if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IP })?;
        if lt == Node::False {
            return Ok(Node::False);
        }
        let body = match l4 {
            L4::Any => {
                let s = self.portop(L4::Sctp, lo, hi, dir, v6);
                let t = self.portop(L4::Tcp, lo, hi, dir, v6);
                let u = self.portop(L4::Udp, lo, hi, dir, v6);
                Node::or_all(vec![s, t, u])
            }
            one => self.portop(one, lo, hi, dir, v6),
        };
        Ok(Node::and(lt, body))
    }

    fn portop(&mut self, l4: L4, lo: u16, hi: u16, dir: Dir, v6: bool) -> Node {
        let e = self.encap;
        let mut parts = Vec::new();
        if v6 {
            parts.push(self.pred(Pred::Ipv6Proto {
                encap: e,
                proto: l4.num(),
                via_fragment: false,
            }));
        } else {
            parts.push(self.pred(Pred::Ipv4Proto {
                encap: e,
                proto: l4.num(),
            }));
            parts.push(self.pred(Pred::Ipv4FirstFragment { encap: e }));
        }
        let atom = |side| {
            Node::Pred(Pred::Port {
                encap: e,
                v6,
                side,
                lo,
                hi,
            })
        };
        let d = match dir {
            Dir::Src => atom(Side::Src),
            Dir::Dst => atom(Side::Dst),
            Dir::And => Node::and(atom(Side::Src), atom(Side::Dst)),
            Dir::Or | Dir::Default => Node::or(atom(Side::Src), atom(Side::Dst)),
        };
        parts.push(d);
        Node::and_all(parts)
    }

    // --- protochain ---

    fn protochain(&mut self, col: usize, v: u32, p: Proto) -> LResult<Node> {
        match p {
            Proto::Default => {
                let a = self.protochain(col, v, Proto::Ip)?;
                let b = self.protochain(col, v, Proto::Ip6)?;
                Ok(Node::or(a, b))
            }
            Proto::Ip | Proto::Ip6 => {
                if self.encap.linkpl.base != Base::Packet {
                    return Err(err(
                        col,
                        "'protochain' not supported with variable length headers",
                    ));
                }
                let v6 = p == Proto::Ip6;
                self.no_optimize = true;
                let lt = self.link_proto(col, if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IP })?;
                let e = self.encap;
                let pc = self.pred(Pred::Protochain {
                    encap: e,
                    v6,
                    proto: v,
                });
                Ok(Node::and(lt, pc))
            }
            _ => Err(err(col, "bad protocol applied for 'protochain'")),
        }
    }

    // --- broadcast / multicast ---

    fn broadcast(&mut self, col: usize, p: Proto) -> LResult<Node> {
        match p {
            Proto::Default | Proto::Link => match self.encap.link {
                Link::Ethernet => self.ether_addr(col, [0xff; 6], Dir::Dst, "broadcast"),
                Link::Ieee80211 | Link::Radiotap => self.ether_addr(col, [0xff; 6], Dir::Dst, "broadcast"),
                _ => Err(link_err(col, format!("broadcast: link type {} is not a broadcast link", self.link_name()))),
            },
            Proto::Ip => Err(unsupported(col, "ip broadcast needs the capture's netmask, which is not known offline (tcpdump rejects it too)")),
            _ => Err(err(col, "only link-layer/IP broadcast filters supported")),
        }
    }

    fn multicast(&mut self, col: usize, p: Proto) -> LResult<Node> {
        match p {
            Proto::Default | Proto::Link => match self.encap.link {
                Link::Ethernet => {
                    let check = self.geneve_check();
                    let e = self.encap;
                    let m = self.pred(Pred::EtherMulticast { encap: e });
                    Ok(Node::and(check, m))
                }
                Link::Ieee80211 | Link::Radiotap => Ok(self.wlan_multicast()),
                _ => Err(link_err(
                    col,
                    format!(
                        "multicast: link-layer multicast is not supported on link type {}",
                        self.link_name()
                    ),
                )),
            },
            Proto::Ip => {
                let lt = self.link_proto(col, ETHERTYPE_IP)?;
                let e = self.encap;
                let r = Value::Load {
                    base: LoadBase::Net(e),
                    index: Box::new(Value::Const(16)),
                    size: 1,
                };
                self.touch_pl();
                Ok(Node::and(
                    lt,
                    Node::Pred(Pred::Relation {
                        lhs: r,
                        op: Cmp::Ge,
                        rhs: Value::Const(224),
                    }),
                ))
            }
            Proto::Ip6 => {
                let lt = self.link_proto(col, ETHERTYPE_IPV6)?;
                let e = self.encap;
                let r = Value::Load {
                    base: LoadBase::Net(e),
                    index: Box::new(Value::Const(24)),
                    size: 1,
                };
                self.touch_pl();
                Ok(Node::and(
                    lt,
                    Node::Pred(Pred::Relation {
                        lhs: r,
                        op: Cmp::Eq,
                        rhs: Value::Const(255),
                    }),
                ))
            }
            _ => Err(err(
                col,
                format!(
                    "'{} multicast': multicast filters apply only to the link layer, ip and ip6",
                    p.name()
                ),
            )),
        }
    }

    // --- encapsulations ---

    fn vlan(&mut self, col: usize, id: Option<u32>) -> LResult<Node> {
        if self.encap.mpls_depth > 0 {
            return Err(err(col, "no VLAN match after MPLS"));
        }
        match self.encap.link {
            Link::Ethernet | Link::Ieee80211 | Link::Radiotap => {}
            _ => {
                return Err(link_err(
                    col,
                    format!("vlan: no VLAN support for link type {}", self.link_name()),
                ))
            }
        }
        let a = self.link_proto(col, ETHERTYPE_8021Q)?;
        let b = self.link_proto(col, ETHERTYPE_8021AD)?;
        let c = self.link_proto(col, ETHERTYPE_8021QINQ)?;
        let mut n = Node::or_all(vec![a, b, c]);
        if let Some(id) = id {
            if id > 0x0fff {
                return Err(err(col, format!("VLAN tag {id} greater than maximum 4095")));
            }
            let e = self.encap;
            let p = self.pred(Pred::VlanId {
                encap: e,
                id: id as u16,
            });
            n = Node::and(n, p);
        }
        self.encap.linkpl.k = self.encap.linkpl.k.wrapping_add(4);
        if let Some(lt) = self.encap.linktype.as_mut() {
            lt.k = lt.k.wrapping_add(4);
        }
        self.encap.vlan_depth = self.encap.vlan_depth.saturating_add(1);
        Ok(n)
    }

    fn mpls(&mut self, col: usize, label: Option<u32>) -> LResult<Node> {
        let mut n = if self.encap.mpls_depth > 0 {
            let e = self.encap;
            self.pred(Pred::MplsNotBottom { encap: e })
        } else {
            match self.encap.link {
                Link::Ethernet | Link::CHdlc => self.link_proto(col, ETHERTYPE_MPLS)?,
                Link::Ppp => self.link_proto(col, PPP_MPLS_UCAST)?,
                _ => {
                    return Err(link_err(
                        col,
                        format!("mpls: no MPLS support for link type {}", self.link_name()),
                    ))
                }
            }
        };
        if let Some(label) = label {
            if label > 0xFFFFF {
                return Err(err(
                    col,
                    format!("MPLS label {label} greater than maximum 1048575"),
                ));
            }
            let e = self.encap;
            let p = self.pred(Pred::MplsLabel { encap: e, label });
            n = Node::and(n, p);
        }
        self.encap.nl = self.encap.nl.wrapping_add(4);
        self.encap.mpls_depth = self.encap.mpls_depth.saturating_add(1);
        Ok(n)
    }

    fn pppoes(&mut self, col: usize, id: Option<u32>) -> LResult<Node> {
        let mut n = self.link_proto(col, ETHERTYPE_PPPOES)?;
        if let Some(id) = id {
            if id > 0xffff {
                return Err(err(
                    col,
                    format!("PPPoE session number {id} greater than maximum 65535"),
                ));
            }
            let e = self.encap;
            let p = self.pred(Pred::PppoeSession {
                encap: e,
                id: id as u16,
            });
            n = Node::and(n, p);
        }
        let e = &mut self.encap;
        let hdr = Off {
            base: e.linkpl.base,
            k: e.linkpl.k.wrapping_add(e.nl).wrapping_add(6),
        };
        e.linkhdr = hdr;
        e.linktype = Some(hdr);
        e.linkpl = Off {
            base: hdr.base,
            k: hdr.k.wrapping_add(2),
        };
        e.nl = 0;
        e.link = Link::Ppp;
        Ok(n)
    }

    fn alloc_reg(&mut self, col: usize) -> LResult<u8> {
        if self.regs >= MAX_REGS {
            return Err(err(col, "too many registers needed to evaluate expression"));
        }
        self.regs += 1;
        Ok(self.regs - 1)
    }

    fn geneve(&mut self, col: usize, vni: Option<u32>) -> LResult<Node> {
        if let Some(v) = vni {
            if v > 0xffffff {
                return Err(err(
                    col,
                    format!("Geneve VNI {v} greater than maximum 16777215"),
                ));
            }
        }
        let mut fams = Vec::new();
        for v6 in [false, true] {
            let port = self.port_family(col, GENEVE_PORT, GENEVE_PORT, L4::Udp, Dir::Dst, v6)?;
            let e = self.encap;
            let h = self.pred(Pred::GeneveHeader { encap: e, v6, vni });
            fams.push(Node::and(port, h));
        }
        let either = Node::or_all(fams);
        self.no_optimize = true;
        let hdr_reg = self.alloc_reg(col)?;
        let type_reg = self.alloc_reg(col)?;
        let pl_reg = self.alloc_reg(col)?;
        let e = self.encap;
        let enter = self.pred(Pred::GeneveEnter {
            encap: e,
            hdr_reg,
            type_reg,
            pl_reg,
        });
        let en = &mut self.encap;
        en.link = Link::Ethernet;
        en.linkhdr = Off {
            base: Base::Reg(hdr_reg),
            k: 0,
        };
        en.linktype = Some(Off {
            base: Base::Reg(type_reg),
            k: 0,
        });
        en.linkpl = Off {
            base: Base::Reg(pl_reg),
            k: 0,
        };
        en.nl = 0;
        en.geneve = true;
        Ok(Node::and(either, enter))
    }

    /// `byte idx op v`. For `&` and `|` libpcap 1.10 emits the ALU operation without
    /// loading the byte, so the test is on the accumulator's previous value (0 at the start
    /// of the program): `byte N | V` is `V != 0`, `byte N & V` never matches. Reproduced with
    /// an accumulator of 0.
    fn byte(&mut self, idx: u32, op: char, v: u32) -> Node {
        let e = self.encap;
        let load = Value::Load {
            base: LoadBase::Link(e),
            index: Box::new(Value::Const(idx)),
            size: 1,
        };
        let (lhs, cmp, rhs) = match op {
            '=' => (load, Cmp::Eq, Value::Const(v)),
            '<' => (load, Cmp::Lt, Value::Const(v)),
            '>' => (load, Cmp::Gt, Value::Const(v)),
            '&' => (
                Value::Bin(
                    ArOp::And,
                    Box::new(Value::Const(0)),
                    Box::new(Value::Const(v)),
                ),
                Cmp::Ne,
                Value::Const(0),
            ),
            _ => (
                Value::Bin(
                    ArOp::Or,
                    Box::new(Value::Const(0)),
                    Box::new(Value::Const(v)),
                ),
                Cmp::Ne,
                Value::Const(0),
            ),
        };
        self.touch_value(&lhs);
        Node::Pred(Pred::Relation { lhs, op: cmp, rhs })
    }

    // --- relations ---

    fn relation(&mut self, col: usize, op: RelOp, a: &Arth, b: &Arth) -> LResult<Node> {
        let mut guards = Vec::new();
        let va = self.arth(a, &mut guards)?;
        let vb = self.arth(b, &mut guards)?;
        let op = match op {
            RelOp::Gt => Cmp::Gt,
            RelOp::Ge => Cmp::Ge,
            RelOp::Eq => Cmp::Eq,
            RelOp::Le => Cmp::Le,
            RelOp::Lt => Cmp::Lt,
            RelOp::Ne => Cmp::Ne,
        };
        let rel = match (&va, &vb) {
            (Value::Const(x), Value::Const(y)) => {
                if op.apply(*x, *y) {
                    Node::True
                } else {
                    Node::False
                }
            }
            _ => {
                self.touch_value(&va);
                self.touch_value(&vb);
                Node::Pred(Pred::Relation {
                    lhs: va,
                    op,
                    rhs: vb,
                })
            }
        };
        let _ = col;
        guards.push(rel);
        Ok(Node::and_all(guards))
    }

    /// Lowers an arithmetic expression; protocol checks its loads need are appended to
    /// `guards` in libpcap's order.
    fn arth(&mut self, a: &Arth, guards: &mut Vec<Node>) -> LResult<Value> {
        Ok(match a {
            Arth::Num(n) => Value::Const(*n),
            Arth::Len => Value::WireLen,
            Arth::Neg(x) => match self.arth(x, guards)? {
                Value::Const(c) => Value::Const(c.wrapping_neg()),
                v => Value::Neg(Box::new(v)),
            },
            Arth::Bin(op, x, y, ocol) => {
                let vx = self.arth(x, guards)?;
                // libpcap's gen_arth keeps only the left operand's protocol checks: the
                // right operand's loads run unguarded (`len - tcp[0]` has no tcp check).
                let mut dropped = Vec::new();
                let vy = self.arth(y, &mut dropped)?;
                if let Some(c) = known_const(&vy) {
                    match op {
                        ArOp::Div if c == 0 => return Err(err(*ocol, "division by zero")),
                        ArOp::Mod if c == 0 => return Err(err(*ocol, "modulus by zero")),
                        ArOp::Lsh | ArOp::Rsh if c > 31 => {
                            return Err(err(*ocol, "shift by more than 31 bits"))
                        }
                        _ => {}
                    }
                }
                match (&vx, &vy) {
                    (Value::Const(p), Value::Const(q)) => {
                        Value::Const(apply_op(*op, *p, *q).unwrap_or(0))
                    }
                    _ => Value::Bin(*op, Box::new(vx), Box::new(vy)),
                }
            }
            Arth::Load {
                proto,
                index,
                size,
                col,
            } => {
                let mut inner = Vec::new();
                let idx = self.arth(index, &mut inner)?;
                let size = *size as u8;
                let e = self.encap;
                match proto {
                    Proto::Link => {
                        guards.extend(inner);
                        Value::Load {
                            base: LoadBase::Link(e),
                            index: Box::new(idx),
                            size,
                        }
                    }
                    Proto::Ip | Proto::Ip6 | Proto::Arp | Proto::Rarp => {
                        guards.extend(inner);
                        guards.push(self.abbrev(*col, *proto)?);
                        Value::Load {
                            base: LoadBase::Net(e),
                            index: Box::new(idx),
                            size,
                        }
                    }
                    Proto::Tcp
                    | Proto::Udp
                    | Proto::Sctp
                    | Proto::Icmp
                    | Proto::Igmp
                    | Proto::Igrp
                    | Proto::Pim
                    | Proto::Vrrp
                    | Proto::Carp => {
                        guards.push(self.abbrev(*col, Proto::Ip)?);
                        guards.extend(inner);
                        guards.push(self.abbrev(*col, *proto)?);
                        let e2 = self.encap;
                        guards.push(self.pred(Pred::Ipv4FirstFragment { encap: e2 }));
                        Value::Load {
                            base: LoadBase::TransportV4(e),
                            index: Box::new(idx),
                            size,
                        }
                    }
                    Proto::Icmp6 => {
                        guards.extend(inner);
                        guards.push(self.abbrev(*col, Proto::Ip6)?);
                        let e2 = self.encap;
                        guards.push(self.pred(Pred::Ipv6Proto {
                            encap: e2,
                            proto: 58,
                            via_fragment: false,
                        }));
                        Value::Load {
                            base: LoadBase::TransportV6(e),
                            index: Box::new(idx),
                            size,
                        }
                    }
                    Proto::Ah | Proto::Esp | Proto::Default => {
                        return Err(err(
                            *col,
                            format!("{}[...]: unsupported index operation", proto.name()),
                        ))
                    }
                }
            }
        })
    }
}

/// The value of an expression when it does not depend on the packet (`x & 0`, `x * 0` are
/// 0): libpcap's optimizer folds those and refuses a division by a known zero.
fn known_const(v: &Value) -> Option<u32> {
    match v {
        Value::Const(c) => Some(*c),
        Value::Bin(op, a, b) => {
            let (ka, kb) = (known_const(a), known_const(b));
            match (op, ka, kb) {
                (ArOp::And | ArOp::Mul, Some(0), _) | (ArOp::And | ArOp::Mul, _, Some(0)) => {
                    Some(0)
                }
                (ArOp::Or, Some(u32::MAX), _) | (ArOp::Or, _, Some(u32::MAX)) => Some(u32::MAX),
                (_, Some(x), Some(y)) => apply_op(*op, x, y),
                _ => None,
            }
        }
        Value::Neg(a) => known_const(a).map(u32::wrapping_neg),
        _ => None,
    }
}

/// Applies an arithmetic operator as BPF does; `None` for a division by zero.
pub(crate) fn apply_op(op: ArOp, a: u32, b: u32) -> Option<u32> {
    Some(match op {
        ArOp::Add => a.wrapping_add(b),
        ArOp::Sub => a.wrapping_sub(b),
        ArOp::Mul => a.wrapping_mul(b),
        ArOp::Div => a.checked_div(b)?,
        ArOp::Mod => a.checked_rem(b)?,
        ArOp::And => a & b,
        ArOp::Or => a | b,
        ArOp::Xor => a ^ b,
        ArOp::Lsh => a.checked_shl(b).unwrap_or(0),
        ArOp::Rsh => a.checked_shr(b).unwrap_or(0),
    })
}

fn port_qual(col: usize, p: Proto, what: &str) -> LResult<L4> {
    Ok(match p {
        Proto::Default => L4::Any,
        Proto::Tcp => L4::Tcp,
        Proto::Udp => L4::Udp,
        Proto::Sctp => L4::Sctp,
        other => {
            return Err(err(
                col,
                format!("illegal qualifier of '{what}': '{}'", other.name()),
            ))
        }
    })
}

fn unknown_port(col: usize, name: &str) -> FilterError {
    unsupported(
        col,
        format!("unknown port {name} (the built-in service table has no such name)"),
    )
}

/// libpcap's checks of a named port against the protocol qualifier.
fn restrict(col: usize, want: L4, real: names::PortProto, name: &str, what: &str) -> LResult<L4> {
    use names::PortProto as P;
    Ok(match want {
        L4::Any => match real {
            P::Tcp => L4::Tcp,
            P::Udp => L4::Udp,
            P::Both => L4::Any,
        },
        L4::Udp => {
            if real == P::Tcp {
                return Err(err(col, format!("{what} '{name}' is tcp")));
            }
            L4::Udp
        }
        L4::Tcp => {
            if real == P::Udp {
                return Err(err(col, format!("{what} '{name}' is udp")));
            }
            L4::Tcp
        }
        L4::Sctp => {
            match real {
                P::Udp => return Err(err(col, format!("{what} '{name}' is udp"))),
                P::Tcp => return Err(err(col, format!("{what} '{name}' is tcp"))),
                P::Both => {}
            }
            L4::Sctp
        }
    })
}

/// libpcap's `__pcap_atoin`: dotted decimal, returns the value and its length in bits.
fn atoin(s: &str) -> Option<(u32, u32)> {
    let mut addr: u32 = 0;
    let mut len = 0u32;
    for part in s.split('.') {
        if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) || part.len() > 3 {
            return None;
        }
        let n: u32 = part.parse().ok()?;
        if n > 255 || len >= 32 {
            return None;
        }
        addr = (addr << 8) | n;
        len += 8;
    }
    Some((addr, len))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let groups: Vec<&str> = if s.contains(':') {
        s.split(':').collect()
    } else if s.contains('-') {
        s.split('-').collect()
    } else if s.contains('.') {
        s.split('.').collect()
    } else {
        vec![s]
    };
    let hex: String = if groups.len() == 6 {
        groups.iter().map(|g| format!("{g:0>2}")).collect()
    } else {
        groups.concat()
    };
    if hex.len() != 12 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoin_like_libpcap() {
        assert_eq!(atoin("10"), Some((10, 8)));
        assert_eq!(atoin("192.168"), Some((0xc0a8, 16)));
        assert_eq!(atoin("1.2.3.4"), Some((0x01020304, 32)));
        assert_eq!(atoin("256.1"), None);
    }

    #[test]
    fn mac_forms() {
        let m = [0xab, 0xcd, 0xef, 0, 0, 1];
        assert_eq!(parse_mac("ab:cd:ef:0:0:1"), Some(m));
        assert_eq!(parse_mac("ab.CD.ef.0.0.1"), Some(m));
        assert_eq!(parse_mac("ab-cd-ef-00-00-01"), Some(m));
        assert_eq!(parse_mac("abcd.ef00.0001"), Some(m));
        assert_eq!(parse_mac("abcdef000001"), Some(m));
    }
}
