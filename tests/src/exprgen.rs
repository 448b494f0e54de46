//! A seeded generator of random pcap-filter expressions from the supported set, for
//! differential tests against libpcap (`tests/tests/filters_random_vs_libpcap.rs`).
//!
//! Every expression is drawn from the constructs `ebpf-filters` claims to support (see its
//! crate documentation): `host/net/port/portrange` with direction and protocol qualifiers,
//! `net A mask M` and partial nets, IPv6 addresses and prefixes, `ether host/src/dst/proto/
//! broadcast/multicast`, protocol keywords, `proto`/`ip proto`/`ip6 proto`/`ip6 protochain`,
//! `vlan`/`mpls`/`pppoes`/`geneve` with and without an id, `len`/`greater`/`less`, relations
//! over packet bytes with arithmetic, named offsets and values, `and/or/not`, parentheses and
//! tcpdump's qualifier inheritance (`host A or B`, `port 53 and not 80`).
//!
//! Addresses, ports and tags are drawn mostly from a [`Seen`] pool (what the test traces
//! really carry) so that predicates match some packets, and sometimes made up.
//! The generator only emits expressions libpcap 1.10.3 compiles for Ethernet (a test checks
//! it); for other link types libpcap may refuse some (e.g. `vlan` on raw IP), which is part of
//! what the differential test compares.

use std::net::{Ipv4Addr, Ipv6Addr};

/// SplitMix64: a tiny, fast, deterministic PRNG (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice (`None` for an empty one).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let n = items.len() as u64;
        if n == 0 {
            return None;
        }
        // below(n) < n = items.len(), so the conversion and the index are in range.
        items.get(usize::try_from(self.below(n)).unwrap_or(0))
    }

    /// One of the constant strings (they are never empty in this module).
    fn word(&mut self, items: &[&'static str]) -> &'static str {
        self.pick(items).copied().unwrap_or("")
    }
}

/// Values really present in the traces, to draw predicates from.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// IPv4 addresses.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub v6: Vec<Ipv6Addr>,
    /// TCP/UDP/SCTP ports.
    pub ports: Vec<u16>,
    /// MAC addresses.
    pub macs: Vec<[u8; 6]>,
    /// 802.1Q VLAN ids.
    pub vlans: Vec<u16>,
    /// MPLS labels.
    pub mpls: Vec<u32>,
    /// PPPoE session ids.
    pub pppoe: Vec<u16>,
    /// Wire lengths.
    pub lens: Vec<u32>,
}

impl Seen {
    /// Sorts and deduplicates every pool.
    pub fn dedup(&mut self) {
        fn d<T: Ord>(v: &mut Vec<T>) {
            v.sort_unstable();
            v.dedup();
        }
        d(&mut self.v4);
        d(&mut self.v6);
        d(&mut self.ports);
        d(&mut self.macs);
        d(&mut self.vlans);
        d(&mut self.mpls);
        d(&mut self.pppoe);
        d(&mut self.lens);
    }
}

/// The random expression generator.
#[derive(Debug, Clone)]
pub struct ExprGen {
    rng: SplitMix64,
    seen: Seen,
    max_depth: u32,
    /// `mpls` was emitted earlier in the current expression: libpcap refuses a later `vlan`
    /// ("no VLAN match after MPLS") or `pppoes` ("unsupported protocol over mpls").
    mpls_emitted: bool,
    /// `pppoes` was emitted earlier: libpcap refuses a later `vlan` ("no VLAN support for PPP").
    pppoes_emitted: bool,
    /// `geneve` was emitted earlier: libpcap refuses a later `protochain` ("'protochain' not
    /// supported with variable length headers").
    geneve_emitted: bool,
}

const DIRS: &[&str] = &["", "", "", "src ", "dst ", "src or dst ", "src and dst "];
const PROTO_KEYWORDS: &[&str] = &[
    "ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6", "sctp", "igmp", "pim", "vrrp",
    "carp", "esp", "ah",
];
const IP_PROTOS: &[u8] = &[
    0, 1, 2, 4, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 89, 103, 112, 132, 255,
];
const IP_PROTO_NAMES: &[&str] = &["gre", "ospf", "rsvp", "ipencap", "ipv6-icmp", "l2tp"];
const IP_PROTO_ESCAPED: &[&str] = &[
    "\\tcp", "\\udp", "\\icmp", "\\sctp", "\\igmp", "\\pim", "\\ah", "\\esp",
];
const ETHER_PROTOS: &[&str] = &[
    "0x800", "0x86dd", "0x806", "0x8035", "0x8100", "0x88a8", "0x8847", "0x8864", "0x9000", "2048",
    "34525", "\\ip", "\\ip6", "\\arp", "\\rarp",
];
const CMP: &[&str] = &["=", "==", "!=", ">", "<", ">=", "<="];
const TCP_FLAGS: &[&str] = &[
    "tcp-fin", "tcp-syn", "tcp-rst", "tcp-push", "tcp-ack", "tcp-urg", "tcp-ece", "tcp-cwr",
];
const ICMP_TYPES: &[&str] = &[
    "icmp-echoreply",
    "icmp-unreach",
    "icmp-sourcequench",
    "icmp-redirect",
    "icmp-echo",
    "icmp-routeradvert",
    "icmp-routersolicit",
    "icmp-timxceed",
    "icmp-paramprob",
    "icmp-tstamp",
    "icmp-tstampreply",
    "icmp-ireq",
    "icmp-ireqreply",
    "icmp-maskreq",
    "icmp-maskreply",
];
const ICMP6_TYPES: &[&str] = &[
    "icmp6-destinationunreach",
    "icmp6-packettoobig",
    "icmp6-timeexceeded",
    "icmp6-parameterproblem",
    "icmp6-echo",
    "icmp6-echoreply",
    "icmp6-multicastlistenerquery",
    "icmp6-routersolicit",
    "icmp6-routeradvert",
    "icmp6-neighborsolicit",
    "icmp6-neighboradvert",
    "icmp6-redirect",
    "icmp6-multicastlistenerreportv2",
];
const LOAD_PROTOS: &[&str] = &[
    "ether", "ether", "link", "ip", "ip", "ip", "ip6", "ip6", "tcp", "tcp", "tcp", "udp", "udp",
    "icmp", "icmp6", "sctp", "arp", "igmp",
];

impl ExprGen {
    /// A generator seeded with `seed` that draws values from `seen` (empty pools are fine).
    pub fn new(seed: u64, seen: Seen) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            seen,
            max_depth: 3,
            mpls_emitted: false,
            pppoes_emitted: false,
            geneve_emitted: false,
        }
    }

    /// Sets the maximum nesting depth of `and`/`or`/`not` (default 3).
    pub fn with_max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }

    /// The next expression.
    pub fn next_expr(&mut self) -> String {
        self.mpls_emitted = false;
        self.pppoes_emitted = false;
        self.geneve_emitted = false;
        let depth = u32::try_from(self.rng.below(u64::from(self.max_depth) + 1)).unwrap_or(0);
        self.expr(depth)
    }

    fn expr(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(20) {
            return self.primitive();
        }
        match self.rng.below(10) {
            0..=2 => {
                let (a, b) = (self.expr(depth - 1), self.expr(depth - 1));
                format!("{a} {} {b}", self.rng.word(&["and", "&&", "or", "||"]))
            }
            3..=5 => {
                let (a, b) = (self.expr(depth - 1), self.expr(depth - 1));
                format!("({a}) {} ({b})", self.rng.word(&["and", "or"]))
            }
            6 => {
                let (a, b, c) = (
                    self.expr(depth - 1),
                    self.expr(depth - 1),
                    self.expr(depth - 1),
                );
                let (o1, o2) = (self.rng.word(&["and", "or"]), self.rng.word(&["and", "or"]));
                format!("{a} {o1} {b} {o2} {c}")
            }
            7 => format!("not ({})", self.expr(depth - 1)),
            8 => format!("!{}", self.primitive()),
            _ => format!("not {}", self.primitive()),
        }
    }

    /// One primitive (possibly a qualifier-inheriting chain).
    fn primitive(&mut self) -> String {
        match self.rng.below(100) {
            0..=11 => self.host(),
            12..=19 => self.net(),
            20..=29 => self.port(),
            30..=33 => self.portrange(),
            34..=39 => self.ether(),
            40..=49 => {
                let kw = self.rng.word(PROTO_KEYWORDS);
                // libpcap: "unsupported protocol over mpls".
                if self.mpls_emitted && kw.contains("arp") {
                    "ip".to_owned()
                } else {
                    kw.to_owned()
                }
            }
            50..=56 => self.proto(),
            57..=63 => self.encap(),
            64..=69 => self.length(),
            // After `pppoes` the link is PPP: no link-layer broadcast/multicast.
            70..=71 if self.pppoes_emitted => {
                self.rng.word(&["ip multicast", "ip6 multicast"]).to_owned()
            }
            70..=71 => self
                .rng
                .word(&["ip multicast", "ip6 multicast", "broadcast", "multicast"])
                .to_owned(),
            _ => self.relation(),
        }
    }

    fn v4(&mut self) -> Ipv4Addr {
        if self.rng.chance(85) {
            if let Some(a) = self.rng.pick(&self.seen.v4) {
                return *a;
            }
        }
        let pool = [
            [10, 0, 0, 1],
            [192, 168, 1, 1],
            [224, 0, 0, 251],
            [255, 255, 255, 255],
            [127, 0, 0, 1],
        ];
        let a = self.rng.pick(&pool).copied().unwrap_or([1, 2, 3, 4]);
        if self.rng.chance(50) {
            Ipv4Addr::from(a)
        } else {
            Ipv4Addr::from(u32::try_from(self.rng.next_u64() >> 32).unwrap_or(0))
        }
    }

    /// An IPv6 host, sometimes an IPv4-mapped one written with a dotted tail.
    fn v6_host(&mut self) -> String {
        if self.rng.chance(5) {
            format!("::ffff:{}", self.v4())
        } else {
            self.v6().to_string()
        }
    }

    fn v6(&mut self) -> Ipv6Addr {
        if self.rng.chance(85) {
            if let Some(a) = self.rng.pick(&self.seen.v6) {
                return *a;
            }
        }
        let pool: [Ipv6Addr; 4] = [
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        ];
        self.rng.pick(&pool).copied().unwrap_or(Ipv6Addr::LOCALHOST)
    }

    fn mac(&mut self) -> String {
        let m = match self.rng.pick(&self.seen.macs) {
            Some(m) if self.rng.chance(85) => *m,
            _ => {
                let pool = [
                    [0xff; 6],
                    [1, 0, 0x5e, 0, 0, 0xfb],
                    [0x33, 0x33, 0, 0, 0, 1],
                    [0, 1, 2, 3, 4, 5],
                ];
                self.rng.pick(&pool).copied().unwrap_or([0; 6])
            }
        };
        match self.rng.below(6) {
            0 => format!(
                "{:02x}{:02x}.{:02x}{:02x}.{:02x}{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            1 => format!(
                "{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            2 => format!(
                "{:x}:{:x}:{:x}:{:x}:{:x}:{:x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            _ => format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }

    fn port_number(&mut self) -> u16 {
        match self.rng.pick(&self.seen.ports) {
            Some(p) if self.rng.chance(80) => *p,
            _ => {
                let pool = [
                    53u16, 80, 443, 22, 123, 67, 68, 0, 65535, 8080, 5353, 4789, 6081,
                ];
                self.rng.pick(&pool).copied().unwrap_or(80)
            }
        }
    }

    /// Appends to `first`, sometimes, 1 or 2 `(and|or) [not] ID` that inherit its qualifiers.
    fn inherit(&mut self, first: String, mut next: impl FnMut(&mut Self) -> String) -> String {
        let mut s = first;
        if self.rng.chance(25) {
            for _ in 0..=self.rng.below(2) {
                let op = self
                    .rng
                    .word(&["and", "or", "or", "and not", "or not", "&&", "||"]);
                let id = next(self);
                s = format!("{s} {op} {id}");
            }
        }
        s
    }

    /// The protocol qualifier of an IPv4 `host`/`net` (no `arp`/`rarp` after `mpls`:
    /// libpcap's "unsupported protocol over mpls").
    fn v4_qualifier(&mut self) -> &'static str {
        if self.mpls_emitted {
            self.rng.word(&["", "", "ip "])
        } else {
            self.rng.word(&["", "", "ip ", "arp ", "rarp "])
        }
    }

    fn host(&mut self) -> String {
        if self.rng.chance(30) {
            let q = self.rng.word(&["ip6 ", "", ""]);
            let dir = self.rng.word(DIRS);
            let first = format!("{q}{dir}host {}", self.v6_host());
            return self.inherit(first, Self::v6_host);
        }
        let q = self.v4_qualifier();
        let dir = self.rng.word(DIRS);
        // `src 1.2.3.4` (no `host`) is a host too.
        let kw = if !dir.is_empty() && q.is_empty() && self.rng.chance(25) {
            ""
        } else {
            "host "
        };
        let first = format!("{q}{dir}{kw}{}", self.v4_host());
        self.inherit(first, Self::v4_host)
    }

    /// An IPv4 host as libpcap reads it: dotted quad mostly, sometimes a hex or decimal
    /// number, or a short dotted form (`10.1` is 10.1.0.0 for `host`).
    fn v4_host(&mut self) -> String {
        let a = self.v4();
        let n = u32::from(a);
        match self.rng.below(20) {
            0 => format!("0x{n:x}"),
            1 => n.to_string(),
            2 => format!("{}.{}", n >> 24, (n >> 16) & 0xff),
            3 => format!("{}.{}.{}", n >> 24, (n >> 16) & 0xff, (n >> 8) & 0xff),
            _ => a.to_string(),
        }
    }

    fn v4_net(&mut self) -> String {
        let a = u32::from(self.v4());
        match self.rng.below(5) {
            0 => {
                let len = u32::try_from(self.rng.below(33)).unwrap_or(24);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                format!("{}/{len}", Ipv4Addr::from(a & mask))
            }
            1 => {
                let len = u32::try_from(self.rng.below(33)).unwrap_or(24);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let shown = if self.rng.chance(20) {
                    // A mask need not be contiguous for libpcap.
                    mask & !(1 << 9)
                } else {
                    mask
                };
                format!(
                    "{} mask {}",
                    Ipv4Addr::from(a & shown),
                    Ipv4Addr::from(shown)
                )
            }
            2 => format!("{}", a >> 24),
            3 => format!("{}.{}", a >> 24, (a >> 16) & 0xff),
            4 if self.rng.chance(30) => {
                // A partial net with a prefix length at least as long as its bytes.
                // (`net 10/8` is a syntax error for libpcap: a lone number is not an address.)
                let bytes = 2 + self.rng.below(2);
                let len = 8 * bytes + self.rng.below(33 - 8 * bytes);
                let parts: Vec<String> = (0..bytes)
                    .map(|i| ((a >> (24 - 8 * i)) & 0xff).to_string())
                    .collect();
                format!("{}/{len}", parts.join("."))
            }
            _ => format!("{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff),
        }
    }

    fn v6_net(&mut self) -> String {
        let a = u128::from(self.v6());
        let len = [0u32, 8, 10, 16, 32, 48, 64, 96, 112, 120, 127, 128];
        let len = self.rng.pick(&len).copied().unwrap_or(64);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        format!("{}/{len}", Ipv6Addr::from(a & mask))
    }

    fn net(&mut self) -> String {
        let dir = self.rng.word(DIRS);
        if self.rng.chance(30) {
            let q = self.rng.word(&["ip6 ", ""]);
            let first = format!("{q}{dir}net {}", self.v6_net());
            return self.inherit(first, Self::v6_net);
        }
        let q = self.v4_qualifier();
        let first = format!("{q}{dir}net {}", self.v4_net());
        self.inherit(first, Self::v4_net)
    }

    fn port_name(&mut self, q: &str) -> String {
        let names: &[&str] = match q {
            "tcp " => &["domain", "http", "https", "ssh"],
            "udp " => &["domain", "ntp", "bootps", "bootpc"],
            "sctp " => &["domain"],
            _ => &["domain", "http", "ntp", "ssh", "https"],
        };
        self.rng.word(names).to_owned()
    }

    /// A port number, in decimal mostly, sometimes in hex or octal.
    fn port_text(&mut self) -> String {
        let p = self.port_number();
        match self.rng.below(20) {
            0 => format!("0x{p:x}"),
            1 if p != 0 => format!("0{p:o}"),
            _ => p.to_string(),
        }
    }

    fn port(&mut self) -> String {
        let q = self.rng.word(&["", "", "tcp ", "udp ", "sctp "]);
        let dir = self.rng.word(DIRS);
        let p = if self.rng.chance(10) {
            self.port_name(q)
        } else {
            self.port_text()
        };
        let first = format!("{q}{dir}port {p}");
        self.inherit(first, Self::port_text)
    }

    fn portrange(&mut self) -> String {
        let q = self.rng.word(&["", "", "tcp ", "udp ", "sctp "]);
        let dir = self.rng.word(DIRS);
        let a = self.port_number();
        let b = a.saturating_add(u16::try_from(self.rng.below(2000)).unwrap_or(0));
        let (a, b) = if self.rng.chance(10) { (b, a) } else { (a, b) };
        format!("{q}{dir}portrange {a}-{b}")
    }

    fn ether(&mut self) -> String {
        // After `pppoes` the link is PPP (no MAC addresses); after `mpls` only IPv4/IPv6.
        let kind = if self.pppoes_emitted {
            5
        } else {
            self.rng.below(8)
        };
        match kind {
            _ if self.mpls_emitted => {
                format!(
                    "ether proto {}",
                    self.rng
                        .word(&["0x800", "0x86dd", "2048", "34525", "\\ip", "\\ip6"])
                )
            }
            0..=3 => {
                let dir = self
                    .rng
                    .word(&["", "src ", "dst ", "src or dst ", "src and dst "]);
                let kw = if dir.is_empty() || self.rng.chance(50) {
                    "host "
                } else {
                    ""
                };
                let first = format!("ether {dir}{kw}{}", self.mac());
                self.inherit(first, Self::mac)
            }
            4 => self
                .rng
                .word(&["ether broadcast", "ether multicast"])
                .to_owned(),
            _ => format!("ether proto {}", self.rng.word(ETHER_PROTOS)),
        }
    }

    fn proto(&mut self) -> String {
        let value = match self.rng.below(6) {
            0 => self.rng.word(IP_PROTO_NAMES).to_owned(),
            1 => self.rng.word(IP_PROTO_ESCAPED).to_owned(),
            _ => self.rng.pick(IP_PROTOS).copied().unwrap_or(6).to_string(),
        };
        match self.rng.below(5) {
            0 => format!("proto {value}"),
            1 => format!("ip proto {value}"),
            2 => format!("ip6 proto {value}"),
            3 if !self.geneve_emitted => format!("ip6 protochain {value}"),
            4 if !self.geneve_emitted => format!("ip protochain {value}"),
            _ => format!("ip6 proto {value}"),
        }
    }

    fn encap(&mut self) -> String {
        match self.rng.below(8) {
            0 | 1 if !self.mpls_emitted && !self.pppoes_emitted => {
                if self.rng.chance(50) {
                    "vlan".to_owned()
                } else {
                    let id = match self.rng.pick(&self.seen.vlans) {
                        Some(v) if self.rng.chance(80) => *v,
                        _ => u16::try_from(self.rng.below(4096)).unwrap_or(1),
                    };
                    format!("vlan {id}")
                }
            }
            2 | 3 => {
                self.mpls_emitted = true;
                if self.rng.chance(50) {
                    "mpls".to_owned()
                } else {
                    let l = match self.rng.pick(&self.seen.mpls) {
                        Some(v) if self.rng.chance(80) => *v,
                        _ => u32::try_from(self.rng.below(1 << 20)).unwrap_or(0),
                    };
                    format!("mpls {l}")
                }
            }
            4 | 5 if !self.mpls_emitted => {
                self.pppoes_emitted = true;
                if self.rng.chance(50) {
                    "pppoes".to_owned()
                } else {
                    let id = match self.rng.pick(&self.seen.pppoe) {
                        Some(v) if self.rng.chance(80) => *v,
                        _ => u16::try_from(self.rng.below(65536)).unwrap_or(0),
                    };
                    format!("pppoes {id}")
                }
            }
            _ => {
                self.geneve_emitted = true;
                if self.rng.chance(50) {
                    "geneve".to_owned()
                } else {
                    let vni = if self.rng.chance(80) {
                        self.rng.below(16)
                    } else {
                        self.rng.below(1 << 24)
                    };
                    format!("geneve {vni}")
                }
            }
        }
    }

    fn length_value(&mut self) -> u32 {
        match self.rng.pick(&self.seen.lens) {
            Some(l) if self.rng.chance(60) => *l,
            _ => u32::try_from(self.rng.below(1600)).unwrap_or(0),
        }
    }

    fn length(&mut self) -> String {
        let n = self.length_value();
        match self.rng.below(3) {
            0 => format!("greater {n}"),
            1 => format!("less {n}"),
            _ => format!("len {} {n}", self.rng.word(CMP)),
        }
    }

    fn constant(&mut self) -> String {
        match self.rng.below(12) {
            0 => self.rng.word(TCP_FLAGS).to_owned(),
            1 => self.rng.word(ICMP_TYPES).to_owned(),
            2 => self.rng.word(ICMP6_TYPES).to_owned(),
            3 => format!("0x{:x}", self.rng.below(0x1_0000)),
            4 => format!("0{:o}", self.rng.below(64) + 1),
            5 => self.rng.next_u64().wrapping_shr(32).to_string(),
            6 | 7 => self.rng.below(256).to_string(),
            _ => self.rng.below(16).to_string(),
        }
    }

    fn load(&mut self, depth: u32) -> String {
        let proto = match self.rng.word(LOAD_PROTOS) {
            // libpcap: "unsupported protocol over mpls".
            "arp" if self.mpls_emitted => "ip",
            p => p,
        };
        let index = match (proto, self.rng.below(6)) {
            ("tcp", 0) => "tcpflags".to_owned(),
            ("icmp", 0) => self.rng.word(&["icmptype", "icmpcode"]).to_owned(),
            ("icmp6", 0) => self.rng.word(&["icmp6type", "icmp6code"]).to_owned(),
            (_, 1) if depth > 0 => {
                let inner = self.arith(depth - 1);
                format!("{inner} & 0x3f")
            }
            (_, 2) => format!("{} + {}", self.rng.below(20), self.rng.below(20)),
            ("ether" | "link", _) => self.rng.below(64).to_string(),
            _ => self.rng.below(44).to_string(),
        };
        match self.rng.below(4) {
            0 => format!("{proto}[{index}:2]"),
            1 => format!("{proto}[{index}:4]"),
            2 => format!("{proto}[{index}:1]"),
            _ => format!("{proto}[{index}]"),
        }
    }

    fn arith(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.chance(40) {
            return match self.rng.below(10) {
                0..=4 => self.load(depth),
                5 => "len".to_owned(),
                _ => self.constant(),
            };
        }
        let a = self.arith(depth - 1);
        match self.rng.below(14) {
            0 => format!("{a} << {}", self.rng.below(32)),
            1 => format!("{a} >> {}", self.rng.below(32)),
            2 => format!("{a} / {}", self.rng.below(300) + 1),
            3 => format!("{a} % {}", self.rng.below(300) + 1),
            4 => format!("-({a})"),
            5 => format!("({a})"),
            n => {
                let b = self.arith(depth - 1);
                let op = ["+", "-", "*", "&", "|", "^", "&", "+"];
                let op = op
                    .get(usize::try_from(n - 6).unwrap_or(0))
                    .copied()
                    .unwrap_or("+");
                format!("{a} {op} {b}")
            }
        }
    }

    fn relation(&mut self) -> String {
        // The left side starts with a load or `len`, never with a bare number (after `and`
        // a number would be an identifier inheriting the previous qualifiers).
        let first = if self.rng.chance(90) {
            self.load(1)
        } else {
            "len".to_owned()
        };
        let lhs = match self.rng.below(4) {
            0 => first,
            1 => format!("{first} & {}", self.constant()),
            _ => {
                let op = self
                    .rng
                    .word(&["+", "-", "*", "&", "|", "^", ">>", "<<", "/", "%"]);
                let rest = match op {
                    ">>" | "<<" => self.rng.below(32).to_string(),
                    "/" | "%" => (self.rng.below(300) + 1).to_string(),
                    _ => self.arith(1),
                };
                format!("{first} {op} {rest}")
            }
        };
        let rhs = if self.rng.chance(70) {
            self.constant()
        } else {
            self.arith(1)
        };
        format!("{lhs} {} {rhs}", self.rng.word(CMP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_expressions() {
        let seen = Seen {
            v4: vec![Ipv4Addr::new(10, 1, 2, 3)],
            ports: vec![80],
            ..Seen::default()
        };
        let a: Vec<String> = {
            let mut g = ExprGen::new(42, seen.clone());
            (0..200).map(|_| g.next_expr()).collect()
        };
        let b: Vec<String> = {
            let mut g = ExprGen::new(42, seen.clone());
            (0..200).map(|_| g.next_expr()).collect()
        };
        let c: Vec<String> = {
            let mut g = ExprGen::new(43, seen);
            (0..200).map(|_| g.next_expr()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|e| !e.trim().is_empty()));
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
