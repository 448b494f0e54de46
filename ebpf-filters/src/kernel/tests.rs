//! Unit tests of the kernel-table compiler.

use super::*;
use crate::compile;
use como_packet::{LinkType, Packet};
use ebpf_filters_common::{array_index, term_rules_index, LPM_DATA_LEN};

fn f(e: &str) -> Filter {
    compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"))
}

/// An Ethernet/IPv4/TCP frame (60 bytes captured).
fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 14 + 20 + 20];
    p[0..6].copy_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    p[6..12].copy_from_slice(&[0x00, 0x66, 0x77, 0x88, 0x99, 0xaa]);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    p[14] = 0x45;
    p[14 + 9] = 6;
    p[26..30].copy_from_slice(&src);
    p[30..34].copy_from_slice(&dst);
    p[34..36].copy_from_slice(&sport.to_be_bytes());
    p[36..38].copy_from_slice(&dport.to_be_bytes());
    p[34 + 12] = 0x50;
    p[34 + 13] = 0x02;
    p
}

fn matches(fl: &Filter, d: &[u8]) -> bool {
    fl.matches(&Packet {
        ts_ns: 0,
        wire_len: d.len() as u32,
        data: d,
        link: LinkType::Ethernet,
        interface: 0,
    })
}

/// Asserts the kernel verdicts on `pkts`: equal for exact rules, superset + re-check for
/// flagged ones.
fn check(filters: &[Filter], t: &Tables, pkts: &[Vec<u8>]) {
    let flagged = t.gen_config().flagged;
    for d in pkts {
        let meta = t.classify(&PacketKey::extract(d, d.len() as u32));
        for (i, fl) in filters.iter().enumerate() {
            let m = matches(fl, d);
            let k = meta.rules & (1 << i) != 0;
            let re = meta.recheck & (1 << i) != 0;
            if flagged & (1 << i) != 0 {
                assert!(!m || (k && re), "rule {i} flagged, packet {d:02x?}");
            } else {
                assert!(m == k || re, "rule {i} exact: {m} vs kernel {k}, {d:02x?}");
            }
        }
    }
}

/// The XDP program's lookups done on the raw tables the loader writes, with the generation
/// byte rewritten and the generation offset added: what `classify` does through its own
/// index must also come out of the raw entries, in either generation.
fn classify_raw(t: &Tables, gen: u32, key: &PacketKey) -> u64 {
    let g = t.gen_config();
    if g.used & key.absent != 0 {
        return g.rules;
    }
    // Generation `gen` copies of the tables.
    let lpm: Vec<(u32, LpmData, Terms)> = t
        .lpm_entries()
        .into_iter()
        .map(|(len, mut d, ts)| {
            d.bytes[0] = gen as u8;
            (len, d, ts)
        })
        .collect();
    let mut array = vec![Terms::NONE; 2 * ARRAY_FIELDS_LEN as usize];
    array[(gen * ARRAY_FIELDS_LEN) as usize..][..ARRAY_FIELDS_LEN as usize]
        .copy_from_slice(t.array_entries());
    let mut rules_tab = vec![0u64; 2 * TERM_RULES_LEN as usize];
    rules_tab[(gen * TERM_RULES_LEN) as usize..][..TERM_RULES_LEN as usize]
        .copy_from_slice(t.term_rules());
    let mut acc = Terms::ALL;
    for fid in 0..field::COUNT {
        if g.used & (1 << fid) == 0 {
            continue;
        }
        let FieldState::Present(v) = key.get(fid) else {
            continue;
        };
        if fid < field::FIRST_ARRAY {
            let width = usize::from(lits::lpm_width(fid) / 8);
            let mut data = [0u8; LPM_DATA_LEN];
            data[0] = gen as u8;
            data[1] = fid;
            for i in 0..width {
                data[2 + i] = (v >> (8 * (width - 1 - i))) as u8;
            }
            // Longest matching prefix, bit by bit over the key bytes.
            let mut best: Option<(u32, Terms)> = None;
            for (len, d, ts) in &lpm {
                let bit_ok = (0..*len as usize).all(|b| {
                    let m = 0x80u8 >> (b % 8);
                    (d.bytes[b / 8] & m) == (data[b / 8] & m)
                });
                if bit_ok && best.is_none_or(|(l, _)| *len > l) {
                    best = Some((*len, *ts));
                }
            }
            let (_, ts) = best.expect("a root entry for every used LPM field");
            acc.and_with(&ts);
        } else {
            acc.and_with(&array[array_index(gen, fid, v as u32) as usize]);
        }
    }
    let mut rules = 0;
    for byte in 0..(TERM_WORDS * 8) as u32 {
        let w = acc.w[(byte / 8) as usize];
        let val = (w >> (8 * (byte % 8))) as u8;
        rules |= rules_tab[term_rules_index(gen, byte, val) as usize];
    }
    rules & g.rules
}

#[test]
fn compiles_simple_rules() {
    let a = f("tcp port 80");
    let b = f("host 10.0.0.1");
    let t = Tables::compile(&[Some(&a), None, Some(&b)]).expect("compile");
    let g = t.gen_config();
    assert_eq!(g.rules, 0b101);
    assert_eq!(
        g.flagged,
        0,
        "{:?} {:?}",
        t.rule_report(0),
        t.rule_report(2)
    );
    assert!(t.rule_report(1).is_none());
    let pkt = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80);
    assert_eq!(t.classify(&PacketKey::extract(&pkt, 60)).rules, 0b101);
    let pkt = tcp4([10, 0, 0, 3], [10, 0, 0, 2], 1234, 81);
    assert_eq!(t.classify(&PacketKey::extract(&pkt, 60)).rules, 0);
}

#[test]
fn generation_agnostic_layout() {
    let exprs = [
        "tcp port 80",
        "net 10.0.0.0/8 and not host 10.1.2.3",
        "ip6 and src net 2001:db8::/32",
        "ether src 00:66:77:88:99:aa",
        "vlan 100 and udp",
        "tcp[tcpflags] & tcp-syn != 0",
        "len > 100",
        "icmp",
    ];
    let filters: Vec<Filter> = exprs.iter().map(|e| f(e)).collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let t = Tables::compile(&rules).expect("compile");
    assert_eq!(t.array_entries().len(), ARRAY_FIELDS_LEN as usize);
    assert_eq!(t.term_rules().len(), TERM_RULES_LEN as usize);
    let lpm = t.lpm_entries();
    for (len, d, _) in &lpm {
        assert_eq!(d.bytes[0], 0, "generation byte 0");
        assert!(d.bytes[1] < field::FIRST_ARRAY);
        let width = u32::from(lits::lpm_width(d.bytes[1]));
        assert!((LPM_ROOT_PREFIX..=LPM_ROOT_PREFIX + width).contains(len));
        // Bits past the prefix are zero.
        let total_bits = *len as usize;
        for b in total_bits..LPM_DATA_LEN * 8 {
            assert_eq!(d.bytes[b / 8] & (0x80 >> (b % 8)), 0, "{d:?} /{len}");
        }
    }
    for fid in 0..field::FIRST_ARRAY {
        assert!(
            lpm.iter()
                .any(|(len, d, _)| *len == LPM_ROOT_PREFIX && d.bytes[1] == fid),
            "root entry of field {fid}"
        );
    }
    let g = t.gen_config();
    assert_eq!(g.rules, (1 << exprs.len()) - 1);
    assert_eq!(g.flagged, 0);
    assert!(g.nterms as usize <= MAX_TERMS);
    let pkts = [
        tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80),
        tcp4([10, 1, 2, 3], [192, 168, 0, 1], 80, 9),
        tcp4([11, 0, 0, 1], [12, 0, 0, 2], 5, 6),
    ];
    for p in &pkts {
        let key = PacketKey::extract(p, p.len() as u32);
        let want = t.classify(&key).rules;
        assert_ne!(want, 0);
        for gen in [0, 1] {
            assert_eq!(classify_raw(&t, gen, &key), want, "generation {gen}");
        }
    }
    check(&filters, &t, &pkts);
}

#[test]
fn chain_lpm_with_overlapping_prefixes_and_negations() {
    let exprs = [
        "src net 10.0.0.0/8 and not src net 10.1.0.0/16",
        "src net 10.1.0.0/16",
        "not src net 10.0.0.0/8",
        "src host 10.1.2.3",
        "not src net 10.1.0.0/16 and src net 10.0.0.0/8 and not src host 10.2.0.1",
    ];
    let filters: Vec<Filter> = exprs.iter().map(|e| f(e)).collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let t = Tables::compile(&rules).expect("compile");
    assert_eq!(t.gen_config().flagged, 0);
    let cases: [([u8; 4], u64); 5] = [
        ([10, 1, 2, 3], 0b01010),
        ([10, 1, 9, 9], 0b00010),
        ([10, 2, 0, 1], 0b00001),
        ([10, 3, 0, 1], 0b10001),
        ([11, 0, 0, 1], 0b00100),
    ];
    let mut pkts = Vec::new();
    for (src, want) in cases {
        let p = tcp4(src, [192, 168, 1, 1], 1, 2);
        let key = PacketKey::extract(&p, 60);
        assert_eq!(t.classify(&key).rules, want, "source {src:?}");
        assert_eq!(
            classify_raw(&t, 1, &key),
            want,
            "raw tables, source {src:?}"
        );
        pkts.push(p);
    }
    check(&filters, &t, &pkts);
}

#[test]
fn short_circuit_expansion_keeps_negations_exact() {
    let exprs = [
        "not host 10.0.0.1",
        "not (tcp and port 80)",
        "not ip or igmp",
        "not (vlan and ip)",
        "ip and not (tcp[tcpflags] & tcp-syn != 0)",
    ];
    let filters: Vec<Filter> = exprs.iter().map(|e| f(e)).collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let t = Tables::compile(&rules).expect("compile");
    for (i, e) in exprs.iter().enumerate() {
        let r = t.rule_report(i).expect("report");
        assert!(r.exact, "{e}: {:?}", r.reasons);
    }
    let mut syn_ack = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 80, 5);
    syn_ack[34 + 13] = 0x12;
    let mut ack = tcp4([10, 0, 0, 9], [10, 0, 0, 2], 7, 5);
    ack[34 + 13] = 0x10;
    let mut arp = tcp4([0; 4], [0; 4], 0, 0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut igmp = tcp4([10, 0, 0, 5], [224, 0, 0, 1], 0, 0);
    igmp[14 + 9] = 2;
    let pkts = vec![syn_ack.clone(), ack.clone(), arp.clone(), igmp.clone()];
    check(&filters, &t, &pkts);
    let v = |p: &[u8]| t.classify(&PacketKey::extract(p, p.len() as u32)).rules;
    assert_eq!(v(&syn_ack), 0b01000, "only not (vlan and ip)");
    assert_eq!(v(&ack), 0b11011);
    assert_eq!(v(&arp), 0b01111);
    assert_eq!(v(&igmp), 0b11111);
}

#[test]
fn term_budget_coarsens_the_biggest_rules() {
    // host A and port P: 4 terms each (source/destination address x port): 64 fit exactly.
    let filters: Vec<Filter> = (0..64)
        .map(|i| f(&format!("host 10.0.0.{i} and port {}", 1000 + i)))
        .collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let t = Tables::compile(&rules).expect("compile");
    let g = t.gen_config();
    assert_eq!(g.nterms as usize, MAX_TERMS);
    assert_eq!(g.flagged, 0);
    assert_eq!(t.rule_report(5).map(|r| r.terms), Some(4));
    // One more alternative per rule doubles the terms: rules are coarsened and flagged.
    let filters: Vec<Filter> = (0..64)
        .map(|i| {
            f(&format!(
                "(host 10.0.0.{i} or ether host 00:00:00:00:00:{i:02x}) and port {}",
                1000 + i
            ))
        })
        .collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let t = Tables::compile(&rules).expect("compile");
    let g = t.gen_config();
    assert!(g.nterms as usize <= MAX_TERMS, "{}", g.nterms);
    assert_ne!(g.flagged, 0);
    let coarse = (0..64)
        .filter_map(|i| t.rule_report(i))
        .filter(|r| !r.exact)
        .count();
    assert_eq!(coarse, g.flagged.count_ones() as usize);
    let r = (0..64)
        .filter_map(|i| t.rule_report(i))
        .find(|r| !r.exact)
        .expect("a flagged rule");
    assert!(r.reasons.iter().any(|s| s.contains("coarsened")), "{r:?}");
    let mut pkts = Vec::new();
    for i in 0..64u8 {
        pkts.push(tcp4([10, 0, 0, i], [10, 9, 9, 9], 1000 + u16::from(i), 5));
        pkts.push(tcp4([10, 0, 0, i], [10, 9, 9, 9], 3, 5));
    }
    check(&filters, &t, &pkts);
    // Every rule still matches its own packet.
    for i in 0..64u8 {
        let p = tcp4([10, 0, 0, i], [10, 9, 9, 9], 1000 + u16::from(i), 5);
        let m = t.classify(&PacketKey::extract(&p, 60));
        assert_ne!(m.rules & (1 << i), 0);
    }
}

#[test]
fn truncated_packets_are_uncertain() {
    let a = f("tcp port 80");
    let b = f("ether src 00:66:77:88:99:aa");
    let t = Tables::compile(&[Some(&a), Some(&b)]).expect("compile");
    let full = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80);
    let k = t.classify(&PacketKey::extract(&full, 60));
    assert_eq!((k.rules, k.recheck), (0b11, 0));
    for n in [0, 5, 13, 20, 30, 36] {
        let k = t.classify(&PacketKey::extract(&full[..n], 60));
        assert_eq!(
            (k.rules, k.recheck),
            (0b11, 0b11),
            "{n} bytes: every rule, every rule re-checked"
        );
    }
    // Only the MAC rule: a frame cut in its IP header is classified.
    let t = Tables::compile(&[None, Some(&b)]).expect("compile");
    let k = t.classify(&PacketKey::extract(&full[..20], 60));
    assert_eq!((k.rules, k.recheck), (0b10, 0));
}

#[test]
fn reports_say_why_a_rule_is_flagged() {
    let a = f("mpls and host 10.0.0.1");
    let b = f("ip[0] & 0xf != 5");
    let c = f("vlan or ip");
    let t = Tables::compile(&[Some(&a), Some(&b), Some(&c)]).expect("compile");
    assert_eq!(t.gen_config().flagged, 0b111);
    let reasons = |i| {
        t.rule_report(i)
            .map(|r| r.reasons.join("; "))
            .unwrap_or_default()
    };
    assert!(
        reasons(0).contains("mpls is not classified"),
        "{}",
        reasons(0)
    );
    assert!(reasons(1).contains("ip[...]"), "{}", reasons(1));
    assert!(reasons(2).contains("protocol check"), "{}", reasons(2));
}

#[test]
fn errors() {
    let a = f("tcp");
    let rules = vec![Some(&a); 65];
    assert_eq!(
        Tables::compile(&rules).err(),
        Some(KernelError::TooManyRules(65))
    );
    let raw = compile("tcp", LinkType::Raw).expect("raw");
    assert_eq!(
        Tables::compile(&[Some(&raw)]).err(),
        Some(KernelError::NotEthernet(0))
    );
}

#[test]
fn lpm_budget_coarsens_the_rules_with_most_prefixes() {
    // The complement of four far-apart IPv6 addresses takes about 500 prefixes per address
    // field: 64 such rules need about 40 000 distinct entries, one generation holds 32 768.
    let filters: Vec<Filter> = (1..=64)
        .map(|i| {
            f(&format!(
                "not (host {i:x}::1 or host 2001:db8:{i:x}::1 or host fe80::{i:x} or host 3fff:{i:x}::9)"
            ))
        })
        .collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let t = Tables::compile(&rules).expect("compile");
    assert!(t.lpm_entries().len() <= (LPM_MAX_ENTRIES / 2) as usize);
    let g = t.gen_config();
    assert_ne!(g.flagged, 0, "some rules coarsened");
    assert_ne!(g.flagged, g.rules, "not all of them");
    let mut v6 = vec![0u8; 14 + 40 + 8];
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    v6[14] = 0x60;
    v6[14 + 6] = 17;
    v6[14 + 8] = 0x20;
    v6[14 + 9] = 0x01;
    v6[14 + 24] = 0xfe;
    v6[14 + 25] = 0x80;
    let mut pkts = vec![v6.clone()];
    for i in [1u8, 7, 64] {
        let mut p = v6.clone();
        p[14 + 24 + 15] = i;
        pkts.push(p);
    }
    check(&filters, &t, &pkts);
}
