//! The filters the benchmark times, and more, decide every synthetic packet exactly as
//! libpcap's compiled BPF does (`pcap_compile` + `pcap_offline_filter` through the `pcap` crate).
//!
//! This is the correctness half of `benches/benches/filter_eval.rs`: a speed-up means nothing
//! if the answers differ. The packets are those of the benchmark (synthetic trace, seed 1,
//! snaplen 96): IPv4/IPv6, TCP/UDP/ICMP/ICMPv6, 802.1Q and QinQ, IPv4 fragments, and 1 % of
//! ARP, MPLS, PPPoE, GRE, SCTP, IGMP (IPv4 options) and IPv6 extension headers.

use como_benches::synth::{PacketBatch, SynthConfig};
use como_packet::{LinkType, Packet};

/// Checked after the benchmark's ([`como_benches::BENCH_FILTERS`]): more of what an operator
/// types.
const MORE_FILTERS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip6",
    "vlan",
    "vlan 100",
    "vlan and ip6",
    "vlan 1003 and vlan 200",
    "ip[6:2] & 0x1fff != 0",
    "udp and ip[6:2] & 0x1fff = 0 and udp[2:2] > 4999",
    "portrange 5000-6000",
    "src net 192.168.0.0/16 and tcp dst port 443",
    "dst host 10.0.0.53",
    "ip6 net 2001:db8::/32",
    "ip6 multicast",
    "ether multicast",
    "greater 90",
    "less 60",
    "tcp[13] = 2",
    "icmp[icmptype] = icmp-echo",
    "icmp6[icmp6type] = 135",
    "udp port 443 and not net 10.0.0.0/8",
    // The 1 % of other protocols and encapsulations.
    "arp",
    "arp and ether broadcast",
    "mpls",
    "mpls and tcp port 443",
    "vlan and mpls",
    "pppoes",
    "pppoes and udp port 443",
    "proto gre",
    "ip proto 47 and ip[20:2] = 0",
    "sctp",
    "sctp port 3868",
    "igmp",
    "ip multicast",
    "ip[0] & 0xf > 5",
    "ip6 protochain 17",
    "ip6 protochain 44",
    "ip6 and udp port 53",
];

#[test]
fn every_packet_gets_the_same_verdict_as_libpcap() {
    let batch = PacketBatch::generate(SynthConfig {
        packets: 50_000,
        ..SynthConfig::default()
    });
    // pcap_offline_filter through the pcap crate sees len = caplen: give our side the same
    // length so that `len`, `greater` and `less` compare the same number.
    let pkts: Vec<Packet<'_>> = batch
        .iter()
        .map(|p| Packet {
            wire_len: p.data.len() as u32,
            ..p
        })
        .collect();
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("pcap_open_dead");
    let mut failures = Vec::new();
    for &expr in como_benches::BENCH_FILTERS.iter().chain(MORE_FILTERS) {
        let ours = match ebpf_filters::compile(expr, LinkType::Ethernet) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{expr:?}: CoMo-rs rejects it: {e}"));
                continue;
            }
        };
        let bpf = dead.compile(expr, true).expect("libpcap compiles it");
        let mut matched = 0;
        for (i, p) in pkts.iter().enumerate() {
            let (a, b) = (ours.matches(p), bpf.filter(p.data));
            if a != b {
                let hex: String = p.data.iter().map(|b| format!("{b:02x}")).collect();
                failures.push(format!(
                    "{expr:?}: packet {i}: CoMo-rs {a}, libpcap {b}; bytes {hex}"
                ));
                break;
            }
            matched += usize::from(a);
        }
        // Every filter (but the rare QinQ pair) matches something and not everything.
        if !expr.starts_with("vlan 1003") {
            assert!(
                matched > 0 && matched < pkts.len(),
                "{expr:?} matches {matched} of {} packets: the synthetic mix should exercise it",
                pkts.len()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Expressions that libpcap 1.10's optimiser proves match nothing: `pcap_compile` fails with
/// "expression rejects all packets" and tcpdump exits with an error. libpcap's `tcp[]`, `udp[]`
/// and `icmp[]` read IPv4 only, hence the first one, which the benchmark brief listed as
/// `ip6 and tcp[tcpflags] & tcp-syn != 0` (the benchmark times an IPv6 SYN filter written with
/// `ip6[]` instead). CoMo-rs must reject them too or, at the least, match no packet.
#[test]
fn what_libpcap_proves_empty_matches_nothing() {
    let batch = PacketBatch::generate(SynthConfig {
        packets: 20_000,
        ..SynthConfig::default()
    });
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("pcap_open_dead");
    for expr in [
        "ip6 and tcp[tcpflags] & tcp-syn != 0",
        "ip6 and tcp[13] = 2",
        "ip and ip6",
        "tcp and udp",
    ] {
        let err = dead.compile(expr, true).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("rejects all packets")),
            "{expr:?}: libpcap said {err:?}"
        );
        if let Ok(f) = ebpf_filters::compile(expr, LinkType::Ethernet) {
            let n = batch.iter().filter(|p| f.matches(p)).count();
            assert_eq!(n, 0, "{expr:?} compiles and matches {n} packets");
        }
    }
}
