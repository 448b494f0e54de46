//! Per-EtherType flat form of a register-free jump program: one up-front bounds check, then
//! masked range tests and bit masks, no data-dependent branch but the choice of arm.
//!
//! The field the program tests first (the EtherType at 12 on Ethernet: the *key*) is read once
//! and selects an *arm* (one per value the program compares the key with, at most
//! [`MAX_ARMS`], plus a default for every other value). Each arm is the jump program
//! specialised to its key value and flattened into an or of and-terms over *atoms*, masked
//! range tests on one load at a fixed offset or at an offset relative to the IPv4 transport
//! base `4 * IHL` (IHL read at the arm's network offset). An arm's atoms are all computed (one
//! bit each), then each term is `bits & mask == want`; the verdict is whether any term holds.
//!
//! Exactness: an arm answers only when every load of every one of its atoms lies within the
//! captured bytes (four bytes from each atom's offset: one check of the arm's fixed extent,
//! then one of its transport extent once IHL is known). When all loads are in bounds the jump
//! program never meets an out-of-bounds load and its verdict is the boolean function the terms
//! compute; a packet failing the check returns `None` and takes the exact path (threaded code,
//! then the jump program and its three-valued pass).
//!
//! Status: measured slower than [`crate::threaded`] on the benchmark's filters (summed 0.71-0.84x
//! of the threaded code's speed, slower per filter on 7 of 8; benches/RESULTS.md), so
//! [`crate::eval::run`] does not use it: the module is compiled for its tests only (exactness on
//! every trace packet and corpus expression, the bounds-check fallback, and the ignored
//! `flat_timing` that reproduces the measurement).

use crate::eval::{FastOp, ACCEPT, REJECT};
use crate::ir::Cmp;

/// Most arms with a key value (plus the default arm).
pub(crate) const MAX_ARMS: usize = 4;
/// Most atoms of an arm (one bit each).
const MAX_ATOMS: usize = 16;
/// Most and-terms of an arm.
const MAX_TERMS: usize = 16;
/// Most jump-program steps walked while flattening (bounds compile time on path explosion).
const MAX_STEPS: usize = 4096;
/// Largest offset an atom may load from (keeps offset arithmetic far from overflow).
const MAX_OFF: u32 = 0xffff;

/// One masked range test: `((load32(base + k) >> shift) & mask) - lo <= span` (wrapping), with
/// `base = 4 * IHL` when `ihl`, else 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Atom {
    ihl: bool,
    k: u32,
    shift: u32,
    mask: u32,
    lo: u32,
    span: u32,
}

impl Atom {
    /// An atom that is always false and loads nothing that matters (padding).
    const FALSE: Atom = Atom {
        ihl: false,
        k: 0,
        shift: 0,
        mask: 0,
        lo: 1,
        span: 0,
    };

    /// `load(k, size) & mask` in `lo..=hi` (`lo > hi`: never).
    fn range(ihl: bool, k: u32, size: u8, mask: u32, lo: u32, hi: u32) -> Option<Atom> {
        if k > MAX_OFF {
            return None;
        }
        let (shift, full) = match size {
            1 => (24, 0xff),
            2 => (16, 0xffff),
            4 => (0, u32::MAX),
            _ => return None,
        };
        if lo > hi {
            return Some(Atom::FALSE);
        }
        Some(Atom {
            ihl,
            k,
            shift,
            mask: mask & full,
            lo,
            span: hi - lo,
        })
    }
}

/// A literal of a term: an atom's index and the value it must have.
type Lit = (usize, bool);

/// One arm: its atoms (padded to the longest arm's count), terms as (mask, want) over the atom
/// bits (padded with terms that never hold), extents.
#[derive(Debug, Clone)]
struct Arm {
    atoms: Box<[Atom]>,
    terms: Box<[(u64, u64)]>,
    /// Bytes needed from 0 for the fixed-offset atoms (and the IHL byte).
    fixed_end: u64,
    /// Offset of the IPv4 header whose IHL gives the transport base.
    ihl_k: u32,
    /// Bytes needed from the transport base (0: no transport atom).
    tr_end: u64,
}

/// The flat form of a program.
#[derive(Debug, Clone)]
pub(crate) struct Flat {
    /// Offset of the 2-byte key.
    key_k: u32,
    /// Key values with an arm of their own; arm `i + 1` is for `vals[i]`, arm 0 the default.
    vals: [u32; MAX_ARMS],
    /// Number of arms (1 + key values).
    arms: Box<[Arm]>,
}

/// Which arm is being flattened: a key value, or none of the tested values.
#[derive(Clone, Copy)]
enum Key {
    Is(u32),
    Other,
}

/// The key field `(k, 2 bytes, full mask)` of an instruction testing it, if it is one.
fn key_of(op: &FastOp<'_>) -> Option<u32> {
    match *op {
        FastOp::Eq {
            size: 2, k, mask, ..
        }
        | FastOp::EqAny {
            size: 2, k, mask, ..
        }
        | FastOp::Switch {
            size: 2, k, mask, ..
        } if mask & 0xffff == 0xffff => Some(k),
        _ => None,
    }
}

/// Flattening state of one arm.
struct ArmBuilder<'a, 'o> {
    ins: &'a [(FastOp<'o>, u32, u32)],
    key_k: u32,
    key: Key,
    atoms: Vec<Atom>,
    terms: Vec<Vec<Lit>>,
    steps: usize,
    ihl_k: Option<u32>,
}

/// A disjunction of conjunctions of literals.
type Dnf = Vec<Vec<Lit>>;

impl ArmBuilder<'_, '_> {
    fn atom(&mut self, a: Atom) -> Option<usize> {
        if let Some(i) = self.atoms.iter().position(|b| *b == a) {
            return Some(i);
        }
        if self.atoms.len() >= MAX_ATOMS {
            return None;
        }
        self.atoms.push(a);
        Some(self.atoms.len() - 1)
    }

    fn uses_ihl(&mut self, k: u32) -> Option<()> {
        match self.ihl_k {
            None => {
                self.ihl_k = Some(k);
                Some(())
            }
            Some(j) if j == k => Some(()),
            Some(_) => None,
        }
    }

    /// An or of atoms: true is any of them, false is none.
    fn any_of(&mut self, atoms: &[Atom]) -> Option<(Dnf, Dnf)> {
        let mut idx = Vec::with_capacity(atoms.len());
        for a in atoms {
            idx.push(self.atom(*a)?);
        }
        let t = idx.iter().map(|&i| vec![(i, true)]).collect();
        let f = vec![idx.iter().map(|&i| (i, false)).collect()];
        Some((t, f))
    }

    /// When the key is decided by `op`, the instruction it continues at.
    fn decided(&self, op: &FastOp<'_>, jt: u32, jf: u32) -> Option<u32> {
        if key_of(op) != Some(self.key_k) {
            return None;
        }
        let known = match self.key {
            Key::Is(v) => Some(v),
            Key::Other => None,
        };
        Some(match *op {
            FastOp::Eq { val, .. } => {
                if known == Some(val) {
                    jt
                } else {
                    jf
                }
            }
            FastOp::EqAny { vals, .. } => {
                if known.is_some_and(|v| vals.contains(&v)) {
                    jt
                } else {
                    jf
                }
            }
            FastOp::Switch { cases, .. } => cases
                .iter()
                .find(|c| Some(c.0) == known)
                .map_or(jf, |c| c.1),
            _ => return None,
        })
    }

    /// The instruction's test as (true DNF, false DNF) over atoms.
    fn test(&mut self, op: &FastOp<'_>) -> Option<(Dnf, Dnf)> {
        match *op {
            FastOp::Eq { size, k, mask, val } => {
                self.any_of(&[Atom::range(false, k, size, mask, val, val)?])
            }
            FastOp::Range { size, k, lo, hi } => {
                self.any_of(&[Atom::range(false, k, size, !0, lo, hi)?])
            }
            FastOp::RangeSet { size, k, ranges } => {
                let a: Option<Vec<_>> = ranges
                    .iter()
                    .map(|&(lo, hi)| Atom::range(false, k, size, !0, lo, hi))
                    .collect();
                self.any_of(&a?)
            }
            FastOp::EqAny {
                size,
                k,
                mask,
                vals,
            } => {
                let a: Option<Vec<_>> = vals
                    .iter()
                    .map(|&v| Atom::range(false, k, size, mask, v, v))
                    .collect();
                self.any_of(&a?)
            }
            FastOp::Port4 { k, off, lo, hi } => {
                self.uses_ihl(k)?;
                self.any_of(&[Atom::range(true, k.checked_add(off)?, 2, !0, lo, hi)?])
            }
            FastOp::Port4Set { k, off, ranges } => {
                self.uses_ihl(k)?;
                let ko = k.checked_add(off)?;
                let a: Option<Vec<_>> = ranges
                    .iter()
                    .map(|&(lo, hi)| Atom::range(true, ko, 2, !0, lo, hi))
                    .collect();
                self.any_of(&a?)
            }
            FastOp::Ip6Proto { k, val } => {
                let nh = self.atom(Atom::range(false, k.checked_add(6)?, 1, !0, val, val)?)?;
                let frag = self.atom(Atom::range(false, k.checked_add(6)?, 1, !0, 44, 44)?)?;
                let fnh = self.atom(Atom::range(false, k.checked_add(40)?, 1, !0, val, val)?)?;
                let t = vec![vec![(nh, true)], vec![(frag, true), (fnh, true)]];
                let f = vec![
                    vec![(nh, false), (frag, false)],
                    vec![(nh, false), (fnh, false)],
                ];
                Some((t, f))
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
                if tcp {
                    self.uses_ihl(k)?;
                }
                let at = k.checked_add(index)?;
                // Each comparison is a range or the negation of one.
                let (lo, hi, pos) = match cmp {
                    Cmp::Eq => (val, val, true),
                    Cmp::Ne => (val, val, false),
                    Cmp::Le => (0, val, true),
                    Cmp::Gt => (0, val, false),
                    Cmp::Ge => (val, u32::MAX, true),
                    Cmp::Lt => (val, u32::MAX, false),
                };
                let i = self.atom(Atom::range(tcp, at, size, mask, lo, hi)?)?;
                Some((vec![vec![(i, pos)]], vec![vec![(i, !pos)]]))
            }
            FastOp::Switch {
                size,
                k,
                mask,
                cases,
            } => {
                // Handled by `walk` (several successors); never reached here.
                let _ = (size, k, mask, cases);
                None
            }
        }
    }

    /// Every path from `at` to accept, with the literals `lits` already on it.
    fn walk(&mut self, at: u32, lits: &[Lit]) -> Option<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return None;
        }
        if at == ACCEPT {
            let mut t = lits.to_vec();
            t.sort_unstable();
            t.dedup();
            if t.windows(2).any(|w| w[0].0 == w[1].0) {
                return Some(()); // contradictory: never holds
            }
            if !self.terms.contains(&t) {
                if self.terms.len() >= MAX_TERMS {
                    return None;
                }
                self.terms.push(t);
            }
            return Some(());
        }
        if at == REJECT {
            return Some(());
        }
        let (op, jt, jf) = *self.ins.get(at as usize)?;
        let later = |t: u32| t == ACCEPT || t == REJECT || t > at;
        if !later(jt) || !later(jf) {
            return None;
        }
        if let Some(to) = self.decided(&op, jt, jf) {
            return self.walk(to, lits);
        }
        if let FastOp::Switch {
            size,
            k,
            mask,
            cases,
        } = op
        {
            let mut none = lits.to_vec();
            for &(v, to) in cases {
                if !later(to) {
                    return None;
                }
                let i = self.atom(Atom::range(false, k, size, mask, v, v)?)?;
                let mut l = lits.to_vec();
                l.push((i, true));
                self.walk(to, &l)?;
                none.push((i, false));
            }
            return self.walk(jf, &none);
        }
        let (t, f) = self.test(&op)?;
        for (dnf, to) in [(t, jt), (f, jf)] {
            if to == REJECT {
                continue;
            }
            for conj in dnf {
                let mut l = lits.to_vec();
                l.extend(conj);
                self.walk(to, &l)?;
            }
        }
        Some(())
    }
}

impl Flat {
    /// The flat form of the jump program `ins` (successors at higher indices) entered at
    /// `entry`, or `None` when it has no key test at its entry or an arm is too large.
    pub(crate) fn compile(ins: &[(FastOp<'_>, u32, u32)], entry: u32) -> Option<Flat> {
        let (op0, _, _) = ins.get(entry as usize)?;
        let key_k = key_of(op0)?;
        if key_k > MAX_OFF {
            return None;
        }
        let mut vals: Vec<u32> = Vec::new();
        for (op, _, _) in ins {
            if key_of(op) != Some(key_k) {
                continue;
            }
            let tested: Vec<u32> = match *op {
                FastOp::Eq { val, .. } => vec![val],
                FastOp::EqAny { vals, .. } => vals.to_vec(),
                FastOp::Switch { cases, .. } => cases.iter().map(|c| c.0).collect(),
                _ => Vec::new(),
            };
            for v in tested {
                if v <= 0xffff && !vals.contains(&v) {
                    vals.push(v);
                }
            }
        }
        if vals.len() > MAX_ARMS {
            return None;
        }
        let mut built = Vec::with_capacity(vals.len() + 1);
        let keys = std::iter::once(Key::Other).chain(vals.iter().map(|&v| Key::Is(v)));
        for key in keys {
            let mut b = ArmBuilder {
                ins,
                key_k,
                key,
                atoms: Vec::new(),
                terms: Vec::new(),
                steps: 0,
                ihl_k: None,
            };
            b.walk(entry, &[])?;
            built.push((b.atoms, b.terms, b.ihl_k));
        }
        let n_atoms = built.iter().map(|b| b.0.len()).max().unwrap_or(0);
        let n_terms = built.iter().map(|b| b.1.len()).max().unwrap_or(0);
        let mut arms = Vec::with_capacity(built.len());
        for (mut atoms, terms, ihl_k) in built {
            let mut fixed_end = u64::from(key_k) + 2;
            let mut tr_end = 0u64;
            for a in &atoms {
                if *a == Atom::FALSE {
                    continue;
                }
                let end = u64::from(a.k) + 4;
                if a.ihl {
                    tr_end = tr_end.max(end);
                } else {
                    fixed_end = fixed_end.max(end);
                }
            }
            let ihl_k = ihl_k.unwrap_or(0);
            if tr_end > 0 {
                fixed_end = fixed_end.max(u64::from(ihl_k) + 1);
            }
            atoms.resize(n_atoms, Atom::FALSE);
            let mut t: Vec<(u64, u64)> = terms
                .iter()
                .map(|lits| {
                    lits.iter().fold((0u64, 0u64), |(m, w), &(i, v)| {
                        (m | 1 << i, w | u64::from(v) << i)
                    })
                })
                .collect();
            t.resize(n_terms, (0, 1));
            arms.push(Arm {
                atoms: atoms.into_boxed_slice(),
                terms: t.into_boxed_slice(),
                fixed_end,
                ihl_k,
                tr_end,
            });
        }
        let mut v = [u32::MAX; MAX_ARMS];
        for (slot, &x) in v.iter_mut().zip(&vals) {
            *slot = x;
        }
        Some(Flat {
            key_k,
            vals: v,
            arms: arms.into_boxed_slice(),
        })
    }

    /// (arms, atoms per arm, terms per arm).
    #[cfg(test)]
    fn shape(&self) -> (usize, usize, usize) {
        let a = self
            .arms
            .first()
            .map_or((0, 0), |a| (a.atoms.len(), a.terms.len()));
        (self.arms.len(), a.0, a.1)
    }

    /// The verdict, or `None` when a load of the packet's arm may fall outside `d`.
    #[inline]
    pub(crate) fn run(&self, d: &[u8]) -> Option<bool> {
        let key = ld2(d, self.key_k as usize)?;
        let idx = self
            .vals
            .iter()
            .enumerate()
            .fold(0usize, |a, (i, &v)| a | (usize::from(key == v) * (i + 1)));
        let arm = self.arms.get(idx)?;
        let len = d.len() as u64;
        let ihl = d
            .get(arm.ihl_k as usize)
            .map_or(0, |&b| u32::from(b & 0xf) << 2);
        let ok = (arm.fixed_end <= len) & (u64::from(ihl) + arm.tr_end <= len);
        if !ok {
            return None;
        }
        let mut bits = 0u64;
        for (i, a) in arm.atoms.iter().enumerate() {
            let base = ihl & 0u32.wrapping_sub(u32::from(a.ihl));
            let w = ld4(d, (base + a.k) as usize);
            let v = (w >> a.shift) & a.mask;
            bits |= u64::from(v.wrapping_sub(a.lo) <= a.span) << i;
        }
        Some(
            arm.terms
                .iter()
                .fold(false, |acc, &(m, w)| acc | (bits & m == w)),
        )
    }
}

/// An arm with a fixed number of atoms and terms (loops unrolled by the compiler).
#[derive(Debug, Clone)]
struct FixedArm<const A: usize, const T: usize> {
    atoms: [Atom; A],
    terms: [(u64, u64); T],
    fixed_end: u64,
    ihl_k: u32,
    tr_end: u64,
}

/// [`Flat`] with every arm of `A` atoms and `T` terms, arms padded to `MAX_ARMS + 1`.
#[derive(Debug, Clone)]
pub(crate) struct Fixed<const A: usize, const T: usize> {
    key_k: u32,
    vals: [u32; MAX_ARMS],
    arms: [FixedArm<A, T>; MAX_ARMS + 1],
}

/// A [`Flat`] in the smallest [`Fixed`] shape that holds it.
#[derive(Debug, Clone)]
pub(crate) enum Mono {
    /// Up to 1 atom, 1 term per arm.
    A1T1(Box<Fixed<1, 1>>),
    /// Up to 2 atoms, 2 terms.
    A2T2(Box<Fixed<2, 2>>),
    /// Up to 4 atoms, 2 terms.
    A4T2(Box<Fixed<4, 2>>),
    /// Up to 8 atoms, 16 terms.
    A8T16(Box<Fixed<8, 16>>),
}

impl<const A: usize, const T: usize> Fixed<A, T> {
    fn of(f: &Flat) -> Option<Self> {
        let arm = |i: usize| -> Option<FixedArm<A, T>> {
            let a = f.arms.get(i).or_else(|| f.arms.first())?;
            if a.atoms.len() > A || a.terms.len() > T {
                return None;
            }
            let mut atoms = [Atom::FALSE; A];
            for (s, x) in atoms.iter_mut().zip(a.atoms.iter()) {
                *s = *x;
            }
            let mut terms = [(0u64, 1u64); T];
            for (s, x) in terms.iter_mut().zip(a.terms.iter()) {
                *s = *x;
            }
            Some(FixedArm {
                atoms,
                terms,
                fixed_end: a.fixed_end,
                ihl_k: a.ihl_k,
                tr_end: a.tr_end,
            })
        };
        Some(Fixed {
            key_k: f.key_k,
            vals: f.vals,
            arms: [arm(0)?, arm(1)?, arm(2)?, arm(3)?, arm(4)?],
        })
    }

    #[inline(always)]
    fn run(&self, d: &[u8]) -> Option<bool> {
        let key = ld2(d, self.key_k as usize)?;
        let idx = self
            .vals
            .iter()
            .enumerate()
            .fold(0usize, |a, (i, &v)| a | (usize::from(key == v) * (i + 1)));
        let arm = self.arms.get(idx)?;
        let len = d.len() as u64;
        let ihl = d
            .get(arm.ihl_k as usize)
            .map_or(0, |&b| u32::from(b & 0xf) << 2);
        if !((arm.fixed_end <= len) & (u64::from(ihl) + arm.tr_end <= len)) {
            return None;
        }
        let mut bits = 0u64;
        for (i, a) in arm.atoms.iter().enumerate() {
            let base = ihl & 0u32.wrapping_sub(u32::from(a.ihl));
            let w = ld4(d, (base + a.k) as usize);
            let v = (w >> a.shift) & a.mask;
            bits |= u64::from(v.wrapping_sub(a.lo) <= a.span) << i;
        }
        Some(
            arm.terms
                .iter()
                .fold(false, |acc, &(m, w)| acc | (bits & m == w)),
        )
    }
}

impl Mono {
    /// The smallest fixed shape holding `f`.
    pub(crate) fn of(f: &Flat) -> Option<Mono> {
        if let Some(x) = Fixed::<1, 1>::of(f) {
            return Some(Mono::A1T1(Box::new(x)));
        }
        if let Some(x) = Fixed::<2, 2>::of(f) {
            return Some(Mono::A2T2(Box::new(x)));
        }
        if let Some(x) = Fixed::<4, 2>::of(f) {
            return Some(Mono::A4T2(Box::new(x)));
        }
        Fixed::<8, 16>::of(f).map(|x| Mono::A8T16(Box::new(x)))
    }

    /// As [`Flat::run`].
    #[inline]
    pub(crate) fn run(&self, d: &[u8]) -> Option<bool> {
        match self {
            Mono::A1T1(x) => x.run(d),
            Mono::A2T2(x) => x.run(d),
            Mono::A4T2(x) => x.run(d),
            Mono::A8T16(x) => x.run(d),
        }
    }
}

#[inline(always)]
fn ld2(d: &[u8], s: usize) -> Option<u32> {
    let b = d.get(s..s.checked_add(2)?)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Four bytes big-endian at `s`, 0 if they are not all within `d` (never the case for an
/// atom of an arm whose bounds check passed, but for padding atoms).
#[inline(always)]
fn ld4(d: &[u8], s: usize) -> u32 {
    match d.get(s..s.wrapping_add(4)) {
        Some(&[a, b, c, e]) => u32::from_be_bytes([a, b, c, e]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use como_packet::LinkType;

    use crate::eval::{run, run_slow};

    /// The benchmark's filters (benches/benches/filter_eval.rs).
    const BENCH: &[&str] = &[
        "tcp port 80",
        "host 10.1.2.3",
        "net 10.0.0.0/8 and udp",
        "ip6 and ip6[6] = 6 and ip6[53] & 2 != 0",
        "tcp[tcpflags] & tcp-syn != 0",
        "vlan and ip",
        "port 53 or port 123",
        "not tcp",
    ];

    fn traces() -> Vec<como_tests::Trace> {
        let list = como_tests::traces_dir().join("SOURCES.tsv");
        let text = std::fs::read_to_string(&list).unwrap_or_else(|e| panic!("{list:?}: {e}"));
        text.lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
            .filter_map(|f| como_tests::load_trace(f).ok())
            .filter(|t| !t.packets.is_empty())
            .collect()
    }

    /// Wherever the flat form answers, it gives the jump program's verdict: every packet of
    /// every trace (and the first packets of each cut at every length), for every corpus
    /// expression and benchmark filter that compiles for the trace's link type.
    #[test]
    fn flat_form_agrees_with_the_jump_program_on_traces_and_corpus() {
        let mut exprs: Vec<String> = como_tests::corpus_section("valid");
        exprs.extend(BENCH.iter().map(|s| (*s).to_owned()));
        let traces = traces();
        assert!(traces.len() > 100, "only {} traces loaded", traces.len());
        let (mut answered, mut flat_filters) = (0u64, 0u64);
        for t in &traces {
            for e in &exprs {
                let Ok(f) = crate::compile(e, t.link) else {
                    continue;
                };
                let Some(flat) = f.prog.parts().1 else {
                    continue;
                };
                flat_filters += 1;
                let mono = super::Mono::of(flat);
                for (n, p) in t.packets.iter().enumerate() {
                    let lens = if n < 8 {
                        0..=p.data.len()
                    } else {
                        p.data.len()..=p.data.len()
                    };
                    for len in lens {
                        let Some(d) = p.data.get(..len) else { continue };
                        let m = mono.as_ref().and_then(|m| m.run(d));
                        if let Some(b) = flat.run(d) {
                            answered += 1;
                            let want = run_slow(&f.ir, &f.prog, d, p.wire_len);
                            assert_eq!(b, want, "{e:?} on {len} bytes of {:02x?}", p.data);
                            assert_eq!(m, Some(b), "{e:?}: fixed-shape form");
                        }
                    }
                }
            }
        }
        println!("flat forms: {flat_filters} (filter, trace) pairs; answers checked: {answered}");
        assert!(flat_filters > 10_000, "flat forms: {flat_filters}");
        assert!(answered > 10_000_000, "answered: {answered}");
    }

    /// The benchmark's filters all have a flat form on Ethernet.
    #[test]
    fn bench_filters_have_a_flat_form() {
        for e in BENCH {
            let f =
                crate::compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"));
            assert!(f.prog.parts().1.is_some(), "{e}: no flat form");
        }
    }

    /// An IPv4/TCP frame from port 80 to port 1234 with `opts` 32-bit words of IP options.
    fn tcp_frame(opts: u8) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([
            0x08,
            0x00,
            0x45 + opts,
            0,
            0,
            60,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend([10, 1, 2, 3, 10, 9, 9, 9]);
        f.extend(std::iter::repeat_n(1u8, 4 * usize::from(opts)));
        f.extend(80u16.to_be_bytes());
        f.extend(1234u16.to_be_bytes());
        f.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0, 0, 0, 0, 0, 0]);
        f
    }

    /// A packet whose arm's atoms do not all fit in the captured bytes gets no answer from the
    /// flat form and is decided by the exact path: `tcp port 80` on a frame cut after the
    /// source port (the destination port's load would fail; the jump program accepts on the
    /// source port before reaching it), and on one whose IP options push the ports past the
    /// end.
    #[test]
    fn a_packet_failing_the_bounds_check_takes_the_exact_path() {
        let f = crate::compile("tcp port 80", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
        let Some(flat) = f.prog.parts().1 else {
            panic!("no flat form")
        };
        let whole = tcp_frame(0);
        assert_eq!(flat.run(&whole), Some(true));
        let cut = &whole[..36];
        assert_eq!(flat.run(cut), None, "bounds check passed on 36 bytes");
        assert!(
            run(&f.ir, &f.prog, cut, 60),
            "exact path: source port 80 accepts"
        );
        assert_eq!(f.prog.parts().0.and_then(|t| t.run(cut)), Some(true));
        assert!(run_slow(&f.ir, &f.prog, cut, 60));
        // Ports at 14 + 60 = 74: in the frame, but the frame cut at 70 holds neither.
        let opts = tcp_frame(10);
        assert_eq!(flat.run(&opts), Some(true));
        let cut = &opts[..70];
        assert_eq!(flat.run(cut), None);
        assert!(
            !run(&f.ir, &f.prog, cut, 100),
            "exact path: port load out of bounds"
        );
        // A UDP frame cut at the same length: the IPv4 arm still needs the port bytes.
        let mut udp = tcp_frame(0);
        udp[23] = 17;
        assert_eq!(flat.run(&udp), Some(false));
        assert_eq!(flat.run(&udp[..30]), None);
        assert!(!run(&f.ir, &f.prog, &udp[..30], 60));
    }

    fn time(f: impl Fn() -> usize) -> (Duration, usize) {
        let t = Instant::now();
        let n = std::hint::black_box(f());
        (t.elapsed(), n)
    }

    /// Timing of the flat form against the threaded code on a trace (`COMO_FLAT_TRACE`, e.g.
    /// `gen-trace -o /tmp/s.pcap -n 200000`): `cargo test --release -p ebpf-filters
    /// flat_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, needs COMO_FLAT_TRACE"]
    fn flat_timing() {
        let Ok(path) = std::env::var("COMO_FLAT_TRACE") else {
            panic!("set COMO_FLAT_TRACE")
        };
        let t = como_tests::load_trace(&path).unwrap_or_else(|e| panic!("{e}"));
        let n = t.packets.len() as f64;
        let rounds: usize = std::env::var("COMO_FLAT_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(9);
        let (mut sf, mut st) = (0.0, 0.0);
        for e in BENCH {
            let f = crate::compile(e, t.link).unwrap_or_else(|err| panic!("{e}: {err}"));
            let (thr, fl) = f.prog.parts();
            let mono = fl.and_then(super::Mono::of);
            let (mut a, mut b) = (Duration::MAX, Duration::MAX);
            for _ in 0..rounds {
                let (d, x) = time(|| {
                    t.packets
                        .iter()
                        .filter(|p| {
                            let d = std::hint::black_box(&p.data[..]);
                            mono.as_ref()
                                .and_then(|m| m.run(d))
                                .or_else(|| thr.and_then(|th| th.run(d)))
                                .unwrap_or_else(|| run_slow(&f.ir, &f.prog, d, p.wire_len))
                        })
                        .count()
                });
                a = a.min(d);
                let (d, y) = time(|| {
                    t.packets
                        .iter()
                        .filter(|p| {
                            let d = std::hint::black_box(&p.data[..]);
                            thr.and_then(|th| th.run(d))
                                .unwrap_or_else(|| run_slow(&f.ir, &f.prog, d, p.wire_len))
                        })
                        .count()
                });
                b = b.min(d);
                assert_eq!(x, y, "{e}");
            }
            let (a, b) = (a.as_secs_f64() * 1e9 / n, b.as_secs_f64() * 1e9 / n);
            sf += a;
            st += b;
            let shape = f.prog.parts().1.map(|fl| fl.shape());
            println!(
                "{e:45} flat {a:6.2} threaded {b:6.2} ns/pkt  ratio {:.2}  {shape:?}",
                b / a
            );
        }
        println!(
            "{:45} flat {sf:6.2} threaded {st:6.2} ns/pkt  ratio {:.2}",
            "sum",
            st / sf
        );
    }
}
