//! The kernel tables against the exact evaluator, packet by packet.
//!
//! Every Ethernet trace of `tests/data/traces` × every corpus expression that compiles for
//! Ethernet, 64 rules per [`Tables`]: for every packet, the rule bit of
//! `Tables::classify(PacketKey::extract(..))` equals `Filter::matches` for exact rules and is a
//! superset for flagged ones, and every match of a flagged rule is marked for re-checking.
//! Prints how many corpus expressions are exact in the kernel and why the others are flagged.

use std::collections::BTreeMap;
use std::time::Instant;

use como_packet::LinkType;
use como_tests::{corpus_section, ethernet_traces, OwnedPacket};
use ebpf_filters::kernel::{PacketKey, Tables};
use ebpf_filters::{compile, Filter};

/// Every packet of every Ethernet trace (at most `cap` per trace), with its trace name.
fn ethernet_packets(cap: usize) -> Vec<(String, OwnedPacket)> {
    let mut out = Vec::new();
    for (name, packets) in ethernet_traces() {
        out.extend(packets.into_iter().take(cap).map(|p| (name.clone(), p)));
    }
    out
}

#[test]
fn kernel_classification_matches_the_exact_evaluator() {
    let start = Instant::now();
    let packets = ethernet_packets(usize::MAX);
    assert!(
        packets.len() > 10_000,
        "only {} Ethernet packets found",
        packets.len()
    );
    let mut exprs: Vec<String> = corpus_section("valid");
    exprs.extend(corpus_section("invalid"));
    let filters: Vec<(String, Filter)> = exprs
        .into_iter()
        .filter_map(|e| compile(&e, LinkType::Ethernet).ok().map(|f| (e, f)))
        .collect();
    assert!(
        filters.len() > 150,
        "only {} corpus expressions compile",
        filters.len()
    );
    let mut exact = 0usize;
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut checked = 0u64;
    let mut uncertain = 0u64;
    let mut compile_time = std::time::Duration::ZERO;
    for batch in filters.chunks(64) {
        let rules: Vec<Option<&Filter>> = batch.iter().map(|(_, f)| Some(f)).collect();
        let t0 = Instant::now();
        let tables = Tables::compile(&rules).unwrap_or_else(|e| panic!("compile: {e}"));
        compile_time += t0.elapsed();
        let flagged = tables.gen_config().flagged;
        for (i, (e, _)) in batch.iter().enumerate() {
            let r = tables
                .rule_report(i)
                .unwrap_or_else(|| panic!("no report for {e}"));
            assert_eq!(r.exact, flagged & (1 << i) == 0, "{e}: report vs flag");
            if r.exact {
                exact += 1;
            } else {
                for reason in &r.reasons {
                    *by_reason.entry(reason.clone()).or_default() += 1;
                }
                println!("flagged: {e:?}: {}", r.reasons.join("; "));
            }
        }
        for (trace, p) in &packets {
            let key = PacketKey::extract(&p.data, p.wire_len);
            let meta = tables.classify(&key);
            if meta.recheck == tables.gen_config().rules {
                uncertain += 1;
            }
            for (i, (e, f)) in batch.iter().enumerate() {
                let m = f.matches(&p.view());
                let k = meta.rules & (1 << i) != 0;
                let recheck = meta.recheck & (1 << i) != 0;
                let is_flagged = flagged & (1 << i) != 0;
                checked += 1;
                let bad = if is_flagged {
                    m && !(k && recheck)
                } else {
                    (m != k && !recheck) || (m && !k)
                };
                if bad && failures.len() < 40 {
                    failures.push(format!(
                        "{e:?} on {trace} (len {} wire {}): exact {m}, kernel {k}, recheck {recheck}, flagged {is_flagged}",
                        p.data.len(),
                        p.wire_len
                    ));
                }
            }
        }
    }
    println!(
        "{} corpus expressions compile for Ethernet: {exact} exact in the kernel, {} flagged",
        filters.len(),
        filters.len() - exact
    );
    for (r, n) in &by_reason {
        println!("  {n:4}  {r}");
    }
    println!(
        "{checked} (packet, rule) pairs over {} packets; {uncertain} packet classifications uncertain (x batches); tables compiled in {compile_time:?}; total {:?}",
        packets.len(),
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements, first:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        exact * 2 > filters.len(),
        "fewer than half of the corpus is exact in the kernel"
    );
}
