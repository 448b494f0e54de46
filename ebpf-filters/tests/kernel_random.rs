//! The kernel tables against the exact evaluator on random expressions, truncated packets and
//! hand-built VLAN stacks.
//!
//! Expressions: a targeted list (each exact kernel mapping, which must stay exact), then
//! `como_tests::exprgen` (seeded; `COMO_KERNEL_SEED` changes the seed)
//! with addresses, ports, MACs, VLAN ids and lengths harvested from the traces, so predicates
//! match. Packets: every Ethernet trace packet, plus every captured-length prefix of a sample
//! (absent fields → uncertain), plus 802.1Q/802.1ad stacks 0 to 3 tags deep around IPv4, IPv6
//! and ARP. Exact rules must agree with `Filter::matches` unless the classification says
//! "re-check"; flagged rules must be a superset and re-checked where they match.

use std::net::{Ipv4Addr, Ipv6Addr};

use como_packet::LinkType;
use como_tests::ethernet_traces;
use como_tests::exprgen::{ExprGen, Seen};
use ebpf_filters::kernel::{FieldState, PacketKey, Tables};
use ebpf_filters::{compile, Filter};
use ebpf_filters_common::field;

/// (captured bytes, wire length).
type Pkt = (Vec<u8>, u32);

fn trace_packets() -> Vec<Pkt> {
    ethernet_traces()
        .into_iter()
        .flat_map(|(_, packets)| packets.into_iter().map(|p| (p.data, p.wire_len)))
        .collect()
}

fn harvest(packets: &[Pkt]) -> Seen {
    let mut seen = Seen::default();
    for (d, w) in packets.iter().step_by(7) {
        let k = PacketKey::extract(d, *w);
        let v = |f| match k.get(f) {
            FieldState::Present(v) => Some(v),
            _ => None,
        };
        for f in [field::SADDR4, field::DADDR4] {
            if let Some(x) = v(f) {
                seen.v4.push(Ipv4Addr::from(x as u32));
            }
        }
        for f in [field::SADDR6, field::DADDR6] {
            if let Some(x) = v(f) {
                seen.v6.push(Ipv6Addr::from(x));
            }
        }
        for f in [field::SPORT, field::DPORT] {
            if let Some(x) = v(f) {
                seen.ports.push(x as u16);
            }
        }
        for f in [field::SMAC, field::DMAC] {
            if let Some(x) = v(f) {
                let b = x.to_be_bytes();
                let mut m = [0u8; 6];
                m.copy_from_slice(&b[10..16]);
                seen.macs.push(m);
            }
        }
        for f in [field::VID0, field::VID1] {
            if let Some(x) = v(f) {
                seen.vlans.push(x as u16);
            }
        }
        seen.lens.push(*w);
    }
    seen.dedup();
    seen
}

/// Hand-built frames: 0-3 tags of each TPID around IPv4/TCP, IPv6/UDP (with and without a
/// fragment header) and ARP.
fn vlan_frames() -> Vec<Pkt> {
    let mut ipv4 = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ipv4.extend_from_slice(&[0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02]);
    ipv4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    let mut ipv6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    ipv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ipv6.extend_from_slice(&[0; 11]);
    ipv6.push(1);
    ipv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ipv6.extend_from_slice(&[0; 11]);
    ipv6.push(2);
    ipv6.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
    let mut ipv6f = ipv6.clone();
    if let Some(nh) = ipv6f.get_mut(6) {
        *nh = 44;
    }
    ipv6f.splice(40..40, [17, 0, 0, 1, 0, 0, 0, 7]);
    let arp = vec![
        0, 1, 8, 0, 6, 4, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10,
        0, 0, 2,
    ];
    let payloads: [(u16, &[u8]); 4] = [
        (0x0800, &ipv4),
        (0x86dd, &ipv6),
        (0x86dd, &ipv6f),
        (0x0806, &arp),
    ];
    let tpids = [0x8100u16, 0x88a8, 0x9100];
    let mut out = Vec::new();
    for (et, pl) in payloads {
        for depth in 0..=3usize {
            for combo in 0..3usize.pow(depth as u32) {
                let mut f = vec![
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x11, 0x22, 0x33, 0x44, 0x55,
                ];
                let mut c = combo;
                for t in 0..depth {
                    let tpid = tpids[c % 3];
                    c /= 3;
                    f.extend_from_slice(&tpid.to_be_bytes());
                    f.extend_from_slice(&(100 + t as u16 * 100).to_be_bytes());
                }
                f.extend_from_slice(&et.to_be_bytes());
                f.extend_from_slice(pl);
                let w = f.len() as u32;
                out.push((f, w));
            }
        }
    }
    out
}

/// Expressions that exercise each exact mapping (all must be exact).
const TARGETED: &[&str] = &[
    "ip[9] == 6",
    "ip[9] > 16",
    "not (ip[9] = 6 or ip[9] = 17)",
    "ip6[6] == 58",
    "ip6[6] == 44",
    "ip6 proto 17",
    "ip[6:2] & 0x1fff = 0",
    "ip[6:2] & 0x1fff != 0",
    "ip multicast",
    "ip6 multicast",
    "ip[12] = 10",
    "arp[14] = 10",
    "arp[24] = 10",
    "ip6[8] = 0xfe",
    "ip6[24] = 0xff",
    "ip[16] >= 224 and not ip[16] = 255",
    "vlan and ip[9] = 6",
    "vlan and vlan and ip6[6] = 17",
    "vlan and vlan and udp",
    "vlan 100",
    "vlan and vlan 200",
    "vlan 300 and vlan 100",
    "not vlan",
    "not (vlan and tcp)",
    "icmp[icmptype] = icmp-echo",
    "icmp6[icmp6type] = icmp6-echo",
    "tcp[0:2] = 80",
    "udp[2:2] = 53",
    "tcp[13] & 0x12 = 0x12",
    "len < 100",
    "greater 1000",
    "ether multicast",
    "not ether multicast",
    "ether broadcast",
    "arp host 10.0.0.1",
    "rarp or arp",
    "net 10.0.0.0/8 and not net 10.0.0.0/16",
    "ip6 net 2001:db8::/32 and not src host 2001:db8::1",
    "tcp portrange 1-1023 and not port 80",
    "udp and not port 53 and not port 123",
    "ether[0] & 1 = 0",
    "ether[0] & 1 != 0 and ip",
    "ether[6:2] = 0x0066",
    "ether[12:2] = 0x8100",
    "ether[12:2] = 0x800",
    "ether[12:2] > 0x5dc and not vlan",
    "not ether[12:2] = 0x86dd",
];

#[test]
fn kernel_classification_matches_on_random_expressions() {
    let seed: u64 = std::env::var("COMO_KERNEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut packets = trace_packets();
    assert!(packets.len() > 10_000, "{} packets", packets.len());
    let seen = harvest(&packets);
    // Every captured-length prefix of a sample of packets.
    let sample: Vec<Pkt> = packets.iter().step_by(211).cloned().collect();
    for (d, w) in &sample {
        for n in 0..d.len().min(128) {
            packets.push((d.get(..n).unwrap_or_default().to_vec(), *w));
        }
    }
    let frames = vlan_frames();
    for (d, w) in &frames {
        for n in (0..d.len()).step_by(3) {
            packets.push((d.get(..n).unwrap_or_default().to_vec(), *w));
        }
    }
    packets.extend(frames);
    let mut gen = ExprGen::new(seed, seen).with_max_depth(4);
    // Targeted expressions first: every kind of exact kernel field, with negations and shifts.
    let mut filters: Vec<(String, Filter)> = TARGETED
        .iter()
        .map(|e| {
            let f = compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"));
            ((*e).to_owned(), f)
        })
        .collect();
    while filters.len() < 192 + TARGETED.len() {
        let e = gen.next_expr();
        if let Ok(f) = compile(&e, LinkType::Ethernet) {
            filters.push((e, f));
        }
    }
    let mut exact = 0;
    let mut by_reason: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for batch in filters.chunks(64) {
        let rules: Vec<Option<&Filter>> = batch.iter().map(|(_, f)| Some(f)).collect();
        let tables = Tables::compile(&rules).unwrap_or_else(|e| panic!("compile: {e}"));
        let flagged = tables.gen_config().flagged;
        exact += batch.len() - flagged.count_ones() as usize;
        for (i, (e, _)) in batch.iter().enumerate() {
            if TARGETED.contains(&e.as_str()) {
                let r = tables.rule_report(i);
                assert!(r.is_some_and(|r| r.exact), "{e}: {r:?}");
            }
        }
        for i in 0..batch.len() {
            if let Some(r) = tables.rule_report(i).filter(|r| !r.exact) {
                for reason in &r.reasons {
                    *by_reason.entry(reason.clone()).or_default() += 1;
                }
                if std::env::var_os("COMO_KERNEL_VERBOSE").is_some() {
                    let e = batch.get(i).map(|(e, _)| e.as_str()).unwrap_or_default();
                    println!("flagged {e:?}: {}", r.reasons.join("; "));
                }
            }
        }
        for (d, w) in &packets {
            let meta = tables.classify(&PacketKey::extract(d, *w));
            for (i, (e, f)) in batch.iter().enumerate() {
                let pkt = como_packet::Packet {
                    ts_ns: 0,
                    wire_len: *w,
                    data: d,
                    link: LinkType::Ethernet,
                    interface: 0,
                };
                let m = f.matches(&pkt);
                let k = meta.rules & (1 << i) != 0;
                let recheck = meta.recheck & (1 << i) != 0;
                let bad = if flagged & (1 << i) != 0 {
                    m && !(k && recheck)
                } else {
                    (m != k && !recheck) || (m && !k)
                };
                if bad && failures.len() < 30 {
                    failures.push(format!(
                        "{e:?} on {} bytes (wire {w}) {:02x?}: exact {m}, kernel {k}, recheck {recheck}",
                        d.len(),
                        d.get(..d.len().min(64)).unwrap_or_default()
                    ));
                }
            }
        }
    }
    println!(
        "seed {seed}: {} random expressions, {exact} exact in the kernel; {} packets",
        filters.len(),
        packets.len()
    );
    for (r, n) in &by_reason {
        println!("  {n:4}  {r}");
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: disagreements:\n{}",
        failures.join("\n")
    );
}
