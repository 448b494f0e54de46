//! Disjunctive normal form of an IR tree with *short-circuit expansion*.
//!
//! libpcap evaluates `and`/`or` left to right with short-circuit, and the lowering emits a
//! protocol check before the field test it guards. For every literal to keep the literals
//! that guard it in its term, negations are expanded in evaluation order:
//! `not (a and b and c)` = `not a` or `(a and not b)` or `(a and b and not c)`, and
//! `not (a or b)` = `not a and not b`; `a and (b or c)` distributes; in `a or b`, the terms
//! of `b` also hold the literals that `a` being false implies (`not ip or igmp`: the `igmp`
//! term holds `ip`, which libpcap's optimizer, and the IR simplifier, removed from `igmp`'s own
//! checks). A term is the list of literals (predicate, polarity) in evaluation order.
//!
//! A sub-expression whose expansion would exceed [`MAX_RAW_TERMS`] terms is replaced by
//! `true` (an over-approximation: after the expansion every negation sits on a literal, so
//! any sub-result may be widened) and reported.

use crate::ir::{Node, Pred};

/// Most terms one sub-expression may expand to before it is approximated by `true`.
pub const MAX_RAW_TERMS: usize = 1024;

/// A literal: a predicate and whether it is taken positively.
pub type Lit<'a> = (&'a Pred, bool);

/// A conjunction of literals.
pub type RawTerm<'a> = Vec<Lit<'a>>;

/// The expansion of a tree.
#[derive(Debug, Default)]
pub struct Dnf<'a> {
    /// The terms (an empty list is `false`, a term without literals is `true`).
    pub terms: Vec<RawTerm<'a>>,
    /// Whether some sub-expression was approximated by `true` for size.
    pub approximated: bool,
}

/// Expands `node` (taken positively when `pos`).
pub fn expand(node: &Node, pos: bool) -> Dnf<'_> {
    let mut approximated = false;
    let terms = go(node, pos, &mut approximated);
    Dnf {
        terms,
        approximated,
    }
}

fn truth() -> Vec<RawTerm<'static>> {
    vec![Vec::new()]
}

fn product<'a>(a: &[RawTerm<'a>], b: &[RawTerm<'a>], approximated: &mut bool) -> Vec<RawTerm<'a>> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let mut t = Vec::with_capacity(x.len() + y.len());
            t.extend_from_slice(x);
            let mut dead = false;
            for l in y {
                if !t.contains(l) {
                    dead |= t.iter().any(|m| contradicts(m, l));
                    t.push(*l);
                }
            }
            if dead {
                continue;
            }
            if out.len() >= MAX_RAW_TERMS {
                *approximated = true;
                return truth();
            }
            out.push(t);
        }
    }
    out
}

/// Whether two literals cannot hold together: a predicate and its negation, or two
/// equality tests of the same header field (link type above 1500, IP protocol) in the same
/// context with different values. A cheap early pruning; the field sets find the rest.
fn contradicts(a: &Lit<'_>, b: &Lit<'_>) -> bool {
    let (pa, sa) = *a;
    let (pb, sb) = *b;
    if pa == pb {
        return sa != sb;
    }
    if !(sa && sb) {
        return false;
    }
    match (pa, pb) {
        (
            Pred::LinkProto {
                encap: ea,
                proto: x,
            },
            Pred::LinkProto {
                encap: eb,
                proto: y,
            },
        )
        | (
            Pred::Ipv4Proto {
                encap: ea,
                proto: x,
            },
            Pred::Ipv4Proto {
                encap: eb,
                proto: y,
            },
        ) => ea == eb && x != y && *x > 1500 && *y > 1500,
        (
            Pred::Ipv6Proto {
                encap: ea,
                proto: x,
                via_fragment: false,
            },
            Pred::Ipv6Proto {
                encap: eb,
                proto: y,
                via_fragment: false,
            },
        ) => ea == eb && x != y,
        _ => false,
    }
}

fn sum<'a>(
    mut a: Vec<RawTerm<'a>>,
    b: Vec<RawTerm<'a>>,
    approximated: &mut bool,
) -> Vec<RawTerm<'a>> {
    if a.len() + b.len() > MAX_RAW_TERMS {
        *approximated = true;
        return truth();
    }
    a.extend(b);
    a
}

fn go<'a>(node: &'a Node, pos: bool, approximated: &mut bool) -> Vec<RawTerm<'a>> {
    match (node, pos) {
        (Node::True, true) | (Node::False, false) => truth(),
        (Node::True, false) | (Node::False, true) => Vec::new(),
        (Node::Pred(p), _) => vec![vec![(p, pos)]],
        (Node::Not(c), _) => go(c, !pos, approximated),
        // a and b and c: product, in order.
        (Node::And(cs), true) | (Node::Or(cs), false) => {
            let mut acc = truth();
            for c in cs {
                let d = go(c, pos, approximated);
                acc = product(&acc, &d, approximated);
                if acc.is_empty() {
                    break;
                }
            }
            acc
        }
        // a or b or c: union; b is evaluated only when a is false, so b's terms also get
        // the literals a false implies (libpcap's optimizer, and `opt`, drop the checks of b
        // those literals decide: `not ip or igmp` tests the protocol without `ip`).
        (Node::Or(cs), true) => {
            let mut acc = Vec::new();
            let mut known: RawTerm<'a> = Vec::new();
            for c in cs {
                let mut d = go(c, true, approximated);
                if !known.is_empty() {
                    for t in d.iter_mut() {
                        let mut with = known.clone();
                        for l in t.iter() {
                            if !with.contains(l) {
                                with.push(*l);
                            }
                        }
                        *t = with;
                    }
                }
                acc = sum(acc, d, approximated);
                learn(c, false, &mut known);
            }
            acc
        }
        // not (a and b and c) = not a | a and not b | a and b and not c.
        (Node::And(cs), false) => {
            let mut acc = Vec::new();
            let mut prefix = truth();
            for c in cs {
                let neg = go(c, false, approximated);
                let with = product(&prefix, &neg, approximated);
                acc = sum(acc, with, approximated);
                let p = go(c, true, approximated);
                prefix = product(&prefix, &p, approximated);
                if prefix.is_empty() {
                    break;
                }
            }
            acc
        }
    }
}

/// Protocol literals that hold whenever `n` evaluates to `value` and that appear in every
/// term of its expansion with that polarity (what libpcap's optimizer learns on a path and
/// uses to drop later protocol checks: link type and IP protocol equality tests).
fn learn<'a>(n: &'a Node, value: bool, out: &mut RawTerm<'a>) {
    match n {
        Node::Pred(
            p @ (Pred::LinkProto { .. }
            | Pred::Ipv4Proto { .. }
            | Pred::Ipv6Proto {
                via_fragment: false,
                ..
            }),
        ) if !out.contains(&(p, value)) => out.push((p, value)),
        Node::Not(c) => learn(c, !value, out),
        Node::And(cs) if value => cs.iter().for_each(|c| learn(c, true, out)),
        Node::Or(cs) if !value => cs.iter().for_each(|c| learn(c, false, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Encap, Link, Off};

    fn lit(n: u32) -> Node {
        Node::Pred(Pred::Ipv4Proto {
            encap: Encap {
                link: Link::Ethernet,
                linkhdr: Off::abs(0),
                linktype: Some(Off::abs(12)),
                linkpl: Off::abs(14),
                nl: 0,
                vlan_depth: 0,
                mpls_depth: 0,
                geneve: false,
            },
            proto: n,
        })
    }

    fn show(d: &Dnf<'_>) -> Vec<Vec<(u32, bool)>> {
        d.terms
            .iter()
            .map(|t| {
                t.iter()
                    .map(|(p, s)| match p {
                        Pred::Ipv4Proto { proto, .. } => (*proto, *s),
                        _ => (0, *s),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn not_and_keeps_the_guards_in_order() {
        let n = Node::Not(Box::new(Node::And(vec![lit(1), lit(2), lit(3)])));
        let d = expand(&n, true);
        assert_eq!(
            show(&d),
            vec![
                vec![(1, false)],
                vec![(1, true), (2, false)],
                vec![(1, true), (2, true), (3, false)],
            ]
        );
    }

    #[test]
    fn and_distributes_over_or_and_not_or_is_and() {
        let n = Node::And(vec![lit(1), Node::Or(vec![lit(2), lit(3)])]);
        assert_eq!(
            show(&expand(&n, true)),
            vec![
                vec![(1, true), (2, true)],
                vec![(1, true), (2, false), (3, true)]
            ]
        );
        let n = Node::Not(Box::new(Node::Or(vec![lit(2), lit(3)])));
        assert_eq!(show(&expand(&n, true)), vec![vec![(2, false), (3, false)]]);
        // not (a and (b or c)) = not a | a and not b and not c
        let n = Node::Not(Box::new(Node::And(vec![
            lit(1),
            Node::Or(vec![lit(2), lit(3)]),
        ])));
        assert_eq!(
            show(&expand(&n, true)),
            vec![vec![(1, false)], vec![(1, true), (2, false), (3, false)]]
        );
    }

    #[test]
    fn huge_products_become_true() {
        let ors: Vec<Node> = (0..12)
            .map(|i| Node::Or(vec![lit(2 * i), lit(2 * i + 1)]))
            .collect();
        let n = Node::And(ors);
        let d = expand(&n, true);
        assert!(d.approximated);
        assert!(d.terms.len() <= MAX_RAW_TERMS);
    }
}
