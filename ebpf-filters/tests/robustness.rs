//! Hostile input never panics: random token soups and random byte strings as expressions,
//! and every compiled filter on random, truncated and mutated packets of every link type.
//! (Deterministic xorshift; the cargo-fuzz target explores further.)

mod common;

use common::*;
use como_packet::{LinkType, Packet};
use ebpf_filters::compile;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "and",
    "or",
    "not",
    "(",
    ")",
    "ip",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "arp",
    "ether",
    "proto",
    "protochain",
    "vlan",
    "mpls",
    "pppoes",
    "geneve",
    "len",
    "less",
    "greater",
    "broadcast",
    "multicast",
    "[",
    "]",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&",
    "|",
    "^",
    "<<",
    ">>",
    "=",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "!",
    "&&",
    "||",
    "0",
    "1",
    "80",
    "4096",
    "65536",
    "0xffffffff",
    "10.0.0.1",
    "192.168",
    "10",
    "fe80::/10",
    "::1",
    "ab:cd:ef:00:00:01",
    "mask",
    "255.255.0.0",
    "/",
    "24",
    "tcpflags",
    "tcp-syn",
    "icmp-echo",
    "\\tcp",
    "http",
    "domain",
    "25-53",
    "byte",
    "igrp",
    "decnet",
    "llc",
    "$1",
    "gre",
];

const PRIMS: &[&str] = &[
    "ip",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "arp",
    "host 10.0.0.1",
    "net 192.168.0.0/16",
    "port 80",
    "tcp port 80",
    "portrange 1-1023",
    "src 192.168.1.2",
    "ip6 net fe80::/10",
    "ether host 00:11:22:33:44:55",
    "broadcast",
    "multicast",
    "vlan",
    "vlan 100",
    "mpls",
    "mpls 100",
    "pppoes",
    "pppoes 59",
    "geneve",
    "geneve 10",
    "tcp[tcpflags] & tcp-syn != 0",
    "ip[6:2] & 0x1fff = 0",
    "len > 100",
    "greater 60",
    "less 1000",
    "ip proto gre",
    "ip6 protochain 17",
    "protochain 6",
    "icmp6[0] = 128",
    "ether[0] & 1 = 1",
    "tcp[(tcp[12] >> 2) + 1] / ip[0] = 3",
    "udp[8:4] % 7 = 1",
    "ip multicast",
    "ip6 multicast",
    "byte 14 = 69",
    "ether proto \\ip",
    "(tcp or udp)",
    "not (ip and tcp)",
];

const LINKS: &[LinkType] = &[
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Ppp,
    LinkType::CHdlc,
    LinkType::Ieee80211,
    LinkType::Ieee80211Radiotap,
    LinkType::Other(147),
];

#[test]
fn random_expressions_and_packets_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let zoo = ethernet_zoo();
    let mut compiled = 0;
    for round in 0..4000 {
        let n = 1 + rng.below(4);
        let mut parts: Vec<String> = Vec::new();
        for i in 0..n {
            if i > 0 {
                parts.push(["and", "or", "and not", "or not"][rng.below(4)].to_string());
            }
            parts.push(PRIMS[rng.below(PRIMS.len())].to_string());
        }
        if rng.below(5) == 0 {
            let i = rng.below(parts.len() + 1);
            parts.insert(i, WORDS[rng.below(WORDS.len())].to_string());
        }
        let expr = parts.join(" ");
        let link = LINKS[round % LINKS.len()];
        let Ok(f) = compile(&expr, link) else {
            continue;
        };
        compiled += 1;
        for _ in 0..8 {
            let mut data = zoo[rng.below(zoo.len())].clone();
            // Mutate a few bytes, then truncate.
            for _ in 0..rng.below(4) {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            let cap = rng.below(data.len() + 1);
            let p = Packet {
                ts_ns: 0,
                wire_len: rng.next() as u32,
                data: &data[..cap],
                link,
                interface: 0,
            };
            std::hint::black_box(f.matches(&p));
        }
    }
    assert!(
        compiled > 1500,
        "only {compiled} random expressions compiled: the generator is too weak"
    );
}

#[test]
fn random_bytes_as_expressions_never_panic() {
    let mut rng = Rng(12345);
    for _ in 0..20000 {
        let n = rng.below(40);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let s = String::from_utf8_lossy(&bytes);
        let _ = compile(&s, LinkType::Ethernet);
    }
    // Long runs of the same character.
    for c in ["(", ")", "!", "-", "not ", "1+", "ip and ", "[", "::"] {
        let _ = compile(&c.repeat(5000), LinkType::Ethernet);
    }
}
