//! Exact userspace evaluator of the [`crate::ir`], with BPF's semantics.
//!
//! Every predicate performs the loads libpcap's generated code performs, in the same order.
//! A load beyond the captured bytes makes BPF return 0: the packet is rejected, whatever
//! sub-expression the load was in. libpcap's optimizer, though, moves comparisons against an
//! already-loaded value ahead of later loads (`host A or B` tests the source against A and B
//! before loading the destination), so on a truncated packet the optimized program may decide
//! before reaching the out-of-bounds load. The evaluator reproduces that: after an
//! out-of-bounds load the result so far is "unknown", and evaluation goes on using only
//! values already loaded; a leaf that needs a new load stays unknown. And/or/not combine
//! unknowns three-valued; an unknown result rejects the packet. Programs libpcap does not
//! optimize (`protochain`, `geneve`, 802.11 payload offsets) are evaluated strictly: the first
//! out-of-bounds load rejects. A run-time division by zero always rejects. Offsets that depend on the packet (802.11 header length, radiotap
//! length, Geneve inner frame) live in a fixed array of registers on the stack: nothing is
//! allocated per packet.

use std::cell::Cell;

use crate::ir::{
    ArOp, Base, Cmp, Encap, Ir, Link, LoadBase, Node, Off, Pred, Side, Value, WlanPrologue,
    MAX_REGS,
};
use crate::jit::{Native, MATCH};
use crate::lower::apply_op;
use crate::threaded::Threaded;

/// Why a load or computation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Out-of-bounds load (or, after one, a load of a value not loaded before).
    Oob,
    /// The program returns 0 here, whatever else (division by zero, strict mode).
    Hard,
}

/// Three-valued result of a sub-expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    F,
    T,
    U,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Self {
        if b {
            Tri::T
        } else {
            Tri::F
        }
    }
}

/// Loads remembered for the "already loaded" rule (offset, size).
const CACHE: usize = 32;

type R<T> = Result<T, Reject>;

struct Ctx<'p, 'c> {
    data: &'p [u8],
    wire_len: u32,
    regs: [u32; MAX_REGS as usize],
    /// A after the Geneve header check: the L3 header length (plus variable offset).
    scratch: u32,
    /// Whether an out-of-bounds load is tolerated (optimized programs) or rejects at once.
    lenient: bool,
    /// Loads remembered in the second pass (after the fast pass met an out-of-bounds load).
    track: Option<&'c Cache>,
}

/// The second pass's memory of loads performed.
struct Cache {
    /// An out-of-bounds load happened: only loads already performed are allowed.
    poisoned: Cell<bool>,
    /// Loads performed so far (start, size), a ring.
    entries: [Cell<(u32, u8)>; CACHE],
    n: Cell<usize>,
}

/// Evaluates the program on one packet.
/// The tree flattened into a jump program for the fast pass: each instruction tests one
/// predicate and names the next instruction for true and for false (and/or/not become jumps,
/// as in BPF), so evaluation is a loop, not a recursion.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    ins: Vec<Ins>,
    entry: u32,
    /// The same program as threaded code, when every instruction has a register-free form.
    threaded: Option<Threaded>,
    /// The same program as native code (same eligibility), when the JIT works on this host.
    native: Option<Native>,
}

#[derive(Debug, Clone)]
struct Ins {
    op: Op,
    jt: u32,
    jf: u32,
}

/// A fast-pass instruction: the common leaves specialized into one masked load and compare
/// (exactly the loads the predicate performs), anything else evaluated as the predicate.
#[derive(Debug, Clone)]
enum Op {
    /// `load(base, k, 1) & mask == val` (the common cases get a variant per size: no size
    /// dispatch inside the load).
    Eq8 {
        reg: u8,
        k: u32,
        mask: u32,
        val: u32,
    },
    /// 2-byte `Eq`.
    Eq16 {
        reg: u8,
        k: u32,
        mask: u32,
        val: u32,
    },
    /// 4-byte `Eq`.
    Eq32 {
        reg: u8,
        k: u32,
        mask: u32,
        val: u32,
    },
    /// `lo <= load(base, k, size) <= hi`.
    Range {
        reg: u8,
        size: u8,
        k: u32,
        lo: u32,
        hi: u32,
    },
    /// IPv4 port: X = 4 * (P[base + k] & 0xf) + base; `lo <= P[X + k + off : 2] <= hi`.
    Port4 {
        reg: u8,
        k: u32,
        off: u32,
        lo: u32,
        hi: u32,
    },
    /// `load(base, k, size)` in one of the ranges (an `or` of ports on one side).
    RangeSet {
        reg: u8,
        size: u8,
        k: u32,
        ranges: Box<[(u32, u32)]>,
    },
    /// IPv4 port in one of the ranges (an `or` of ports on one side).
    Port4Set {
        reg: u8,
        k: u32,
        off: u32,
        ranges: Box<[(u32, u32)]>,
    },
    /// `ip6 proto`: next header == val, or fragment header (44) then next header == val.
    Ip6Proto { reg: u8, k: u32, val: u32 },
    /// `proto[index:size] & mask <cmp> val`; with `tcp`, relative to the IPv4 payload (IHL
    /// read at `k`).
    Rel {
        reg: u8,
        k: u32,
        index: u32,
        size: u8,
        mask: u32,
        cmp: Cmp,
        val: u32,
        tcp: bool,
    },
    /// `load(base, k, size) & mask` is one of `vals` (an `or` of equality tests of one field).
    EqAny {
        reg: u8,
        size: u8,
        k: u32,
        mask: u32,
        vals: Box<[u32]>,
    },
    /// Multi-way branch on `load(base, k, size) & mask`: the target of the matching value, else
    /// the instruction's false target (an `or` of branches headed by exclusive equality tests
    /// of one field, e.g. the EtherType for `ip6 ... or ip ...`).
    Switch {
        reg: u8,
        size: u8,
        k: u32,
        mask: u32,
        cases: Box<[(u32, u32)]>,
    },
    /// General case.
    Pred(Box<Pred>),
}

/// A loaded field: (register, size, offset, mask).
type Field = (u8, u8, u32, u32);

/// The equality test heading an `or` branch, as (field, value), and the branch's tail.
fn eq_head(n: &Node) -> Option<(Field, u32, Node)> {
    let (h, tail) = match n {
        Node::And(cs) if cs.len() >= 2 => (cs.first()?, Node::and_all(cs[1..].to_vec())),
        leaf @ Node::Pred(_) => (leaf, Node::True),
        _ => return None,
    };
    let Node::Pred(p) = h else { return None };
    match specialize(p) {
        Op::Eq8 { reg, k, mask, val } => Some(((reg, 1, k, mask), val, tail)),
        Op::Eq16 { reg, k, mask, val } => Some(((reg, 2, k, mask), val, tail)),
        Op::Eq32 { reg, k, mask, val } => Some(((reg, 4, k, mask), val, tail)),
        _ => None,
    }
}

/// An `or` of at least two branches headed by equality tests of one field with distinct values.
fn switch(cs: &[Node]) -> Option<(Field, Vec<(u32, Node)>)> {
    if cs.len() < 2 {
        return None;
    }
    let mut key = None;
    let mut arms: Vec<(u32, Node)> = Vec::with_capacity(cs.len());
    for c in cs {
        let (k, v, tail) = eq_head(c)?;
        match key {
            None => key = Some(k),
            Some(prev) if prev == k => {}
            Some(_) => return None,
        }
        if arms.iter().any(|(w, _)| *w == v) {
            return None;
        }
        arms.push((v, tail));
    }
    Some((key?, arms))
}

/// An `or` whose children are all equality tests of the same field: one load, a set test.
fn eq_any(cs: &[Node]) -> Option<Op> {
    let mut key: Option<(u8, u8, u32, u32)> = None;
    let mut vals = Vec::with_capacity(cs.len());
    for c in cs {
        let Node::Pred(p) = c else { return None };
        let (k, v) = match specialize(p) {
            Op::Eq8 { reg, k, mask, val } => ((reg, 1, k, mask), val),
            Op::Eq16 { reg, k, mask, val } => ((reg, 2, k, mask), val),
            Op::Eq32 { reg, k, mask, val } => ((reg, 4, k, mask), val),
            _ => return None,
        };
        match key {
            None => key = Some(k),
            Some(prev) if prev == k => {}
            Some(_) => return None,
        }
        vals.push(v);
    }
    let (reg, size, k, mask) = key?;
    Some(Op::EqAny {
        reg,
        size,
        k,
        mask,
        vals: vals.into_boxed_slice(),
    })
}

/// An `or` whose children are all port tests on the same header: the ports per side, sides
/// in order of first appearance (the order their loads happen).
fn port_sets(cs: &[Node]) -> Option<Vec<Op>> {
    let mut first: Option<(Encap, bool)> = None;
    let mut sides: Vec<(Side, Vec<(u32, u32)>)> = Vec::new();
    for c in cs {
        let Node::Pred(Pred::Port {
            encap,
            v6,
            side,
            lo,
            hi,
        }) = c
        else {
            return None;
        };
        match first {
            None => first = Some((*encap, *v6)),
            Some((e, v)) if e == *encap && v == *v6 => {}
            Some(_) => return None,
        }
        let r = (u32::from(*lo), u32::from(*hi));
        match sides.iter_mut().find(|(s, _)| s == side) {
            Some((_, rs)) => rs.push(r),
            None => sides.push((*side, vec![r])),
        }
    }
    let (encap, v6) = first?;
    let net = encap.net();
    Some(
        sides
            .into_iter()
            .map(|(side, ranges)| {
                let off = if side == Side::Src { 0 } else { 2 };
                let ranges = ranges.into_boxed_slice();
                if v6 {
                    Op::RangeSet {
                        reg: reg_of(net),
                        size: 2,
                        k: net.k.wrapping_add(40 + off),
                        ranges,
                    }
                } else {
                    Op::Port4Set {
                        reg: reg_of(net),
                        k: net.k,
                        off,
                        ranges,
                    }
                }
            })
            .collect(),
    )
}

const NO_REG: u8 = u8::MAX;

fn reg_of(o: Off) -> u8 {
    match o.base {
        Base::Packet => NO_REG,
        Base::Reg(r) => r,
    }
}

fn eq(o: Off, extra: u32, size: u8, mask: u32, val: u32) -> Op {
    let (reg, k) = (reg_of(o), o.k.wrapping_add(extra));
    match size {
        1 => Op::Eq8 { reg, k, mask, val },
        2 => Op::Eq16 { reg, k, mask, val },
        _ => Op::Eq32 { reg, k, mask, val },
    }
}

/// `proto[const:size]` or `proto[const:size] & const`: (base, index, size, mask).
fn rel_load(v: &Value) -> Option<(LoadBase, u32, u8, u32)> {
    match v {
        Value::Load { base, index, size } => match **index {
            Value::Const(i) => Some((*base, i, *size, !0)),
            _ => None,
        },
        Value::Bin(ArOp::And, a, b) => match (rel_load(a), &**b) {
            (Some((base, i, size, u32::MAX)), Value::Const(m)) => Some((base, i, size, *m)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a predicate is one load compared once ([`specialize`] turns it into `Eq`/`Range`):
/// only those can be decided from an already-loaded value after an out-of-bounds load, as
/// libpcap's optimizer does (it cannot thread through e.g. NULL's three `ip6` compares).
fn single_compare(p: &Pred) -> bool {
    match p {
        Pred::LinkProto { encap: e, proto } => {
            e.mpls_depth == 0
                && ((*proto > 1500
                    && e.linktype.is_some()
                    && (matches!(
                        e.link,
                        Link::Ethernet | Link::LinuxSll | Link::LinuxSll2 | Link::Ppp
                    ) || (e.link == Link::CHdlc && *proto != 0xfe)))
                    || (e.link == Link::Raw && matches!(*proto, 0x0800 | 0x86dd)))
        }
        Pred::Ipv4Proto { .. }
        | Pred::Ipv6Proto {
            via_fragment: false,
            ..
        }
        | Pred::Ipv4FirstFragment { .. }
        | Pred::Ipv4Addr { .. }
        | Pred::VlanId { .. }
        | Pred::MplsLabel { .. }
        | Pred::PppoeSession { .. } => true,
        Pred::Port { v6, .. } => *v6,
        _ => false,
    }
}

/// Specializes a predicate; must perform the same loads as [`Ctx::pred`].
fn specialize(p: &Pred) -> Op {
    match p {
        Pred::LinkProto { encap: e, proto }
            if e.mpls_depth == 0 && *proto > 1500 && e.linktype.is_some() && {
                matches!(e.link, Link::Ethernet | Link::LinuxSll | Link::LinuxSll2)
                    || (e.link == Link::CHdlc && *proto != 0xfe)
                    || e.link == Link::Ppp
            } =>
        {
            let lt = e.linktype.unwrap_or(Off::abs(0));
            let v = if e.link == Link::Ppp {
                ppp_type(*proto)
            } else {
                *proto
            };
            eq(lt, 0, 2, !0, v)
        }
        Pred::LinkProto {
            encap: e,
            proto: p @ (0x0800 | 0x86dd),
        } if e.mpls_depth == 0 && e.link == Link::Raw => eq(
            e.linkhdr,
            0,
            1,
            0xf0,
            if *p == 0x86dd { 0x60 } else { 0x40 },
        ),
        Pred::Ipv4Proto { encap, proto } => eq(encap.net(), 9, 1, !0, *proto),
        Pred::Ipv6Proto {
            encap,
            proto,
            via_fragment: false,
        } => eq(encap.net(), 6, 1, !0, *proto),
        Pred::Ipv4FirstFragment { encap } => eq(encap.net(), 6, 2, 0x1fff, 0),
        Pred::Ipv4Addr {
            encap,
            field,
            addr,
            mask,
        } => eq(encap.net(), field.offset(), 4, *mask, *addr),
        Pred::VlanId { encap, id } => eq(encap.net(), 0, 2, 0x0fff, u32::from(*id)),
        Pred::MplsLabel { encap, label } => eq(encap.net(), 0, 4, 0xffff_f000, label << 12),
        Pred::PppoeSession { encap, id } => eq(encap.net(), 0, 4, 0xffff, u32::from(*id)),
        Pred::Port {
            encap,
            v6,
            side,
            lo,
            hi,
        } => {
            let net = encap.net();
            let off = if *side == Side::Src { 0 } else { 2 };
            if *v6 {
                Op::Range {
                    reg: reg_of(net),
                    size: 2,
                    k: net.k.wrapping_add(40 + off),
                    lo: u32::from(*lo),
                    hi: u32::from(*hi),
                }
            } else {
                Op::Port4 {
                    reg: reg_of(net),
                    k: net.k,
                    off,
                    lo: u32::from(*lo),
                    hi: u32::from(*hi),
                }
            }
        }
        Pred::Ipv6Proto {
            encap,
            proto,
            via_fragment: true,
        } => {
            let net = encap.net();
            Op::Ip6Proto {
                reg: reg_of(net),
                k: net.k,
                val: *proto,
            }
        }
        Pred::Relation {
            lhs,
            op,
            rhs: Value::Const(c),
        } => match rel_load(lhs) {
            Some((base, index, size, mask)) => {
                let (reg, k, tcp) = match base {
                    LoadBase::Link(e) => (reg_of(e.linkhdr), e.linkhdr.k, false),
                    LoadBase::Net(e) => (reg_of(e.net()), e.net().k, false),
                    LoadBase::TransportV6(e) => {
                        (reg_of(e.net()), e.net().k.wrapping_add(40), false)
                    }
                    LoadBase::TransportV4(e) => (reg_of(e.net()), e.net().k, true),
                };
                Op::Rel {
                    reg,
                    k,
                    index,
                    size,
                    mask,
                    cmp: *op,
                    val: *c,
                    tcp,
                }
            }
            None => Op::Pred(Box::new(p.clone())),
        },
        other => Op::Pred(Box::new(other.clone())),
    }
}

impl Program {
    /// Whether the program runs as threaded code.
    #[cfg(test)]
    pub(crate) fn has_threaded(&self) -> bool {
        self.threaded.is_some()
    }

    /// Whether the program runs as native code.
    #[cfg(test)]
    pub(crate) fn has_native(&self) -> bool {
        self.native.is_some()
    }

    /// The threaded code's verdict alone (`None`: no threaded code, or a load out of bounds).
    #[cfg(test)]
    pub(crate) fn run_threaded(&self, data: &[u8]) -> Option<bool> {
        self.threaded.as_ref()?.run(data)
    }

    /// The native code's verdict alone (`None`: no native code, or a load out of bounds).
    #[cfg(test)]
    pub(crate) fn run_native(&self, data: &[u8]) -> Option<bool> {
        self.native.as_ref()?.run(data)
    }
}

/// Jump target: the packet matches.
pub(crate) const ACCEPT: u32 = u32::MAX;
/// Jump target: the packet does not match.
pub(crate) const REJECT: u32 = u32::MAX - 1;

/// A fast-pass instruction on absolute offsets (no register), as [`crate::threaded`] compiles
/// it; the fields mean what they mean in [`Op`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum FastOp<'a> {
    /// `Eq8`/`Eq16`/`Eq32`.
    Eq {
        size: u8,
        k: u32,
        mask: u32,
        val: u32,
    },
    /// `Range`.
    Range { size: u8, k: u32, lo: u32, hi: u32 },
    /// `Port4`.
    Port4 { k: u32, off: u32, lo: u32, hi: u32 },
    /// `RangeSet`.
    RangeSet {
        size: u8,
        k: u32,
        ranges: &'a [(u32, u32)],
    },
    /// `Port4Set`.
    Port4Set {
        k: u32,
        off: u32,
        ranges: &'a [(u32, u32)],
    },
    /// `Ip6Proto`.
    Ip6Proto { k: u32, val: u32 },
    /// `Rel`.
    Rel {
        k: u32,
        index: u32,
        size: u8,
        mask: u32,
        cmp: Cmp,
        val: u32,
        tcp: bool,
    },
    /// `EqAny`.
    EqAny {
        size: u8,
        k: u32,
        mask: u32,
        vals: &'a [u32],
    },
    /// `Switch`.
    Switch {
        size: u8,
        k: u32,
        mask: u32,
        cases: &'a [(u32, u32)],
    },
}

impl Op {
    /// The register-free view of this instruction, if it has one.
    fn fast_view(&self) -> Option<FastOp<'_>> {
        let abs = |reg: u8| (reg == NO_REG).then_some(());
        Some(match self {
            Op::Eq8 { reg, k, mask, val } => {
                abs(*reg)?;
                FastOp::Eq {
                    size: 1,
                    k: *k,
                    mask: *mask,
                    val: *val,
                }
            }
            Op::Eq16 { reg, k, mask, val } => {
                abs(*reg)?;
                FastOp::Eq {
                    size: 2,
                    k: *k,
                    mask: *mask,
                    val: *val,
                }
            }
            Op::Eq32 { reg, k, mask, val } => {
                abs(*reg)?;
                FastOp::Eq {
                    size: 4,
                    k: *k,
                    mask: *mask,
                    val: *val,
                }
            }
            Op::Range {
                reg,
                size,
                k,
                lo,
                hi,
            } => {
                abs(*reg)?;
                FastOp::Range {
                    size: *size,
                    k: *k,
                    lo: *lo,
                    hi: *hi,
                }
            }
            Op::Port4 {
                reg,
                k,
                off,
                lo,
                hi,
            } => {
                abs(*reg)?;
                FastOp::Port4 {
                    k: *k,
                    off: *off,
                    lo: *lo,
                    hi: *hi,
                }
            }
            Op::RangeSet {
                reg,
                size,
                k,
                ranges,
            } => {
                abs(*reg)?;
                FastOp::RangeSet {
                    size: *size,
                    k: *k,
                    ranges,
                }
            }
            Op::Port4Set {
                reg,
                k,
                off,
                ranges,
            } => {
                abs(*reg)?;
                FastOp::Port4Set {
                    k: *k,
                    off: *off,
                    ranges,
                }
            }
            Op::Ip6Proto { reg, k, val } => {
                abs(*reg)?;
                FastOp::Ip6Proto { k: *k, val: *val }
            }
            Op::Rel {
                reg,
                k,
                index,
                size,
                mask,
                cmp,
                val,
                tcp,
            } => {
                abs(*reg)?;
                FastOp::Rel {
                    k: *k,
                    index: *index,
                    size: *size,
                    mask: *mask,
                    cmp: *cmp,
                    val: *val,
                    tcp: *tcp,
                }
            }
            Op::EqAny {
                reg,
                size,
                k,
                mask,
                vals,
            } => {
                abs(*reg)?;
                FastOp::EqAny {
                    size: *size,
                    k: *k,
                    mask: *mask,
                    vals,
                }
            }
            Op::Switch {
                reg,
                size,
                k,
                mask,
                cases,
            } => {
                abs(*reg)?;
                FastOp::Switch {
                    size: *size,
                    k: *k,
                    mask: *mask,
                    cases,
                }
            }
            Op::Pred(_) => return None,
        })
    }
}

impl Program {
    /// Flattens `root`; with `plain` (no prologue: offsets are absolute), also compiles it to
    /// threaded and native code when it is register-free.
    pub(crate) fn new(root: &Node, plain: bool) -> Self {
        let mut p = Program {
            ins: Vec::new(),
            entry: REJECT,
            threaded: None,
            native: None,
        };
        p.entry = p.emit(root, ACCEPT, REJECT);
        // Emitted last-to-first: reverse for locality and fix the indices.
        let n = p.ins.len() as u32;
        let fix = |t: u32| if t >= REJECT { t } else { n - 1 - t };
        p.ins.reverse();
        for i in &mut p.ins {
            i.jt = fix(i.jt);
            i.jf = fix(i.jf);
            if let Op::Switch { cases, .. } = &mut i.op {
                for c in cases.iter_mut() {
                    c.1 = fix(c.1);
                }
            }
        }
        p.entry = fix(p.entry);
        let view: Option<Vec<_>> = p
            .ins
            .iter()
            .map(|i| i.op.fast_view().map(|o| (o, i.jt, i.jf)))
            .collect();
        if let Some(v) = view.filter(|_| plain) {
            p.threaded = Threaded::compile(&v, p.entry);
            p.native = Native::compile(&v, p.entry);
        }
        p
    }

    /// Emits `n` so that it continues at `t` when true and `f` when false; returns its entry.
    fn emit(&mut self, n: &Node, t: u32, f: u32) -> u32 {
        match n {
            Node::True => t,
            Node::False => f,
            Node::Not(c) => self.emit(c, f, t),
            Node::And(cs) => {
                let mut next = t;
                for c in cs.iter().rev() {
                    next = self.emit(c, next, f);
                }
                next
            }
            Node::Or(cs) => {
                let mut next = f;
                if let Some(((reg, size, k, mask), arms)) = switch(cs) {
                    if arms.iter().any(|(_, tail)| *tail != Node::True) {
                        let mut cases = Vec::with_capacity(arms.len());
                        for (v, tail) in arms.iter().rev() {
                            cases.push((*v, self.emit(tail, t, f)));
                        }
                        cases.reverse();
                        let op = Op::Switch {
                            reg,
                            size,
                            k,
                            mask,
                            cases: cases.into_boxed_slice(),
                        };
                        self.ins.push(Ins { op, jt: f, jf: f });
                        return (self.ins.len() - 1) as u32;
                    }
                }
                if let Some(op) = eq_any(cs) {
                    self.ins.push(Ins {
                        op,
                        jt: t,
                        jf: next,
                    });
                    return (self.ins.len() - 1) as u32;
                }
                if let Some(ops) = port_sets(cs) {
                    for op in ops.into_iter().rev() {
                        self.ins.push(Ins {
                            op,
                            jt: t,
                            jf: next,
                        });
                        next = (self.ins.len() - 1) as u32;
                    }
                    return next;
                }
                for c in cs.iter().rev() {
                    next = self.emit(c, t, next);
                }
                next
            }
            Node::Pred(p) => {
                self.ins.push(Ins {
                    op: specialize(p),
                    jt: t,
                    jf: f,
                });
                (self.ins.len() - 1) as u32
            }
        }
    }
}

#[inline]
pub(crate) fn run(ir: &Ir, prog: &Program, data: &[u8], wire_len: u32) -> bool {
    // Native and threaded code exist only for programs without a prologue.
    if let Some(n) = &prog.native {
        let r = n.call(data);
        if r <= MATCH {
            return r == MATCH;
        }
        return run_slow(ir, prog, data, wire_len);
    }
    if let Some(t) = &prog.threaded {
        if let Some(b) = t.run(data) {
            return b;
        }
    }
    run_slow(ir, prog, data, wire_len)
}

/// The jump program, then (after an out-of-bounds load) the three-valued pass.
#[inline(never)]
pub(crate) fn run_slow(ir: &Ir, prog: &Program, data: &[u8], wire_len: u32) -> bool {
    let mut c = Ctx {
        data,
        wire_len,
        regs: [0; MAX_REGS as usize],
        scratch: 0,
        lenient: false,
        track: None,
    };
    if let Some(p) = &ir.prologue {
        if c.prologue(p).is_err() {
            return false;
        }
    }
    // Fast pass: strict, nothing remembered. Only a packet that meets an out-of-bounds load
    // in an optimized program gets the second, three-valued pass.
    match c.fast(prog) {
        Ok(b) => b,
        Err(Reject::Oob) if ir.optimized => {
            let cache = Cache {
                poisoned: Cell::new(false),
                entries: std::array::from_fn(|_| Cell::new((0, 0))),
                n: Cell::new(0),
            };
            let mut c2 = Ctx {
                data,
                wire_len,
                regs: [0; MAX_REGS as usize],
                scratch: 0,
                lenient: true,
                track: Some(&cache),
            };
            if let Some(p) = &ir.prologue {
                if c2.prologue(p).is_err() {
                    return false;
                }
            }
            matches!(c2.node(&ir.root), Ok(Tri::T))
        }
        Err(_) => false,
    }
}

fn ppp_type(p: u32) -> u32 {
    match p {
        0x0800 => 0x0021,
        0x86dd => 0x0057,
        0x6003 => 0x0027,
        0x809b => 0x0029,
        0x0600 => 0x0025,
        0xfe => 0x0023,
        0x42 => 0x0031,
        0xe0 => 0x002b,
        other => other,
    }
}

impl Ctx<'_, '_> {
    /// BPF indirect load: `size` bytes big-endian at `x + k`.
    #[inline]
    fn ld(&self, x: u32, k: u32, size: u8) -> R<u32> {
        let start = u64::from(x) + u64::from(k);
        let end = start + u64::from(size);
        if end > self.data.len() as u64 {
            return Err(Reject::Oob);
        }
        if let Some(cache) = self.track {
            let key = (start as u32, size);
            if cache.poisoned.get() {
                let n = cache.n.get().min(CACHE);
                if !cache.entries[..n].iter().any(|c| c.get() == key) {
                    return Err(Reject::Oob);
                }
            } else {
                let i = cache.n.get();
                if let Some(slot) = cache.entries.get(i % CACHE) {
                    slot.set(key);
                }
                cache.n.set(i.wrapping_add(1));
            }
        }
        let s = start as usize;
        let d = self.data;
        match size {
            1 => d.get(s).map(|&b| u32::from(b)),
            2 => d
                .get(s..s + 2)
                .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]]))),
            _ => d
                .get(s..s + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        }
        .ok_or(Reject::Oob)
    }

    #[inline]
    fn var(&self, base: Base) -> u32 {
        match base {
            Base::Packet => 0,
            Base::Reg(r) => self.regs.get(usize::from(r)).copied().unwrap_or(0),
        }
    }

    #[inline]
    fn load(&self, o: Off, extra: u32, size: u8) -> R<u32> {
        self.ld(self.var(o.base), o.k.wrapping_add(extra), size)
    }

    /// X = IPv4 header length (+ variable part of the payload offset).
    fn iphdrlen(&self, e: &Encap) -> R<u32> {
        let net = e.net();
        let v = self.var(net.base);
        let b = self.ld(v, net.k, 1)?;
        Ok(((b & 0xf) << 2).wrapping_add(v))
    }

    fn prologue(&mut self, p: &WlanPrologue) -> R<()> {
        let mut x = 0u32;
        if let Some(h) = p.hdr_reg {
            let hi = self.ld(0, 3, 1)?;
            let lo = self.ld(0, 2, 1)?;
            x = (hi << 8) | lo;
            self.set_reg(h, x);
        }
        let Some(pl) = p.pl_reg else { return Ok(()) };
        let mut off = x.wrapping_add(24);
        self.set_reg(pl, off);
        let fc = self.ld(x, 0, 1)?;
        if fc & 0x08 == 0 || fc & 0x04 != 0 {
            return Ok(());
        }
        if fc & 0x80 != 0 {
            off = off.wrapping_add(2);
            self.set_reg(pl, off);
        }
        if p.radiotap {
            let present = self.ld(0, 4, 4)?;
            if present & 0x0200_0000 == 0 || present & 0x0000_0080 != 0 {
                return Ok(());
            }
            let flags = if present & 0x0100_0000 != 0 {
                self.ld(0, 16, 1)?
            } else {
                self.ld(0, 8, 1)?
            };
            if flags & 0x20 != 0 {
                self.set_reg(pl, off.wrapping_add(3) & !3);
            }
        }
        Ok(())
    }

    fn set_reg(&mut self, r: u8, v: u32) {
        if let Some(slot) = self.regs.get_mut(usize::from(r)) {
            *slot = v;
        }
    }

    #[inline]
    fn reg(&self, r: u8) -> u32 {
        if r == NO_REG {
            0
        } else {
            self.regs.get(usize::from(r)).copied().unwrap_or(0)
        }
    }

    /// Fast-pass load of `N` bytes at `x + k` (no memory of loads).
    #[inline(always)]
    fn ldn<const N: usize>(&self, x: u32, k: u32) -> R<u32> {
        let s = (x as usize).wrapping_add(k as usize);
        let b = self.data.get(s..s.wrapping_add(N)).ok_or(Reject::Oob)?;
        Ok(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
    }

    #[inline]
    fn op(&mut self, op: &Op) -> R<bool> {
        if self.track.is_none() {
            match op {
                Op::Eq8 { reg, k, mask, val } => {
                    return Ok(self.ldn::<1>(self.reg(*reg), *k)? & mask == *val)
                }
                Op::Eq16 { reg, k, mask, val } => {
                    return Ok(self.ldn::<2>(self.reg(*reg), *k)? & mask == *val)
                }
                Op::Eq32 { reg, k, mask, val } => {
                    return Ok(self.ldn::<4>(self.reg(*reg), *k)? & mask == *val)
                }
                _ => {}
            }
        }
        match op {
            Op::Eq8 { reg, k, mask, val } => Ok(self.ld(self.reg(*reg), *k, 1)? & mask == *val),
            Op::Eq16 { reg, k, mask, val } => Ok(self.ld(self.reg(*reg), *k, 2)? & mask == *val),
            Op::Eq32 { reg, k, mask, val } => Ok(self.ld(self.reg(*reg), *k, 4)? & mask == *val),
            Op::Range {
                reg,
                size,
                k,
                lo,
                hi,
            } => {
                let v = self.ld(self.reg(*reg), *k, *size)?;
                Ok(v >= *lo && v <= *hi)
            }
            Op::Port4 {
                reg,
                k,
                off,
                lo,
                hi,
            } => {
                let base = self.reg(*reg);
                let x = ((self.ld(base, *k, 1)? & 0xf) << 2).wrapping_add(base);
                let v = self.ld(x, k.wrapping_add(*off), 2)?;
                Ok(v >= *lo && v <= *hi)
            }
            Op::RangeSet {
                reg,
                size,
                k,
                ranges,
            } => {
                let v = self.ld(self.reg(*reg), *k, *size)?;
                Ok(ranges.iter().any(|&(lo, hi)| v >= lo && v <= hi))
            }
            Op::Port4Set {
                reg,
                k,
                off,
                ranges,
            } => {
                let base = self.reg(*reg);
                let x = ((self.ld(base, *k, 1)? & 0xf) << 2).wrapping_add(base);
                let v = self.ld(x, k.wrapping_add(*off), 2)?;
                Ok(ranges.iter().any(|&(lo, hi)| v >= lo && v <= hi))
            }
            Op::Ip6Proto { reg, k, val } => {
                let base = self.reg(*reg);
                let nh = self.ld(base, k.wrapping_add(6), 1)?;
                if nh == *val {
                    return Ok(true);
                }
                if self.ld(base, k.wrapping_add(6), 1)? != 44 {
                    return Ok(false);
                }
                Ok(self.ld(base, k.wrapping_add(40), 1)? == *val)
            }
            Op::Rel {
                reg,
                k,
                index,
                size,
                mask,
                cmp,
                val,
                tcp,
            } => {
                let base = self.reg(*reg);
                let x = if *tcp {
                    ((self.ld(base, *k, 1)? & 0xf) << 2).wrapping_add(base)
                } else {
                    base
                };
                let v = self.ld(x.wrapping_add(*index), *k, *size)? & mask;
                Ok(cmp.apply(v, *val))
            }
            Op::EqAny {
                reg,
                size,
                k,
                mask,
                vals,
            } => {
                let v = self.ld(self.reg(*reg), *k, *size)? & mask;
                Ok(vals.contains(&v))
            }
            // Handled by the fast loop; never reached through `op`.
            Op::Switch { .. } => Ok(false),
            Op::Pred(p) => self.pred(p),
        }
    }

    /// The fast pass over the jump program: strict, the first failed load aborts.
    #[inline]
    fn fast(&mut self, prog: &Program) -> R<bool> {
        let mut pc = prog.entry;
        loop {
            if pc >= REJECT {
                return Ok(pc == ACCEPT);
            }
            let Some(ins) = prog.ins.get(pc as usize) else {
                return Ok(false);
            };
            if let Op::Switch {
                reg,
                size,
                k,
                mask,
                cases,
            } = &ins.op
            {
                let v = self.ld(self.reg(*reg), *k, *size)? & mask;
                pc = cases
                    .iter()
                    .find(|(w, _)| *w == v)
                    .map_or(ins.jf, |&(_, to)| to);
                continue;
            }
            pc = if self.op(&ins.op)? { ins.jt } else { ins.jf };
        }
    }

    /// Three-valued evaluation (second pass).
    fn node(&mut self, n: &Node) -> Result<Tri, Reject> {
        match n {
            Node::True => Ok(Tri::T),
            Node::False => Ok(Tri::F),
            Node::And(v) => {
                let mut r = Tri::T;
                for c in v {
                    match self.node(c)? {
                        Tri::F => return Ok(Tri::F),
                        Tri::U => r = Tri::U,
                        Tri::T => {}
                    }
                }
                Ok(r)
            }
            Node::Or(v) => {
                let mut r = Tri::F;
                for c in v {
                    match self.node(c)? {
                        Tri::T => return Ok(Tri::T),
                        Tri::U => r = Tri::U,
                        Tri::F => {}
                    }
                }
                Ok(r)
            }
            Node::Not(c) => Ok(match self.node(c)? {
                Tri::T => Tri::F,
                Tri::F => Tri::T,
                Tri::U => Tri::U,
            }),
            Node::Pred(p) if self.track.is_some_and(|c| c.poisoned.get()) && !single_compare(p) => {
                Ok(Tri::U)
            }
            Node::Pred(p) => match self.pred(p) {
                Ok(b) => Ok(b.into()),
                Err(Reject::Oob) if self.lenient => {
                    if let Some(c) = self.track {
                        c.poisoned.set(true);
                    }
                    Ok(Tri::U)
                }
                Err(_) => Err(Reject::Hard),
            },
        }
    }

    fn link_type_field(&self, e: &Encap) -> R<u32> {
        match e.linktype {
            Some(o) => self.load(o, 0, 2),
            None => Err(Reject::Hard),
        }
    }

    fn link_proto(&self, e: &Encap, p: u32) -> R<bool> {
        if e.mpls_depth > 0 {
            let net = e.net();
            if self.load(net, 0u32.wrapping_sub(2), 1)? & 1 != 1 {
                return Ok(false);
            }
            let want = if p == 0x86dd { 0x60 } else { 0x40 };
            return Ok(self.load(net, 0, 1)? & 0xf0 == want);
        }
        let sap = matches!(p, 0x06 | 0xfe | 0xf0);
        match e.link {
            Link::Ethernet => {
                let lt = e.linktype.unwrap_or(Off::abs(12));
                if sap {
                    if self.load(lt, 0, 2)? > 1500 {
                        return Ok(false);
                    }
                    Ok(self.load(e.linkpl, 0, 2)? == ((p << 8) | p))
                } else if p <= 1500 {
                    if self.load(lt, 0, 2)? > 1500 {
                        return Ok(false);
                    }
                    Ok(self.load(lt, 2, 1)? == p)
                } else {
                    Ok(self.load(lt, 0, 2)? == p)
                }
            }
            Link::LinuxSll => {
                if sap {
                    if self.link_type_field(e)? != 4 {
                        return Ok(false);
                    }
                    Ok(self.load(e.linkpl, 0, 2)? == ((p << 8) | p))
                } else if p <= 1500 {
                    if self.link_type_field(e)? != 4 {
                        return Ok(false);
                    }
                    Ok(self.load(e.linkhdr, e.linkpl.k, 1)? == p)
                } else {
                    Ok(self.link_type_field(e)? == p)
                }
            }
            Link::LinuxSll2 => Ok(self.link_type_field(e)? == p),
            Link::CHdlc => {
                let p = if p == 0xfe { 0xfefe } else { p };
                Ok(self.link_type_field(e)? == p)
            }
            Link::Ppp => Ok(self.link_type_field(e)? == ppp_type(p)),
            Link::Raw => {
                let want = if p == 0x86dd { 0x60 } else { 0x40 };
                Ok(self.load(e.linkhdr, 0, 1)? & 0xf0 == want)
            }
            Link::Ipv4 => Ok(p == 0x0800),
            Link::Ipv6 => Ok(p == 0x86dd),
            Link::Null | Link::Loop => {
                let w = self.load(e.linkhdr, 0, 4)?;
                let afs: &[u32] = if p == 0x86dd { &[24, 28, 30] } else { &[2] };
                let null = e.link == Link::Null;
                Ok(afs
                    .iter()
                    .any(|&af| w == af || (null && w == af.swap_bytes())))
            }
            Link::Ieee80211 | Link::Radiotap => {
                if self.load(e.linkhdr, 0, 1)? & 0x04 != 0 {
                    return Ok(false);
                }
                if self.load(e.linkhdr, 0, 1)? & 0x08 == 0 {
                    return Ok(false);
                }
                if sap {
                    Ok(self.load(e.linkpl, 0, 2)? == ((p << 8) | p))
                } else if p == 0xe0 || p <= 1500 {
                    Ok(self.load(e.linkpl, 0, 1)? == p)
                } else {
                    Ok(self.load(e.linkpl, 6, 2)? == p)
                }
            }
        }
    }

    /// libpcap's 6-byte compare: the word at `off + 2`, then the half-word at `off`.
    fn mac_at(&self, encap: &Encap, off: u32, mac: &[u8; 6]) -> R<bool> {
        let w = self.load(encap.linkhdr, off + 2, 4)?;
        if w != u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) {
            return Ok(false);
        }
        let h = self.load(encap.linkhdr, off, 2)?;
        Ok(h == u32::from(u16::from_be_bytes([mac[0], mac[1]])))
    }

    fn pred(&mut self, p: &Pred) -> R<bool> {
        match p {
            Pred::LinkProto { encap, proto } => self.link_proto(encap, *proto),
            Pred::Ipv4Proto { encap, proto } => Ok(self.load(encap.net(), 9, 1)? == *proto),
            Pred::Ipv6Proto {
                encap,
                proto,
                via_fragment,
            } => {
                let net = encap.net();
                if self.load(net, 6, 1)? == *proto {
                    return Ok(true);
                }
                if !via_fragment {
                    return Ok(false);
                }
                if self.load(net, 6, 1)? != 44 {
                    return Ok(false);
                }
                Ok(self.load(net, 40, 1)? == *proto)
            }
            Pred::Ipv4FirstFragment { encap } => Ok(self.load(encap.net(), 6, 2)? & 0x1fff == 0),
            Pred::Ipv4Addr {
                encap,
                field,
                addr,
                mask,
            } => Ok(self.load(encap.net(), field.offset(), 4)? & mask == *addr),
            Pred::Ipv6Addr {
                encap,
                side,
                addr,
                mask,
            } => {
                let base = if *side == Side::Src { 8 } else { 24 };
                for i in 0..4 {
                    // The optimizer drops `(x & 0) == 0`; unoptimized programs still load.
                    if mask[i] == 0 && self.lenient {
                        continue;
                    }
                    if self.load(encap.net(), base + 4 * i as u32, 4)? & mask[i] != addr[i] {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Pred::Port {
                encap,
                v6,
                side,
                lo,
                hi,
            } => {
                let off = if *side == Side::Src { 0 } else { 2 };
                let net = encap.net();
                let v = if *v6 {
                    self.load(net, 40 + off, 2)?
                } else {
                    let x = self.iphdrlen(encap)?;
                    self.ld(x, net.k.wrapping_add(off), 2)?
                };
                Ok(if lo == hi {
                    v == u32::from(*lo)
                } else {
                    v >= u32::from(*lo) && v <= u32::from(*hi)
                })
            }
            Pred::EtherAddr { encap, side, mac } => {
                let off = if *side == Side::Src { 6 } else { 0 };
                self.mac_at(encap, off, mac)
            }
            Pred::MacAt { encap, offset, mac } => self.mac_at(encap, *offset, mac),
            Pred::EtherMulticast { encap } => Ok(self.load(encap.linkhdr, 0, 1)? & 1 != 0),
            Pred::GeneveIsEthernet { encap } => {
                Ok(self.var(encap.linkhdr.base) != self.var(encap.linkpl.base))
            }
            Pred::VlanId { encap, id } => {
                Ok(self.load(encap.net(), 0, 2)? & 0x0fff == u32::from(*id))
            }
            Pred::MplsLabel { encap, label } => {
                Ok(self.load(encap.net(), 0, 4)? & 0xffff_f000 == label << 12)
            }
            Pred::MplsNotBottom { encap } => {
                Ok(self.load(encap.net(), 0u32.wrapping_sub(2), 1)? & 1 == 0)
            }
            Pred::PppoeSession { encap, id } => {
                Ok(self.load(encap.net(), 0, 4)? & 0xffff == u32::from(*id))
            }
            Pred::Protochain { encap, v6, proto } => self.protochain(encap, *v6, *proto),
            Pred::GeneveHeader { encap, v6, vni } => {
                let net = encap.net();
                let (x, k) = if *v6 {
                    (self.var(net.base), net.k.wrapping_add(40))
                } else {
                    (self.iphdrlen(encap)?, net.k)
                };
                if self.ld(x, k.wrapping_add(8), 1)? & 0xc0 != 0 {
                    return Ok(false);
                }
                if let Some(v) = vni {
                    if self.ld(x, k.wrapping_add(12), 4)? & 0xffff_ff00 != v << 8 {
                        return Ok(false);
                    }
                }
                self.scratch = if *v6 { 40u32.wrapping_add(x) } else { x };
                Ok(true)
            }
            Pred::GeneveEnter {
                encap,
                hdr_reg,
                type_reg,
                pl_reg,
            } => {
                let net = encap.net();
                let g = self.scratch.wrapping_add(net.k).wrapping_add(8);
                self.set_reg(*type_reg, g.wrapping_add(2));
                let opt = self.ld(g, 0, 1)?;
                let hdr = ((opt & 0x3f) * 4).wrapping_add(8).wrapping_add(g);
                self.set_reg(*hdr_reg, hdr);
                let proto = self.ld(g, 2, 2)?;
                let pl = if proto == 0x6558 {
                    self.set_reg(*type_reg, hdr.wrapping_add(12));
                    hdr.wrapping_add(14)
                } else {
                    hdr
                };
                self.set_reg(*pl_reg, pl);
                Ok(true)
            }
            Pred::Relation { lhs, op, rhs } => {
                let a = self.value(lhs)?;
                let b = self.value(rhs)?;
                Ok(op.apply(a, b))
            }
        }
    }

    /// libpcap 1.10.3's protochain loop (including its AH length arithmetic).
    fn protochain(&self, e: &Encap, v6: bool, proto: u32) -> R<bool> {
        let net = e.net();
        let k = net.k;
        let (mut a, mut x) = if v6 {
            (self.ld(0, k.wrapping_add(6), 1)?, 40u32)
        } else {
            let a = self.ld(0, k.wrapping_add(9), 1)?;
            (a, (self.ld(0, k, 1)? & 0xf) << 2)
        };
        // IPv6 extension headers move X forward by at least 8 bytes, but libpcap's AH step
        // sets X to (len + 2) * 4 without adding the old X, so a hostile packet can make the
        // BPF loop spin forever; we stop after 4096 steps and reject.
        let mut steps = 0u32;
        loop {
            steps += 1;
            if steps > 4096 {
                return Err(Reject::Hard);
            }
            if a == proto || a == 59 {
                break;
            }
            if v6 && matches!(a, 0 | 60 | 43 | 44) {
                let next = self.ld(x, k, 1)?;
                let len = self.ld(x, k.wrapping_add(1), 1)?;
                x = len.wrapping_add(1).wrapping_mul(8).wrapping_add(x);
                a = next;
                continue;
            }
            if a == 51 {
                let next = self.ld(x, k, 1)?;
                let len = self.ld(x.wrapping_add(1), k, 1)?;
                x = len.wrapping_add(2).wrapping_mul(4);
                a = next;
                continue;
            }
            break;
        }
        Ok(a == proto)
    }

    fn value(&self, v: &Value) -> R<u32> {
        match v {
            Value::Const(c) => Ok(*c),
            Value::WireLen => Ok(self.wire_len),
            Value::Neg(a) => Ok(self.value(a)?.wrapping_neg()),
            Value::Bin(op, a, b) => {
                let a = self.value(a)?;
                let b = self.value(b)?;
                apply_op(*op, a, b).ok_or(Reject::Hard)
            }
            Value::Load { base, index, size } => {
                let i = self.value(index)?;
                match base {
                    LoadBase::Link(e) => {
                        let x = self.var(e.linkhdr.base).wrapping_add(i);
                        self.ld(x, e.linkhdr.k, *size)
                    }
                    LoadBase::Net(e) => {
                        let net = e.net();
                        self.ld(self.var(net.base).wrapping_add(i), net.k, *size)
                    }
                    LoadBase::TransportV4(e) => {
                        let x = self.iphdrlen(e)?.wrapping_add(i);
                        self.ld(x, e.net().k, *size)
                    }
                    LoadBase::TransportV6(e) => {
                        let net = e.net();
                        self.ld(
                            self.var(net.base).wrapping_add(i),
                            net.k.wrapping_add(40),
                            *size,
                        )
                    }
                }
            }
        }
    }
}
