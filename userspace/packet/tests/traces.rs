//! Parses every packet of every bundled third-party trace and checks facts known about them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use como_packet::{L3Proto, Layers, LinkType, Parsed, Truncation};
use como_tracefile::TraceReader;

const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

/// What the parser found in one file.
#[derive(Debug, Default, Clone)]
struct Stats {
    packets: u64,
    links: Vec<LinkType>,
    truncated_caplen: u64,
    frag: u64,
    max_vlan: u16,
    max_mpls: u16,
    pppoe: u64,
    ipv4: u64,
    ipv6: u64,
    l4: BTreeMap<u8, u64>,
    ports: u64,
    cut: u64,
    malformed: u64,
    error: Option<String>,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if !matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("md" | "tsv" | "txt")
        ) {
            out.push(p);
        }
    }
}

fn scan(path: &Path) -> Stats {
    let mut s = Stats::default();
    let mut r = match TraceReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    while let Some(res) = r.next_packet() {
        let pkt = match res {
            Ok(p) => p,
            Err(e) => {
                s.error = Some(e.to_string());
                break;
            }
        };
        let p = Parsed::new(pkt);
        let _ = p.summary().to_string();
        s.packets += 1;
        if !s.links.contains(&pkt.link) {
            s.links.push(pkt.link);
        }
        if pkt.is_truncated() {
            s.truncated_caplen += 1;
        }
        let l: &Layers = &p;
        if l.is_fragment() {
            s.frag += 1;
        }
        s.max_vlan = s.max_vlan.max(l.vlan_depth);
        s.max_mpls = s.max_mpls.max(l.mpls_depth);
        s.pppoe += u64::from(l.pppoe_session.is_some());
        match l.l3_proto {
            Some(L3Proto::Ipv4) => s.ipv4 += 1,
            Some(L3Proto::Ipv6) => s.ipv6 += 1,
            _ => {}
        }
        if let (Some(proto), Some(_)) = (l.l4_proto, l.l4) {
            *s.l4.entry(proto).or_default() += 1;
        }
        s.ports += u64::from(p.src_port().is_some());
        s.cut += u64::from(l.truncated.is_some());
        s.malformed += u64::from(l.malformed.is_some());
        for off in [l.l2, l.link_end, l.l3, l.l4, l.payload]
            .into_iter()
            .flatten()
        {
            assert!(
                usize::from(off) <= pkt.data.len(),
                "{}: offset past data: {l:?}",
                path.display()
            );
        }
    }
    s
}

fn all() -> BTreeMap<String, Stats> {
    let mut list = Vec::new();
    files(Path::new(TRACES), &mut list);
    list.sort();
    list.iter()
        .map(|p| {
            let rel = p
                .strip_prefix(TRACES)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned();
            (rel, scan(p))
        })
        .collect()
}

/// An IP address and, when printed, a port.
type Endpoint = (IpAddr, Option<u16>);

/// An address with an optional port as tcpdump -n prints it (`10.0.0.1.80`, `2001:db8::1.53`).
fn addr_port(tok: &str) -> Option<Endpoint> {
    if let Ok(a) = tok.parse::<IpAddr>() {
        return Some((a, None));
    }
    let (a, p) = tok.rsplit_once('.')?;
    Some((a.parse().ok()?, Some(p.parse().ok()?)))
}

/// The first `src > dst:` pair of IP addresses in a line of tcpdump -n (or of our summary).
fn first_ip_pair(line: &str) -> Option<(Endpoint, Endpoint)> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    toks.windows(3).find_map(|w| {
        if w[1] != ">" {
            return None;
        }
        Some((addr_port(w[0])?, addr_port(w[2].strip_suffix(':')?)?))
    })
}

/// tcpdump's one-line output per packet (nanosecond epoch time first), continuation lines
/// joined; None when tcpdump cannot read the file.
fn tcpdump_lines(path: &Path) -> Option<Vec<String>> {
    let out = Command::new("tcpdump")
        .args(["-n", "-tt", "--time-stamp-precision=nano", "-r"])
        .arg(path)
        .output()
        .expect("tcpdump (the oracle) must be installed: the README setup command installs it");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let starts_packet = line.split_once(' ').is_some_and(|(t, _)| {
            t.len() > 10 && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        });
        match lines.last_mut() {
            Some(last) if !starts_packet => {
                last.push(' ');
                last.push_str(line);
            }
            _ => lines.push(line.to_owned()),
        }
    }
    (out.status.success() || !lines.is_empty()).then_some(lines)
}

/// Files whose record timestamps have an out-of-range sub-second field (tcpdump prints it
/// unnormalised), or whose record libpcap refuses (caplen above 262144).
const BAD_TIME_FILES: [&str; 3] = [
    "tcpdump/timestamp_invalid_nano.pcap",
    "tcpdump/atm-oam-loopback-print-overrun.pcap",
    "nDPI/fuzz-2021-10-13.pcap",
];

/// What tcpdump prints instead of addresses when it rejects an IP header.
const TCPDUMP_BAD_IP: [&str; 5] = [
    "bad-len",
    "version error",
    "(invalid)",
    "truncated-ip",
    "[|ip",
];

/// Ports printed on their own (`12345 > 54321:`) after IPv6 extension headers.
fn later_ports(line: &str) -> Option<(u16, u16)> {
    let toks: Vec<&str> = line.split_whitespace().collect();
    toks.windows(3).find_map(|w| {
        if w[1] != ">" {
            return None;
        }
        Some((w[0].parse().ok()?, w[2].strip_suffix(':')?.parse().ok()?))
    })
}

/// Whether we decode this link type (the others are kept but not parsed).
fn decoded(link: LinkType) -> bool {
    !matches!(link, LinkType::Other(_))
}

/// Per packet, our addresses and ports against tcpdump's on every trace tcpdump reads with the
/// same number of packets; timestamps against tcpdump's too (a check of the trace reader and of
/// the summary's time format).
#[test]
fn addresses_and_ports_agree_with_tcpdump() {
    let mut list = Vec::new();
    files(Path::new(TRACES), &mut list);
    list.sort();
    let mut compared = 0u64;
    let mut with_ports = 0u64;
    let mut tcp_flags = 0u64;
    let mut problems: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    for path in &list {
        let rel = path
            .strip_prefix(TRACES)
            .unwrap_or(path)
            .display()
            .to_string();
        let Ok(mut r) = TraceReader::open(path) else {
            continue;
        };
        let Some(theirs) = tcpdump_lines(path) else {
            skipped.push(rel);
            continue;
        };
        let mut ours = Vec::new();
        while let Some(Ok(pkt)) = r.next_packet() {
            let p = Parsed::new(pkt);
            ours.push((p.summary().to_string(), p.layers, pkt.link));
        }
        if ours.len() != theirs.len() {
            skipped.push(format!(
                "{rel} ({} vs tcpdump {})",
                ours.len(),
                theirs.len()
            ));
            continue;
        }
        for (i, ((summary, l, link), line)) in ours.iter().zip(&theirs).enumerate() {
            let what = format!("{rel} #{}: ours `{summary}` tcpdump `{line}`", i + 1);
            let (ts_ours, ts_theirs) = (summary.split(' ').next(), line.split(' ').next());
            if ts_ours != ts_theirs {
                if !BAD_TIME_FILES.iter().any(|f| rel == *f) {
                    problems.push(format!("time: {what}"));
                }
                continue;
            }
            let (mine, tcpd) = (first_ip_pair(summary), first_ip_pair(line));
            match (mine, tcpd) {
                (Some(m), Some(mut t)) => {
                    compared += 1;
                    let ports_ours = m.0 .1.is_some();
                    if ports_ours {
                        with_ports += 1;
                    }
                    if t.0 .1.is_none() {
                        // After IPv6 extension headers tcpdump prints the ports on their own.
                        if let Some((sp, dp)) = later_ports(line) {
                            (t.0 .1, t.1 .1) = (Some(sp), Some(dp));
                        }
                    }
                    let same = if !ports_ours && !matches!(l.l4_proto, Some(6 | 17 | 132)) {
                        // tcpdump prints ports for more protocols (DCCP ...) than we parse.
                        m.0 .0 == t.0 .0 && m.1 .0 == t.1 .0
                    } else {
                        m == t
                    };
                    // LINKTYPE_IPV4/IPV6 holding the other version: we follow the link type
                    // (as libpcap's filter compiler does); tcpdump's printer follows the bytes.
                    let link_vs_bytes = matches!(link, LinkType::Ipv4 | LinkType::Ipv6)
                        && l.malformed == Some(Truncation::Network);
                    if !same && !link_vs_bytes {
                        problems.push(format!("differ: {what}"));
                    }
                    // TCP flags as tcpdump renders them (`Flags [S.]`).
                    let flags_ours = summary
                        .split_once("TCP [")
                        .map(|(_, r)| r.split(']').next());
                    let flags_theirs = line.split_once("Flags [").map(|(_, r)| r.split(']').next());
                    if let (Some(a), Some(b)) = (flags_ours, flags_theirs) {
                        tcp_flags += 1;
                        if a != b {
                            problems.push(format!("tcp flags: {what}"));
                        }
                    }
                }
                (None, Some(_)) if decoded(*link) => {
                    // Encapsulations outside the supported set, which tcpdump decodes.
                    let unsupported = matches!(l.l3_proto, Some(L3Proto::Other(0x894f | 0x88e5)));
                    if !unsupported {
                        problems.push(format!("only tcpdump: {what}"));
                    }
                }
                (Some(_), None) => {
                    // tcpdump prints no addresses when it judges the IP header bad; we show
                    // what the bytes hold, with the truncation or malformation marked.
                    let tcpdump_rejects = TCPDUMP_BAD_IP.iter().any(|m| line.contains(m));
                    if !tcpdump_rejects {
                        problems.push(format!("only ours: {what}"));
                    }
                }
                _ => {}
            }
        }
    }
    for p in &problems {
        println!("{p}");
    }
    println!("compared {compared} packets ({with_ports} with ports, {tcp_flags} TCP flags); skipped {skipped:?}");
    assert!(
        compared > 20_000 && with_ports > 15_000 && tcp_flags > 10_000,
        "too few packets compared: {compared}/{with_ports}/{tcp_flags}"
    );
    assert!(
        problems.is_empty(),
        "{} packets disagree with tcpdump (listed above)",
        problems.len()
    );
}

/// Every packet of every file parses (no panic; offsets within the captured bytes, checked in
/// `scan`) and the readable files are all visited.
#[test]
fn every_packet_of_every_trace_parses() {
    let all = all();
    let packets: u64 = all.values().map(|s| s.packets).sum();
    let files = all.values().filter(|s| s.packets > 0).count();
    assert!(files > 250, "only {files} trace files gave packets");
    assert!(packets > 40_000, "only {packets} packets");
    // Each link type we decode is exercised by some trace, and finds network layers there.
    for link in [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::Ppp,
        LinkType::Raw,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Ieee80211Radiotap,
    ] {
        let ip: u64 = all
            .values()
            .filter(|s| s.links.contains(&link))
            .map(|s| s.ipv4 + s.ipv6)
            .sum();
        assert!(ip > 0, "no IP packet found behind {link:?} in any trace");
    }
}

fn facts(file: &str) -> Stats {
    scan(&Path::new(TRACES).join(file))
}

/// Parsed facts of every packet of one file, through a closure.
fn each(file: &str, mut f: impl FnMut(usize, &Parsed<'_>)) -> usize {
    let mut r = TraceReader::open(Path::new(TRACES).join(file)).expect("bundled trace opens");
    let mut n = 0;
    while let Some(res) = r.next_packet() {
        let pkt = res.expect("bundled trace reads");
        f(n, &Parsed::new(pkt));
        n += 1;
    }
    n
}

#[test]
fn known_encapsulations_in_real_traces() {
    // zeek/vlan-qinqinq.pcap: three 802.1Q tags 30/20/10 around HTTP over IPv4.
    let n = each("zeek/vlan-qinqinq.pcap", |i, p| {
        assert_eq!(
            (p.vlan_depth, p.vlan_ids()),
            (3, &[30u16, 20, 10][..]),
            "packet {i}"
        );
        assert_eq!((p.l3, p.l4_proto), (Some(26), Some(6)), "packet {i}");
    });
    assert_eq!(n, 14);
    // The same packets converted to ERF.
    assert_eq!(facts("converted-erf/vlan-qinqinq.erf").max_vlan, 3);
    // libtrace/10_mpls_ip.pcap: one MPLS label (1000 or 2001) then IPv4 ICMP echo.
    let n = each("libtrace/10_mpls_ip.pcap", |i, p| {
        assert_eq!(p.mpls_depth, 1, "packet {i}");
        assert!(
            matches!(p.mpls_labels(), [1000] | [2001]),
            "packet {i}: {:?}",
            p.mpls_labels()
        );
        assert_eq!((p.l3, p.l4_proto), (Some(18), Some(1)), "packet {i}");
        assert!(matches!(p.icmp_type_code(), Some((0 | 8, 0))), "packet {i}");
    });
    assert_eq!(n, 10);
    // zeek/mpls-in-vlan.pcap: a VLAN tag, then two MPLS labels, then IPv4 TCP.
    let s = facts("zeek/mpls-in-vlan.pcap");
    assert_eq!((s.max_vlan, s.max_mpls, s.l4.get(&6)), (1, 2, Some(&3)));
    // tcpdump/mpls-traceroute.pcap (PPP): MPLS over PPP (0x0281), UDP traceroute inside.
    each("tcpdump/mpls-traceroute.pcap", |i, p| {
        if i == 0 {
            assert_eq!(p.link_proto, Some(0x0281));
            assert_eq!(p.mpls_labels(), &[100_704]);
            assert_eq!((p.src_port(), p.dst_port()), (Some(42315), Some(33435)));
        }
    });
    // libpcap's ipv6_ext_headers.pcap: 100+ extension headers (HBH, routing, atomic fragment
    // headers, destination options) before UDP 12345 > 54321.
    let n = each("libpcap/tests/filter/ipv6_ext_headers.pcap", |_, p| {
        assert_eq!(
            (p.l4_proto, p.src_port(), p.dst_port()),
            (Some(17), Some(12345), Some(54321))
        );
        assert!(
            p.l4.is_some_and(|o| o > 800),
            "L4 after the chain: {:?}",
            p.l4
        );
        assert!(
            !p.is_fragment(),
            "atomic fragment headers (offset 0, M=0) are not fragments"
        );
        assert_eq!(p.payload().len(), 10);
    });
    assert_eq!(n, 1);
    // AH in IPv6 before UDP.
    each("libpcap/tests/filter/ipv6_ah_modes.pcap", |i, p| {
        if i == 0 {
            assert_eq!((p.l4_proto, p.dst_port()), (Some(17), Some(54321)));
        }
    });
    // PPPoE sessions: LCP in libpcap's pppoes.pcap, IPv4 (protocol-compressed) in suricata's.
    let mut sessions = Vec::new();
    each("libpcap/tests/filter/pppoes.pcap", |_, p| {
        sessions.push(p.pppoe_session);
        assert_eq!(p.l3_proto, Some(L3Proto::Other(0xc021)));
    });
    assert_eq!(sessions, [Some(0x17), Some(0x3b)]);
    let n = each(
        "suricata-verify/bug-4810/pppoe-session-http.pcap",
        |i, p| {
            assert_eq!(p.pppoe_session, Some(0x2d), "packet {i}");
            assert_eq!(p.l4_proto, Some(6), "packet {i}");
            assert!(
                p.src_port() == Some(80) || p.dst_port() == Some(80),
                "packet {i}"
            );
        },
    );
    assert!(n >= 20);
    // Other link types.
    let s = facts("zeek/linux_dlt_sll2.pcap");
    assert_eq!(
        (
            s.links.as_slice(),
            s.ipv4,
            s.ipv6,
            s.l4.get(&1),
            s.l4.get(&58)
        ),
        (&[LinkType::LinuxSll2][..], 2, 2, Some(&2), Some(&2))
    );
    let s = facts("zeek/udp-multiple-source-ports.pcap");
    assert_eq!(
        (s.links.as_slice(), s.l4.get(&17), s.ports),
        (&[LinkType::Null][..], Some(&3), 3)
    );
    let s = facts("gopacket/pcap/test_loopback.pcap");
    assert_eq!(
        (s.ipv6, s.l4.get(&6)),
        (24, Some(&24)),
        "NULL with AF_INET6 (BSD value)"
    );
    let s = facts("nDPI/dlt_ppp.pcap");
    assert_eq!(
        (s.links.as_slice(), s.l4.get(&17)),
        (&[LinkType::Ppp][..], Some(&1))
    );
    let s = facts("zeek/radiotap.pcap");
    assert_eq!(
        (s.ipv4, s.ipv6, s.ports),
        (2, 1, 3),
        "802.11 data frames behind radiotap"
    );
    let mut chdlc = 0;
    each("libpcap/tests/filter/ISIS_p2p_adjacency.pcap", |_, p| {
        chdlc += u32::from(p.link_proto == Some(0xfefe));
    });
    assert_eq!(chdlc, 14, "C_HDLC frames carrying OSI (0xfefe)");
}

/// Fragment and snaplen-truncation counts against SOURCES.tsv (Wireshark's counts).
#[test]
fn fragments_and_truncation_match_sources_tsv() {
    let all = all();
    let tsv = std::fs::read_to_string(Path::new(TRACES).join("SOURCES.tsv")).expect("SOURCES.tsv");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (c_file, c_format, c_caplen, c_frag) = (
        col("file"),
        col("format"),
        col("caplen_lt_len_pkts"),
        col("frag_pkts"),
    );
    // Where Wireshark counts a fragment header we do not count as fragmentation of the packet.
    let frag_exceptions = [
        // Atomic fragment headers (offset 0, M=0): not fragments (RFC 6946).
        "libpcap/tests/filter/ipv6_ext_headers.pcap",
        // The fragment header is inside the packet quoted by an ICMPv6 error.
        "tcpdump/icmpv6-rfc7112.pcap",
        // The fragments are inside GRE (we do not parse GRE payloads).
        "suricata-verify/defrag/bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data/eth-ip-gre-ppp-max-ip-packet.pcap",
        // IPv6 payload length 0 with a fragment header: Wireshark gives up, the bytes say
        // offset 1280.
        "tcpdump/ipv6_frag6_negative_len.pcap",
    ];
    let (mut checked_frag, mut checked_caplen, mut bad) = (0, 0, Vec::new());
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(format)) = (f.get(c_file), f.get(c_format)) else {
            continue;
        };
        let Some(s) = all.get(*file) else { continue };
        if s.error.is_some() || s.links.iter().any(|l| !decoded(*l)) {
            continue;
        }
        if let Some(Ok(want)) = f.get(c_frag).map(|v| v.parse::<u64>()) {
            if !frag_exceptions.contains(file) {
                checked_frag += 1;
                if s.frag != want {
                    bad.push(format!("{file}: {} fragments, SOURCES.tsv {want}", s.frag));
                }
            }
        }
        // ERF's wlen counts the Ethernet FCS, which como-tracefile removes from the wire length.
        if !format.starts_with("ERF") {
            if let Some(Ok(want)) = f.get(c_caplen).map(|v| v.parse::<u64>()) {
                checked_caplen += 1;
                if s.truncated_caplen != want {
                    bad.push(format!(
                        "{file}: {} packets caplen < len, SOURCES.tsv {want}",
                        s.truncated_caplen
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        checked_frag > 200 && checked_caplen > 200,
        "{checked_frag} / {checked_caplen} files checked"
    );
    // Files that do have fragments, so the comparison above is not vacuous.
    assert_eq!(all["zeek/ipv4/fragmented-1.pcap"].frag, 3);
    assert_eq!(all["zeek/ipv6-fragmented-dns.pcap"].frag, 4);
    assert_eq!(all["nDPI/ip_fragmented_garbage.pcap"].frag, 1252);
}

/// Packets cut by the snaplen stop where their bytes end, and say so.
#[test]
fn snaplen_truncated_traces() {
    // zeek/tcp/truncated-header.pcap: snaplen 68 cuts some TCP headers (options) short.
    let (mut cut_tcp, mut whole) = (0, 0);
    each("zeek/tcp/truncated-header.pcap", |i, p| {
        assert!(p.packet.is_truncated(), "packet {i}");
        assert_eq!(p.l4_proto, Some(6));
        match p.truncated {
            Some(Truncation::Transport) => {
                cut_tcp += 1;
                assert_eq!(p.payload, None, "packet {i}");
                assert!(
                    p.src_port().is_some(),
                    "ports are in the captured bytes: packet {i}"
                );
            }
            None => whole += 1,
            other => panic!("packet {i}: {other:?}"),
        }
    });
    assert_eq!((cut_tcp, whole), (1, 23));
    // zeek/trunc/ipv4-internally-truncated-header.pcap: IHL says 60 bytes, 20 captured.
    each(
        "zeek/trunc/ipv4-internally-truncated-header.pcap",
        |_, p| {
            assert_eq!((p.truncated, p.l4), (Some(Truncation::Network), None));
            assert!(p.src_ip().is_some(), "the fixed header was captured");
            assert!(p.summary().to_string().contains("[|ip]"));
        },
    );
}

/// The VLAN ids, MPLS labels and PPPoE session that `tcpdump -e` prints before the first
/// `src > dst` pair after the link header.
fn tcpdump_encaps(line: &str) -> (Vec<u16>, Vec<u32>, Option<u16>) {
    let (mut vlans, mut labels, mut session) = (Vec::new(), Vec::new(), None);
    // Skip the link header (`... length N: `), stop at the first address pair.
    let Some((_, rest)) = line.split_once(": ") else {
        return (vlans, labels, session);
    };
    let outer = rest.split(" > ").next().unwrap_or("");
    let toks: Vec<&str> = outer.split_whitespace().collect();
    for w in toks.windows(2) {
        match w[0] {
            "vlan" => {
                if let Ok(id) = w[1].trim_end_matches(',').parse() {
                    vlans.push(id);
                }
            }
            "(label" => {
                if let Ok(l) = w[1].trim_end_matches(',').parse() {
                    labels.push(l);
                }
            }
            "[ses" => {
                session =
                    u16::from_str_radix(w[1].trim_start_matches("0x").trim_end_matches(']'), 16)
                        .ok();
            }
            _ => {}
        }
    }
    (vlans, labels, session)
}

/// Per packet, VLAN stacks, MPLS label stacks and PPPoE sessions against `tcpdump -e`.
#[test]
fn encapsulations_agree_with_tcpdump() {
    let mut list = Vec::new();
    files(Path::new(TRACES), &mut list);
    list.sort();
    let (mut vlan_pkts, mut mpls_pkts, mut pppoe_pkts) = (0u64, 0u64, 0u64);
    let mut problems = Vec::new();
    for path in &list {
        let rel = path
            .strip_prefix(TRACES)
            .unwrap_or(path)
            .display()
            .to_string();
        let Ok(mut r) = TraceReader::open(path) else {
            continue;
        };
        if !decoded(r.link_type()) {
            continue;
        }
        let out = Command::new("tcpdump")
            .args(["-e", "-n", "-r"])
            .arg(path)
            .output()
            .expect("tcpdump (the oracle) must be installed");
        let text = String::from_utf8_lossy(&out.stdout);
        // One line per packet: a line starting with a time of day.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.as_bytes().get(2) == Some(&b':'))
            .collect();
        let mut ours = Vec::new();
        while let Some(Ok(pkt)) = r.next_packet() {
            let l = pkt.layers();
            ours.push((
                l.vlan_ids().to_vec(),
                l.vlan_depth,
                l.mpls_labels().to_vec(),
                l.mpls_depth,
                l.pppoe_session,
            ));
        }
        if ours.len() != lines.len() {
            continue;
        }
        for (i, (o, line)) in ours.iter().zip(&lines).enumerate() {
            let (vlans, labels, session) = tcpdump_encaps(line);
            let (ids, depth, ours_labels, mdepth, ses) = o;
            vlan_pkts += u64::from(!vlans.is_empty());
            mpls_pkts += u64::from(!labels.is_empty());
            pppoe_pkts += u64::from(session.is_some());
            let same = usize::from(*depth) == vlans.len()
                && vlans.iter().take(como_packet::MAX_VLANS).eq(ids.iter())
                && usize::from(*mdepth) == labels.len()
                && labels
                    .iter()
                    .take(como_packet::MAX_MPLS)
                    .eq(ours_labels.iter())
                && *ses == session;
            if !same {
                problems.push(format!(
                    "{rel} #{}: ours {o:?}, tcpdump {:?} in `{line}`",
                    i + 1,
                    (vlans, labels, session)
                ));
            }
        }
    }
    for p in &problems {
        println!("{p}");
    }
    println!("tcpdump -e: {vlan_pkts} VLAN, {mpls_pkts} MPLS, {pppoe_pkts} PPPoE packets");
    assert!(
        vlan_pkts > 1000 && mpls_pkts > 10_000 && pppoe_pkts > 30,
        "too few: {vlan_pkts} {mpls_pkts} {pppoe_pkts}"
    );
    assert!(
        problems.is_empty(),
        "{} packets disagree with tcpdump -e",
        problems.len()
    );
}

/// The ERF files converted from pcaps parse to the same layers, packet by packet (tcpdump
/// cannot read ERF, so this is their oracle).
#[test]
fn erf_twins_parse_like_their_pcaps() {
    for (erf, pcap) in [
        (
            "converted-erf/ipv6-fragmented-dns.erf",
            "zeek/ipv6-fragmented-dns.pcap",
        ),
        (
            "converted-erf/truncated-header.erf",
            "zeek/tcp/truncated-header.pcap",
        ),
        ("converted-erf/vlan-qinqinq.erf", "zeek/vlan-qinqinq.pcap"),
    ] {
        let mut a = Vec::new();
        each(erf, |_, p| {
            a.push((p.layers, p.src_ip(), p.dst_ip(), p.src_port(), p.dst_port()))
        });
        let mut b = Vec::new();
        each(pcap, |_, p| {
            b.push((p.layers, p.src_ip(), p.dst_ip(), p.src_port(), p.dst_port()))
        });
        assert!(!a.is_empty(), "{erf}: no packets");
        assert_eq!(a, b, "{erf} vs {pcap}");
    }
}
