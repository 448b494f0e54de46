//! Per-packet differential test against tcpdump (the project's oracle, installed by the setup
//! script) on hand-built packets cut at EVERY captured length: this is where BPF's
//! "a load past the captured bytes rejects the whole packet" semantics shows.
//!
//! For each link type a pcap file is written with every packet of the zoo at every captured
//! length (timestamp seconds = packet index); for each expression `tcpdump -tt -n -r FILE EXPR`
//! lists the matching packets, and our verdicts must be the same packet for packet.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use como_packet::{LinkType, Packet};
use ebpf_filters::compile;

const EXPRS: &[&str] = &[
    "",
    "ip",
    "ip6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "vrrp",
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 192.168.1.2",
    "host 10.0.0.1 or 192.168.1.2",
    "net 192.168.0.0/16",
    "net 10",
    "src net 10.0.0.0 mask 255.0.0.0",
    "port 80",
    "tcp port 80",
    "udp port 53",
    "port 53 and not 80",
    "portrange 50-90",
    "src port 1234",
    "tcp dst port http",
    "port domain",
    "ip proto 47",
    "ip proto gre",
    "proto \\udp",
    "ip6 proto 17",
    "ip6 protochain 17",
    "protochain 6",
    "host 2001:db8::1",
    "net fe80::/10",
    "ip6 dst net ff02::/16",
    "ether host 00:11:22:33:44:55",
    "ether src 66:77:88:99:aa:bb",
    "ether dst ff:ff:ff:ff:ff:ff",
    "broadcast",
    "multicast",
    "ip multicast",
    "ip6 multicast",
    "ether proto \\ip",
    "ether proto 0x86dd",
    "greater 60",
    "less 60",
    "len >= 100",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[13] = 2",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "icmp[icmptype] == icmp-echo",
    "icmp6[icmp6type] == icmp6-echo",
    "ip[6:2] & 0x1fff != 0",
    "ip[0] & 0xf != 5",
    "udp[8:2] = 0x1234",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "ether[12:2] = 0x8100",
    "ip[2:2] / (ip[0] & 0) == 1",
    "tcp[100] = 1 or udp",
    "ip[40] = 0 or ip6",
    "not tcp[20:4] = 0",
    "vlan",
    "vlan 100",
    "vlan 100 and ip",
    "vlan and tcp port 80",
    "vlan and vlan and udp",
    "vlan 200 and vlan 300 and host 10.0.0.1",
    "vlan or ip",
    "ip or vlan",
    "mpls",
    "mpls 100 and tcp",
    "mpls and mpls and udp",
    "mpls 12345 and mpls 6789 and host 192.168.1.2",
    "mpls and host 10.0.0.1",
    "pppoes",
    "pppoes 0x3b",
    "pppoes and tcp port 80",
    "pppoes and ip host 10.0.0.1",
    "geneve",
    "geneve 10",
    "geneve 11",
    "geneve and tcp",
    "geneve and ip host 10.0.0.1",
    "geneve and ether host 66:77:88:99:aa:bb",
    "geneve 11 and icmp",
    "igmp or ip",
    "ip or not ip",
    "not ip6 or ip6",
    "byte 14 = 0x45",
    "port 53 or port 123",
    "port 53 or port 80 or port 123",
    "tcp port 80 or udp port 53",
    "host 10.0.0.1 or host 192.168.1.2",
    "src port 1234 or dst port 53 or ip6",
    "(tcp or udp) and (port 80 or port 53)",
    "icmp or icmp6 or arp",
    "not (port 53 or port 80)",
];

fn tcpdump_matches(file: &std::path::Path, expr: &str) -> Result<Vec<usize>, String> {
    let mut cmd = Command::new("tcpdump");
    cmd.arg("-tt").arg("-n").arg("-r").arg(file);
    if !expr.is_empty() {
        cmd.arg(expr);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run tcpdump (the oracle; the setup installs it): {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('.').next()?.trim().parse().ok())
        .collect())
}

fn check(name: &str, linktype: u32, link: LinkType, packets: Vec<Vec<u8>>) {
    let mut all = Vec::new();
    for p in &packets {
        // Captured length 0 is left out: tcpdump prints such a packet without its timestamp.
        for cap in 1..=p.len() {
            all.push((p.clone(), cap));
        }
    }
    let dir = std::env::temp_dir().join(format!("como-filters-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file: PathBuf = dir.join("t.pcap");
    write_pcap(&file, linktype, &all).unwrap_or_else(|e| panic!("{e}"));
    let mut bad = Vec::new();
    for expr in EXPRS {
        let theirs = tcpdump_matches(&file, expr);
        let ours = compile(expr, link);
        match (theirs, ours) {
            (Err(_), Err(_)) => {}
            (Err(e), Ok(_)) => bad.push(format!(
                "{name}: {expr:?}: tcpdump refuses ({}), we compile",
                e.trim()
            )),
            (Ok(_), Err(e)) => bad.push(format!(
                "{name}: {expr:?}: tcpdump compiles, we refuse: {e}"
            )),
            (Ok(t), Ok(f)) => {
                let mine: Vec<usize> = all
                    .iter()
                    .enumerate()
                    .filter(|(_, (d, cap))| {
                        let p = Packet {
                            ts_ns: 0,
                            wire_len: d.len() as u32,
                            data: &d[..*cap],
                            link,
                            interface: 0,
                        };
                        f.matches(&p)
                    })
                    .map(|(i, _)| i)
                    .collect();
                if mine != t {
                    let only_t: Vec<String> = t
                        .iter()
                        .filter(|i| !mine.contains(i))
                        .take(3)
                        .map(|&i| format!("pkt {} cap {}", i, all[i].1))
                        .collect();
                    let only_m: Vec<String> = mine
                        .iter()
                        .filter(|i| !t.contains(i))
                        .take(3)
                        .map(|&i| format!("pkt {} cap {}", i, all[i].1))
                        .collect();
                    bad.push(format!(
                        "{name}: {expr:?}: tcpdump {} packets, ours {}; only tcpdump: {only_t:?}; only ours: {only_m:?}",
                        t.len(),
                        mine.len()
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn ethernet_every_truncation_agrees_with_tcpdump() {
    check("ethernet", 1, LinkType::Ethernet, ethernet_zoo());
}

#[test]
fn raw_ip_every_truncation_agrees_with_tcpdump() {
    let raw: Vec<Vec<u8>> = ethernet_zoo()
        .into_iter()
        .filter(|p| matches!(p.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd])))
        .map(|p| p[14..].to_vec())
        .collect();
    check("raw", 101, LinkType::Raw, raw.clone());
    let v4: Vec<Vec<u8>> = raw
        .iter()
        .filter(|p| p.first().is_some_and(|b| b >> 4 == 4))
        .cloned()
        .collect();
    check("ipv4", 228, LinkType::Ipv4, v4);
}

#[test]
fn linux_sll_and_null_every_truncation_agrees_with_tcpdump() {
    let zoo = ethernet_zoo();
    let sll: Vec<Vec<u8>> = zoo
        .iter()
        .map(|p| {
            let mut v = vec![0, 0, 0, 1, 0, 6];
            v.extend_from_slice(&p[6..12]);
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&p[12..]);
            v
        })
        .collect();
    check("sll", 113, LinkType::LinuxSll, sll);
    let null: Vec<Vec<u8>> = zoo
        .iter()
        .filter_map(|p| {
            let af: u32 = match p.get(12..14)? {
                [0x08, 0x00] => 2,
                [0x86, 0xdd] => 30,
                _ => return None,
            };
            let mut v = af.to_le_bytes().to_vec();
            v.extend_from_slice(&p[14..]);
            Some(v)
        })
        .collect();
    check("null", 0, LinkType::Null, null);
}

#[test]
fn radiotap_every_truncation_agrees_with_tcpdump() {
    let a = [10, 0, 0, 1];
    let b = [192, 168, 1, 2];
    let pkts = vec![
        wlan_data(0x0800, &ipv4(6, a, b, &tcp(1234, 80, 0x02, b"hello"))),
        wlan_data(
            0x86dd,
            &ipv6(
                17,
                v6("2001:db8::1"),
                v6("fe80::1"),
                &udp(5353, 53, b"abcd"),
            ),
        ),
        wlan_data(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1]),
    ];
    check("radiotap", 127, LinkType::Ieee80211Radiotap, pkts);
}
