//! One-line packet summary in the spirit of `tcpdump -n` (with `-e`'s VLAN/MPLS prefixes).
//!
//! ```text
//! 1700000000.123456789 IP 10.0.0.1.1234 > 10.0.0.2.80: TCP [S] length 60
//! 1700000000.123456789 IP6 2001:db8::1 > 2001:db8::2: ICMP6 echo request length 64
//! 1700000000.123456789 vlan 100, IP 10.0.0.1 > 10.0.0.2: frag (off 1480) proto UDP length 1500
//! 1700000000.123456789 ARP, length 42
//! 1700000000.123456789 00:11:22:33:44:55 > ff:ff:ff:ff:ff:ff ethertype 0x88cc, length 60
//! ```
//!
//! Time is seconds.nanoseconds since the Unix epoch (UTC); `length` is the wire length. A header
//! cut short by the capture is marked `[|ip]`, `[|tcp]` ... as tcpdump does. Formatting never
//! panics, whatever the bytes.

use std::fmt;

use crate::layers::{
    L3Proto, Truncation, ETHERTYPE_RARP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, MAX_MPLS, MAX_VLANS,
};
use crate::{LinkType, Packet, Parsed};

/// Displays one line describing a packet (see the module documentation for the format).
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    parsed: Parsed<'a>,
}

impl<'a> Summary<'a> {
    /// Parses `packet` and prepares its summary.
    pub fn new(packet: &Packet<'a>) -> Self {
        Self {
            parsed: Parsed::new(*packet),
        }
    }

    /// The summary of an already parsed packet.
    pub fn from_parsed(parsed: Parsed<'a>) -> Self {
        Self { parsed }
    }
}

/// tcpdump's name for an IP protocol number (`ip-proto-N` when it has none here).
struct ProtoName(u8);

impl fmt::Display for ProtoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0 => "HBH",
            1 => "ICMP",
            2 => "IGMP",
            4 => "IPIP",
            6 => "TCP",
            17 => "UDP",
            41 => "IP6",
            43 => "routing",
            44 => "frag",
            47 => "GRE",
            50 => "ESP",
            51 => "AH",
            58 => "ICMP6",
            59 => "no next header",
            60 => "dstopts",
            89 => "OSPF",
            103 => "PIM",
            112 => "VRRP",
            132 => "SCTP",
            136 => "UDPLite",
            n => return write!(f, "ip-proto-{n}"),
        };
        f.write_str(name)
    }
}

/// Name of an ICMP (v6 when `v6`) type/code, or `type T code C`.
fn icmp_name(v6: bool, t: u8, c: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let name = if v6 {
        match t {
            1 => "destination unreachable",
            2 => "packet too big",
            3 => "time exceeded",
            4 => "parameter problem",
            128 => "echo request",
            129 => "echo reply",
            130 => "multicast listener query",
            131 => "multicast listener report",
            132 => "multicast listener done",
            133 => "router solicitation",
            134 => "router advertisement",
            135 => "neighbor solicitation",
            136 => "neighbor advertisement",
            137 => "redirect",
            143 => "multicast listener report v2",
            _ => "",
        }
    } else {
        match t {
            0 => "echo reply",
            3 => "unreachable",
            4 => "source quench",
            5 => "redirect",
            8 => "echo request",
            9 => "router advertisement",
            10 => "router solicitation",
            11 => "time exceeded",
            12 => "parameter problem",
            13 => "time stamp request",
            14 => "time stamp reply",
            _ => "",
        }
    };
    if name.is_empty() {
        write!(f, "type {t} code {c}")
    } else {
        f.write_str(name)
    }
}

/// tcpdump's rendering of TCP flags: `[S.]`, `[P.]`, `[none]` ...
fn tcp_flags(flags: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const NAMES: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    f.write_str("[")?;
    if flags == 0 {
        f.write_str("none")?;
    }
    for (bit, c) in NAMES {
        if flags & bit != 0 {
            write!(f, "{c}")?;
        }
    }
    f.write_str("]")
}

/// Formats a MAC address as `00:11:22:33:44:55`.
struct Mac<'a>(&'a [u8; 6]);

impl fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = *self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Summary<'_> {
    /// The `[|xxx]` marker when the walk stopped early, with its leading space.
    fn cut(&self, f: &mut fmt::Formatter<'_>, l4: bool) -> fmt::Result {
        let l = &self.parsed.layers;
        let mark = match (l.truncated, l.malformed) {
            (Some(Truncation::Link), _) => "[|link]",
            (Some(Truncation::Network), _) => match l.l3_proto {
                Some(L3Proto::Ipv6) => "[|ip6]",
                Some(L3Proto::Arp) => "[|arp]",
                _ => "[|ip]",
            },
            (Some(Truncation::Transport), _) if l4 => match l.l4_proto {
                Some(IPPROTO_TCP) => "[|tcp]",
                Some(IPPROTO_UDP) => "[|udp]",
                Some(IPPROTO_ICMP) => "[|icmp]",
                Some(IPPROTO_ICMPV6) => "[|icmp6]",
                Some(IPPROTO_SCTP) => "[|sctp]",
                Some(IPPROTO_GRE) => "[|gre]",
                _ => "[|transport]",
            },
            (_, Some(_)) => "[bad header]",
            _ => return Ok(()),
        };
        write!(f, " {mark}")
    }

    fn ip(&self, f: &mut fmt::Formatter<'_>, v6: bool) -> fmt::Result {
        let p = &self.parsed;
        let wire = p.packet.wire_len;
        f.write_str(if v6 { "IP6" } else { "IP" })?;
        let (Some(src), Some(dst)) = (p.src_ip(), p.dst_ip()) else {
            self.cut(f, false)?;
            return write!(f, " length {wire}");
        };
        let non_first = p.frag.is_some_and(|fr| fr.offset != 0);
        let (sp, dp) = if non_first {
            (None, None)
        } else {
            (p.src_port(), p.dst_port())
        };
        write!(f, " {src}")?;
        if let Some(sp) = sp {
            write!(f, ".{sp}")?;
        }
        write!(f, " > {dst}")?;
        if let Some(dp) = dp {
            write!(f, ".{dp}")?;
        }
        f.write_str(":")?;
        let Some(proto) = p.l4_proto else {
            self.cut(f, false)?;
            return write!(f, " length {wire}");
        };
        f.write_str(" ")?;
        if let Some(fr) = p.frag.filter(|fr| fr.offset != 0) {
            return write!(
                f,
                "frag (off {}) proto {} length {wire}",
                fr.offset,
                ProtoName(proto)
            );
        }
        write!(f, "{}", ProtoName(proto))?;
        match proto {
            IPPROTO_TCP => {
                if let Some(flags) = p.tcp_flags() {
                    f.write_str(" ")?;
                    tcp_flags(flags, f)?;
                }
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                if let Some((t, c)) = p.icmp_type_code() {
                    f.write_str(" ")?;
                    icmp_name(proto == IPPROTO_ICMPV6, t, c, f)?;
                }
            }
            IPPROTO_GRE => {
                if let Some(gp) = p.gre_protocol() {
                    write!(f, " proto 0x{gp:04x}")?;
                }
            }
            IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => {}
            _ => {}
        }
        if let Some(fr) = p.frag {
            write!(f, " (first fragment, id {})", fr.id)?;
        }
        self.cut(f, true)?;
        write!(f, " length {wire}")
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.parsed;
        let l = &p.layers;
        let ts = p.packet.ts_ns;
        let wire = p.packet.wire_len;
        write!(f, "{}.{:09} ", ts / 1_000_000_000, ts % 1_000_000_000)?;
        for id in l.vlan_ids() {
            write!(f, "vlan {id}, ")?;
        }
        if usize::from(l.vlan_depth) > MAX_VLANS {
            write!(f, "(+{} vlan), ", usize::from(l.vlan_depth) - MAX_VLANS)?;
        }
        if let Some(ses) = l.pppoe_session {
            write!(f, "PPPoE [ses 0x{ses:x}] ")?;
        }
        for label in l.mpls_labels() {
            write!(f, "MPLS (label {label}), ")?;
        }
        if usize::from(l.mpls_depth) > MAX_MPLS {
            write!(f, "(+{} MPLS), ", usize::from(l.mpls_depth) - MAX_MPLS)?;
        }
        match l.l3_proto {
            Some(L3Proto::Ipv4) => self.ip(f, false),
            Some(L3Proto::Ipv6) => self.ip(f, true),
            Some(L3Proto::Arp) => {
                let name = if l.ethertype == Some(ETHERTYPE_RARP) {
                    "RARP"
                } else {
                    "ARP"
                };
                write!(f, "{name},")?;
                self.cut(f, false)?;
                write!(f, " length {wire}")
            }
            other => {
                if let Some((src, dst)) = p.ether_addrs() {
                    write!(f, "{} > {} ", Mac(src), Mac(dst))?;
                    match other {
                        Some(L3Proto::Other(et)) => write!(f, "ethertype 0x{et:04x},")?,
                        _ if l.llc.is_some() => f.write_str("802.3 LLC,")?,
                        _ => f.write_str("ethernet,")?,
                    }
                } else {
                    let link = p.packet.link;
                    match link {
                        LinkType::Other(n) => write!(f, "link-type {n},")?,
                        _ => write!(f, "{},", link.name())?,
                    }
                    if let Some(lp) = l.link_proto {
                        write!(f, " proto 0x{lp:04x},")?;
                    } else if l.llc.is_some() {
                        f.write_str(" LLC,")?;
                    }
                }
                self.cut(f, false)?;
                write!(f, " length {wire}")
            }
        }
    }
}
