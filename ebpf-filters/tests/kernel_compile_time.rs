//! How long `Tables::compile` takes for 64 rules (a measurement, not an assertion).
//!
//! `cargo test --release -p ebpf-filters --test kernel_compile_time -- --ignored --nocapture`
//! prints the median of 5 compilations for four sets of 64 rules: corpus expressions,
//! `host A and port P`, rules that must be coarsened to fit the term budget, and rules that
//! must be coarsened to fit the LPM trie.

use std::time::{Duration, Instant};

use como_packet::LinkType;
use como_tests::corpus_section;
use ebpf_filters::kernel::Tables;
use ebpf_filters::{compile, Filter};

fn median_compile(filters: &[Filter]) -> (Duration, u32, usize) {
    let rules: Vec<Option<&Filter>> = filters.iter().map(Some).collect();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t0 = Instant::now();
        let t = Tables::compile(&rules).unwrap_or_else(|e| panic!("{e}"));
        times.push(t0.elapsed());
        last = Some(t);
    }
    times.sort();
    let t = last.unwrap_or_else(|| panic!("no compilation"));
    (times[2], t.gen_config().nterms, t.lpm_entries().len())
}

fn set(exprs: impl Iterator<Item = String>) -> Vec<Filter> {
    exprs
        .filter_map(|e| compile(&e, LinkType::Ethernet).ok())
        .take(64)
        .collect()
}

#[test]
#[ignore = "measurement; run in release with --nocapture"]
fn compile_time_for_64_rules() {
    let sets: [(&str, Vec<Filter>); 4] = [
        (
            "corpus (first 64 that compile)",
            set(corpus_section("valid").into_iter()),
        ),
        (
            "host A and port P",
            set((0..64).map(|i| format!("host 10.0.0.{i} and port {}", 1000 + i))),
        ),
        (
            "(host A or ether host M) and port P (term budget)",
            set((0..64).map(|i| {
                format!(
                    "(host 10.0.0.{i} or ether host 00:00:00:00:00:{i:02x}) and port {}",
                    1000 + i
                )
            })),
        ),
        (
            "not (4 IPv6 hosts) (LPM budget)",
            set((1..=64).map(|i| {
                format!("not (host {i:x}::1 or host 2001:db8:{i:x}::1 or host fe80::{i:x} or host 3fff:{i:x}::9)")
            })),
        ),
    ];
    for (name, filters) in &sets {
        assert_eq!(filters.len(), 64, "{name}");
        let (t, nterms, lpm) = median_compile(filters);
        println!("{name}: {t:?} (median of 5), {nterms} terms, {lpm} LPM entries");
    }
}
