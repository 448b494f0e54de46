//! Threaded-code form of the fast pass: the jump program compiled into a graph of specialized
//! closures, one per instruction, each calling its successor directly.
//!
//! A central `match` over the instructions (what BPF interpreters do) costs an unpredictable
//! indirect jump per instruction; here every instruction has its own call sites, so a filter
//! like `tcp port 80` runs as a few well-predicted branches. Only programs made of the
//! specialized instructions on absolute offsets (no 802.11 or Geneve registers, no generic
//! predicate) and at most [`MAX_INS`] long are compiled; the others, and every packet on which
//! a load falls outside the captured bytes, go through [`crate::eval`] as before, so verdicts are
//! exactly those of the jump program.
//!
//! Where the host has a JIT, [`crate::jit`]'s native code of the same program runs instead
//! (1.4x -> 3x libpcap's speed summed on the bench); this form is the fallback.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::eval::{FastOp, ACCEPT, REJECT};
use crate::ir::Cmp;

/// Longest program compiled (bounds the call depth: successors always have higher indices).
pub(crate) const MAX_INS: usize = 64;

/// Most (instruction, known facts) pairs compiled before jump threading is given up.
const MAX_MEMO: usize = 512;

/// Longest equality chain fused by [`Builder::chain`].
const CHAIN: usize = 4;

/// A field known equal to a constant on a path: (offset, size, mask, value & mask).
pub(crate) type Fact = (u32, u8, u32, u32);

/// The mask of the bytes a load of `size` bytes gives.
pub(crate) fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

/// What `facts` say about `load(k, size) & mask`, if it is known.
pub(crate) fn known(facts: &[Fact], k: u32, size: u8, mask: u32) -> Option<u32> {
    let m = mask & size_mask(size);
    facts
        .iter()
        .find(|f| f.0 == k && f.1 == size && m & !(f.2 & size_mask(size)) == 0)
        .map(|f| f.3 & m)
}

/// Compiles instructions on demand, per set of known facts.
struct Builder<'a, 'o> {
    ins: &'a [(FastOp<'o>, u32, u32)],
    memo: HashMap<(u32, Vec<Fact>), Next>,
    threading: bool,
    /// The program's first instruction.
    entry: u32,
}

impl Builder<'_, '_> {
    /// The code for instruction `at` reached with `facts` known.
    fn get(&mut self, at: u32, facts: &[Fact]) -> Option<Next> {
        if at == ACCEPT {
            return Some(Next::Accept);
        }
        if at == REJECT {
            return Some(Next::Reject);
        }
        let key = (at, facts.to_vec());
        if let Some(n) = self.memo.get(&key) {
            return Some(n.clone());
        }
        if self.memo.len() > MAX_MEMO {
            return None;
        }
        let (op, jt, jf) = *self.ins.get(at as usize)?;
        let later = |t: u32| t == ACCEPT || t == REJECT || t > at;
        if !later(jt) || !later(jf) {
            return None;
        }
        let with = |f: Fact| -> Vec<Fact> {
            let mut v = facts.to_vec();
            if !v.contains(&f) {
                v.push(f);
                v.sort_unstable();
            }
            v
        };
        let n = match op {
            FastOp::Eq { size, k, mask, val } => {
                let m = mask & size_mask(size);
                match known(facts, k, size, mask).filter(|_| self.threading) {
                    Some(v) => self.get(if v == val { jt } else { jf }, facts)?,
                    None => {
                        let tf = if self.threading {
                            with((k, size, m, val & m))
                        } else {
                            Vec::new()
                        };
                        let t = self.get(jt, &tf)?;
                        let f = self.get(jf, facts)?;
                        Next::Go(build(&op, t, f, &mut |_| None)?)
                    }
                }
            }
            FastOp::EqAny {
                size,
                k,
                mask,
                vals,
            } if self.threading && known(facts, k, size, mask).is_some() => {
                let v = known(facts, k, size, mask)?;
                self.get(if vals.contains(&v) { jt } else { jf }, facts)?
            }
            FastOp::Switch {
                size,
                k,
                mask,
                cases,
            } => {
                if !cases.iter().all(|c| later(c.1)) {
                    return None;
                }
                match known(facts, k, size, mask).filter(|_| self.threading) {
                    Some(v) => {
                        let to = cases.iter().find(|c| c.0 == v).map_or(jf, |c| c.1);
                        self.get(to, facts)?
                    }
                    None => {
                        let m = mask & size_mask(size);
                        let mut arms = Vec::with_capacity(cases.len());
                        for &(v, to) in cases {
                            let fs = if self.threading {
                                with((k, size, m, v & m))
                            } else {
                                Vec::new()
                            };
                            arms.push(self.get(to, &fs)?);
                        }
                        let f = self.get(jf, facts)?;
                        let mut it = arms.into_iter();
                        Next::Go(build(&op, Next::Reject, f, &mut |_| it.next())?)
                    }
                }
            }
            _ => {
                let t = self.get(jt, facts)?;
                let f = self.get(jf, facts)?;
                Next::Go(build(&op, t, f, &mut |_| None)?)
            }
        };
        let n = match (n, self.threading) {
            (Next::Go(seq), true) => match self.chain(at, facts, seq.clone()) {
                Some(c) => Next::Go(c),
                None => Next::Go(seq),
            },
            (n, _) => n,
        };
        let n = match n {
            Next::Go(seq) => Next::Go(self.fused(at, seq.clone()).unwrap_or(seq)),
            other => other,
        };
        self.memo.insert(key, n.clone());
        Some(n)
    }

    /// Branch-free form of an `or` (or `and`) chain of 2 to [`CHAIN`] equality tests with a
    /// common true (false) target: when all their loads are in bounds the tests are computed
    /// together and one jump goes to the common target or to the other exit; otherwise `seq`.
    /// The targets are compiled with the facts known at `at` only (they hold on every path
    /// through the chain), so threading stays exact.
    fn chain(&mut self, at: u32, facts: &[Fact], seq: Code) -> Option<Code> {
        let (_, jt0, jf0) = *self.ins.get(at as usize)?;
        for or in [true, false] {
            let common = if or { jt0 } else { jf0 };
            let mut tests: Vec<Pure> = Vec::new();
            let mut pc = at;
            let other = loop {
                let Some(&(op, jt, jf)) = self.ins.get(pc as usize) else {
                    break None;
                };
                let Some(test) = Pure::of(&op) else {
                    break None;
                };
                let (same, next) = if or { (jt, jf) } else { (jf, jt) };
                if same != common || tests.len() >= CHAIN {
                    break None;
                }
                tests.push(test);
                let chained = match self.ins.get(next as usize) {
                    Some((op, t, f)) => {
                        Pure::of(op).is_some() && (if or { *t } else { *f }) == common
                    }
                    _ => false,
                };
                if !chained || tests.len() == CHAIN {
                    break Some(next);
                }
                pc = next;
            };
            let Some(other) = other else { continue };
            if tests.len() < 2 {
                continue;
            }
            let c = self.get(common, facts)?;
            let o = self.get(other, facts)?;
            let tests = tests.into_boxed_slice();
            // Or: any test true goes to the common target, else to the last false target.
            // And: any test false goes to the common target, else to the last true target.
            // A test whose load is outside `d` only matters if the step-by-step code reaches
            // it, i.e. if no earlier test already decided the chain; then `seq` decides.
            return Some(Arc::new(move |d: &[u8]| {
                let mut any = false;
                let mut all = true;
                for t in tests.iter() {
                    let Some(t) = t.test(d) else {
                        if (or && any) || (!or && !all) {
                            break;
                        }
                        return seq(d);
                    };
                    any |= t;
                    all &= t;
                }
                if (or && any) || (!or && !all) {
                    c.go(d)
                } else {
                    o.go(d)
                }
            }));
        }
        None
    }

    /// The verdict-only leaf at `to`: accept, reject, or one test that accepts or rejects.
    fn leaf(&self, to: u32) -> Option<Leaf> {
        match to {
            ACCEPT => return Some(Leaf::Const(true)),
            REJECT => return Some(Leaf::Const(false)),
            _ => {}
        }
        let (op, jt, jf) = *self.ins.get(to as usize)?;
        let accept_if = match (jt, jf) {
            (ACCEPT, REJECT) => true,
            (REJECT, ACCEPT) => false,
            _ => return None,
        };
        match op {
            FastOp::Ip6Proto { k, val } => Some(Leaf::Ip6Proto {
                nh: u64::from(k) + 6,
                fnh: u64::from(k) + 40,
                val,
                accept_if,
            }),
            op => Some(Leaf::Test(Pure::of(&op)?, accept_if)),
        }
    }

    /// Branch-free form of a `Switch` (on the EtherType, typically) whose arms and default
    /// each end in accept or reject after at most one test (`not tcp`, the `udp` of `net N and
    /// udp`): every arm's test is computed and the matching arm's verdict selected, so the
    /// protocol mix causes no mispredicted jump. When the matching arm's load falls outside
    /// the packet, `seq` decides (other arms' loads do not matter: the step-by-step code does
    /// not perform them).
    ///
    /// Used for the program's first instruction only, which sees the whole traffic mix
    /// (`not tcp`: 1.5x -> 1.6-1.7x vs libpcap); deeper in the program it was measured slower
    /// (`net 10.0.0.0/8 and udp`: 1.3x -> 1.1x, not understood).
    fn switch_leaves(&self, at: u32, seq: Code) -> Option<Code> {
        let (op, _, jf) = *self.ins.get(at as usize)?;
        let FastOp::Switch {
            size,
            k,
            mask,
            cases,
        } = op
        else {
            return None;
        };
        if cases.len() > CHAIN {
            return None;
        }
        let Leaf::Const(dflt) = self.leaf(jf)? else {
            return None;
        };
        let mut arms = Vec::with_capacity(cases.len());
        for &(v, to) in cases {
            arms.push((v, self.leaf(to)?));
        }
        if !arms
            .iter()
            .any(|a| matches!(a.1, Leaf::Test(..) | Leaf::Ip6Proto { .. }))
        {
            return None;
        }
        let arms = arms.into_boxed_slice();
        let k = u64::from(k);
        Some(Arc::new(move |d: &[u8]| {
            let Some(x) = ld(d, k, size) else {
                return seq(d);
            };
            let x = x & mask;
            let mut res = dflt;
            let mut bad = false;
            for (v, leaf) in arms.iter() {
                let hit = x == *v;
                let (r, ok) = match leaf.eval(d) {
                    Some(r) => (r, true),
                    None => (false, false),
                };
                res = if hit { r } else { res };
                bad |= hit & !ok;
            }
            if bad {
                return seq(d);
            }
            Some(res)
        }))
    }

    /// One port test on one side: (offset from the transport header, ranges), with its
    /// false target.
    fn port_side(&self, at: u32, v6: bool) -> Option<(PortSide, u32)> {
        let (op, jt, jf) = *self.ins.get(at as usize)?;
        if jt != ACCEPT {
            return None;
        }
        match op {
            FastOp::Port4 { k, off, lo, hi } if !v6 => Some(((k, off, Box::new([(lo, hi)])), jf)),
            FastOp::Port4Set { k, off, ranges } if !v6 => Some(((k, off, ranges.into()), jf)),
            FastOp::Range { size: 2, k, lo, hi } if v6 => Some(((k, 0, Box::new([(lo, hi)])), jf)),
            FastOp::RangeSet { size: 2, k, ranges } if v6 => Some(((k, 0, ranges.into()), jf)),
            _ => None,
        }
    }

    /// One or two port tests (source, then destination) ending in accept/reject.
    fn ports(&self, at: u32, v6: bool) -> Option<PortPair> {
        let (first, jf) = self.port_side(at, v6)?;
        if jf == REJECT {
            return Some((first, None));
        }
        let (second, jf2) = self.port_side(jf, v6)?;
        (jf2 == REJECT && (v6 || second.0 == first.0)).then_some((first, Some(second)))
    }

    /// Branch-free form of the most common tail, "IP protocol in a set, (IPv4: first
    /// fragment,) source or destination port in a set": when every load of the chain is within
    /// the captured bytes, all tests are computed and combined with bit operations (no
    /// data-dependent jump to mispredict); otherwise `seq`, the instruction-by-instruction code,
    /// decides. With all loads in bounds both give the same verdict (the tests are pure).
    fn fused(&self, at: u32, seq: Code) -> Option<Code> {
        if at == self.entry {
            if let Some(c) = self.switch_leaves(at, seq.clone()) {
                return Some(c);
            }
        }
        let (op, jt, jf) = *self.ins.get(at as usize)?;
        if jf != REJECT {
            return None;
        }
        let (pk, protos): (u64, Box<[u32]>) = match op {
            FastOp::Eq {
                size: 1,
                k,
                mask,
                val,
            } if mask & 0xff == 0xff => (u64::from(k), Box::new([val])),
            FastOp::EqAny {
                size: 1,
                k,
                mask,
                vals,
            } if mask & 0xff == 0xff => (u64::from(k), vals.into()),
            _ => return None,
        };
        let in_set = |r: &[(u32, u32)], v: u32| {
            r.iter()
                .fold(false, |a, &(lo, hi)| a | ((v >= lo) & (v <= hi)))
        };
        let (op1, jt1, jf1) = *self.ins.get(jt as usize)?;
        if let FastOp::Eq {
            size: 2,
            k: fk,
            mask: 0x1fff,
            val: 0,
        } = op1
        {
            if jf1 != REJECT {
                return None;
            }
            let ((ik, o1, r1), second) = self.ports(jt1, false)?;
            let fk = u64::from(fk);
            let o1 = u64::from(ik.wrapping_add(o1));
            let o2 = second.as_ref().map(|s| u64::from(ik.wrapping_add(s.1)));
            let r2: Box<[(u32, u32)]> = second.map_or_else(|| Box::new([]) as Box<[_]>, |s| s.2);
            return Some(Arc::new(move |d: &[u8]| {
                let fast = || -> Option<bool> {
                    let p = ld1(d, pk)?;
                    let fr = ld2(d, fk)?;
                    let x = u64::from(ihl(d, ik)?);
                    let sp = ld2(d, x + o1)?;
                    let pm = protos.iter().fold(false, |a, &v| a | (p == v));
                    let hit = match o2 {
                        Some(o2) => in_set(&r1, sp) | in_set(&r2, ld2(d, x + o2)?),
                        None => in_set(&r1, sp),
                    };
                    Some(pm & (fr & 0x1fff == 0) & hit)
                };
                match fast() {
                    Some(v) => Some(v),
                    None => seq(d),
                }
            }));
        }
        let ((k1, _, r1), second) = self.ports(jt, true)?;
        let k1 = u64::from(k1);
        let k2 = second.as_ref().map(|s| u64::from(s.0));
        let r2: Box<[(u32, u32)]> = second.map_or_else(|| Box::new([]) as Box<[_]>, |s| s.2);
        Some(Arc::new(move |d: &[u8]| {
            let fast = || -> Option<bool> {
                let p = ld1(d, pk)?;
                let sp = ld2(d, k1)?;
                let pm = protos.iter().fold(false, |a, &v| a | (p == v));
                let hit = match k2 {
                    Some(k2) => in_set(&r1, sp) | in_set(&r2, ld2(d, k2)?),
                    None => in_set(&r1, sp),
                };
                Some(pm & hit)
            };
            match fast() {
                Some(v) => Some(v),
                None => seq(d),
            }
        }))
    }
}

/// A test of a fused chain: an equality on an absolute offset, or a relation on a transport
/// header field (IHL-relative `Rel`, e.g. `tcp[tcpflags] & tcp-syn != 0` after the protocol
/// and fragment tests: fused, 13.7 -> 9.6 ns/packet on the bench).
///
/// Relations on absolute offsets (`ip6[6] = 6`) are not fused: a fused chain performs all its
/// loads on every packet, while the step-by-step code stops at the first deciding test, often
/// a well-predicted EtherType test; measured slower when fused (`ip6 and ip6[6] = 6 and
/// ip6[53] & 2 != 0`: 6.9 -> 8.3 ns/packet, 14 with `ip6[53]` in the chain, a second cache
/// line). Nor are `EqAny` tests (`vlan and ip`: 7.9 -> 9.3).
enum Pure {
    /// `load(k, size) & mask == val`.
    Eq {
        size: u8,
        k: u64,
        mask: u32,
        val: u32,
    },
    /// `load(x + index + k, size) & mask cmp val`, `x = 4 * IHL(k)` when `tcp`, else 0.
    Rel {
        k: u32,
        index: u32,
        size: u8,
        mask: u32,
        cmp: Cmp,
        val: u32,
        tcp: bool,
    },
}

impl Pure {
    /// The chainable form of `op`, if it has one.
    fn of(op: &FastOp<'_>) -> Option<Self> {
        Some(match *op {
            FastOp::Eq { size, k, mask, val } => Pure::Eq {
                size,
                k: u64::from(k),
                mask,
                val,
            },
            FastOp::Rel {
                k,
                index,
                size,
                mask,
                cmp,
                val,
                tcp,
            } if tcp => Pure::Rel {
                k,
                index,
                size,
                mask,
                cmp,
                val,
                tcp,
            },
            _ => return None,
        })
    }

    /// The test's result, or `None` if its load is outside `d`.
    #[inline(always)]
    fn test(&self, d: &[u8]) -> Option<bool> {
        Some(match *self {
            Pure::Eq { size, k, mask, val } => ld(d, k, size)? & mask == val,
            Pure::Rel {
                k,
                index,
                size,
                mask,
                cmp,
                val,
                tcp,
            } => {
                let x = if tcp { ihl(d, k)? } else { 0 };
                let v = ld(d, u64::from(x.wrapping_add(index)) + u64::from(k), size)? & mask;
                cmp.apply(v, val)
            }
        })
    }
}

/// The end of a `Switch` arm fused by [`Builder::switch_leaves`].
enum Leaf {
    /// Accept (`true`) or reject.
    Const(bool),
    /// One test: accept when its result is the flag.
    Test(Pure, bool),
    /// IPv6 next header (at `nh`, or behind a fragment header at `fnh`) is `val`: accept when
    /// that is the flag.
    Ip6Proto {
        nh: u64,
        fnh: u64,
        val: u32,
        accept_if: bool,
    },
}

impl Leaf {
    /// Accept or reject, or `None` if a load the leaf performs is outside `d`.
    #[inline(always)]
    fn eval(&self, d: &[u8]) -> Option<bool> {
        match *self {
            Leaf::Const(b) => Some(b),
            Leaf::Test(ref t, a) => Some(t.test(d)? == a),
            Leaf::Ip6Proto {
                nh,
                fnh,
                val,
                accept_if,
            } => {
                let v = ld1(d, nh)?;
                let hit = v == val || (v == 44 && ld1(d, fnh)? == val);
                Some(hit == accept_if)
            }
        }
    }
}

/// One side's port test: (header offset, offset of the port in the transport header, ranges).
type PortSide = (u32, u32, Box<[(u32, u32)]>);

/// Port tests of a fused tail: the first side's, then the second side's if any.
type PortPair = (PortSide, Option<PortSide>);

/// A compiled instruction: `Some(verdict)`, or `None` when a load is out of bounds.
type Code = Arc<dyn Fn(&[u8]) -> Option<bool> + Send + Sync>;

/// Where an instruction continues.
#[derive(Clone)]
enum Next {
    Accept,
    Reject,
    Go(Code),
}

impl Next {
    #[inline(always)]
    fn go(&self, d: &[u8]) -> Option<bool> {
        match self {
            Next::Accept => Some(true),
            Next::Reject => Some(false),
            Next::Go(c) => c(d),
        }
    }
}

/// The compiled fast pass.
#[derive(Clone)]
pub(crate) struct Threaded {
    entry: Next,
}

impl fmt::Debug for Threaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Threaded")
    }
}

impl Threaded {
    /// Compiles `(op, jt, jf)` instructions (successors have higher indices) with entry
    /// `entry`; `None` if an instruction is not one of the compiled kinds.
    ///
    /// Jump threading, as libpcap's optimizer does: along a path, a field tested equal to a
    /// constant (an `Eq` taken true, a `Switch` arm) is known, and a later `Eq`, `EqAny` or
    /// `Switch` on the same bytes is decided at compile time (`host A`: once the EtherType is
    /// 0x0800, the ARP/RARP alternatives are not tested again). The skipped test would load
    /// bytes already loaded on that path, so the verdict and the out-of-bounds behaviour are
    /// unchanged.
    pub(crate) fn compile(ins: &[(FastOp<'_>, u32, u32)], entry: u32) -> Option<Self> {
        if ins.len() > MAX_INS {
            return None;
        }
        for threading in [true, false] {
            let mut b = Builder {
                ins,
                memo: HashMap::new(),
                threading,
                entry,
            };
            match b.get(entry, &[]) {
                Some(entry) => return Some(Threaded { entry }),
                None if b.memo.len() > MAX_MEMO => continue,
                None => return None,
            }
        }
        None
    }

    /// The verdict, or `None` if a load fell outside `d`.
    #[inline]
    pub(crate) fn run(&self, d: &[u8]) -> Option<bool> {
        self.entry.go(d)
    }
}

#[inline(always)]
fn ld1(d: &[u8], s: u64) -> Option<u32> {
    d.get(usize::try_from(s).ok()?).map(|&b| u32::from(b))
}

#[inline(always)]
fn ld2(d: &[u8], s: u64) -> Option<u32> {
    let s = usize::try_from(s).ok()?;
    let b = d.get(s..s.checked_add(2)?)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

#[inline(always)]
fn ld4(d: &[u8], s: u64) -> Option<u32> {
    let s = usize::try_from(s).ok()?;
    let b = d.get(s..s.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline(always)]
fn ld(d: &[u8], s: u64, size: u8) -> Option<u32> {
    match size {
        1 => ld1(d, s),
        2 => ld2(d, s),
        _ => ld4(d, s),
    }
}

/// One instruction: `test` decides, then the true or false successor runs.
fn node<T>(test: T, t: Next, f: Next) -> Code
where
    T: Fn(&[u8]) -> Option<bool> + Send + Sync + 'static,
{
    match (t, f) {
        (Next::Accept, Next::Reject) => Arc::new(test),
        (Next::Reject, Next::Accept) => Arc::new(move |d| test(d).map(|b| !b)),
        (t, f) => Arc::new(move |d| if test(d)? { t.go(d) } else { f.go(d) }),
    }
}

/// IPv4 payload offset: 4 * IHL read at `k`.
#[inline(always)]
fn ihl(d: &[u8], k: u32) -> Option<u32> {
    Some((ld1(d, u64::from(k))? & 0xf) << 2)
}

/// The code of one instruction; a `Switch` takes its arms' code from `arm` in case order.
fn build(
    op: &FastOp<'_>,
    t: Next,
    f: Next,
    arm: &mut dyn FnMut(u32) -> Option<Next>,
) -> Option<Code> {
    Some(match *op {
        FastOp::Eq { size, k, mask, val } => {
            let s = u64::from(k);
            match (size, mask) {
                (1, m) if m & 0xff == 0xff => node(move |d| Some(ld1(d, s)? == val), t, f),
                (2, m) if m & 0xffff == 0xffff => node(move |d| Some(ld2(d, s)? == val), t, f),
                (4, u32::MAX) => node(move |d| Some(ld4(d, s)? == val), t, f),
                (1, m) => node(move |d| Some(ld1(d, s)? & m == val), t, f),
                (2, m) => node(move |d| Some(ld2(d, s)? & m == val), t, f),
                (_, m) => node(move |d| Some(ld4(d, s)? & m == val), t, f),
            }
        }
        FastOp::Range { size, k, lo, hi } => {
            let s = u64::from(k);
            node(
                move |d| {
                    let v = ld(d, s, size)?;
                    Some(v >= lo && v <= hi)
                },
                t,
                f,
            )
        }
        FastOp::Port4 { k, off, lo, hi } => {
            let k2 = u64::from(k.wrapping_add(off));
            if lo == hi {
                node(
                    move |d| Some(ld2(d, u64::from(ihl(d, k)?) + k2)? == lo),
                    t,
                    f,
                )
            } else {
                node(
                    move |d| {
                        let v = ld2(d, u64::from(ihl(d, k)?) + k2)?;
                        Some(v >= lo && v <= hi)
                    },
                    t,
                    f,
                )
            }
        }
        FastOp::RangeSet { size, k, ranges } => {
            let s = u64::from(k);
            let r: Box<[(u32, u32)]> = ranges.into();
            node(
                move |d| {
                    let v = ld(d, s, size)?;
                    Some(r.iter().any(|&(lo, hi)| v >= lo && v <= hi))
                },
                t,
                f,
            )
        }
        FastOp::Port4Set { k, off, ranges } => {
            let k2 = u64::from(k.wrapping_add(off));
            let r: Box<[(u32, u32)]> = ranges.into();
            node(
                move |d| {
                    let v = ld2(d, u64::from(ihl(d, k)?) + k2)?;
                    Some(r.iter().any(|&(lo, hi)| v >= lo && v <= hi))
                },
                t,
                f,
            )
        }
        FastOp::Ip6Proto { k, val } => {
            let (nh, fnh) = (u64::from(k.wrapping_add(6)), u64::from(k.wrapping_add(40)));
            node(
                move |d| {
                    let v = ld1(d, nh)?;
                    if v == val {
                        return Some(true);
                    }
                    if v != 44 {
                        return Some(false);
                    }
                    Some(ld1(d, fnh)? == val)
                },
                t,
                f,
            )
        }
        FastOp::Rel {
            k,
            index,
            size,
            mask,
            cmp,
            val,
            tcp,
        } => {
            let kk = u64::from(k);
            let test = move |d: &[u8]| {
                let x = if tcp { ihl(d, k)? } else { 0 };
                let v = ld(d, u64::from(x.wrapping_add(index)) + kk, size)? & mask;
                Some(cmp.apply(v, val))
            };
            node(test, t, f)
        }
        FastOp::EqAny {
            size,
            k,
            mask,
            vals,
        } => {
            let s = u64::from(k);
            let v: Box<[u32]> = vals.into();
            node(
                move |d| {
                    let x = ld(d, s, size)? & mask;
                    Some(v.contains(&x))
                },
                t,
                f,
            )
        }
        FastOp::Switch {
            size,
            k,
            mask,
            cases,
        } => {
            let s = u64::from(k);
            let mut arms = Vec::with_capacity(cases.len());
            for &(v, to) in cases {
                arms.push((v, arm(to)?));
            }
            let arms = arms.into_boxed_slice();
            // `t` is unused: a switch goes to the matching arm or to its false target.
            drop(t);
            Arc::new(move |d: &[u8]| {
                let x = ld(d, s, size)? & mask;
                match arms.iter().find(|(w, _)| *w == x) {
                    Some((_, n)) => n.go(d),
                    None => f.go(d),
                }
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use como_packet::LinkType;

    use crate::eval::{run, run_slow};

    /// A deterministic generator of plausible Ethernet frames (IPv4/IPv6/ARP/VLAN, TCP/UDP
    /// with a few ports, some fragments, some IPv4 options) so that every branch of the
    /// compiled programs is taken.
    fn frames() -> Vec<Vec<u8>> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        for _ in 0..400 {
            let r = next();
            let mut f = vec![0u8; 12];
            let vlan = r % 7 == 0;
            if vlan {
                f.extend([0x81, 0x00, 0x00, (r >> 8) as u8]);
            }
            let kind = (r >> 16) % 4;
            let ports = [53u16, 80, 123, 443, 1234];
            let sp = ports[((r >> 20) % 5) as usize];
            let dp = ports[((r >> 24) % 5) as usize];
            let proto = [6u8, 17, 1, 132][((r >> 28) % 4) as usize];
            let addr = [[10, 1, 2, 3], [10, 9, 9, 9], [192, 168, 0, 1]][((r >> 32) % 3) as usize];
            match kind {
                0 | 1 => {
                    f.extend([0x08, 0x00]);
                    let opts = if (r >> 36) % 5 == 0 { 4 } else { 0 };
                    f.push(0x45 + opts / 4);
                    f.extend([0, 0, 60, 0, 0]);
                    f.extend(if (r >> 40) % 6 == 0 {
                        [0x00, 0x10]
                    } else {
                        [0x40, 0]
                    });
                    f.extend([64, proto, 0, 0]);
                    f.extend(addr);
                    f.extend([10, 1, 2, 3]);
                    f.extend(std::iter::repeat_n(1u8, opts as usize));
                }
                2 => {
                    f.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 20]);
                    f.push(if (r >> 44) % 5 == 0 { 44 } else { proto });
                    f.push(64);
                    f.extend([0u8; 32]);
                }
                _ => {
                    f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                    f.extend([0u8; 6]);
                    f.extend(addr);
                    f.extend([0u8; 6]);
                    f.extend([10, 1, 2, 3]);
                }
            }
            f.extend(sp.to_be_bytes());
            f.extend(dp.to_be_bytes());
            f.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x50, (r >> 48) as u8, 0, 0]);
            f.extend([0u8; 8]);
            out.push(f);
        }
        out
    }

    /// The threaded code (with jump threading and the fused tails) decides every packet,
    /// at every captured length, as the plain jump program and its three-valued fallback do.
    #[test]
    fn threaded_code_agrees_with_the_jump_program_at_every_length() {
        let exprs = [
            "tcp port 80",
            "host 10.1.2.3",
            "net 10.0.0.0/8 and udp",
            "port 53 or port 123",
            "not tcp",
            "vlan and ip",
            "tcp[tcpflags] & tcp-syn != 0",
            "ip6 and ip6[6] = 6 and ip6[53] & 2 != 0",
            "udp dst port 53 or tcp src port 443",
            "src host 10.1.2.3 and dst host 10.1.2.3",
            "arp or (ip and not udp)",
            "portrange 50-130 and not port 80",
            "ip proto 132 or ip6",
            "tcp[tcpflags] & tcp-syn != 0 and tcp[2:2] = 80",
            "tcp[13] = 2 or tcp[13] = 18 or udp[0:2] = 53",
            "not (tcp[tcpflags] & (tcp-syn|tcp-fin) != 0)",
            "udp",
            "sctp or not ip",
        ];
        let frames = frames();
        let mut checked = 0;
        for e in exprs {
            let f = match crate::compile(e, LinkType::Ethernet) {
                Ok(f) => f,
                Err(err) => panic!("{e}: {err}"),
            };
            assert!(f.prog.has_threaded(), "{e}: not compiled to threaded code");
            for fr in &frames {
                for len in 0..=fr.len() {
                    let d = &fr[..len];
                    let wire = fr.len() as u32;
                    let fast = run(&f.ir, &f.prog, d, wire);
                    let slow = run_slow(&f.ir, &f.prog, d, wire);
                    assert_eq!(fast, slow, "{e} on {len} of {:02x?}", fr);
                    // `run` takes the native code when there is some: the threaded code too.
                    if let Some(t) = f.prog.run_threaded(d) {
                        assert_eq!(t, slow, "threaded: {e} on {len} of {:02x?}", fr);
                    }
                    if let Some(n) = f.prog.run_native(d) {
                        assert_eq!(n, slow, "native: {e} on {len} of {:02x?}", fr);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000);
    }
}
