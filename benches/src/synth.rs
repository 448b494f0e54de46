//! Deterministic synthetic traffic for the benchmarks.
//!
//! [`Generator`] produces an endless-looking but fully reproducible stream of Ethernet frames
//! from a [`SynthConfig`]: the same configuration (seed included) gives the same bytes on every
//! machine, so a benchmark's input can be regenerated instead of shipped.
//!
//! The model, chosen to look like the uplink of a campus or an enterprise:
//! - **Flows.** `flows` flows (default 200 000) split over six classes in proportion to their
//!   share of packets: IPv4 85 % (TCP 80 %, UDP 17 %, ICMP 3 % of it) and IPv6 15 % (same TCP/UDP
//!   split, ICMPv6 for the rest). Inside a class, the flow of each packet is drawn with Zipf
//!   popularity (exponent `zipf_s`, default 1.0), so a few flows carry most packets and most flows
//!   carry a handful. A flow's addresses, ports, VLAN and application are a pure function of
//!   (seed, class, index): no per-flow table is kept.
//! - **Applications.** TCP servers on 443, 80, 8080, 22, 25, 993, 3306, 5432; UDP DNS (53),
//!   QUIC (443), NTP (123, half of them symmetric 123 → 123) and other UDP on high ports, part
//!   of it IPv4-fragmented (first fragments keep the UDP header, later ones do not); ICMP echo;
//!   ICMPv6 echo and neighbour solicitations to solicited-node multicast groups.
//! - **The rest** ([`OTHER_SHARE`], 1 % of packets, scaling the shares above by 0.99): ARP
//!   requests and replies, IPv6 DNS behind a hop-by-hop header (a third also fragmented), IPv4
//!   TCP behind one or two MPLS labels, IPv4 UDP in PPPoE sessions, ICMP in GRE, SCTP, and IGMP
//!   reports with the IPv4 router-alert option. Rare on a real link, but they are what filter
//!   semantics (offset shifting after `mpls`/`pppoes`, IPv4 options, extension chains) hinge on.
//! - **Addresses.** IPv4 clients in 10.0.0.0/8 (60 %), 192.168.0.0/16 and 172.16.0.0/12; one
//!   flow in 101 has the client 10.1.2.3; DNS goes to 10.0.0.53 or to public resolvers; other
//!   servers are public addresses. IPv6 clients in 2001:db8::/32, servers in public prefixes.
//! - **VLANs.** `vlan_share` of the flows (default 10 %) are 802.1Q-tagged; one tagged flow in
//!   ten is 802.1ad QinQ (outer 0x88a8, inner 0x8100).
//! - **Sizes.** Bimodal: small packets of 40-60 wire bytes (raised to the size of their headers)
//!   and large ones of 1400-1500 bytes (plus 4 per VLAN tag); DNS 70-300 bytes, NTP 90, pings
//!   98. TCP SYN/SYN-ACK/FIN/RST are small; 2 % SYN, 2 % SYN-ACK, 1 % FIN, 0.5 % RST.
//! - **Capture.** Each packet's captured bytes are `min(snaplen, wire_len)` (snaplen 96 by
//!   default); headers are complete and consistent (IPv4 checksum, IP and UDP lengths computed
//!   from the wire length), payload bytes are pseudo-random.
//! - **Time.** Starts at `start_ns`; inter-arrival gaps uniform in 1..=8000 ns (≈ 250 kpps).
//!
//! The pseudo-random numbers come from [`SplitMix64`] (Steele, Lea and Flood's SplitMix64), so
//! no external crate decides the output.

use como_packet::{LinkType, Packet};

/// SplitMix64: a tiny, fast, statistically sound 64-bit generator; deterministic by design.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

/// The SplitMix64 output function: a stateless 64-bit mixer (also used to hash flow ids).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// A uniform float in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (`0` when `n == 0`), by Lemire's multiply-shift.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform integer in `lo..=hi` (`lo` when `hi < lo`).
    #[inline]
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// A Zipf distribution over ranks `0..n`: rank `k` has weight `1 / (k + 1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks (at least one) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let n = n.max(1);
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 0..n {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: a distribution has at least one rank.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Draws a rank (0 is the most popular).
    #[inline]
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

/// Traffic class of a flow: IP version and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowClass {
    /// TCP over IPv4.
    Tcp4,
    /// UDP over IPv4.
    Udp4,
    /// ICMP over IPv4.
    Icmp4,
    /// TCP over IPv6.
    Tcp6,
    /// UDP over IPv6.
    Udp6,
    /// ICMPv6.
    Icmp6,
    /// The rest of a real link, [`OTHER_SHARE`] of the packets: ARP, IPv6 with extension
    /// headers, MPLS, PPPoE sessions, GRE tunnels, SCTP and IGMP (IPv4 with options).
    Other,
}

/// Share of packets in [`FlowClass::Other`]; the six main classes share the rest.
pub const OTHER_SHARE: f64 = 0.01;

impl FlowClass {
    /// Every class, in a fixed order.
    pub const ALL: [FlowClass; 7] = [
        FlowClass::Tcp4,
        FlowClass::Udp4,
        FlowClass::Icmp4,
        FlowClass::Tcp6,
        FlowClass::Udp6,
        FlowClass::Icmp6,
        FlowClass::Other,
    ];

    /// Share of all packets that belong to this class.
    pub fn packet_share(self) -> f64 {
        const V4: f64 = 0.85 * (1.0 - OTHER_SHARE);
        const V6: f64 = 0.15 * (1.0 - OTHER_SHARE);
        match self {
            FlowClass::Tcp4 => V4 * 0.80,
            FlowClass::Udp4 => V4 * 0.17,
            FlowClass::Icmp4 => V4 * 0.03,
            FlowClass::Tcp6 => V6 * 0.80,
            FlowClass::Udp6 => V6 * 0.17,
            FlowClass::Icmp6 => V6 * 0.03,
            FlowClass::Other => OTHER_SHARE,
        }
    }

    /// Whether the class is IPv6.
    pub fn is_v6(self) -> bool {
        matches!(self, FlowClass::Tcp6 | FlowClass::Udp6 | FlowClass::Icmp6)
    }

    /// Short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            FlowClass::Tcp4 => "tcp4",
            FlowClass::Udp4 => "udp4",
            FlowClass::Icmp4 => "icmp4",
            FlowClass::Tcp6 => "tcp6",
            FlowClass::Udp6 => "udp6",
            FlowClass::Icmp6 => "icmp6",
            FlowClass::Other => "other",
        }
    }

    fn index(self) -> usize {
        match self {
            FlowClass::Tcp4 => 0,
            FlowClass::Udp4 => 1,
            FlowClass::Icmp4 => 2,
            FlowClass::Tcp6 => 3,
            FlowClass::Udp6 => 4,
            FlowClass::Icmp6 => 5,
            FlowClass::Other => 6,
        }
    }
}

/// The application a flow carries, which fixes its ports and packet sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum App {
    /// TCP to the given server port.
    Tcp(u16),
    /// DNS over UDP port 53.
    Dns,
    /// QUIC over UDP port 443.
    Quic,
    /// NTP over UDP port 123.
    Ntp,
    /// Other UDP (high ports; partly fragmented over IPv4).
    OtherUdp,
    /// ICMP or ICMPv6 echo.
    Echo,
    /// ICMPv6 neighbour solicitation.
    NeighborSolicit,
    /// ARP request (broadcast) or reply.
    Arp,
    /// DNS over UDP over IPv6 behind a hop-by-hop header, a third of it fragmented (fragment
    /// header after the hop-by-hop one; later fragments carry no UDP header).
    Ipv6Ext,
    /// IPv4 TCP (port 443) behind one or two MPLS labels (EtherType 0x8847).
    Mpls,
    /// IPv4 UDP (QUIC, port 443) in a PPPoE session (EtherType 0x8864, PPP protocol 0x0021).
    Pppoe,
    /// ICMP echo in IPv4 in GRE (IP protocol 47) in IPv4.
    Gre,
    /// SCTP (Diameter 3868 or S1AP 36412) over IPv4.
    Sctp,
    /// IGMPv2 membership report to a 239/8 group, IPv4 with the router-alert option (IHL 6).
    Igmp,
}

/// VLAN tagging of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vlan {
    /// Untagged.
    None,
    /// One 802.1Q tag with this VLAN id.
    Dot1q(u16),
    /// 802.1ad: outer (0x88a8) and inner (0x8100) VLAN ids.
    QinQ(u16, u16),
}

/// One flow's fixed parameters, derived from (seed, class, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Traffic class.
    pub class: FlowClass,
    /// Application.
    pub app: App,
    /// Client address (IPv4 flows use the first 4 bytes).
    pub client: [u8; 16],
    /// Server address (IPv4 flows use the first 4 bytes).
    pub server: [u8; 16],
    /// Client port (or ICMP echo identifier).
    pub client_port: u16,
    /// Server port.
    pub server_port: u16,
    /// VLAN tagging.
    pub vlan: Vlan,
}

const TCP_PORTS: [(u16, u32); 8] = [
    (443, 60),
    (80, 25),
    (8080, 4),
    (22, 3),
    (25, 2),
    (993, 2),
    (3306, 2),
    (5432, 2),
];
const SERVER_V4_FIRST_OCTET: [u8; 10] = [23, 31, 45, 52, 104, 142, 151, 185, 203, 216];
const VLAN_IDS: [u16; 6] = [10, 20, 100, 200, 300, 4000];

fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&[a, b, c, d]);
    x
}

fn v6(prefix: [u8; 6], h: u64) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..6].copy_from_slice(&prefix);
    x[8..].copy_from_slice(&h.to_be_bytes());
    x
}

impl Flow {
    /// The flow of rank `index` in `class`, for `seed`.
    pub fn derive(seed: u64, class: FlowClass, index: u64, vlan_share: f64) -> Self {
        let mut r = SplitMix64::new(mix64(
            seed ^ ((class.index() as u64) << 56) ^ index.wrapping_mul(0x9E37_79B9),
        ));
        let app = match class {
            FlowClass::Tcp4 | FlowClass::Tcp6 => {
                let mut pick = r.below(100) as u32;
                let mut port = 443;
                for (p, w) in TCP_PORTS {
                    if pick < w {
                        port = p;
                        break;
                    }
                    pick -= w;
                }
                App::Tcp(port)
            }
            FlowClass::Udp4 | FlowClass::Udp6 => match r.below(100) {
                0..45 => App::Dns,
                45..85 => App::Quic,
                85..95 => App::Ntp,
                _ => App::OtherUdp,
            },
            FlowClass::Icmp4 => App::Echo,
            FlowClass::Other => match r.below(100) {
                0..30 => App::Arp,
                30..45 => App::Ipv6Ext,
                45..60 => App::Mpls,
                60..75 => App::Pppoe,
                75..85 => App::Gre,
                85..95 => App::Sctp,
                _ => App::Igmp,
            },
            FlowClass::Icmp6 => {
                if r.chance(0.1) {
                    App::NeighborSolicit
                } else {
                    App::Echo
                }
            }
        };
        let h = r.next_u64();
        let (client, server) = if class.is_v6() || app == App::Ipv6Ext {
            let client = v6(
                [0x20, 0x01, 0x0d, 0xb8, (h >> 8) as u8, h as u8],
                r.next_u64(),
            );
            let server = match app {
                App::NeighborSolicit => {
                    // Solicited-node multicast group of a neighbour on the client's link.
                    let mut s = [0u8; 16];
                    s[0] = 0xff;
                    s[1] = 0x02;
                    s[11] = 0x01;
                    s[12] = 0xff;
                    s[13..].copy_from_slice(&r.next_u64().to_be_bytes()[..3]);
                    s
                }
                _ => {
                    let prefixes = [
                        [0x26, 0x06, 0x47, 0x00, 0x00, 0x00],
                        [0x2a, 0x00, 0x14, 0x50, 0x40, 0x07],
                        [0x24, 0x04, 0x68, 0x00, 0x40, 0x03],
                    ];
                    let p = prefixes[(h >> 20) as usize % prefixes.len()];
                    v6(p, r.below(4000))
                }
            };
            (client, server)
        } else {
            let client = if index % 101 == 7 {
                v4(10, 1, 2, 3)
            } else {
                match r.below(100) {
                    0..60 => v4(
                        10,
                        (h >> 8) as u8,
                        (h >> 16) as u8,
                        1 + (h >> 24) as u8 % 254,
                    ),
                    60..85 => v4(192, 168, (h >> 8) as u8, 1 + (h >> 16) as u8 % 254),
                    _ => v4(
                        172,
                        16 + (h >> 8) as u8 % 16,
                        (h >> 16) as u8,
                        1 + (h >> 24) as u8 % 254,
                    ),
                }
            };
            let s = r.next_u64();
            let server = match app {
                App::Arp => v4(client[0], client[1], client[2], 1),
                App::Igmp => v4(239, (s >> 8) as u8, (s >> 16) as u8, (s >> 24) as u8),
                App::Dns if s.is_multiple_of(2) => v4(10, 0, 0, 53),
                App::Dns if s % 4 == 1 => v4(8, 8, 8, 8),
                App::Dns => v4(1, 1, 1, 1),
                _ => {
                    let first = SERVER_V4_FIRST_OCTET[(s % 10) as usize];
                    // A pool of about 2000 servers, so servers repeat across flows.
                    let k = (s >> 8) % 2000;
                    v4(first, (k * 7) as u8, (k >> 3) as u8, 1 + (k % 254) as u8)
                }
            };
            (client, server)
        };
        let ephemeral = 32768 + r.below(28232) as u16;
        let (client_port, server_port) = match app {
            App::Tcp(p) => (ephemeral, p),
            App::Dns => (ephemeral, 53),
            App::Quic => (ephemeral, 443),
            App::Ntp => {
                if r.chance(0.5) {
                    (123, 123)
                } else {
                    (ephemeral, 123)
                }
            }
            App::OtherUdp => (ephemeral, 5000 + r.below(20000) as u16),
            App::Echo | App::NeighborSolicit | App::Gre => (r.next_u64() as u16, 0),
            App::Ipv6Ext => (ephemeral, 53),
            App::Mpls | App::Pppoe => (ephemeral, 443),
            App::Sctp => {
                if r.chance(0.5) {
                    (ephemeral, 3868)
                } else {
                    (36412, 36412)
                }
            }
            App::Arp | App::Igmp => (0, 0),
        };
        let vlan = if r.chance(vlan_share) {
            let id = VLAN_IDS[r.below(VLAN_IDS.len() as u64) as usize];
            if r.chance(0.1) {
                Vlan::QinQ(1000 + r.below(8) as u16, id)
            } else {
                Vlan::Dot1q(id)
            }
        } else {
            Vlan::None
        };
        Flow {
            class,
            app,
            client,
            server,
            client_port,
            server_port,
            vlan,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Number of packets.
    pub packets: u64,
    /// Number of flows (split over the classes by packet share).
    pub flows: u32,
    /// Zipf exponent of flow popularity.
    pub zipf_s: f64,
    /// Capture length limit: captured bytes are `min(snaplen, wire_len)`.
    pub snaplen: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Share of flows that are VLAN-tagged.
    pub vlan_share: f64,
    /// Timestamp of the first packet, ns since the Unix epoch.
    pub start_ns: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            packets: 4_000_000,
            flows: 200_000,
            zipf_s: 1.0,
            snaplen: 96,
            seed: 1,
            vlan_share: 0.10,
            // 2026-01-01T00:00:00Z
            start_ns: 1_767_225_600_000_000_000,
        }
    }
}

/// Counters of what a generator produced, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets produced.
    pub packets: u64,
    /// Sum of wire lengths.
    pub wire_bytes: u64,
    /// Sum of captured lengths.
    pub captured_bytes: u64,
    /// Packets per class, in [`FlowClass::ALL`] order.
    pub per_class: [u64; 7],
    /// Packets with at least one VLAN tag.
    pub vlan_tagged: u64,
    /// Packets of at most 100 wire bytes.
    pub small: u64,
    /// Packets of at least 1400 wire bytes.
    pub large: u64,
    /// Distinct flows that produced at least one packet.
    pub distinct_flows: u64,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_8021Q: u16 = 0x8100;
const ETH_8021AD: u16 = 0x88a8;
const MAX_FRAME: usize = 1600;

/// Produces the packets of a [`SynthConfig`], one at a time, into an internal buffer.
#[derive(Debug)]
pub struct Generator {
    cfg: SynthConfig,
    rng: SplitMix64,
    class_cdf: [f64; 7],
    zipf: Vec<Zipf>,
    /// Per class, whether each flow rank has produced a packet yet.
    seen: Vec<Vec<bool>>,
    produced: u64,
    ts_ns: u64,
    buf: Vec<u8>,
    stats: Stats,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: SynthConfig) -> Self {
        let mut class_cdf = [0.0; 7];
        let mut acc = 0.0;
        let mut zipf = Vec::with_capacity(7);
        for (i, class) in FlowClass::ALL.into_iter().enumerate() {
            acc += class.packet_share();
            class_cdf[i] = acc;
            let n = ((f64::from(cfg.flows) * class.packet_share()).round() as usize).max(1);
            zipf.push(Zipf::new(n, cfg.zipf_s));
        }
        let seen = zipf.iter().map(|z| vec![false; z.len()]).collect();
        Self {
            rng: SplitMix64::new(mix64(cfg.seed ^ 0x636f_6d6f)),
            ts_ns: cfg.start_ns,
            cfg,
            class_cdf,
            zipf,
            seen,
            produced: 0,
            buf: Vec::with_capacity(MAX_FRAME),
            stats: Stats::default(),
        }
    }

    /// What was produced so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next packet (Ethernet link type), or `None` after `cfg.packets` packets.
    pub fn next_packet(&mut self) -> Option<Packet<'_>> {
        if self.produced >= self.cfg.packets {
            return None;
        }
        self.produced += 1;
        self.ts_ns += self.rng.range(1, 8000);
        let u = self.rng.next_f64();
        let ci = self
            .class_cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(FlowClass::ALL.len() - 1);
        let class = FlowClass::ALL[ci];
        let rank = self.zipf[ci].sample(&mut self.rng);
        let flow = Flow::derive(self.cfg.seed, class, rank as u64, self.cfg.vlan_share);
        let wire_len = self.build(&flow);
        let cap = (self.cfg.snaplen as usize).min(self.buf.len());
        self.buf.truncate(cap);

        let s = &mut self.stats;
        s.packets += 1;
        s.wire_bytes += u64::from(wire_len);
        s.captured_bytes += cap as u64;
        s.per_class[ci] += 1;
        if let Some(seen) = self.seen.get_mut(ci).and_then(|v| v.get_mut(rank)) {
            if !*seen {
                *seen = true;
                s.distinct_flows += 1;
            }
        }
        if flow.vlan != Vlan::None {
            s.vlan_tagged += 1;
        }
        if wire_len <= 100 {
            s.small += 1;
        } else if wire_len >= 1400 {
            s.large += 1;
        }
        Some(Packet {
            ts_ns: self.ts_ns,
            wire_len,
            data: &self.buf,
            link: LinkType::Ethernet,
            interface: 0,
        })
    }

    /// Writes the whole frame of one packet of `flow` into `self.buf` (headers complete,
    /// payload up to the snaplen only) and returns its wire length.
    fn build(&mut self, flow: &Flow) -> u32 {
        if flow.class == FlowClass::Other {
            return self.build_other(flow);
        }
        let rng = &mut self.rng;
        let to_server = match flow.app {
            App::NeighborSolicit => true,
            _ => rng.chance(0.55),
        };
        let b = &mut self.buf;
        b.clear();

        // Ethernet: the client's MAC on one side, the gateway's on the other.
        let client_mac = [
            0x02,
            0x00,
            flow.client[12] ^ flow.client[2],
            flow.client[13] ^ flow.client[1],
            flow.client[14] ^ flow.client[3],
            flow.client[15] ^ flow.client[0],
        ];
        let gw_mac = [0x00, 0x1b, 0x21, 0x3c, 0x9d, 0xf8];
        let (src_mac, dst_mac) = if flow.app == App::NeighborSolicit {
            let g = &flow.server;
            ([0; 6], [0x33, 0x33, g[12], g[13], g[14], g[15]])
        } else if to_server {
            (client_mac, gw_mac)
        } else {
            (gw_mac, client_mac)
        };
        let src_mac = if flow.app == App::NeighborSolicit {
            client_mac
        } else {
            src_mac
        };
        b.extend_from_slice(&dst_mac);
        b.extend_from_slice(&src_mac);
        match flow.vlan {
            Vlan::None => {}
            Vlan::Dot1q(id) => {
                b.extend_from_slice(&ETH_8021Q.to_be_bytes());
                b.extend_from_slice(&id.to_be_bytes());
            }
            Vlan::QinQ(outer, inner) => {
                b.extend_from_slice(&ETH_8021AD.to_be_bytes());
                b.extend_from_slice(&outer.to_be_bytes());
                b.extend_from_slice(&ETH_8021Q.to_be_bytes());
                b.extend_from_slice(&inner.to_be_bytes());
            }
        }
        let v6 = flow.class.is_v6();
        b.extend_from_slice(&(if v6 { ETH_IPV6 } else { ETH_IPV4 }).to_be_bytes());
        let l2_len = b.len();
        let ip_hdr = if v6 { 40 } else { 20 };

        // Transport header length, IP protocol and the packet's wire length.
        let small = |rng: &mut SplitMix64, hdr: usize| (rng.range(40, 60) as usize).max(hdr);
        let large = |rng: &mut SplitMix64| rng.range(1400, 1500) as usize;
        let tag_bytes = l2_len - 14;
        let mut tcp_flags = 0x10u8; // ACK
        let mut fragment: Option<u16> = None; // IPv4 fragment offset in 8-byte units; MF set
        let (l4_hdr, proto, wire) = match flow.app {
            App::Tcp(_) => {
                let hdr = l2_len + ip_hdr + 20;
                let roll = rng.below(1000);
                let (flags, is_small) = match roll {
                    0..20 => (0x02, true),  // SYN
                    20..40 => (0x12, true), // SYN-ACK
                    40..50 => (0x11, true), // FIN-ACK
                    50..55 => (0x04, true), // RST
                    _ => {
                        // Data flows mostly from the server; acknowledgements from the client.
                        let p_large = if to_server { 0.15 } else { 0.85 };
                        if rng.chance(p_large) {
                            (0x18, false) // PSH-ACK
                        } else {
                            (0x10, true)
                        }
                    }
                };
                tcp_flags = flags;
                let wire = if is_small {
                    small(rng, hdr)
                } else {
                    large(rng) + tag_bytes
                };
                (20, 6u8, wire)
            }
            App::Dns => (8, 17, rng.range(70, 300) as usize + tag_bytes + ip_hdr - 20),
            App::Ntp => (8, 17, l2_len + ip_hdr + 8 + 48),
            App::Quic => {
                let hdr = l2_len + ip_hdr + 8;
                let wire = if rng.chance(0.5) {
                    large(rng) + tag_bytes
                } else {
                    small(rng, hdr + 20)
                };
                (8, 17, wire)
            }
            App::OtherUdp => {
                let hdr = l2_len + ip_hdr + 8;
                if !v6 && rng.chance(0.2) {
                    fragment = Some(if rng.chance(0.5) { 0 } else { 185 });
                }
                let wire = if rng.chance(0.6) || fragment.is_some() {
                    large(rng) + tag_bytes
                } else {
                    small(rng, hdr)
                };
                (8, 17, wire)
            }
            App::Echo => (8, if v6 { 58 } else { 1 }, l2_len + ip_hdr + 8 + 56),
            App::NeighborSolicit => (24, 58, l2_len + ip_hdr + 24 + 8),
            // Built by `build_other`.
            App::Arp | App::Ipv6Ext | App::Mpls | App::Pppoe | App::Gre | App::Sctp | App::Igmp => {
                (0, 0, l2_len + ip_hdr)
            }
        };
        let wire = wire.min(MAX_FRAME);
        let ip_total = wire - l2_len;
        let (src, dst, sport, dport) = if to_server {
            (flow.client, flow.server, flow.client_port, flow.server_port)
        } else {
            (flow.server, flow.client, flow.server_port, flow.client_port)
        };

        // Network header.
        let ttl = if to_server {
            64
        } else {
            52 + rng.below(12) as u8
        };
        if v6 {
            let label = (mix64(u64::from(sport) ^ u64::from(dport) << 16) & 0xf_ffff) as u32;
            b.extend_from_slice(&(0x6000_0000u32 | label).to_be_bytes());
            b.extend_from_slice(&((ip_total - 40) as u16).to_be_bytes());
            b.push(proto);
            b.push(if flow.app == App::NeighborSolicit {
                255
            } else {
                ttl
            });
            b.extend_from_slice(&src);
            b.extend_from_slice(&dst);
        } else {
            let start = b.len();
            let frag_field: u16 = match (proto, fragment) {
                (6, _) => 0x4000, // DF
                (_, Some(off)) => {
                    // First fragment: MF; later ones: offset, MF on half of them.
                    if off == 0 || rng.chance(0.5) {
                        0x2000 | off
                    } else {
                        off
                    }
                }
                _ => 0,
            };
            b.extend_from_slice(&[0x45, 0]);
            b.extend_from_slice(&(ip_total as u16).to_be_bytes());
            b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
            b.extend_from_slice(&frag_field.to_be_bytes());
            b.extend_from_slice(&[ttl, proto, 0, 0]);
            b.extend_from_slice(&src[..4]);
            b.extend_from_slice(&dst[..4]);
            let sum = ipv4_checksum(&b[start..start + 20]);
            b[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
        }

        // Transport header (none in non-first fragments).
        let first_fragment = !matches!(fragment, Some(off) if off != 0);
        let l4_total = ip_total - ip_hdr;
        if first_fragment {
            match proto {
                6 => {
                    b.extend_from_slice(&sport.to_be_bytes());
                    b.extend_from_slice(&dport.to_be_bytes());
                    b.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                    let ack = if tcp_flags == 0x02 {
                        0
                    } else {
                        rng.next_u64() as u32
                    };
                    b.extend_from_slice(&ack.to_be_bytes());
                    b.push(0x50);
                    b.push(tcp_flags);
                    b.extend_from_slice(&(1024 + rng.below(64512) as u16).to_be_bytes());
                    b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
                    b.extend_from_slice(&[0, 0]);
                }
                17 => {
                    b.extend_from_slice(&sport.to_be_bytes());
                    b.extend_from_slice(&dport.to_be_bytes());
                    b.extend_from_slice(
                        &(l4_total.min(usize::from(u16::MAX)) as u16).to_be_bytes(),
                    );
                    let sum = if v6 { rng.next_u64() as u16 | 1 } else { 0 };
                    b.extend_from_slice(&sum.to_be_bytes());
                }
                _ => {
                    // ICMP / ICMPv6 echo, or a neighbour solicitation.
                    let (ty, code) = match (v6, flow.app, to_server) {
                        (true, App::NeighborSolicit, _) => (135, 0),
                        (true, _, true) => (128, 0),
                        (true, _, false) => (129, 0),
                        (false, _, true) => (8, 0),
                        (false, _, false) => (0, 0),
                    };
                    b.extend_from_slice(&[ty, code]);
                    b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
                    if flow.app == App::NeighborSolicit {
                        b.extend_from_slice(&[0; 4]);
                        let mut target = flow.client;
                        target[13..].copy_from_slice(&flow.server[13..]);
                        b.extend_from_slice(&target);
                    } else {
                        b.extend_from_slice(&flow.client_port.to_be_bytes());
                        b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
                    }
                }
            }
            debug_assert_eq!(b.len(), l2_len + ip_hdr + l4_hdr);
        }

        // Payload: pseudo-random bytes, only as far as they will be captured.
        let cap = (self.cfg.snaplen as usize).min(wire);
        while b.len() < cap {
            let word = rng.next_u64().to_le_bytes();
            let n = (cap - b.len()).min(8);
            b.extend_from_slice(&word[..n]);
        }
        wire as u32
    }
}

impl Generator {
    /// Builds a packet of a [`FlowClass::Other`] flow (see [`App`]); returns its wire length.
    fn build_other(&mut self, flow: &Flow) -> u32 {
        let rng = &mut self.rng;
        let b = &mut self.buf;
        b.clear();
        let to_server = rng.chance(0.55);
        let client_mac = [
            0x02,
            0x00,
            flow.client[1],
            flow.client[2],
            flow.client[3],
            0x01,
        ];
        let gw_mac = [0x00, 0x1b, 0x21, 0x3c, 0x9d, 0xf8];
        let arp_request = flow.app == App::Arp && rng.chance(0.6);
        let (src_mac, dst_mac) = if arp_request {
            (client_mac, [0xff; 6])
        } else if flow.app == App::Igmp {
            let g = &flow.server;
            (client_mac, [0x01, 0x00, 0x5e, g[1] & 0x7f, g[2], g[3]])
        } else if to_server {
            (client_mac, gw_mac)
        } else {
            (gw_mac, client_mac)
        };
        b.extend_from_slice(&dst_mac);
        b.extend_from_slice(&src_mac);
        push_vlan(b, flow.vlan);
        let tags = b.len() - 12;
        let (src, dst, sport, dport) = if to_server || flow.app == App::Igmp {
            (flow.client, flow.server, flow.client_port, flow.server_port)
        } else {
            (flow.server, flow.client, flow.server_port, flow.client_port)
        };
        let bimodal = |rng: &mut SplitMix64, hdr: usize| {
            if rng.chance(0.5) {
                rng.range(1400, 1500) as usize + tags
            } else {
                (rng.range(40, 60) as usize).max(hdr)
            }
        };
        let wire = match flow.app {
            App::Arp => {
                b.extend_from_slice(&0x0806u16.to_be_bytes());
                b.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0]);
                b.push(if arp_request { 1 } else { 2 });
                let (sha, spa, tha, tpa) = if arp_request {
                    (client_mac, &flow.client[..4], [0u8; 6], &flow.server[..4])
                } else if to_server {
                    (client_mac, &flow.client[..4], gw_mac, &flow.server[..4])
                } else {
                    (gw_mac, &flow.server[..4], client_mac, &flow.client[..4])
                };
                b.extend_from_slice(&sha);
                b.extend_from_slice(spa);
                b.extend_from_slice(&tha);
                b.extend_from_slice(tpa);
                60 + tags
            }
            App::Ipv6Ext => {
                b.extend_from_slice(&ETH_IPV6.to_be_bytes());
                let l3 = b.len();
                // Fragment offset in 8-byte units: None, first (0) or a later one (181).
                let frag = if rng.chance(1.0 / 3.0) {
                    Some(if rng.chance(0.5) { 0u16 } else { 181 })
                } else {
                    None
                };
                let wire = if frag.is_some() {
                    rng.range(1400, 1500) as usize + tags
                } else {
                    rng.range(80, 200) as usize + tags
                };
                let payload_len = wire - l3 - 40;
                b.extend_from_slice(&0x6000_0000u32.to_be_bytes());
                b.extend_from_slice(&(payload_len as u16).to_be_bytes());
                b.push(0); // hop-by-hop options
                b.push(64);
                b.extend_from_slice(&src);
                b.extend_from_slice(&dst);
                // Hop-by-hop: next header, length 0 (8 bytes), router alert (MLD-style), PadN.
                b.push(if frag.is_some() { 44 } else { 17 });
                b.extend_from_slice(&[0, 5, 2, 0, 0, 1, 0]);
                let mut udp_len = payload_len - 8;
                if let Some(off) = frag {
                    udp_len -= 8;
                    b.extend_from_slice(&[17, 0]);
                    let more = if off == 0 || rng.chance(0.5) { 1 } else { 0 };
                    b.extend_from_slice(&((off << 3) | more).to_be_bytes());
                    b.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                }
                if frag.is_none_or(|off| off == 0) {
                    b.extend_from_slice(&sport.to_be_bytes());
                    b.extend_from_slice(&dport.to_be_bytes());
                    b.extend_from_slice(&(udp_len as u16).to_be_bytes());
                    b.extend_from_slice(&(rng.next_u64() as u16 | 1).to_be_bytes());
                }
                wire
            }
            App::Mpls => {
                b.extend_from_slice(&0x8847u16.to_be_bytes());
                let labels = 1 + rng.below(2) as usize;
                for i in 0..labels {
                    let label = 16 + (mix64(u64::from(flow.client_port) + i as u64) % 1000) as u32;
                    let bos = u32::from(i + 1 == labels);
                    b.extend_from_slice(&((label << 12) | (bos << 8) | 64).to_be_bytes());
                }
                let hdr = b.len() + 40;
                let wire = bimodal(rng, hdr);
                let ip_total = wire - (b.len());
                push_ipv4(b, ip_total, 6, 60, 0x4000, &src, &dst, &[], rng);
                push_tcp(
                    b,
                    sport,
                    dport,
                    if ip_total > 100 { 0x18 } else { 0x10 },
                    rng,
                );
                wire
            }
            App::Pppoe => {
                b.extend_from_slice(&0x8864u16.to_be_bytes());
                let hdr = b.len() + 8 + 28;
                let wire = bimodal(rng, hdr);
                let ppp_len = wire - b.len() - 6;
                b.extend_from_slice(&[0x11, 0]);
                b.extend_from_slice(&(flow.client_port ^ 0x5a5a).to_be_bytes());
                b.extend_from_slice(&(ppp_len as u16).to_be_bytes());
                b.extend_from_slice(&0x0021u16.to_be_bytes());
                let ip_total = ppp_len - 2;
                push_ipv4(b, ip_total, 17, 60, 0, &src, &dst, &[], rng);
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&((ip_total - 20) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                wire
            }
            App::Gre => {
                b.extend_from_slice(&ETH_IPV4.to_be_bytes());
                let wire = b.len() + 20 + 4 + 20 + 8 + 56;
                let outer = v4(198, 51, 100, 1 + (flow.client_port % 200) as u8);
                let outer_dst = v4(203, 0, 113, 1 + (flow.client_port % 100) as u8);
                push_ipv4(
                    b,
                    wire - b.len(),
                    47,
                    64,
                    0x4000,
                    &outer,
                    &outer_dst,
                    &[],
                    rng,
                );
                b.extend_from_slice(&[0, 0, 0x08, 0x00]);
                push_ipv4(b, 20 + 8 + 56, 1, 64, 0, &src, &dst, &[], rng);
                b.extend_from_slice(&[if to_server { 8 } else { 0 }, 0]);
                b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
                b.extend_from_slice(&flow.client_port.to_be_bytes());
                b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
                wire
            }
            App::Sctp => {
                b.extend_from_slice(&ETH_IPV4.to_be_bytes());
                let wire = b.len() + rng.range(100, 300) as usize;
                push_ipv4(b, wire - b.len(), 132, 64, 0x4000, &src, &dst, &[], rng);
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&(mix64(u64::from(flow.client_port)) as u32).to_be_bytes());
                b.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                // One DATA chunk header (type 0, flags: unfragmented).
                let chunk = (wire - b.len()) as u16;
                b.extend_from_slice(&[0, 3]);
                b.extend_from_slice(&chunk.to_be_bytes());
                wire
            }
            App::Igmp => {
                b.extend_from_slice(&ETH_IPV4.to_be_bytes());
                // IP header with the router-alert option (RFC 2113), IGMPv2 report: 32 bytes,
                // Ethernet-padded to 60.
                let wire = 60 + tags;
                push_ipv4(b, 32, 2, 1, 0, &src, &dst, &[0x94, 0x04, 0, 0], rng);
                let start = b.len();
                b.extend_from_slice(&[0x16, 0, 0, 0]);
                b.extend_from_slice(&flow.server[..4]);
                let sum = ipv4_checksum(&b[start..]);
                b[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
                wire
            }
            _ => {
                // Not an `Other` application: an empty Ethernet frame of the minimum size.
                b.extend_from_slice(&0x88b5u16.to_be_bytes());
                60
            }
        };
        let wire = wire.min(MAX_FRAME);
        let cap = (self.cfg.snaplen as usize).min(wire);
        let rng = &mut self.rng;
        // Ethernet padding of short frames is zeros; other payload pseudo-random.
        let pad_zero = matches!(flow.app, App::Arp | App::Igmp);
        while b.len() < cap {
            let word = if pad_zero {
                [0; 8]
            } else {
                rng.next_u64().to_le_bytes()
            };
            let n = (cap - b.len()).min(8);
            b.extend_from_slice(&word[..n]);
        }
        wire as u32
    }
}

/// Appends the VLAN tags of `vlan` (none, 802.1Q, or 802.1ad + 802.1Q).
fn push_vlan(b: &mut Vec<u8>, vlan: Vlan) {
    match vlan {
        Vlan::None => {}
        Vlan::Dot1q(id) => {
            b.extend_from_slice(&ETH_8021Q.to_be_bytes());
            b.extend_from_slice(&id.to_be_bytes());
        }
        Vlan::QinQ(outer, inner) => {
            b.extend_from_slice(&ETH_8021AD.to_be_bytes());
            b.extend_from_slice(&outer.to_be_bytes());
            b.extend_from_slice(&ETH_8021Q.to_be_bytes());
            b.extend_from_slice(&inner.to_be_bytes());
        }
    }
}

/// Appends an IPv4 header (with `options`, a multiple of 4 bytes) and its checksum.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per header field keeps the builders readable"
)]
fn push_ipv4(
    b: &mut Vec<u8>,
    total_len: usize,
    proto: u8,
    ttl: u8,
    frag_field: u16,
    src: &[u8; 16],
    dst: &[u8; 16],
    options: &[u8],
    rng: &mut SplitMix64,
) {
    let start = b.len();
    let hdr_len = 20 + options.len();
    b.push(0x40 | (hdr_len / 4) as u8);
    b.push(0);
    b.extend_from_slice(&(total_len as u16).to_be_bytes());
    b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
    b.extend_from_slice(&frag_field.to_be_bytes());
    b.extend_from_slice(&[ttl, proto, 0, 0]);
    b.extend_from_slice(&src[..4]);
    b.extend_from_slice(&dst[..4]);
    b.extend_from_slice(options);
    let sum = ipv4_checksum(&b[start..start + hdr_len]);
    b[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

/// Appends a 20-byte TCP header.
fn push_tcp(b: &mut Vec<u8>, sport: u16, dport: u16, flags: u8, rng: &mut SplitMix64) {
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
    b.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
    b.push(0x50);
    b.push(flags);
    b.extend_from_slice(&(1024 + rng.below(64512) as u16).to_be_bytes());
    b.extend_from_slice(&(rng.next_u64() as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
fn ipv4_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Packets held in memory: one contiguous byte buffer plus an index, for benchmarks.
#[derive(Debug, Clone, Default)]
pub struct PacketBatch {
    bytes: Vec<u8>,
    index: Vec<(u64, u32, usize, usize)>,
    link: Option<LinkType>,
}

impl PacketBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Generates `cfg.packets` packets into a batch.
    pub fn generate(cfg: SynthConfig) -> Self {
        let mut batch = Self::new();
        let mut gen = Generator::new(cfg);
        while let Some(p) = gen.next_packet() {
            batch.push(&p);
        }
        batch
    }

    /// Appends a copy of `pkt` (its link type must be the batch's).
    pub fn push(&mut self, pkt: &Packet<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(pkt.data);
        self.index
            .push((pkt.ts_ns, pkt.wire_len, start, pkt.data.len()));
        self.link.get_or_insert(pkt.link);
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The packets, in order.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'_>> + '_ {
        let link = self.link.unwrap_or(LinkType::Ethernet);
        self.index
            .iter()
            .map(move |&(ts_ns, wire_len, start, len)| Packet {
                ts_ns,
                wire_len,
                data: self.bytes.get(start..start + len).unwrap_or(&[]),
                link,
                interface: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_cfg(packets: u64) -> SynthConfig {
        SynthConfig {
            packets,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = PacketBatch::generate(small_cfg(2000));
        let b = PacketBatch::generate(small_cfg(2000));
        let c = PacketBatch::generate(SynthConfig {
            seed: 2,
            ..small_cfg(2000)
        });
        assert!(a.iter().eq(b.iter()));
        assert!(!a.iter().eq(c.iter()));
        assert_eq!(a.len(), 2000);
    }

    #[test]
    fn mix_sizes_and_snaplen_follow_the_model() {
        let mut gen = Generator::new(small_cfg(200_000));
        let mut max_cap = 0;
        while let Some(p) = gen.next_packet() {
            assert_eq!(p.data.len(), (p.wire_len as usize).min(96));
            assert!(p.wire_len >= 42 && p.wire_len <= 1508, "{}", p.wire_len);
            max_cap = max_cap.max(p.data.len());
        }
        assert_eq!(max_cap, 96);
        let s = gen.stats().clone();
        let share = |n: u64| n as f64 / s.packets as f64;
        let v4 = share(s.per_class[0] + s.per_class[1] + s.per_class[2]);
        assert!((v4 - 0.85).abs() < 0.01, "IPv4 share {v4}");
        let tcp = share(s.per_class[0] + s.per_class[3]);
        assert!((tcp - 0.80).abs() < 0.01, "TCP share {tcp}");
        let udp = share(s.per_class[1] + s.per_class[4]);
        assert!((udp - 0.17).abs() < 0.01, "UDP share {udp}");
        // Bimodal: most packets are either small or large.
        assert!(share(s.small) > 0.3 && share(s.large) > 0.3, "{s:?}");
        assert!(share(s.small + s.large) > 0.85, "{s:?}");
        // Zipf: 200k packets over 200k flows touch many flows, far from all.
        assert!(
            s.distinct_flows > 20_000 && s.distinct_flows < 150_000,
            "{s:?}"
        );
        // Some VLAN-tagged, not most.
        assert!(
            share(s.vlan_tagged) > 0.01 && share(s.vlan_tagged) < 0.4,
            "{s:?}"
        );
    }

    #[test]
    fn other_protocols_and_encapsulations_appear() {
        let mut gen = Generator::new(small_cfg(100_000));
        let mut seen = std::collections::HashSet::new();
        while let Some(p) = gen.next_packet() {
            let d = p.data;
            let mut off = 12;
            let mut et = u16::from_be_bytes([d[off], d[off + 1]]);
            while et == ETH_8021Q || et == ETH_8021AD {
                off += 4;
                et = u16::from_be_bytes([d[off], d[off + 1]]);
            }
            let l3 = off + 2;
            let what = match et {
                0x0806 => "arp",
                0x8847 => "mpls",
                0x8864 => "pppoe",
                ETH_IPV6 if d[l3 + 6] == 0 && d[l3 + 40] == 44 => "ip6 hbh+frag",
                ETH_IPV6 if d[l3 + 6] == 0 => "ip6 hbh",
                ETH_IPV4 if d[l3 + 9] == 47 => "gre",
                ETH_IPV4 if d[l3 + 9] == 132 => "sctp",
                ETH_IPV4 if d[l3 + 9] == 2 && d[l3] == 0x46 => "igmp with IP options",
                ETH_IPV4 if u16::from_be_bytes([d[l3 + 6], d[l3 + 7]]) & 0x1fff != 0 => {
                    "ip fragment"
                }
                _ => continue,
            };
            seen.insert(what);
        }
        assert_eq!(seen.len(), 9, "{seen:?}");
        let other = gen.stats().per_class[6] as f64 / 100_000.0;
        assert!((other - OTHER_SHARE).abs() < 0.003, "{other}");
    }

    #[test]
    fn zipf_popularity_is_skewed() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = SplitMix64::new(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        // Rank 0 has weight 1/H(1000) ≈ 13.4 %, rank 1 half of it.
        assert!((12_000..15_000).contains(&counts[0]), "{}", counts[0]);
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.7..2.3).contains(&ratio), "{ratio}");
    }

    #[test]
    fn headers_are_consistent() {
        let mut gen = Generator::new(small_cfg(5000));
        let mut seen_v4 = false;
        while let Some(p) = gen.next_packet() {
            let d = p.data;
            let mut off = 12;
            let mut ethertype = u16::from_be_bytes([d[off], d[off + 1]]);
            while ethertype == ETH_8021Q || ethertype == ETH_8021AD {
                off += 4;
                ethertype = u16::from_be_bytes([d[off], d[off + 1]]);
            }
            let l3 = off + 2;
            if ethertype == ETH_IPV4 {
                seen_v4 = true;
                let ihl = usize::from(d[l3] & 0x0f) * 4;
                assert_eq!(ipv4_checksum(&d[l3..l3 + ihl]), 0, "IPv4 checksum");
                let total = u16::from_be_bytes([d[l3 + 2], d[l3 + 3]]) as usize;
                if total + l3 != p.wire_len as usize {
                    // Only a short frame has Ethernet padding after the datagram.
                    assert_eq!(p.wire_len as usize, 60 + off - 12, "{:02x?}", d);
                }
            } else if ethertype == ETH_IPV6 {
                let payload = u16::from_be_bytes([d[l3 + 4], d[l3 + 5]]) as usize;
                assert_eq!(payload + l3 + 40, p.wire_len as usize);
            } else {
                assert!(
                    [0x0806, 0x8847, 0x8864].contains(&ethertype),
                    "{ethertype:04x}"
                );
            }
        }
        assert!(seen_v4);
    }
}
