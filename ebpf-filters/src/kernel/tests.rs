//! Unit tests of the kernel-table compiler.

use super::*;
use crate::compile;
use como_packet::LinkType;

fn f(e: &str) -> Filter {
    compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"))
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
}
