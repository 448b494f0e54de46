//! Byte-driven generators for the `kernel_diff` target: filter expressions in the style of
//! the corpus (`tests/data/filters/corpus.txt`) and Ethernet frames built from the same small
//! pools of addresses, ports, MACs and VLAN ids, so that the generated filters match some of
//! the generated packets.
//!
//! Every choice reads bytes from the fuzzer's input through [`Src`]; when the input runs out,
//! every choice is 0 (generation always terminates).

use std::fmt::Write as _;

/// A reader of choices from the fuzzer's bytes.
#[derive(Debug)]
pub struct Src<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Src<'a> {
    /// Reads choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Src { data, pos: 0 }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            usize::from(self.u16()) % n
        }
    }

    /// One element of `items` (the first one when the input is used up).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let i = self.below(items.len());
        items.get(i).copied()
    }

    /// A reference to one element of `items` (`None` when it is empty).
    pub fn pick_ref<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        let i = self.below(items.len());
        items.get(i)
    }

    /// Up to `max` raw bytes (length byte first).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        self.data.get(start..end).unwrap_or_default()
    }

    /// Whether the input is used up.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// IPv4 addresses of the pools.
pub const V4: [[u8; 4]; 7] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [10, 1, 2, 3],
    [192, 168, 1, 1],
    [224, 0, 0, 251],
    [255, 255, 255, 255],
    [0, 0, 0, 0],
];
/// IPv6 addresses of the pools.
pub const V6: [[u16; 8]; 5] = [
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2],
    [0xfe80, 0, 0, 0, 0, 0, 0, 1],
    [0xff02, 0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0, 1],
];
/// Ports of the pools.
pub const PORTS: [u16; 8] = [0, 53, 80, 443, 1234, 4789, 6081, 65535];
/// MAC addresses of the pools.
pub const MACS: [[u8; 6]; 5] = [
    [0xff; 6],
    [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
    [0x33, 0x33, 0, 0, 0, 1],
    [0x00, 0x11, 0x22, 0x33, 0x44, 0x55],
    [0x00, 0x66, 0x77, 0x88, 0x99, 0xaa],
];
/// VLAN ids of the pools.
pub const VIDS: [u16; 5] = [0, 1, 100, 200, 4095];
/// IP protocols of the pools.
pub const PROTOS: [u8; 12] = [6, 17, 1, 58, 2, 132, 47, 4, 41, 44, 0, 255];
/// EtherTypes of the pools.
pub const ETHERTYPES: [u16; 9] = [
    0x0800, 0x86dd, 0x0806, 0x8035, 0x8847, 0x8864, 0x0800, 0x86dd, 0x05dc,
];

fn v4_text(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn v6_text(a: [u16; 8]) -> String {
    std::net::Ipv6Addr::new(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]).to_string()
}

fn mac_text(m: [u8; 6]) -> String {
    let mut s = String::new();
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

const DIRS: [&str; 6] = ["", "", "src ", "dst ", "src or dst ", "src and dst "];
const CMP: [&str; 6] = ["=", "!=", ">", "<", ">=", "<="];
const KEYWORDS: [&str; 22] = [
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
    "vlan",
    "mpls",
    "pppoes",
    "geneve",
    "broadcast",
    "multicast",
    "ip multicast",
    "ip6 multicast",
    "ether broadcast",
    "ether multicast",
    "ip broadcast",
    "gre",
];
/// (protocol, largest offset drawn) of `proto[off:size]` loads.
const LOADS: [(&str, usize); 9] = [
    ("ether", 64),
    ("ip", 44),
    ("ip6", 48),
    ("tcp", 20),
    ("udp", 8),
    ("icmp", 8),
    ("icmp6", 8),
    ("arp", 28),
    ("sctp", 12),
];
const NAMED: [&str; 6] = [
    "tcp[tcpflags]",
    "icmp[icmptype]",
    "icmp[icmpcode]",
    "icmp6[icmp6type]",
    "icmp6[icmp6code]",
    "tcp[tcpflags] & (tcp-syn|tcp-ack)",
];

/// A filter expression from the grammar, at most `depth` operators deep.
pub fn expr(s: &mut Src<'_>, depth: u32) -> String {
    if depth == 0 || s.done() {
        return primitive(s);
    }
    match s.below(8) {
        0 | 1 => format!("{} and {}", expr(s, depth - 1), expr(s, depth - 1)),
        2 | 3 => format!("({}) or ({})", expr(s, depth - 1), expr(s, depth - 1)),
        4 => format!("not ({})", expr(s, depth - 1)),
        5 => format!("{} or {}", primitive(s), expr(s, depth - 1)),
        6 => format!("not {}", primitive(s)),
        _ => primitive(s),
    }
}

fn v4_any(s: &mut Src<'_>) -> [u8; 4] {
    if s.below(8) == 0 {
        [s.byte(), s.byte(), s.byte(), s.byte()]
    } else {
        s.pick(&V4).unwrap_or([10, 0, 0, 1])
    }
}

fn port_any(s: &mut Src<'_>) -> u16 {
    if s.below(8) == 0 {
        s.u16()
    } else {
        s.pick(&PORTS).unwrap_or(80)
    }
}

/// One primitive of the grammar.
pub fn primitive(s: &mut Src<'_>) -> String {
    match s.below(16) {
        0 => {
            let q = s.pick(&["", "ip ", "arp ", "rarp "]).unwrap_or("");
            let d = s.pick(&DIRS).unwrap_or("");
            format!("{q}{d}host {}", v4_text(v4_any(s)))
        }
        1 => {
            let d = s.pick(&DIRS).unwrap_or("");
            let len = s.below(33);
            let a = u32::from_be_bytes(v4_any(s));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            format!("{d}net {}/{len}", v4_text((a & mask).to_be_bytes()))
        }
        2 => {
            let d = s.pick(&DIRS).unwrap_or("");
            let a = s.pick(&V6).unwrap_or([0; 8]);
            if s.below(2) == 0 {
                format!("ip6 {d}host {}", v6_text(a))
            } else {
                let len = s.pick(&[0u32, 8, 16, 32, 64, 127, 128]).unwrap_or(64);
                let v = u128::from(std::net::Ipv6Addr::new(
                    a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                ));
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                format!("ip6 {d}net {}/{len}", std::net::Ipv6Addr::from(v & mask))
            }
        }
        3 => {
            let q = s.pick(&["", "tcp ", "udp ", "sctp "]).unwrap_or("");
            let d = s.pick(&DIRS).unwrap_or("");
            format!("{q}{d}port {}", port_any(s))
        }
        4 => {
            let q = s.pick(&["", "tcp ", "udp "]).unwrap_or("");
            let d = s.pick(&DIRS).unwrap_or("");
            let a = port_any(s);
            let b = a.saturating_add(s.u16() % 2000);
            format!("{q}{d}portrange {a}-{b}")
        }
        5 => {
            let d = s.pick(&["", "src ", "dst "]).unwrap_or("");
            let m = s.pick(&MACS).unwrap_or([0xff; 6]);
            format!("ether {d}host {}", mac_text(m))
        }
        6 => format!("ether proto 0x{:x}", s.pick(&ETHERTYPES).unwrap_or(0x0800)),
        7 | 8 => s.pick(&KEYWORDS).unwrap_or("ip").to_owned(),
        9 => {
            let p = s.pick(&PROTOS).unwrap_or(6);
            let q = s
                .pick(&["proto", "ip proto", "ip6 proto", "ip6 protochain"])
                .unwrap_or("proto");
            format!("{q} {p}")
        }
        10 => format!("vlan {}", s.pick(&VIDS).unwrap_or(100)),
        11 => {
            let n = s.u16() % 1600;
            match s.below(3) {
                0 => format!("greater {n}"),
                1 => format!("less {n}"),
                _ => format!("len {} {n}", s.pick(&CMP).unwrap_or("=")),
            }
        }
        12 => {
            let lhs = s.pick(&NAMED).unwrap_or("tcp[tcpflags]");
            format!("{lhs} {} {}", s.pick(&CMP).unwrap_or("="), s.byte())
        }
        _ => relation(s),
    }
}

/// `proto[off:size] [& mask] cmp value`.
fn relation(s: &mut Src<'_>) -> String {
    let (p, max) = s.pick(&LOADS).unwrap_or(("ip", 20));
    let off = s.below(max);
    let size = s.pick(&[1u8, 1, 2, 4]).unwrap_or(1);
    let load = if size == 1 && s.below(2) == 0 {
        format!("{p}[{off}]")
    } else {
        format!("{p}[{off}:{size}]")
    };
    let lhs = match s.below(4) {
        0 => format!("{load} & 0x{:x}", s.byte()),
        1 if p == "ip" => "ip[6:2] & 0x1fff".to_owned(),
        _ => load,
    };
    let v: u32 = match s.below(4) {
        0 => u32::from(s.u16()),
        _ => u32::from(s.byte()),
    };
    format!("{lhs} {} {v}", s.pick(&CMP).unwrap_or("="))
}

/// Appends the big-endian bytes of `v`.
fn be16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// An Ethernet frame from the pools: 0 to 3 VLAN tags, then IPv4 (header length and
/// fragment offset drawn), IPv6 (with or without a fragment header), ARP/RARP or another
/// EtherType, then TCP/UDP/ICMP/SCTP-like transport bytes and a little payload; sometimes
/// cut short. Returns the captured bytes and the wire length.
pub fn frame(s: &mut Src<'_>) -> (Vec<u8>, u32) {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&s.pick(&MACS).unwrap_or([0xff; 6]));
    f.extend_from_slice(&s.pick(&MACS).unwrap_or([0; 6]));
    let tags = s.pick(&[0usize, 0, 0, 1, 1, 2, 3]).unwrap_or(0);
    for _ in 0..tags {
        be16(
            &mut f,
            s.pick(&[0x8100u16, 0x88a8, 0x9100]).unwrap_or(0x8100),
        );
        let pcp = u16::from(s.byte() & 0xf0) << 8;
        be16(&mut f, pcp | s.pick(&VIDS).unwrap_or(100));
    }
    let et = if s.below(16) == 0 {
        s.u16()
    } else {
        s.pick(&ETHERTYPES).unwrap_or(0x0800)
    };
    be16(&mut f, et);
    let proto = s.pick(&PROTOS).unwrap_or(6);
    match et {
        0x0800 => {
            let ihl = if s.below(8) == 0 { s.byte() & 0xf } else { 5 };
            f.push(0x40 | ihl);
            f.push(0);
            be16(&mut f, 40);
            be16(&mut f, 1);
            let frag = match s.below(6) {
                0 => 0x2000,
                1 => 0x0001,
                2 => s.u16(),
                _ => 0x4000,
            };
            be16(&mut f, frag);
            f.push(64);
            f.push(proto);
            be16(&mut f, 0);
            f.extend_from_slice(&v4_any(s));
            f.extend_from_slice(&v4_any(s));
            for _ in 5..ihl {
                f.extend_from_slice(&[1, 1, 1, 1]);
            }
            transport(s, &mut f, proto);
        }
        0x86dd => {
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            be16(&mut f, 20);
            let frag = s.below(4) == 0;
            f.push(if frag { 44 } else { proto });
            f.push(64);
            for _ in 0..2 {
                let a = s.pick(&V6).unwrap_or([0; 8]);
                for w in a {
                    be16(&mut f, w);
                }
            }
            if frag {
                f.extend_from_slice(&[proto, 0]);
                be16(&mut f, s.pick(&[0u16, 1, 8]).unwrap_or(0));
                f.extend_from_slice(&[0, 0, 0, 7]);
            }
            transport(s, &mut f, proto);
        }
        0x0806 | 0x8035 => {
            f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
            f.extend_from_slice(&s.pick(&MACS).unwrap_or([0; 6]));
            f.extend_from_slice(&v4_any(s));
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&v4_any(s));
        }
        _ => {
            let extra = s.bytes(48);
            f.extend_from_slice(extra);
        }
    }
    let full = f.len();
    if s.below(4) == 0 {
        let keep = s.below(full + 1);
        f.truncate(keep);
    }
    let wire = match s.below(8) {
        0 => u32::try_from(full)
            .unwrap_or(0)
            .saturating_add(u32::from(s.u16())),
        1 => 70_000,
        _ => u32::try_from(full).unwrap_or(0),
    };
    let wire = wire.max(u32::try_from(f.len()).unwrap_or(0));
    (f, wire)
}

/// Transport header bytes for `proto` (ports from the pools, TCP flags / ICMP type drawn).
fn transport(s: &mut Src<'_>, f: &mut Vec<u8>, proto: u8) {
    match proto {
        1 | 58 => {
            f.push(s.pick(&[0u8, 8, 3, 11, 128, 129, 135]).unwrap_or(8));
            f.push(s.byte() % 4);
            f.extend_from_slice(&[0, 0, 0, 1, 0, 1]);
        }
        _ => {
            be16(f, port_any(s));
            be16(f, port_any(s));
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            f.push(0x50);
            f.push(s.byte());
            f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        }
    }
    let extra = s.bytes(8);
    f.extend_from_slice(extra);
}
