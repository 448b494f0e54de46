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

use std::fmt;
use std::sync::Arc;

use crate::eval::{FastOp, ACCEPT, REJECT};

/// Longest program compiled (bounds the call depth: successors always have higher indices).
pub(crate) const MAX_INS: usize = 64;

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
    pub(crate) fn compile(ins: &[(FastOp<'_>, u32, u32)], entry: u32) -> Option<Self> {
        if ins.len() > MAX_INS {
            return None;
        }
        let mut code: Vec<Option<Next>> = vec![None; ins.len()];
        for (i, (op, jt, jf)) in ins.iter().enumerate().rev() {
            let next = |t: u32| -> Option<Next> {
                if t == ACCEPT {
                    Some(Next::Accept)
                } else if t == REJECT {
                    Some(Next::Reject)
                } else if (t as usize) > i {
                    code.get(t as usize).cloned().flatten()
                } else {
                    None
                }
            };
            let (t, f) = (next(*jt)?, next(*jf)?);
            let c = build(op, t, f, &next)?;
            if let Some(slot) = code.get_mut(i) {
                *slot = Some(Next::Go(c));
            }
        }
        let entry = if entry == ACCEPT {
            Next::Accept
        } else if entry == REJECT {
            Next::Reject
        } else {
            code.get(entry as usize).cloned().flatten()?
        };
        Some(Threaded { entry })
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

fn build(op: &FastOp<'_>, t: Next, f: Next, next: &dyn Fn(u32) -> Option<Next>) -> Option<Code> {
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
                arms.push((v, next(to)?));
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
