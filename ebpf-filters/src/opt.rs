//! Path-sensitive constant folding, after what libpcap's optimizer does to the same
//! expressions (its value numbering knows that a field compared equal to one constant is not
//! equal to another on the same path).
//!
//! It matters for exactness twice: tcpdump refuses an expression whose optimized program
//! rejects every packet ("expression rejects all packets": `ip6 and igmp`, `not ip6 and ip6`,
//! `arp` on raw IP ...), and a folded leaf no longer loads anything. Only leaves whose value
//! is already known on the path are folded, so no load that libpcap performs is skipped
//! before one it also performs.

use crate::ir::{ArOp, Encap, Link, Node, Off, Pred, Value};
use crate::lower::apply_op;

/// A field "load(off, size)" compared for equality with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    off: Off,
    size: u8,
    mask: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fact {
    Eq(u32),
    Ne(u32),
}

type Facts = Vec<(Key, Fact)>;

/// The field and constant of a leaf that is a plain equality test.
fn simple(p: &Pred) -> Option<(Key, u32)> {
    match p {
        Pred::LinkProto { encap, proto } => link_field(encap, *proto),
        Pred::Ipv4Proto { encap, proto } => Some((
            Key {
                off: add(encap.net(), 9),
                size: 1,
                mask: !0,
            },
            *proto,
        )),
        Pred::Ipv6Proto {
            encap,
            proto,
            via_fragment: false,
        } => Some((
            Key {
                off: add(encap.net(), 6),
                size: 1,
                mask: !0,
            },
            *proto,
        )),
        _ => None,
    }
}

fn add(o: Off, k: u32) -> Off {
    Off {
        base: o.base,
        k: o.k.wrapping_add(k),
    }
}

fn link_field(e: &Encap, proto: u32) -> Option<(Key, u32)> {
    if e.mpls_depth > 0 {
        return None;
    }
    match e.link {
        // Version nibble: 4 or 6.
        Link::Raw => {
            return Some((
                Key {
                    off: e.linkhdr,
                    size: 1,
                    mask: 0xf0,
                },
                proto,
            ))
        }
        // Address family word: one class per protocol.
        Link::Null | Link::Loop => {
            return Some((
                Key {
                    off: e.linkhdr,
                    size: 4,
                    mask: !0,
                },
                proto,
            ))
        }
        _ => {}
    }
    if proto <= 1500 {
        return None;
    }
    let lt = e.linktype?;
    let v = match e.link {
        Link::Ethernet | Link::LinuxSll | Link::LinuxSll2 | Link::CHdlc => proto,
        Link::Ppp => match proto {
            0x0800 => 0x0021,
            0x86dd => 0x0057,
            other => other,
        },
        _ => return None,
    };
    Some((
        Key {
            off: lt,
            size: 2,
            mask: !0,
        },
        v,
    ))
}

fn known(facts: &Facts, key: Key, v: u32) -> Option<bool> {
    for (k, f) in facts.iter().rev() {
        if *k != key {
            continue;
        }
        match *f {
            Fact::Eq(w) => return Some(w == v),
            Fact::Ne(w) if w == v => return Some(false),
            Fact::Ne(_) => {}
        }
    }
    None
}

/// Facts that hold when `n` evaluated to `value`.
fn learn(n: &Node, value: bool, facts: &mut Facts) {
    match n {
        Node::Pred(p) => {
            if let Some((k, v)) = simple(p) {
                facts.push((k, if value { Fact::Eq(v) } else { Fact::Ne(v) }));
            }
        }
        Node::Not(c) => learn(c, !value, facts),
        Node::And(cs) if value => cs.iter().for_each(|c| learn(c, true, facts)),
        Node::Or(cs) if !value => cs.iter().for_each(|c| learn(c, false, facts)),
        _ => {}
    }
}

/// Folds an arithmetic value as libpcap's optimizer does (`opt_stmt`): constant operands are
/// combined; `x & 0` and `x * 0` become 0; a left operand 0 makes `* / % & << >>` 0 (and
/// the other operand's loads are then dead and removed). Division by a constant zero is left
/// alone (the lowering refuses it).
fn fold_value(v: Value) -> Value {
    match v {
        // Two constants left by the lowering are `byte N & V` / `byte N | V`, libpcap's test
        // of an accumulator whose value its optimizer does not know: not folded.
        Value::Bin(op, a, b) if matches!((&*a, &*b), (Value::Const(_), Value::Const(_))) => {
            Value::Bin(op, a, b)
        }
        Value::Bin(op, a, b) => {
            let (a, b) = (fold_value(*a), fold_value(*b));
            match (&a, &b) {
                (Value::Const(x), Value::Const(y)) => match apply_op(op, *x, *y) {
                    Some(r) => Value::Const(r),
                    None => Value::Bin(op, Box::new(a), Box::new(b)),
                },
                (_, Value::Const(0)) if matches!(op, ArOp::And | ArOp::Mul) => Value::Const(0),
                (Value::Const(0), _)
                    if matches!(
                        op,
                        ArOp::Mul | ArOp::Div | ArOp::Mod | ArOp::And | ArOp::Lsh | ArOp::Rsh
                    ) =>
                {
                    Value::Const(0)
                }
                _ => Value::Bin(op, Box::new(a), Box::new(b)),
            }
        }
        Value::Neg(a) => match fold_value(*a) {
            Value::Const(c) => Value::Const(c.wrapping_neg()),
            other => Value::Neg(Box::new(other)),
        },
        Value::Load { base, index, size } => Value::Load {
            base,
            index: Box::new(fold_value(*index)),
            size,
        },
        other => other,
    }
}

fn fold(n: Node, facts: &mut Facts) -> Node {
    match n {
        Node::Pred(Pred::Relation { lhs, op, rhs }) => {
            let (lhs, rhs) = (fold_value(lhs), fold_value(rhs));
            match (&lhs, &rhs) {
                (Value::Const(a), Value::Const(b)) => {
                    if op.apply(*a, *b) {
                        Node::True
                    } else {
                        Node::False
                    }
                }
                _ => Node::Pred(Pred::Relation { lhs, op, rhs }),
            }
        }
        Node::Pred(p) => {
            if let Some((k, v)) = simple(&p) {
                if let Some(b) = known(facts, k, v) {
                    return if b { Node::True } else { Node::False };
                }
            }
            if let Pred::Ipv6Proto {
                encap,
                proto,
                via_fragment: true,
            } = &p
            {
                let k = Key {
                    off: add(encap.net(), 6),
                    size: 1,
                    mask: !0,
                };
                if known(facts, k, *proto) == Some(true) {
                    return Node::True;
                }
                if known(facts, k, *proto) == Some(false) && known(facts, k, 44) == Some(false) {
                    return Node::False;
                }
            }
            Node::Pred(p)
        }
        Node::Not(c) => Node::negate(fold(*c, facts)),
        Node::And(cs) => {
            let mark = facts.len();
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                let c = fold(c, facts);
                if c == Node::False {
                    facts.truncate(mark);
                    return Node::False;
                }
                learn(&c, true, facts);
                out.push(c);
            }
            facts.truncate(mark);
            Node::and_all(out)
        }
        Node::Or(cs) => {
            let mark = facts.len();
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                let c = fold(c, facts);
                if c == Node::True {
                    facts.truncate(mark);
                    return Node::True;
                }
                learn(&c, false, facts);
                out.push(c);
            }
            facts.truncate(mark);
            absorb(&mut out);
            Node::or_all(merge_tails(regroup(factor(out))))
        }
        other => other,
    }
}

/// `Or(.., And(x, ..), x, ..)` is `Or(.., x, ..)`: when `x` holds the result is true either
/// way, which libpcap's optimizer sees (it then drops the loads of the `And`'s tail).
fn absorb(v: &mut Vec<Node>) {
    let mut i = 0;
    while i + 1 < v.len() {
        let first = match &v[i] {
            Node::And(cs) => cs.first().cloned(),
            _ => None,
        };
        if let Some(f) = first {
            if v[i + 1] == f {
                v.remove(i);
                continue;
            }
        }
        i += 1;
    }
}

/// `Or(.., And(h, a..), And(h, b..), ..)` is `Or(.., And(h, Or(And(a..), And(b..))), ..)`:
/// the second test of `h` repeats the first (same loads, same result), as libpcap's optimizer
/// sees (`host X` tests the EtherType once, then source and destination).
fn factor(v: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::with_capacity(v.len());
    for n in v {
        let merged = match (out.last_mut(), &n) {
            (Some(Node::And(prev)), Node::And(cur))
                if prev.len() >= 2 && cur.len() >= 2 && prev[0] == cur[0] =>
            {
                let head = prev[0].clone();
                let a = Node::and_all(prev[1..].to_vec());
                let b = Node::and_all(cur[1..].to_vec());
                let inner = match Node::or(a, b) {
                    Node::Or(cs) => Node::or_all(merge_tails(regroup(factor(cs)))),
                    other => other,
                };
                Some(Node::and(head, inner))
            }
            _ => None,
        };
        match merged {
            Some(m) => {
                if let Some(last) = out.last_mut() {
                    *last = m;
                }
            }
            None => out.push(n),
        }
    }
    out
}

/// The equality-test head of an `Or` child: `And(h, rest..)` or a bare leaf `h`.
fn head(n: &Node) -> Option<(Key, u32)> {
    let p = match n {
        Node::And(cs) => match cs.first() {
            Some(Node::Pred(p)) => p,
            _ => return None,
        },
        Node::Pred(p) => p,
        _ => return None,
    };
    // On NULL/LOOP `ip6` is three compares (three address families): libpcap's optimizer
    // cannot thread through it, so no regrouping there.
    if let Pred::LinkProto { encap, .. } = p {
        if matches!(encap.link, Link::Null | Link::Loop) {
            return None;
        }
    }
    simple(p)
}

/// Splits an `Or` child into its head and the rest (`True` when it is the head alone).
fn split(n: Node) -> (Node, Node) {
    match n {
        Node::And(mut cs) if cs.len() >= 2 => {
            let h = cs.remove(0);
            (h, Node::and_all(cs))
        }
        other => (other, Node::True),
    }
}

/// In a run of `Or` children whose heads test the same field for equality
/// (`Or(And(ip6, a), And(ip, b), And(ip6, c), And(ip, d))`), groups the children by the value
/// tested: `Or(And(ip6, Or(a, c)), And(ip, Or(b, d)))`. Exact: for a given packet only the
/// children whose head holds can be true, the others load nothing new (their head reads the
/// field already read), so the new loads happen in the same order. This is what libpcap's
/// optimizer achieves for `port 53 or port 123`.
fn regroup(v: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::with_capacity(v.len());
    let mut run: Vec<Node> = Vec::new();
    let mut run_key: Option<Key> = None;
    let flush = |run: &mut Vec<Node>, out: &mut Vec<Node>| {
        if run.len() < 2 {
            out.append(run);
            return;
        }
        // Groups in order of first appearance.
        let mut groups: Vec<(u32, Node, Vec<Node>)> = Vec::new();
        for n in run.drain(..) {
            let v = head(&n).map_or(0, |(_, v)| v);
            let (h, rest) = split(n);
            match groups.iter_mut().find(|(gv, _, _)| *gv == v) {
                Some((_, _, rests)) => rests.push(rest),
                None => groups.push((v, h, vec![rest])),
            }
        }
        for (_, h, rests) in groups {
            let inner = match Node::or_all(rests) {
                Node::Or(cs) => Node::or_all(merge_tails(regroup(factor(cs)))),
                other => other,
            };
            out.push(Node::and(h, inner));
        }
    };
    for n in v {
        let k = head(&n).map(|(k, _)| k);
        if k.is_some() && k == run_key {
            run.push(n);
            continue;
        }
        flush(&mut run, &mut out);
        run_key = k;
        run.push(n);
    }
    flush(&mut run, &mut out);
    out
}

/// `Or(And(h1, x..), And(h2, x..))` with `h1`, `h2` equality tests of one field and the same
/// tail is `And(Or(h1, h2), x..)`: at most one head holds, the others load nothing new
/// (`tcp or udp or sctp` then ports, as in every `port N`).
fn merge_tails(v: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::with_capacity(v.len());
    for n in v {
        let merged = match (out.last(), &n) {
            (Some(prev), Node::And(cur)) if cur.len() >= 2 => {
                let (ph, ptail) = match prev {
                    Node::And(pc) if pc.len() >= 2 => (&pc[0], &pc[1..]),
                    _ => (&Node::True, &[][..]),
                };
                let heads_ok = |h: &Node| match h {
                    Node::Or(hs) => hs.iter().all(|x| head(x).is_some()),
                    x => head(x).is_some(),
                };
                let key_of = |h: &Node| match h {
                    Node::Or(hs) => hs.first().and_then(head).map(|(k, _)| k),
                    x => head(x).map(|(k, _)| k),
                };
                if !ptail.is_empty()
                    && ptail == &cur[1..]
                    && heads_ok(ph)
                    && heads_ok(&cur[0])
                    && key_of(ph) == key_of(&cur[0])
                {
                    let mut t = vec![Node::or(ph.clone(), cur[0].clone())];
                    t.extend(cur[1..].iter().cloned());
                    Some(Node::And(t))
                } else {
                    None
                }
            }
            _ => None,
        };
        match merged {
            Some(m) => {
                if let Some(last) = out.last_mut() {
                    *last = m;
                }
            }
            None => out.push(n),
        }
    }
    out
}

/// Folds leaves whose value is known on their path.
pub(crate) fn simplify(n: Node) -> Node {
    let mut facts = Vec::new();
    fold(n, &mut facts)
}
