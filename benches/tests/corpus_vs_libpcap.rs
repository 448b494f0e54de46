//! Every expression of the filter corpus (`tests/data/filters/corpus.txt`, valid section) that
//! both libpcap and CoMo-rs compile for Ethernet decides every synthetic packet as libpcap's BPF
//! does.
//!
//! The bundled traces test the corpus against tcpdump's counts; this adds 30 000 packets of the
//! synthetic mix (IPv4/IPv6, TCP/UDP/ICMP/ICMPv6, 802.1Q and QinQ stacks, IPv4 fragments, all
//! cut at snaplen 96) and compares packet by packet, not only counts.

use como_benches::synth::{PacketBatch, SynthConfig};
use como_packet::{LinkType, Packet};

#[test]
fn corpus_expressions_agree_with_libpcap_on_synthetic_traffic() {
    let corpus = include_str!("../../tests/data/filters/corpus.txt");
    let mut valid = Vec::new();
    let mut in_valid = false;
    for line in corpus.lines() {
        if let Some(section) = line.strip_prefix("#@section ") {
            in_valid = section.trim() == "valid";
            continue;
        }
        if in_valid && !line.trim().is_empty() && !line.starts_with('#') {
            valid.push(line);
        }
    }
    assert!(
        valid.len() > 300,
        "corpus has {} valid expressions",
        valid.len()
    );

    let batch = PacketBatch::generate(SynthConfig {
        packets: 30_000,
        seed: 7,
        ..SynthConfig::default()
    });
    // The pcap crate's filter call passes len = caplen; use the same length on our side.
    let pkts: Vec<Packet<'_>> = batch
        .iter()
        .map(|p| Packet {
            wire_len: p.data.len() as u32,
            ..p
        })
        .collect();
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("pcap_open_dead");
    let (mut compared, mut matching_some) = (0, 0);
    let mut failures = Vec::new();
    for expr in valid {
        let Ok(bpf) = dead.compile(expr, true) else {
            continue; // not for Ethernet, or proved empty: the tcpdump tests cover these
        };
        let Ok(ours) = ebpf_filters::compile(expr, LinkType::Ethernet) else {
            continue; // outside CoMo-rs's set: unsupported.tsv and its tests cover these
        };
        compared += 1;
        let mut matched = 0usize;
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
        if matched > 0 && matched < pkts.len() {
            matching_some += 1;
        }
    }
    eprintln!("{compared} expressions compared, {matching_some} match some but not all packets");
    assert!(
        compared > 150,
        "only {compared} expressions compiled on both sides"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
