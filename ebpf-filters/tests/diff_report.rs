//! Diagnostic: every mismatch against tcpdump's count tables, grouped by expression.
//!
//! `cargo test -p ebpf-filters --test diff_report -- --ignored --nocapture` prints, for each
//! corpus expression, the traces where our count (or our refusal) differs from tcpdump's.
//! The asserting version of this comparison is `tests/tests/filters_vs_tcpdump.rs`.

use std::collections::BTreeMap;

use como_tests::{load_trace, CountTable, Trace};
use ebpf_filters::{compile, ErrorKind};

#[test]
#[ignore = "diagnostic report; the asserting test lives in como-tests"]
fn report() {
    let mut traces: BTreeMap<String, Result<Trace, String>> = BTreeMap::new();
    let mut by_expr: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unsupported: BTreeMap<String, String> = BTreeMap::new();
    for name in ["counts.tsv", "tcpdump-counts.tsv"] {
        let table = CountTable::load(name).unwrap_or_else(|e| panic!("{e}"));
        for (col, column) in table.columns.iter().enumerate() {
            if column.starts_with("tracestats:") {
                continue;
            }
            let t = traces
                .entry(column.clone())
                .or_insert_with(|| load_trace(column));
            let Ok(trace) = t else { continue };
            if table.totals[col].is_some_and(|n| n != trace.packets.len() as u64) {
                continue; // the reader disagrees with tcpdump on the packets: not a filter issue
            }
            for (expr, cells) in &table.rows {
                let ours = compile(expr, trace.link).map(|f| {
                    trace
                        .packets
                        .iter()
                        .filter(|p| f.matches(&p.view()))
                        .count() as u64
                });
                let msg = match (cells[col], ours) {
                    (None, Err(_)) => continue,
                    (Some(_), Err(e)) if e.kind == ErrorKind::Unsupported => {
                        unsupported.insert(expr.clone(), e.message.clone());
                        continue;
                    }
                    (Some(_), Err(e))
                        if e.kind == ErrorKind::LinkType
                            && matches!(trace.link, como_packet::LinkType::Other(_)) =>
                    {
                        continue
                    }
                    (None, Ok(n)) => format!("{column}: tcpdump refuses, ours {n}"),
                    (Some(n), Err(e)) => format!("{column}: tcpdump {n}, we refuse: {e}"),
                    (Some(n), Ok(m)) if n != m => format!("{column}: tcpdump {n}, ours {m}"),
                    _ => continue,
                };
                by_expr.entry(expr.clone()).or_default().push(msg);
            }
        }
    }
    for (e, v) in &by_expr {
        println!("== {e:?} ({} cells)", v.len());
        for m in v.iter().take(4) {
            println!("   {m}");
        }
    }
    println!(
        "-- {} expressions with mismatches; {} refused as unsupported:",
        by_expr.len(),
        unsupported.len()
    );
    for (e, m) in &unsupported {
        println!("   U {e:?}: {m}");
    }
    // libpcap's per-packet oracle.
    let path = como_tests::data_dir()
        .join("filters")
        .join("apply-oracle.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .skip(1)
    {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, savefile, expr, results, _n, netmask, skip, debian] = f[..] else {
            continue;
        };
        if debian != "agree" || !netmask.is_empty() || !skip.is_empty() {
            continue;
        }
        let path = format!("libpcap/tests/filter/{savefile}");
        let t = traces
            .entry(path.clone())
            .or_insert_with(|| load_trace(&path));
        let Ok(trace) = t else { continue };
        match compile(expr, trace.link) {
            Ok(f) => {
                let want: Vec<bool> = results.split(',').map(|r| r.trim() != "0").collect();
                let got: Vec<bool> = trace.packets.iter().map(|p| f.matches(&p.view())).collect();
                if want != got {
                    println!(
                        "ORACLE {name}: {expr:?} on {savefile}: libpcap {want:?}, ours {got:?}"
                    );
                }
            }
            Err(e) if e.kind == ErrorKind::Syntax => {
                println!("ORACLE {name}: {expr:?} refused: {e}")
            }
            Err(_) => {}
        }
    }
}
