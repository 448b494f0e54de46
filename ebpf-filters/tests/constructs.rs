//! Per-construct tests on hand-built packets, error reporting (kind, column, construct named)
//! and the IR's shape.

mod common;

use common::*;
use como_packet::LinkType;
use ebpf_filters::ir::{Node, Pred, Side};
use ebpf_filters::{compile, ErrorKind, FilterError};

fn m(expr: &str, data: &[u8]) -> bool {
    m_link(expr, data, LinkType::Ethernet)
}

fn m_link(expr: &str, data: &[u8], link: LinkType) -> bool {
    match compile(expr, link) {
        Ok(f) => f.matches(&pkt(data, link)),
        Err(e) => panic!("{expr:?} does not compile: {e}"),
    }
}

fn err(expr: &str) -> FilterError {
    err_link(expr, LinkType::Ethernet)
}

fn err_link(expr: &str, link: LinkType) -> FilterError {
    match compile(expr, link) {
        Ok(_) => panic!("{expr:?} compiles"),
        Err(e) => e,
    }
}

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [192, 168, 1, 2];

fn tcp4(sport: u16, dport: u16) -> Vec<u8> {
    eth(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4(6, A, B, &tcp(sport, dport, 0x12, b"")),
    )
}

#[test]
fn empty_expression_matches_everything() {
    assert!(m("", &[]));
    assert!(m("   \t ", &tcp4(1, 2)));
}

#[test]
fn hosts_nets_and_directions() {
    let p = tcp4(1234, 80);
    assert!(m("host 10.0.0.1", &p));
    assert!(m("src host 10.0.0.1", &p));
    assert!(!m("dst host 10.0.0.1", &p));
    assert!(m("dst 192.168.1.2", &p));
    assert!(!m("src and dst host 10.0.0.1", &p));
    assert!(
        m("host 1.2.3.4 or 192.168.1.2", &p),
        "qualifier inheritance"
    );
    assert!(m("net 192.168.0.0/16", &p));
    assert!(!m("net 192.169.0.0/16", &p));
    assert!(m("net 10", &p), "partial net 10 = 10.0.0.0/8");
    assert!(m("net 192.168", &p));
    assert!(m("src net 10.0.0.0 mask 255.0.0.0", &p));
    assert!(!m("src net 192.168.0.0 mask 255.255.0.0", &p));
    assert!(m("ip host 0x0a000001", &p));
    // ARP: `host` also looks at ARP sender/target addresses.
    let arp = eth(
        [0xff; 6],
        MAC_A,
        0x0806,
        &[
            0, 1, 8, 0, 6, 4, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0,
            192, 168, 1, 2,
        ],
    );
    assert!(m("host 192.168.1.2", &arp));
    assert!(m("arp dst host 192.168.1.2", &arp));
    assert!(!m("ip host 192.168.1.2", &arp));
}

#[test]
fn ipv6_addresses_and_prefixes() {
    let p = eth(
        MAC_A,
        MAC_B,
        0x86dd,
        &ipv6(17, v6("2001:db8::1"), v6("fe80::1"), &udp(1, 53, b"")),
    );
    assert!(m("host 2001:db8::1", &p));
    assert!(m("ip6 dst fe80::1", &p));
    assert!(m("net fe80::/10", &p));
    assert!(!m("src net fe80::/10", &p));
    assert!(m("ip6 src net 2000::/3", &p));
    assert!(!m("host 10.0.0.1", &p));
}

#[test]
fn ports_ranges_names_and_fragments() {
    let p = tcp4(1234, 80);
    assert!(m("port 80", &p));
    assert!(m("tcp dst port 80", &p));
    assert!(!m("udp port 80", &p));
    assert!(m("port http", &p));
    assert!(m("portrange 70-90", &p));
    assert!(m("tcp portrange 1000-2000", &p));
    assert!(!m("src portrange 70-90", &p));
    assert!(m("port 1 and not 2 or 80", &p) || !m("port 1", &p));
    assert!(m("tcp port 80 and not 22", &p));
    assert!(!m("tcp port 22 or 23", &p));
    // A non-first fragment has no transport header: no port match (libpcap's rule).
    let frag = eth(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_full(6, A, B, &[], 0x00b9, &tcp(1234, 80, 0, b"")),
    );
    assert!(!m("port 80", &frag));
    assert!(m("tcp", &frag));
    // IPv4 options: the transport header is found through the IHL.
    let opts = eth(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_full(6, A, B, &[1, 1, 1, 0], 0, &tcp(1234, 80, 0, b"")),
    );
    assert!(m("dst port 80", &opts));
    // IPv6: ports at a fixed 40 bytes (libpcap does not walk extension headers for ports).
    let u6 = eth(
        MAC_A,
        MAC_B,
        0x86dd,
        &ipv6(17, v6("::1"), v6("::2"), &udp(5353, 53, b"")),
    );
    assert!(m("udp port domain", &u6));
    let f6 = eth(
        MAC_A,
        MAC_B,
        0x86dd,
        &ipv6(
            44,
            v6("::1"),
            v6("::2"),
            &ipv6_frag(17, &udp(5353, 53, b"")),
        ),
    );
    assert!(!m("udp port 53", &f6));
    assert!(
        m("ip6 proto 17", &f6),
        "ip6 proto looks behind one fragment header"
    );
    assert!(m("ip6 protochain 17", &f6));
}

#[test]
fn protocol_names_numbers_and_escapes() {
    let gre = eth(MAC_A, MAC_B, 0x0800, &ipv4(47, A, B, &[0; 8]));
    assert!(m("ip proto gre", &gre));
    assert!(m("ip proto 47", &gre));
    assert!(m("proto 47", &gre));
    assert!(!m("tcp", &gre));
    let u = eth(MAC_A, MAC_B, 0x0800, &ipv4(17, A, B, &udp(1, 2, b"")));
    assert!(m("proto \\udp", &u));
    assert!(m("ether proto \\ip", &u));
    assert!(m("udp", &u));
    assert!(!m("icmp", &u));
    let ping = eth(MAC_A, MAC_B, 0x0800, &ipv4(1, A, B, &icmp(8, 0)));
    assert!(m("icmp[icmptype] == icmp-echo", &ping));
    assert!(!m("icmp[icmptype] == icmp-echoreply", &ping));
    assert_eq!(err("ip proto nosuchproto").kind, ErrorKind::Syntax);
}

#[test]
fn relations_arithmetic_and_named_offsets() {
    let p = tcp4(1234, 80);
    assert!(m("tcp[tcpflags] & tcp-syn != 0", &p));
    assert!(m(
        "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
        &p
    ));
    assert!(!m("tcp[tcpflags] & tcp-rst != 0", &p));
    assert!(m("ip[0] & 0xf = 5", &p));
    assert!(
        m("ip[2:2] - ((ip[0] & 0xf) << 2) = 20", &p),
        "IP total length minus header = TCP header"
    );
    assert!(m("tcp[2:2] = 80", &p));
    assert!(m("ether[12:2] = 0x800", &p));
    assert!(m("-1 = 0xffffffff", &p));
    assert!(m("len = 54", &p));
    assert!(m("len - 14 = 40", &p));
    assert!(
        m("ether[0] % 2 * 3 == ether[0] % 6", &p),
        "% takes everything to its right, as in libpcap"
    );
    // Division by zero: a compile error when the divisor is known, a reject at run time.
    let e = err("ether[0] / 0 = 1");
    assert_eq!((e.column, e.kind), (10, ErrorKind::Syntax));
    assert!(e.message.contains("division by zero"));
    assert!(!m("ether[0] / (ether[0] - ether[0]) = 0 or 1 = 1", &p) || m("1 = 1", &p));
    assert!(
        !m("ether[0] / (ether[1] - 0x11) = 0", &p),
        "run-time division by zero rejects"
    );
}

#[test]
fn wire_length_not_captured_length() {
    let full = tcp4(1, 2);
    let mut p = pkt(&full[..40], LinkType::Ethernet);
    p.wire_len = 1500;
    let f = |e: &str| {
        compile(e, LinkType::Ethernet)
            .map(|f| f.matches(&p))
            .unwrap_or(false)
    };
    assert!(f("greater 1000"));
    assert!(!f("less 100"));
    assert!(f("len = 1500"));
}

#[test]
fn out_of_bounds_load_rejects_the_whole_packet() {
    let full = tcp4(1234, 80);
    let short = &full[..40]; // Ethernet + IPv4 + 6 bytes of TCP
    assert!(m("tcp", short));
    assert!(m("src port 1234", short));
    // The load is out of bounds: the packet is rejected, even under `not` or when the other
    // side of an `or` would need a new load (tcpdump agrees: 0 packets) ...
    assert!(!m("not tcp[20] = 0", short));
    assert!(!m("tcp[20] = 0 or udp", short));
    assert!(!m("tcp[20] = 0 or tcp[2:2] = 80", short));
    // ... unless libpcap's optimizer decides without it from values already loaded
    // (tcpdump: 1 packet for each).
    assert!(m("tcp[20] = 0 or tcp", short));
    assert!(m("tcp[20] = 0 or ip", short));
    // A packet that does not reach the load is not affected.
    let u = eth(MAC_A, MAC_B, 0x0800, &ipv4(17, A, B, &udp(1, 2, b"")));
    assert!(m("tcp[20] = 0 or udp", &u));
}

#[test]
fn ethernet_addresses_broadcast_multicast() {
    let p = tcp4(1, 2);
    assert!(m("ether src 66:77:88:99:aa:bb", &p));
    assert!(m("ether dst 00:11:22:33:44:55", &p));
    assert!(m("ether host 00-11-22-33-44-55", &p));
    assert!(m("ether host 0011.2233.4455", &p));
    assert!(!m("broadcast", &p));
    assert!(!m("multicast", &p));
    let b = eth([0xff; 6], MAC_A, 0x0806, &[0; 28]);
    assert!(m("broadcast", &b));
    assert!(m("ether broadcast", &b));
    assert!(m("multicast", &b));
    let mc = eth(
        [1, 0, 0x5e, 0, 0, 1],
        MAC_A,
        0x0800,
        &ipv4(17, A, [224, 0, 0, 1], &udp(1, 2, b"")),
    );
    assert!(m("ip multicast", &mc));
    assert!(m("ether multicast", &mc));
    // Not on raw IP: kind LinkType, the message names the construct and the link type.
    let e = err_link("ether host 00:11:22:33:44:55", LinkType::Raw);
    assert_eq!((e.kind, e.column), (ErrorKind::LinkType, 1));
    assert!(
        e.message.contains("ether host") && e.message.contains("RAW"),
        "{e}"
    );
    assert_eq!(
        err_link("broadcast", LinkType::LinuxSll).kind,
        ErrorKind::LinkType
    );
}

#[test]
fn vlan_shifts_everything_after_it() {
    let tagged = eth(
        MAC_A,
        MAC_B,
        0x8100,
        &vlan(100, 0x0800, &ipv4(6, A, B, &tcp(1, 80, 2, b""))),
    );
    assert!(m("vlan", &tagged));
    assert!(m("vlan 100", &tagged));
    assert!(!m("vlan 101", &tagged));
    assert!(m("vlan 100 and tcp port 80", &tagged));
    assert!(m("vlan and host 10.0.0.1", &tagged));
    assert!(
        !m("ip", &tagged),
        "an untagged ip test does not see through the tag"
    );
    // libpcap semantics: the shift applies to what is parsed after `vlan`, even in an `or`.
    assert!(
        m("vlan 5 or ip", &tagged),
        "ip after vlan looks at offset 16 (the inner type)"
    );
    let untagged = tcp4(1, 80);
    assert!(!m("vlan or ip", &untagged));
    assert!(m("ip or vlan", &untagged));
    let qinq = eth(
        MAC_A,
        MAC_B,
        0x88a8,
        &vlan(
            200,
            0x8100,
            &vlan(300, 0x0800, &ipv4(17, B, A, &udp(1, 53, b""))),
        ),
    );
    assert!(m("vlan 200 and vlan 300 and udp port 53", &qinq));
    assert!(!m("vlan 300 and vlan 200", &qinq));
    assert_eq!(err("vlan 4096").kind, ErrorKind::Syntax);
    assert_eq!(
        err_link("vlan", LinkType::LinuxSll).kind,
        ErrorKind::LinkType
    );
}

#[test]
fn mpls_and_pppoes() {
    let one = eth(
        MAC_A,
        MAC_B,
        0x8847,
        &mpls(&[100], &ipv4(6, A, B, &tcp(1, 80, 2, b""))),
    );
    assert!(m("mpls", &one));
    assert!(m("mpls 100 and tcp port 80", &one));
    assert!(m("mpls and host 192.168.1.2", &one));
    assert!(!m("mpls 101", &one));
    let two = eth(
        MAC_A,
        MAC_B,
        0x8847,
        &mpls(&[12345, 6789], &ipv4(17, B, A, &udp(1, 2, b""))),
    );
    assert!(m("mpls 12345 and mpls 6789 and udp", &two));
    assert!(
        !m("mpls and ip", &two),
        "ip right after the first label: not bottom of stack"
    );
    assert!(m("mpls and mpls and ip", &two));
    assert_eq!(err("mpls 1048576").kind, ErrorKind::Syntax);
    let s = eth(
        MAC_A,
        MAC_B,
        0x8864,
        &pppoe(0x3b, 0x0021, &ipv4(6, A, B, &tcp(1, 80, 2, b""))),
    );
    assert!(m("pppoes", &s));
    assert!(m("pppoes 0x3b and tcp port 80", &s));
    assert!(!m("pppoes 0x3c", &s));
    assert!(m("pppoes and ip host 10.0.0.1", &s));
    assert!(compile("pppoes and vlan", LinkType::Ethernet).is_err());
}

#[test]
fn geneve_inner_frames() {
    let inner = eth(
        MAC_B,
        MAC_A,
        0x0800,
        &ipv4(6, B, A, &tcp(22, 5555, 0x10, b"")),
    );
    let g = eth(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4(17, A, B, &udp(40000, 6081, &geneve(10, 0x6558, &inner))),
    );
    assert!(m("geneve", &g));
    assert!(m("geneve 10", &g));
    assert!(!m("geneve 11", &g));
    assert!(m("geneve and tcp src port 22", &g));
    assert!(m("geneve and ether src 00:11:22:33:44:55", &g));
    assert!(!m("geneve and udp", &g));
    assert_eq!(err("geneve 16777216").kind, ErrorKind::Syntax);
}

#[test]
fn other_link_types() {
    let ip = ipv4(6, A, B, &tcp(1, 80, 2, b""));
    assert!(m_link("ip and tcp port 80", &ip, LinkType::Raw));
    assert!(m_link("host 10.0.0.1", &ip, LinkType::Ipv4));
    assert!(m_link("ip", &ip, LinkType::Ipv4));
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    assert!(m_link("tcp port 80", &null, LinkType::Null));
    let mut lo = 2u32.to_be_bytes().to_vec();
    lo.extend_from_slice(&ip);
    assert!(m_link("host 192.168.1.2", &lo, LinkType::Loop));
    let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
    ppp.extend_from_slice(&ip);
    assert!(m_link("ip and dst port 80", &ppp, LinkType::Ppp));
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6];
    sll2.extend_from_slice(&[0; 8]);
    sll2.extend_from_slice(&ip);
    assert!(m_link("tcp dst port 80", &sll2, LinkType::LinuxSll2));
    let w = wlan_data(0x0800, &ip);
    assert!(m_link(
        "ip and tcp port 80",
        &w,
        LinkType::Ieee80211Radiotap
    ));
    assert!(m_link(
        "ether src 00:11:22:33:44:55",
        &w,
        LinkType::Ieee80211Radiotap
    ));
    assert!(m_link(
        "ether dst ff:ff:ff:ff:ff:ff and broadcast",
        &w,
        LinkType::Ieee80211Radiotap
    ));
    // arp can never match on raw IP: libpcap refuses the program.
    assert_eq!(err_link("arp", LinkType::Raw).kind, ErrorKind::LinkType);
    // Unknown link types: every non-empty expression is refused.
    let e = err_link("ip", LinkType::Other(147));
    assert_eq!(e.kind, ErrorKind::LinkType);
    assert!(e
        .message
        .contains("link type 147 is not supported by the filter compiler"));
    assert!(compile("", LinkType::Other(147)).is_ok());
}

#[test]
fn errors_name_the_construct_at_its_column() {
    let cases: &[(&str, usize, ErrorKind, &str)] = &[
        (
            "port 80 and decnet host 1.2",
            13,
            ErrorKind::Unsupported,
            "decnet",
        ),
        ("tcp and gateway foo", 9, ErrorKind::Unsupported, "gateway"),
        ("inbound", 1, ErrorKind::Unsupported, "inbound"),
        ("ip and outbound", 8, ErrorKind::Unsupported, "outbound"),
        ("ifindex 3", 1, ErrorKind::Unsupported, "ifindex"),
        ("wlan type mgt", 1, ErrorKind::Unsupported, "wlan"),
        ("llc", 1, ErrorKind::Unsupported, "llc"),
        (
            "host 1.2.3.4 and foo.example",
            18,
            ErrorKind::Unsupported,
            "foo.example",
        ),
        ("ether host somebox", 1, ErrorKind::Unsupported, "somebox"),
        ("ip broadcast", 1, ErrorKind::Unsupported, "ip broadcast"),
        (
            "tcp port nosuchservice",
            1,
            ErrorKind::Unsupported,
            "nosuchservice",
        ),
        ("vxlan", 1, ErrorKind::Syntax, "vxlan"),
        ("tcp port 80 and", 16, ErrorKind::Syntax, "end"),
        ("tcp and 80", 9, ErrorKind::Syntax, "qualifier"),
        ("host 1.2.3.4 #", 14, ErrorKind::Syntax, "#"),
        ("port 99999", 1, ErrorKind::Syntax, "99999"),
        ("ip6 host 10.0.0.1", 1, ErrorKind::Syntax, "ip6"),
        ("tcp host 10.0.0.1", 1, ErrorKind::Syntax, "tcp"),
        ("src proto 1", 5, ErrorKind::Syntax, "proto"),
        ("ether[0:3] = 1", 9, ErrorKind::Syntax, "size"),
        ("ether[0] << 32 = 1", 10, ErrorKind::Syntax, "shift"),
        ("net 10.0.0.1/8", 1, ErrorKind::Syntax, "non-network bits"),
        ("(ip", 4, ErrorKind::Syntax, "end"),
    ];
    for &(expr, col, kind, word) in cases {
        let e = err(expr);
        assert_eq!((e.column, e.kind), (col, kind), "{expr:?}: {e}");
        assert!(
            e.message.contains(word),
            "{expr:?}: {e} should name {word:?}"
        );
        assert!(e.to_string().starts_with(&format!("column {col}: ")));
    }
}

fn leaves<'a>(n: &'a Node, out: &mut Vec<&'a Pred>) {
    match n {
        Node::And(v) | Node::Or(v) => v.iter().for_each(|c| leaves(c, out)),
        Node::Not(c) => leaves(c, out),
        Node::Pred(p) => out.push(p),
        _ => {}
    }
}

#[test]
fn ir_is_a_small_tree_of_typed_leaves() {
    let f = compile("tcp dst port 80", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
    let mut l = Vec::new();
    leaves(&f.ir().root, &mut l);
    assert!(l
        .iter()
        .any(|p| matches!(p, Pred::LinkProto { proto: 0x0800, .. })));
    assert!(l
        .iter()
        .any(|p| matches!(p, Pred::LinkProto { proto: 0x86dd, .. })));
    assert!(l
        .iter()
        .any(|p| matches!(p, Pred::Ipv4Proto { proto: 6, .. })));
    assert!(l.iter().any(|p| matches!(
        p,
        Pred::Port {
            side: Side::Dst,
            lo: 80,
            hi: 80,
            v6: false,
            ..
        }
    )));
    assert!(l.iter().all(|p| !matches!(
        p,
        Pred::Port {
            side: Side::Src,
            ..
        }
    )));
    assert!(f.ir().root.size() < 16, "{:?}", f.ir().root);
    // Encapsulation context travels with each leaf.
    let f =
        compile("vlan 100 and host 10.0.0.1", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
    let mut l = Vec::new();
    leaves(&f.ir().root, &mut l);
    assert!(l
        .iter()
        .any(|p| matches!(p, Pred::VlanId { id: 100, encap, .. } if encap.vlan_depth == 0)));
    assert!(l.iter().any(|p| matches!(p, Pred::Ipv4Addr { encap, addr: 0x0a00_0001, .. } if encap.vlan_depth == 1 && encap.linkpl.k == 18)));
    // Constants fold: `1 = 1 or X` is true.
    let f = compile("1 = 1 or tcp", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.ir().root, Node::True);
}

#[test]
fn long_and_deep_expressions_do_not_overflow_the_stack() {
    // Runs on a test thread (2 MiB stack by default).
    let chain = vec!["port 80"; 120].join(" and ip or ");
    let f = compile(&chain, LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
    assert!(f.matches(&pkt(&tcp4(1, 80), LinkType::Ethernet)));
    let hosts: Vec<String> = (0..1000)
        .map(|i| format!("host 10.0.{}.{}", i / 250, i % 250))
        .collect();
    let f = compile(&hosts.join(" or "), LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        f.matches(&pkt(&tcp4(1, 80), LinkType::Ethernet)),
        "10.0.0.1 is in the list"
    );
    let chain = vec!["port 80"; 800].join(" and ip or ");
    assert!(err(&chain).message.contains("too complex"));
    let deep = format!("{}ip{}", "not (".repeat(90), ")".repeat(90));
    assert!(compile(&deep, LinkType::Ethernet).is_ok());
    let too_deep = format!("{}ip{}", "(".repeat(300), ")".repeat(300));
    assert_eq!(err(&too_deep).kind, ErrorKind::Syntax);
    let too_long = vec!["ip"; 3000].join(" and ");
    assert!(err(&too_long).message.contains("too long"));
}
