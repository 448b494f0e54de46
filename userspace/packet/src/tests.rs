//! Unit tests of the layer parser and the summary line, on hand-built packets of every link
//! type and encapsulation, each also cut at every byte to check truncation handling.

use std::net::IpAddr;

use crate::layers::*;
use crate::{LinkType, Packet, Parsed};

const MAC_A: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
const MAC_B: [u8; 6] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn eth(et: u16) -> Vec<u8> {
    let mut v = MAC_B.to_vec();
    v.extend_from_slice(&MAC_A);
    v.extend_from_slice(&et.to_be_bytes());
    v
}

fn vlan(tpid_next: u16, id: u16) -> Vec<u8> {
    let mut v = (0x2000 | id).to_be_bytes().to_vec(); // PCP 1
    v.extend_from_slice(&tpid_next.to_be_bytes());
    v
}

/// IPv4 header with `opt_words` 4-byte option words, fragment field `frag`, total length
/// computed from `payload_len`.
fn ipv4(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    opt_words: u8,
    frag: u16,
    payload_len: u16,
) -> Vec<u8> {
    let hl = 20 + u16::from(opt_words) * 4;
    let mut v = vec![0x40 | (5 + opt_words), 0];
    v.extend_from_slice(&(hl + payload_len).to_be_bytes());
    v.extend_from_slice(&0x1234u16.to_be_bytes());
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend(std::iter::repeat_n(1u8, usize::from(opt_words) * 4));
    v
}

fn ipv6(nh: u8, payload_len: u16) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&payload_len.to_be_bytes());
    v.extend_from_slice(&[nh, 64]);
    v.extend_from_slice(&ip6("2001:db8::1"));
    v.extend_from_slice(&ip6("2001:db8::2"));
    v
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .expect("test address")
        .octets()
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn pkt(link: LinkType, data: &[u8]) -> Packet<'_> {
    Packet {
        ts_ns: 1_700_000_000_123_456_789,
        wire_len: data.len() as u32,
        data,
        link,
        interface: 0,
    }
}

fn parse(link: LinkType, data: &[u8]) -> Parsed<'_> {
    Parsed::new(pkt(link, data))
}

/// Cuts `data` at every length below its full length and checks that the parse stops in the
/// layer of the first header boundary (`(end offset, layer)`, in order) not reached, that
/// offsets found are within what was parsed, and that the full packet is not truncated.
fn check_cuts(link: LinkType, data: &[u8], boundaries: &[(usize, Truncation)]) {
    let full = Layers::parse(&pkt(link, data));
    assert_eq!(
        full.truncated, None,
        "full packet reported truncated: {full:?}"
    );
    assert_eq!(
        full.malformed, None,
        "full packet reported malformed: {full:?}"
    );
    for n in 0..data.len() {
        let cut = &data[..n];
        let mut p = pkt(link, cut);
        p.wire_len = data.len() as u32;
        let l = Layers::parse(&p);
        let want = boundaries
            .iter()
            .find(|(end, _)| *end > n)
            .map(|(_, layer)| *layer);
        assert_eq!(l.truncated, want, "cut at {n} of {}: {l:?}", data.len());
        // What was found at a cut agrees with the full parse.
        if let Some(l3) = l.l3 {
            assert_eq!(Some(l3), full.l3, "cut at {n}");
        }
        if let Some(l4) = l.l4 {
            assert_eq!(Some(l4), full.l4, "cut at {n}");
        }
        assert!(
            l.payload.is_none() || l.payload == full.payload,
            "cut at {n}"
        );
        // Never panics when summarised.
        let _ = Parsed::new(p).summary().to_string();
    }
}

use Truncation::{Link as TL, Network as TN, Transport as TT};

#[test]
fn ethernet_ipv4_tcp() {
    let data = cat(&[
        &eth(0x0800),
        &ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0x4000, 20),
        &tcp(1234, 80, TCP_SYN),
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.l2, Some(0));
    assert_eq!(p.link_end, Some(14));
    assert_eq!(p.link_proto, Some(0x0800));
    assert_eq!(p.ethertype, Some(0x0800));
    assert_eq!(p.l3, Some(14));
    assert_eq!(p.l3_proto, Some(L3Proto::Ipv4));
    assert_eq!(p.ip_version(), Some(4));
    assert_eq!(p.l4, Some(34));
    assert_eq!(p.l4_proto, Some(IPPROTO_TCP));
    assert_eq!(p.payload, Some(54));
    assert!(!p.is_fragment(), "DF set, not a fragment");
    assert_eq!(p.src_ip(), Some(ip("10.0.0.1")));
    assert_eq!(p.dst_ip(), Some(ip("10.0.0.2")));
    assert_eq!((p.src_port(), p.dst_port()), (Some(1234), Some(80)));
    assert_eq!(p.tcp_flags(), Some(TCP_SYN));
    assert_eq!(p.ttl(), Some(64));
    assert_eq!(p.icmp_type_code(), None);
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 IP 10.0.0.1.1234 > 10.0.0.2.80: TCP [S] length 54"
    );
    check_cuts(LinkType::Ethernet, &data, &[(14, TL), (34, TN), (54, TT)]);
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut data = cat(&[
        &eth(0x0800),
        &ipv4(17, [1, 1, 1, 1], [2, 2, 2, 2], 0, 0, 10),
        &udp(53, 53, b"ab"),
    ]);
    data.extend_from_slice(&[0; 12]); // Ethernet padding to 60 bytes
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.payload(), b"ab");
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 IP 1.1.1.1.53 > 2.2.2.2.53: UDP length 56"
    );
}

#[test]
fn ipv4_options_move_l4() {
    let data = cat(&[
        &eth(0x0800),
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 2, 0, 8),
        &udp(5000, 53, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.l4, Some(14 + 28));
    assert_eq!(p.dst_port(), Some(53));
    check_cuts(LinkType::Ethernet, &data, &[(14, TL), (42, TN), (50, TT)]);
}

#[test]
fn ipv4_fragments() {
    // First fragment: MF set, offset 0: has L4.
    let first = cat(&[
        &eth(0x0800),
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0x2000, 1480),
        &udp(1, 2, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &first);
    assert!(p.is_fragment() && p.is_first_fragment());
    assert_eq!(
        p.frag,
        Some(Fragment {
            offset: 0,
            more: true,
            id: 0x1234
        })
    );
    assert_eq!(p.l4, Some(34));
    assert_eq!(p.src_port(), Some(1));
    // Non-first fragment at 1480: no L4, but the protocol is known.
    let mut rest = cat(&[
        &eth(0x0800),
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 185, 1466),
    ]);
    rest.extend_from_slice(&[0xaa; 8]);
    let mut pk = pkt(LinkType::Ethernet, &rest);
    pk.wire_len = 1500;
    let p = Parsed::new(pk);
    assert!(p.is_fragment() && !p.is_first_fragment());
    assert_eq!(p.frag_offset(), 1480);
    assert_eq!((p.l4, p.l4_proto, p.payload), (None, Some(17), None));
    assert_eq!(
        (p.src_port(), p.dst_port()),
        (None, None),
        "no ports in a non-first fragment"
    );
    assert_eq!(p.truncated, None);
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 IP 10.0.0.1 > 10.0.0.2: frag (off 1480) proto UDP length 1500"
    );
}

#[test]
fn malformed_ip_and_tcp_stop_the_walk() {
    let mut bad_ihl = cat(&[
        &eth(0x0800),
        &ipv4(6, [1; 4], [2; 4], 0, 0, 20),
        &tcp(1, 2, 0),
    ]);
    bad_ihl[14] = 0x43;
    let l = parse(LinkType::Ethernet, &bad_ihl).layers;
    assert_eq!((l.l3, l.l4, l.malformed), (Some(14), None, Some(TN)));
    let mut bad_version = bad_ihl.clone();
    bad_version[14] = 0x65;
    assert_eq!(parse(LinkType::Ethernet, &bad_version).malformed, Some(TN));
    let mut bad_doff = cat(&[
        &eth(0x0800),
        &ipv4(6, [1; 4], [2; 4], 0, 0, 20),
        &tcp(1, 2, 0),
    ]);
    bad_doff[34 + 12] = 0x20;
    let p = parse(LinkType::Ethernet, &bad_doff);
    assert_eq!((p.l4, p.payload, p.malformed), (Some(34), None, Some(TT)));
    assert!(p.summary().to_string().contains("[bad header]"));
}

#[test]
fn ethernet_8023_llc_snap_and_plain_llc() {
    let body = cat(&[
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    let snap = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    let data = cat(&[&eth((snap.len() + body.len()) as u16), &snap, &body]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.link_proto, Some(0x0800), "ethertype behind SNAP");
    assert_eq!((p.l3, p.l4), (Some(22), Some(42)));
    assert_eq!(p.llc, None);
    check_cuts(
        LinkType::Ethernet,
        &data,
        &[(14, TL), (17, TL), (22, TL), (42, TN), (50, TT)],
    );
    // Spanning tree: LLC 42 42 03, no network layer.
    let stp = cat(&[&eth(38), &[0x42, 0x42, 0x03], &[0u8; 35]]);
    let p = parse(LinkType::Ethernet, &stp);
    assert_eq!(
        (p.llc, p.l3, p.l3_proto, p.link_proto),
        (Some(14), None, None, None)
    );
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 00:11:22:33:44:55 > ff:ff:ff:ff:ff:ff 802.3 LLC, length 52"
    );
}

#[test]
fn vlan_stack_of_any_depth() {
    let data = cat(&[
        &eth(ETHERTYPE_QINQ),
        &vlan(ETHERTYPE_VLAN, 100),
        &vlan(ETHERTYPE_QINQ_OLD, 200),
        &vlan(ETHERTYPE_VLAN, 300),
        &vlan(ETHERTYPE_VLAN, 400),
        &vlan(0x0800, 500),
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(68, 67, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.vlan_depth, 5);
    assert_eq!(p.vlan_ids(), &[100, 200, 300, 400]);
    assert_eq!(p.link_proto, Some(ETHERTYPE_QINQ));
    assert_eq!(p.link_end, Some(14));
    assert_eq!(p.ethertype, Some(0x0800));
    assert_eq!((p.l3, p.l4), (Some(34), Some(54)));
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 vlan 100, vlan 200, vlan 300, vlan 400, (+1 vlan), \
         IP 10.0.0.1.68 > 10.0.0.2.67: UDP length 62"
    );
    check_cuts(
        LinkType::Ethernet,
        &data,
        &[
            (14, TL),
            (18, TL),
            (22, TL),
            (26, TL),
            (30, TL),
            (34, TL),
            (54, TN),
            (62, TT),
        ],
    );
}

#[test]
fn mpls_stack_then_ip_by_version() {
    let label = |l: u32, bos: bool| ((l << 12) | if bos { 0x100 } else { 0 } | 64).to_be_bytes();
    let data = cat(&[
        &eth(ETHERTYPE_MPLS),
        &label(16, false),
        &label(17, false),
        &label(1_048_575, true),
        &ipv6(IPPROTO_UDP, 8),
        &udp(1, 2, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.mpls_depth, 3);
    assert_eq!(p.mpls_labels(), &[16, 17, 1_048_575]);
    assert_eq!(
        (p.l3, p.l3_proto, p.ethertype),
        (Some(26), Some(L3Proto::Ipv6), Some(ETHERTYPE_IPV6))
    );
    assert_eq!(p.l4, Some(66));
    assert!(p.summary().to_string().starts_with(
        "1700000000.123456789 MPLS (label 16), MPLS (label 17), MPLS (label 1048575), IP6 2001:db8::1.1 > 2001:db8::2.2: UDP"
    ));
    check_cuts(
        LinkType::Ethernet,
        &data,
        &[
            (14, TL),
            (18, TL),
            (22, TL),
            (26, TL),
            (27, TN),
            (66, TN),
            (74, TT),
        ],
    );
    // Not IP after the bottom of stack (e.g. an Ethernet pseudowire): no L3.
    let pw = cat(&[&eth(ETHERTYPE_MPLS), &label(16, true), &[0u8; 14]]);
    let p = parse(LinkType::Ethernet, &pw);
    assert_eq!((p.mpls_depth, p.l3, p.truncated), (1, None, None));
}

#[test]
fn pppoe_session() {
    let data = cat(&[
        &eth(ETHERTYPE_PPPOE_SESSION),
        &[0x11, 0x00, 0x12, 0x34, 0x00, 0x1e, 0x00, 0x21],
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.pppoe_session, Some(0x1234));
    assert_eq!(
        (p.l3, p.l3_proto, p.l4),
        (Some(22), Some(L3Proto::Ipv4), Some(42))
    );
    assert!(p
        .summary()
        .to_string()
        .starts_with("1700000000.123456789 PPPoE [ses 0x1234] IP 10.0.0.1.1 >"));
    check_cuts(
        LinkType::Ethernet,
        &data,
        &[(14, TL), (22, TL), (42, TN), (50, TT)],
    );
    // Protocol field compression: one byte 0x21.
    let pfc = cat(&[
        &eth(ETHERTYPE_PPPOE_SESSION),
        &[0x11, 0x00, 0x00, 0x2d, 0x00, 0x1d, 0x21],
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &pfc);
    assert_eq!(
        (p.pppoe_session, p.l3, p.l4),
        (Some(0x2d), Some(21), Some(41))
    );
    check_cuts(
        LinkType::Ethernet,
        &pfc,
        &[(14, TL), (21, TL), (41, TN), (49, TT)],
    );
    // LCP inside the session: no IP.
    let lcp = cat(&[
        &eth(ETHERTYPE_PPPOE_SESSION),
        &[0x11, 0x00, 0x00, 0x01, 0x00, 0x06, 0xc0, 0x21],
        &[1, 1, 0, 4],
    ]);
    let p = parse(LinkType::Ethernet, &lcp);
    assert_eq!((p.l3, p.l3_proto), (Some(22), Some(L3Proto::Other(0xc021))));
}

#[test]
fn linux_sll_and_sll2() {
    let body = cat(&[
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    let mut sll = vec![0, 0, 0, 1, 0, 6];
    sll.extend_from_slice(&MAC_A);
    sll.extend_from_slice(&[0, 0, 0x08, 0x00]);
    let data = cat(&[&sll, &body]);
    let p = parse(LinkType::LinuxSll, &data);
    assert_eq!(
        (p.link_proto, p.l3, p.l4),
        (Some(0x0800), Some(16), Some(36))
    );
    assert_eq!(p.src_ip(), Some(ip("10.0.0.1")));
    check_cuts(LinkType::LinuxSll, &data, &[(16, TL), (36, TN), (44, TT)]);
    // SLL with protocol 4: an 802.2 LLC header, here SNAP with IPv4 behind.
    let mut sll_llc = sll.clone();
    sll_llc[14..16].copy_from_slice(&[0, 4]);
    let data = cat(&[&sll_llc, &[0xaa, 0xaa, 3, 0, 0, 0, 8, 0], &body]);
    assert_eq!(parse(LinkType::LinuxSll, &data).l4, Some(44));

    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6];
    sll2.extend_from_slice(&MAC_A);
    sll2.extend_from_slice(&[0, 0]);
    let data = cat(&[
        &sll2,
        &ipv6(IPPROTO_TCP, 20),
        &tcp(443, 5555, TCP_ACK | TCP_PSH),
    ]);
    let p = parse(LinkType::LinuxSll2, &data);
    assert_eq!(
        (p.link_proto, p.l3, p.l4),
        (Some(0x86dd), Some(20), Some(60))
    );
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 IP6 2001:db8::1.443 > 2001:db8::2.5555: TCP [P.] length 80"
    );
    check_cuts(LinkType::LinuxSll2, &data, &[(20, TL), (60, TN), (80, TT)]);
}

#[test]
fn raw_ip_link_types() {
    let v4 = cat(&[
        &ipv4(1, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &[8, 0, 0, 0, 0, 1, 0, 1],
    ]);
    for link in [LinkType::Raw, LinkType::Ipv4] {
        let p = parse(link, &v4);
        assert_eq!(
            (p.l2, p.l3, p.l4, p.l4_proto),
            (None, Some(0), Some(20), Some(1))
        );
        assert_eq!(p.icmp_type_code(), Some((8, 0)));
        assert_eq!(
            p.summary().to_string(),
            "1700000000.123456789 IP 10.0.0.1 > 10.0.0.2: ICMP echo request length 28"
        );
        check_cuts(link, &v4, &[(20, TN), (28, TT)]);
    }
    let v6 = cat(&[&ipv6(IPPROTO_ICMPV6, 8), &[128, 0, 0, 0, 0, 1, 0, 1]]);
    for link in [LinkType::Raw, LinkType::Ipv6] {
        let p = parse(link, &v6);
        assert_eq!((p.l3_proto, p.l4), (Some(L3Proto::Ipv6), Some(40)));
        assert_eq!(
            p.summary().to_string(),
            "1700000000.123456789 IP6 2001:db8::1 > 2001:db8::2: ICMP6 echo request length 48"
        );
        check_cuts(link, &v6, &[(40, TN), (48, TT)]);
    }
    let p = parse(LinkType::Raw, &[0x20, 0, 0, 0]);
    assert_eq!((p.l3, p.l3_proto, p.malformed), (Some(0), None, Some(TN)));
}

#[test]
fn null_and_loop() {
    let body = cat(&[
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    for hdr in [[2u8, 0, 0, 0], [0, 0, 0, 2]] {
        let data = cat(&[&hdr, &body]);
        let p = parse(LinkType::Null, &data);
        assert_eq!(
            (p.link_proto, p.l3_proto, p.l4),
            (Some(2), Some(L3Proto::Ipv4), Some(24)),
            "{hdr:?}"
        );
        check_cuts(LinkType::Null, &data, &[(4, TL), (24, TN), (32, TT)]);
    }
    let v6 = cat(&[&ipv6(IPPROTO_UDP, 8), &udp(1, 2, &[])]);
    for af in [24u32, 28, 30] {
        let data = cat(&[&af.to_le_bytes(), &v6]);
        assert_eq!(
            parse(LinkType::Null, &data).l3_proto,
            Some(L3Proto::Ipv6),
            "AF {af}"
        );
        let data = cat(&[&af.to_be_bytes(), &v6]);
        assert_eq!(parse(LinkType::Loop, &data).l4, Some(44), "LOOP AF {af}");
    }
    // LOOP is network order only.
    let data = cat(&[&[2u8, 0, 0, 0], &body]);
    assert_eq!(parse(LinkType::Loop, &data).l3_proto, None);
}

#[test]
fn ppp_framings() {
    let body = cat(&[
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    let with_ac = cat(&[&[0xff, 0x03, 0x00, 0x21], &body]);
    let p = parse(LinkType::Ppp, &with_ac);
    assert_eq!((p.link_proto, p.l3, p.l4), (Some(0x21), Some(4), Some(24)));
    check_cuts(LinkType::Ppp, &with_ac, &[(4, TL), (24, TN), (32, TT)]);
    let compressed = cat(&[&[0x21], &body]);
    let p = parse(LinkType::Ppp, &compressed);
    assert_eq!((p.link_proto, p.l3), (Some(0x21), Some(1)));
    check_cuts(LinkType::Ppp, &compressed, &[(1, TL), (21, TN), (29, TT)]);
    let v6 = cat(&[&[0x00, 0x57], &ipv6(IPPROTO_UDP, 8), &udp(1, 2, &[])]);
    assert_eq!(parse(LinkType::Ppp, &v6).l3_proto, Some(L3Proto::Ipv6));
    let mpls = cat(&[
        &[0xff, 0x03, 0x02, 0x81],
        &((100u32 << 12) | 0x1ff).to_be_bytes(),
        &body,
    ]);
    let p = parse(LinkType::Ppp, &mpls);
    assert_eq!(
        (p.mpls_labels(), p.l3, p.l4),
        (&[100u32][..], Some(8), Some(28))
    );
    let lcp = [0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4];
    assert_eq!(
        parse(LinkType::Ppp, &lcp).l3_proto,
        Some(L3Proto::Other(0xc021))
    );
}

#[test]
fn cisco_hdlc() {
    let data = cat(&[
        &[0x0f, 0x00, 0x08, 0x00],
        &ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 20),
        &tcp(1, 2, TCP_RST),
    ]);
    let p = parse(LinkType::CHdlc, &data);
    assert_eq!(
        (p.link_proto, p.l3, p.l4),
        (Some(0x0800), Some(4), Some(24))
    );
    assert_eq!(p.tcp_flags(), Some(TCP_RST));
    check_cuts(LinkType::CHdlc, &data, &[(4, TL), (24, TN), (44, TT)]);
    // The same frame on a PPP serial link.
    assert_eq!(parse(LinkType::Ppp, &data).l4, Some(24));
    let slarp = [0x8f, 0x00, 0x80, 0x35, 0, 0, 0, 0];
    assert_eq!(
        parse(LinkType::CHdlc, &slarp).l3_proto,
        Some(L3Proto::Other(0x8035))
    );
}

/// An 802.11 data frame header: frame control, duration, addresses, sequence (+ addr4, QoS,
/// HT control as the flags say).
fn wlan_hdr(subtype: u8, flags: u8, qos: u8) -> Vec<u8> {
    let mut v = vec![(subtype << 4) | 0x08, flags, 0, 0];
    v.extend_from_slice(&[1u8; 18]);
    v.extend_from_slice(&[0, 0]);
    if flags & 3 == 3 {
        v.extend_from_slice(&[2u8; 6]);
    }
    if subtype & 8 != 0 {
        v.extend_from_slice(&[qos, 0]);
        if flags & 0x80 != 0 {
            v.extend_from_slice(&[0u8; 4]);
        }
    }
    v
}

#[test]
fn ieee80211_data_frames() {
    let snap = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    let body = cat(&[
        &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &udp(1, 2, &[]),
    ]);
    for (subtype, flags, hlen) in [
        (0u8, 0x01u8, 24usize),
        (0, 0x03, 30),
        (8, 0x02, 26),
        (8, 0x81, 30),
        (8, 0x83, 36),
    ] {
        let data = cat(&[&wlan_hdr(subtype, flags, 0), &snap, &body]);
        let p = parse(LinkType::Ieee80211, &data);
        assert_eq!(
            (p.l2, p.link_end),
            (Some(0), Some(hlen as u16)),
            "subtype {subtype} flags {flags:#x}"
        );
        assert_eq!((p.link_proto, p.l3), (Some(0x0800), Some(hlen as u16 + 8)));
        assert_eq!(p.dst_port(), Some(2));
        check_cuts(
            LinkType::Ieee80211,
            &data,
            &[
                (hlen, TL),
                (hlen + 3, TL),
                (hlen + 8, TL),
                (hlen + 28, TN),
                (hlen + 36, TT),
            ],
        );
    }
    // Protected, null-data, A-MSDU and management frames have no network layer.
    for (hdr, what) in [
        (wlan_hdr(0, 0x41, 0), "protected"),
        (wlan_hdr(4, 0x01, 0), "null"),
        (wlan_hdr(8, 0x01, 0x80), "a-msdu"),
        ([vec![0x80, 0], vec![0u8; 22]].concat(), "beacon"),
    ] {
        let data = cat(&[&hdr, &snap, &body]);
        let p = parse(LinkType::Ieee80211, &data);
        assert_eq!((p.l3, p.truncated), (None, None), "{what}");
    }
}

#[test]
fn radiotap_then_80211() {
    let snap = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x86, 0xdd];
    let body = cat(&[&ipv6(IPPROTO_UDP, 8), &udp(1, 2, &[])]);
    // Minimal radiotap header: version 0, length 8, no fields.
    let rt = [0u8, 0, 8, 0, 0, 0, 0, 0];
    let data = cat(&[&rt, &wlan_hdr(0, 0x02, 0), &snap, &body]);
    let p = parse(LinkType::Ieee80211Radiotap, &data);
    assert_eq!(
        (p.l2, p.l3, p.l3_proto),
        (Some(8), Some(40), Some(L3Proto::Ipv6))
    );
    check_cuts(
        LinkType::Ieee80211Radiotap,
        &data,
        &[(8, TL), (32, TL), (35, TL), (40, TL), (80, TN), (88, TT)],
    );
    // TSFT + flags with the data-pad bit: QoS header of 26 bytes padded to 28.
    let mut rt = vec![0u8, 0, 0, 0, 0x03, 0, 0, 0];
    rt.extend_from_slice(&[9u8; 8]); // TSFT at 8
    rt.extend_from_slice(&[0x20, 0, 0, 0]); // flags: data pad
    let len = rt.len() as u16;
    rt[2..4].copy_from_slice(&len.to_le_bytes());
    let data = cat(&[&rt, &wlan_hdr(8, 0x02, 0), &[0, 0], &snap, &body]);
    let p = parse(LinkType::Ieee80211Radiotap, &data);
    assert_eq!((p.l2, p.link_end, p.l3), (Some(20), Some(48), Some(56)));
    assert_eq!(p.src_port(), Some(1));
    // A radiotap length beyond the bytes is link truncation, not a panic.
    let p = parse(LinkType::Ieee80211Radiotap, &[0, 0, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(p.truncated, Some(TL));
}

#[test]
fn ipv6_extension_chain() {
    // HBH (8) -> routing (16) -> fragment (8, offset 0, M) -> dstopts (8) -> AH (24) -> UDP.
    let hbh = [43u8, 0, 1, 4, 0, 0, 0, 0];
    let mut routing = vec![44u8, 1, 0, 0, 0, 0, 0, 0];
    routing.extend_from_slice(&[0u8; 8]);
    let frag = [60u8, 0, 0x00, 0x01, 0, 0, 0x56, 0x78];
    let dst = [51u8, 0, 1, 4, 0, 0, 0, 0];
    let mut ah = vec![17u8, 4, 0, 0];
    ah.extend_from_slice(&[0u8; 20]);
    let data = cat(&[
        &eth(0x86dd),
        &ipv6(0, 72),
        &hbh,
        &routing,
        &frag,
        &dst,
        &ah,
        &udp(547, 546, &[]),
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!((p.l4_proto, p.l4), (Some(IPPROTO_UDP), Some(14 + 40 + 64)));
    assert_eq!(
        p.frag,
        Some(Fragment {
            offset: 0,
            more: true,
            id: 0x5678
        })
    );
    assert_eq!((p.src_port(), p.dst_port()), (Some(547), Some(546)));
    check_cuts(
        LinkType::Ethernet,
        &data,
        &[
            (14, TL),
            (54, TN),
            (56, TN),
            (62, TN),
            (64, TN),
            (78, TN),
            (86, TN),
            (88, TN),
            (94, TN),
            (96, TN),
            (118, TN),
            (126, TT),
        ],
    );
    // Non-first fragment: protocol from the fragment header, no L4.
    let data = cat(&[
        &eth(0x86dd),
        &ipv6(44, 16),
        &[17u8, 0, 0x05, 0xc8, 0, 0, 0, 9],
        &[0u8; 8],
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!((p.l4, p.l4_proto, p.frag_offset()), (None, Some(17), 1480));
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 IP6 2001:db8::1 > 2001:db8::2: frag (off 1480) proto UDP length 70"
    );
    // ESP ends the chain; no-next-header has no L4.
    let esp = cat(&[
        &eth(0x86dd),
        &ipv6(0, 16),
        &[50u8, 0, 1, 4, 0, 0, 0, 0],
        &[0u8; 8],
    ]);
    let p = parse(LinkType::Ethernet, &esp);
    assert_eq!(
        (p.l4_proto, p.l4, p.payload),
        (Some(IPPROTO_ESP), Some(62), Some(70))
    );
    let none = cat(&[&eth(0x86dd), &ipv6(60, 8), &[59u8, 0, 1, 4, 0, 0, 0, 0]]);
    let p = parse(LinkType::Ethernet, &none);
    assert_eq!(
        (p.l4_proto, p.l4, p.truncated),
        (Some(IPPROTO_NONE), None, None)
    );
    // Cut inside the chain: the summary says where.
    let mut pk = pkt(LinkType::Ethernet, &none[..56]);
    pk.wire_len = 62;
    assert_eq!(
        Parsed::new(pk).summary().to_string(),
        "1700000000.123456789 IP6 2001:db8::1 > 2001:db8::2: [|ip6] length 62"
    );
}

#[test]
fn icmp_gre_sctp() {
    let data = cat(&[
        &eth(0x0800),
        &ipv4(1, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 8),
        &[11, 1, 0, 0, 0, 0, 0, 0],
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(p.icmp_type_code(), Some((11, 1)));
    assert_eq!(p.src_port(), None);
    // GRE with key and sequence: 12-byte header; the inner packet is not parsed.
    let inner = ipv4(17, [192, 168, 0, 1], [192, 168, 0, 2], 0, 0, 0);
    let data = cat(&[
        &eth(0x0800),
        &ipv4(47, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 32),
        &[0x30, 0x00, 0x08, 0x00, 0, 0, 0, 1, 0, 0, 0, 2],
        &inner,
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(
        (p.l4, p.payload, p.gre_protocol()),
        (Some(34), Some(46), Some(0x0800))
    );
    assert_eq!(p.src_ip(), Some(ip("10.0.0.1")), "outer addresses");
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 IP 10.0.0.1 > 10.0.0.2: GRE proto 0x0800 length 66"
    );
    check_cuts(LinkType::Ethernet, &data, &[(14, TL), (34, TN), (46, TT)]);
    let data = cat(&[
        &eth(0x0800),
        &ipv4(132, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 12),
        &[0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 0, 0, 0, 0, 0],
    ]);
    let p = parse(LinkType::Ethernet, &data);
    assert_eq!(
        (p.src_port(), p.dst_port(), p.payload),
        (Some(2905), Some(2905), Some(46))
    );
}

#[test]
fn summary_of_arp_and_unknown_ethertypes() {
    let mut arp = eth(0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    let p = parse(LinkType::Ethernet, &arp);
    assert_eq!(p.l3_proto, Some(L3Proto::Arp));
    assert_eq!(
        p.summary().to_string(),
        "1700000000.123456789 ARP, length 42"
    );
    check_cuts(LinkType::Ethernet, &arp, &[(14, TL), (22, TN)]);
    let mut lldp = eth(0x88cc);
    lldp.extend_from_slice(&[0u8; 46]);
    assert_eq!(
        parse(LinkType::Ethernet, &lldp).summary().to_string(),
        "1700000000.123456789 00:11:22:33:44:55 > ff:ff:ff:ff:ff:ff ethertype 0x88cc, length 60"
    );
    let mut tcp_cut = cat(&[
        &eth(0x0800),
        &ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], 0, 0, 20),
        &tcp(1, 2, 0x12),
    ]);
    tcp_cut.truncate(40);
    let mut pk = pkt(LinkType::Ethernet, &tcp_cut);
    pk.wire_len = 54;
    pk.ts_ns = 5;
    assert_eq!(
        Parsed::new(pk).summary().to_string(),
        "0.000000005 IP 10.0.0.1.1 > 10.0.0.2.2: TCP [|tcp] length 54"
    );
    let other = pkt(LinkType::Other(147), &[1, 2, 3]);
    assert_eq!(
        Parsed::new(other).summary().to_string(),
        "1700000000.123456789 link-type 147, length 3"
    );
}

/// Deterministic pseudo-random bytes (xorshift), to throw garbage at every link type.
fn garbage(seed: &mut u64, out: &mut Vec<u8>, len: usize) {
    out.clear();
    for _ in 0..len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.push((*seed >> 24) as u8);
    }
}

#[test]
fn garbage_never_panics() {
    let links = [
        LinkType::Null,
        LinkType::Ethernet,
        LinkType::Ppp,
        LinkType::CHdlc,
        LinkType::Raw,
        LinkType::Ieee80211,
        LinkType::Loop,
        LinkType::LinuxSll,
        LinkType::Ieee80211Radiotap,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::LinuxSll2,
        LinkType::Other(999),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = Vec::new();
    let mut seen_l4 = 0;
    for i in 0..60_000usize {
        let link = links[i % links.len()];
        garbage(&mut seed, &mut buf, i % 160);
        // Bias towards plausible headers so the walk goes deep.
        match (link, buf.len()) {
            (LinkType::Ethernet, n) if n > 20 => {
                let et: [u8; 2] = match i % 5 {
                    0 => [0x81, 0x00],
                    1 => [0x88, 0x47],
                    2 => [0x86, 0xdd],
                    3 => [0x88, 0x64],
                    _ => [0x08, 0x00],
                };
                buf[12..14].copy_from_slice(&et);
                buf[14] = if i % 2 == 0 { 0x45 } else { 0x60 };
            }
            (LinkType::Raw | LinkType::Ipv4, n) if n > 0 => buf[0] = 0x45,
            (LinkType::Ipv6, n) if n > 6 => {
                buf[0] = 0x60;
                buf[6] = [0u8, 43, 44, 60, 51, 6, 17][i % 7];
            }
            _ => {}
        }
        let p = Parsed::new(Packet {
            ts_ns: seed,
            wire_len: (seed >> 40) as u32,
            data: &buf,
            link,
            interface: 0,
        });
        let _ = p.summary().to_string();
        let _ = (
            p.src_ip(),
            p.dst_ip(),
            p.src_port(),
            p.tcp_flags(),
            p.icmp_type_code(),
            p.payload().len(),
        );
        for off in [p.l2, p.l3, p.l4, p.payload, p.link_end]
            .into_iter()
            .flatten()
        {
            assert!(
                usize::from(off) <= buf.len(),
                "offset {off} beyond {} bytes: {:?}",
                buf.len(),
                p.layers
            );
        }
        if p.l4.is_some() {
            seen_l4 += 1;
        }
    }
    assert!(
        seen_l4 > 1000,
        "garbage rarely reached L4 ({seen_l4}): generator too weak"
    );
}
