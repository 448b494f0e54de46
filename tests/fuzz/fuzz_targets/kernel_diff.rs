//! Fuzz target `kernel_diff`: the kernel-table compiler against the exact evaluator.
//!
//! The input is a recipe ([`como_fuzz::kgen::Src`] reads it as choices): a number of rule
//! slots (1 to 64), then per slot an inactive slot, an expression from the grammar of
//! [`como_fuzz::kgen`], a line of `tests/data/filters/corpus.txt` or raw text; then up to 24
//! packets: Ethernet frames built from the grammar's pools (VLAN stacks, IPv4 with options and
//! fragments, IPv6 with a fragment header, ARP, cut short), packets of real traces (read once
//! at start-up, sometimes cut), or raw bytes.
//!
//! The filters that compile for Ethernet go to `ebpf_filters::kernel::Tables::compile`; for
//! every packet, `Tables::classify(PacketKey::extract(..))` must say what the XDP program
//! would, under the contract of `ebpf-filters/common/src/lib.rs`:
//! * uncertain (a used field is absent): every active rule matched and re-checked;
//! * otherwise: an exact rule (`rule_report(i).exact`) is matched iff `Filter::matches`, and is
//!   never re-checked; a flagged rule is matched whenever `Filter::matches` is true, and
//!   re-checked exactly where it is matched; no bit outside the active slots.
//!
//! Also: `gen_config().rules` = the active slots, `flagged` = the slots reported inexact.
//! A disagreement panics with the expressions and the packet.
#![no_main]

use std::sync::OnceLock;

use como_fuzz::kgen::{self, Src};
use como_packet::{LinkType, Packet};
use como_tracefile::TraceReader;
use ebpf_filters::kernel::{PacketKey, Tables};
use ebpf_filters::Filter;
use libfuzzer_sys::fuzz_target;

/// Traces (relative to this crate) and how many Ethernet packets to keep from each.
const TRACES: [(&str, usize); 9] = [
    ("../data/traces/libtrace/100_packetsns.pcap", 100),
    ("../data/traces/libtrace/qinq.pcap", 10),
    ("../data/traces/libtrace/10_mpls_ip.pcap", 10),
    ("../data/traces/libtrace/vxlan.pcap", 10),
    ("../data/traces/converted-erf/vlan-qinqinq.erf", 30),
    ("../data/traces/nDPI/sctp.cap", 10),
    ("../data/traces/nDPI/dns.pcap", 10),
    ("../data/traces/nDPI/6in4tunnel.pcap", 30),
    ("../data/traces/nDPI/malformed_icmp.pcap", 10),
];

/// (captured bytes, wire length) of the real packets.
fn real() -> &'static [(Vec<u8>, u32)] {
    static P: OnceLock<Vec<(Vec<u8>, u32)>> = OnceLock::new();
    P.get_or_init(|| {
        let mut out = Vec::new();
        for (path, keep) in TRACES {
            let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            let Ok(mut r) = TraceReader::open(&full) else {
                eprintln!("kernel_diff: cannot open {}", full.display());
                continue;
            };
            let mut n = 0;
            while let Some(Ok(p)) = r.next_packet() {
                if p.link == LinkType::Ethernet {
                    out.push((p.data.to_vec(), p.wire_len));
                    n += 1;
                }
                if n >= keep {
                    break;
                }
            }
        }
        out
    })
}

/// The valid expressions of the corpus.
fn corpus() -> &'static [String] {
    static C: OnceLock<Vec<String>> = OnceLock::new();
    C.get_or_init(|| {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/filters/corpus.txt");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut out = Vec::new();
        let mut valid = false;
        for line in text.lines() {
            if let Some(sec) = line.strip_prefix("#@section ") {
                valid = sec.trim() == "valid";
                continue;
            }
            if valid && !line.starts_with('#') && !line.trim().is_empty() {
                out.push(line.to_owned());
            }
        }
        out
    })
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|input: &[u8]| {
    let mut s = Src::new(input);
    let slots = 1 + match s.byte() {
        b @ 0..=191 => usize::from(b % 8),
        b => usize::from(b % 64),
    };
    let mut exprs: Vec<Option<String>> = Vec::with_capacity(slots);
    for _ in 0..slots {
        let e = match s.below(8) {
            0 => None,
            1 => s.pick_ref(corpus()).cloned(),
            2 => std::str::from_utf8(s.bytes(64)).ok().map(str::to_owned),
            _ => {
                let depth = u32::try_from(s.below(4)).unwrap_or(0);
                Some(kgen::expr(&mut s, depth))
            }
        };
        exprs.push(e);
    }
    let filters: Vec<Option<Filter>> = exprs
        .iter()
        .map(|e| {
            e.as_deref()
                .and_then(|e| ebpf_filters::compile(e, LinkType::Ethernet).ok())
        })
        .collect();
    let rules: Vec<Option<&Filter>> = filters.iter().map(Option::as_ref).collect();
    let tables = match Tables::compile(&rules) {
        Ok(t) => t,
        Err(e) => {
            // Only the budget errors are possible here (at most 64 Ethernet rules).
            let msg = e.to_string();
            assert!(
                msg.contains("terms") || msg.contains("LPM"),
                "unexpected compile error {msg}: {exprs:?}"
            );
            return;
        }
    };
    let g = tables.gen_config();
    let mut active = 0u64;
    let mut flagged = 0u64;
    for (i, f) in filters.iter().enumerate() {
        let report = tables.rule_report(i);
        assert_eq!(
            f.is_some(),
            report.is_some(),
            "slot {i}: report {report:?} for {:?}",
            exprs.get(i)
        );
        if f.is_some() {
            active |= 1 << i;
        }
        if report.is_some_and(|r| !r.exact) {
            flagged |= 1 << i;
        }
    }
    assert_eq!(g.rules, active, "active rules: {exprs:?}");
    assert_eq!(g.flagged, flagged, "flagged rules: {exprs:?}");
    assert!(g.nterms as usize <= ebpf_filters_common::MAX_TERMS);

    let npkts = 1 + s.below(24);
    let mut packets: Vec<(Vec<u8>, u32)> = Vec::with_capacity(npkts);
    for _ in 0..npkts {
        match s.below(8) {
            0..=4 => packets.push(kgen::frame(&mut s)),
            5 | 6 => {
                if let Some((d, w)) = s.pick_ref(real()).map(|(d, w)| (d.clone(), *w)) {
                    let cut = if s.below(4) == 0 {
                        s.below(d.len() + 1)
                    } else {
                        d.len()
                    };
                    packets.push((d.get(..cut).unwrap_or_default().to_vec(), w));
                }
            }
            _ => {
                let d = s.bytes(96).to_vec();
                let w = u32::try_from(d.len()).unwrap_or(0);
                packets.push((d, w));
            }
        }
        if s.done() {
            break;
        }
    }

    for (d, w) in &packets {
        let key = PacketKey::extract(d, *w);
        let meta = tables.classify(&key);
        let uncertain = g.used & key.absent != 0;
        let ctx = || format!("packet {} (wire {w}) {}\nrules {exprs:#?}", d.len(), hex(d));
        if uncertain {
            assert_eq!(meta.rules, g.rules, "uncertain: all rules. {}", ctx());
            assert_eq!(
                meta.recheck,
                g.rules,
                "uncertain: all re-checked. {}",
                ctx()
            );
            continue;
        }
        assert_eq!(meta.rules & !g.rules, 0, "inactive rule set. {}", ctx());
        assert_eq!(
            meta.recheck,
            meta.rules & g.flagged,
            "re-check = matched flagged rules. {}",
            ctx()
        );
        let pkt = Packet {
            ts_ns: 0,
            wire_len: *w,
            data: d,
            link: LinkType::Ethernet,
            interface: 0,
        };
        for (i, f) in filters.iter().enumerate() {
            let Some(f) = f else { continue };
            let m = f.matches(&pkt);
            let k = meta.rules & (1 << i) != 0;
            let e = exprs.get(i).cloned().flatten().unwrap_or_default();
            if g.flagged & (1 << i) != 0 {
                assert!(
                    !m || k,
                    "flagged rule {i} {e:?}: exact match, kernel no. {}",
                    ctx()
                );
            } else {
                assert_eq!(
                    k,
                    m,
                    "exact rule {i} {e:?}: kernel {k}, exact {m}. {}",
                    ctx()
                );
            }
        }
    }
});
