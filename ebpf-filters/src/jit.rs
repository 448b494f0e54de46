//! Native code for the fast pass: the register-free jump program compiled to machine code with
//! Cranelift (the Wasmtime project's code generator) when the filter is compiled.
//!
//! Input is what [`crate::threaded`] takes (the register-free view of the jump program, at most
//! [`crate::threaded::MAX_INS`] instructions, successors at higher indices); output is one
//! function `fn(data, caplen) -> MATCH | NO_MATCH | FALLBACK`. FALLBACK means that a load on
//! the packet's path through the jump program would leave the captured bytes: then
//! [`crate::eval::run_slow`] decides with the exact jump program and its three-valued pass. So
//! the native verdict, when there is one, is the jump program's.
//!
//! The function has two forms of the program:
//! * branch-free (packets holding at least the first [`GUARD`] bytes the filter reads, one
//!   check at entry): every reachable instruction's test is computed, and the verdict and an
//!   "out of bounds on the path" flag are carried from the verdicts back to the entry with
//!   selects, so the EtherType/protocol mix causes no mispredicted jump. Loads past the guard
//!   are checked one by one and read zeros instead of leaving the packet (flagged).
//! * branching, for shorter packets: one block per instruction, each load checked (a check
//!   already made on the path is not repeated), FALLBACK on the first load out of bounds. Jump
//!   threading as in [`crate::threaded`]: along a path, a field tested equal to a constant is
//!   known, and a later equality test of the same bytes is decided at compile time (the skipped
//!   test would load bytes already loaded on that path, so out-of-bounds behaviour is
//!   unchanged). A test whose two successors are the verdicts returns its result directly.
//!
//! If no code generator exists for the host, or Cranelift reports an error, [`Native::compile`]
//! returns `None` (logged once) and the threaded code runs instead: compiling a filter never
//! fails because of the JIT.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, Block, InstBuilder, MemFlagsData, UserFuncName, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};

use crate::eval::{FastOp, ACCEPT, REJECT};
use crate::ir::Cmp;
use crate::threaded::{known, size_mask, Fact, MAX_INS};

/// The native code's answer: the packet does not match.
const NO_MATCH: u32 = 0;
/// The native code's answer: the packet matches.
pub(crate) const MATCH: u32 = 1;
/// The native code's answer: a load left the captured bytes; the exact path decides.
const FALLBACK: u32 = 2;

/// Absolute loads ending within this many bytes are made without a check in the branch-free
/// form, after one check of the captured length at entry; loads ending further read zeros when
/// they would leave the captured bytes, and are flagged. 54 bytes is the shortest TCP/IPv4
/// Ethernet frame, the commonest short packet: a filter reading further (`ip6[53]`, the IPv6
/// fragment header) still takes its branch-free form on it. Measured on the bench: the extent
/// of all loads as the guard sent the short packets of `ip6 and ip6[6] = 6 and ip6[53] & 2 !=
/// 0` (4.2 -> 7.3 ns/packet) and `not tcp` (8.0 -> 9.7) to the branching form, and checking
/// every load (no guard) was slower on `host` (4.5 -> 6.8).
const GUARD: u64 = 54;

/// Longest program (instructions reachable from the entry) given the branch-free form: every
/// instruction is computed on every packet, where the branching form runs the few on the
/// packet's path. The bench filters have 2 to 9.
const EAGER_MAX: usize = 16;

/// Most (instruction, known facts, checked length) blocks generated before jump threading is
/// given up.
const MAX_BLOCKS: usize = 512;

/// The compiled function: `(data, caplen) -> MATCH | NO_MATCH | FALLBACK`.
type Entry = unsafe extern "C" fn(*const u8, usize) -> u32;

/// What a load past the captured bytes reads in the branch-free form (its result is not used).
static ZEROS: [u8; 8] = [0; 8];

/// Set once the JIT failed on this host, so that the failure is logged once.
static FAILED: AtomicBool = AtomicBool::new(false);

/// A filter's fast pass as machine code; clones share the code, freed with the last one.
#[derive(Clone)]
pub(crate) struct Native {
    /// The function, called directly (no indirection through the owner).
    entry: Entry,
    _code: Arc<Code>,
}

/// The module holding a function's code; the `Mutex` makes it `Sync` (it is only touched on
/// drop).
struct Code(Mutex<Option<JITModule>>);

impl fmt::Debug for Native {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Native")
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        let module = match self.0.get_mut() {
            Ok(m) => m.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(m) = module {
            // SAFETY: the only pointers into this module's memory are the `entry` of the
            // `Native`s holding this `Arc`; the last one is gone, so no call is running and
            // none can start.
            unsafe { m.free_memory() };
        }
    }
}

impl Native {
    /// Compiles `(op, jt, jf)` instructions (successors have higher indices) with entry `entry`;
    /// `None` if the program is too long, or the JIT is not available (logged once).
    pub(crate) fn compile(ins: &[(FastOp<'_>, u32, u32)], entry: u32) -> Option<Self> {
        if ins.len() > MAX_INS {
            return None;
        }
        match build(ins, entry) {
            Ok(n) => n,
            Err(e) => {
                if !FAILED.swap(true, Ordering::Relaxed) {
                    tracing::warn!("filter JIT unavailable, using threaded code: {e}");
                }
                None
            }
        }
    }

    /// The code's answer: 1 (match), 0 (no match), or more when a load fell outside `d`.
    /// The caller tests `<= 1` once, then uses the value without a branch on the verdict (a
    /// `match` on the three answers compiled to two jumps, the first one on the verdict: a
    /// mispredicted jump per unpredictable verdict; `not tcp` 8.3 -> 4.5 ns/packet on the
    /// bench).
    #[inline]
    pub(crate) fn call(&self, d: &[u8]) -> u32 {
        // SAFETY: the code reads only `d[..d.len()]` (a load is made only after a check of the
        // length passed, or reads a static buffer instead) and holds no state; `_code` keeps
        // it alive.
        unsafe { (self.entry)(d.as_ptr(), d.len()) }
    }

    /// The verdict, or `None` if a load fell outside `d`.
    #[cfg(test)]
    pub(crate) fn run(&self, d: &[u8]) -> Option<bool> {
        match self.call(d) {
            MATCH => Some(true),
            NO_MATCH => Some(false),
            _ => None,
        }
    }
}

/// Builds the module; `Ok(None)` when the program has an instruction the generator does not
/// take (a backward jump).
fn build(ins: &[(FastOp<'_>, u32, u32)], entry: u32) -> Result<Option<Native>, String> {
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
    ] {
        flags.set(k, v).map_err(|e| e.to_string())?;
    }
    let isa = cranelift_native::builder()
        .map_err(|e| e.to_string())?
        .finish(settings::Flags::new(flags))
        .map_err(|e| e.to_string())?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let mut ctx = module.make_context();
    let ptr = module.target_config().pointer_type();
    ctx.func.signature.params.push(AbiParam::new(ptr));
    ctx.func.signature.params.push(AbiParam::new(ptr));
    ctx.func.signature.returns.push(AbiParam::new(types::I32));
    let id = module
        .declare_function("filter", Linkage::Local, &ctx.func.signature)
        .map_err(|e| e.to_string())?;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    let mut generated = false;
    for threading in [true, false] {
        ctx.func.clear();
        ctx.func.signature.params.push(AbiParam::new(ptr));
        ctx.func.signature.params.push(AbiParam::new(ptr));
        ctx.func.signature.returns.push(AbiParam::new(types::I32));
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        match Gen::run(b, ins, entry, threading, module.target_config()) {
            Outcome::Done => {
                generated = true;
                break;
            }
            Outcome::TooBig => continue,
            Outcome::Unsupported => return Ok(None),
        }
    }
    if !generated {
        return Ok(None);
    }
    module
        .define_function(id, &mut ctx)
        .map_err(|e| format!("{e:?}"))?;
    module.clear_context(&mut ctx);
    module.finalize_definitions().map_err(|e| e.to_string())?;
    let code = module.get_finalized_function(id);
    // SAFETY: the function was declared with this signature (two pointer-sized arguments, an
    // i32 result) in the host's default calling convention, which is `extern "C"`.
    let entry = unsafe { std::mem::transmute::<*const u8, Entry>(code) };
    Ok(Some(Native {
        entry,
        _code: Arc::new(Code(Mutex::new(Some(module)))),
    }))
}

/// How generation ended.
enum Outcome {
    Done,
    /// More than [`MAX_BLOCKS`] blocks: retry without jump threading.
    TooBig,
    /// An instruction jumps backwards or out of the program.
    Unsupported,
}

/// Code generation state for one function.
struct Gen<'a, 'o, 'f> {
    ins: &'a [(FastOp<'o>, u32, u32)],
    b: FunctionBuilder<'f>,
    /// Packet pointer and captured length (pointer-sized).
    data: Value,
    len: Value,
    ptr: types::Type,
    accept: Block,
    reject: Block,
    fallback: Block,
    /// Blocks by (instruction, known facts, length already checked).
    memo: HashMap<(u32, Vec<Fact>, u64), Block>,
    todo: Vec<(Block, u32, Vec<Fact>, u64)>,
    threading: bool,
    failed: Option<Outcome>,
}

/// The flags of every packet load: the packet is not written while the code runs, bounds are
/// checked before the load, and offsets are unaligned.
fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap().with_readonly()
}

/// Cranelift's unsigned condition for `cmp`.
fn cc(cmp: Cmp) -> IntCC {
    match cmp {
        Cmp::Gt => IntCC::UnsignedGreaterThan,
        Cmp::Ge => IntCC::UnsignedGreaterThanOrEqual,
        Cmp::Eq => IntCC::Equal,
        Cmp::Le => IntCC::UnsignedLessThanOrEqual,
        Cmp::Lt => IntCC::UnsignedLessThan,
        Cmp::Ne => IntCC::NotEqual,
    }
}

impl<'a, 'o, 'f> Gen<'a, 'o, 'f> {
    /// Generates the whole function into `b`.
    fn run(
        mut b: FunctionBuilder<'f>,
        ins: &'a [(FastOp<'o>, u32, u32)],
        entry: u32,
        threading: bool,
        target: TargetFrontendConfig,
    ) -> Outcome {
        let ptr = target.pointer_type();
        let start = b.create_block();
        b.append_block_params_for_function_params(start);
        b.switch_to_block(start);
        let (data, len) = match *b.block_params(start) {
            [d, l] => (d, l),
            _ => return Outcome::Unsupported,
        };
        let accept = b.create_block();
        let reject = b.create_block();
        let fallback = b.create_block();
        let mut g = Gen {
            ins,
            b,
            data,
            len,
            ptr,
            accept,
            reject,
            fallback,
            memo: HashMap::new(),
            todo: Vec::new(),
            threading,
            failed: None,
        };
        // The branch-free form for packets holding the first `GUARD` bytes a filter reads;
        // the branching form for shorter ones (it also answers them exactly), and for programs
        // too long to compute whole.
        let first = g.target(entry, &[], 0);
        match g.reachable(entry) {
            Some(r) if r.len() <= EAGER_MAX => {
                let ext = g.abs_extent(&r).min(GUARD);
                let e = g.b.ins().iconst(g.ptr, ext as i64);
                let short = g.b.ins().icmp(IntCC::UnsignedLessThan, g.len, e);
                let eager = g.b.create_block();
                g.b.ins().brif(short, first, &[], eager, &[]);
                g.b.switch_to_block(eager);
                if g.eager(entry, &r, ext).is_none() {
                    return Outcome::Unsupported;
                }
            }
            Some(_) => {
                g.b.ins().jump(first, &[]);
            }
            None => return Outcome::Unsupported,
        }
        while let Some((blk, at, facts, ext)) = g.todo.pop() {
            if g.failed.is_some() {
                break;
            }
            g.b.switch_to_block(blk);
            g.instruction(at, &facts, ext);
        }
        if let Some(o) = g.failed.take() {
            return o;
        }
        for (blk, v) in [(accept, MATCH), (reject, NO_MATCH), (fallback, FALLBACK)] {
            g.b.switch_to_block(blk);
            let r = g.b.ins().iconst(types::I32, i64::from(v));
            g.b.ins().return_(&[r]);
        }
        g.b.seal_all_blocks();
        g.b.finalize(target);
        Outcome::Done
    }

    /// The block running instruction `at` with `facts` known and `ext` bytes known captured
    /// (created on first use); a test decided by `facts` is skipped.
    fn target(&mut self, at: u32, facts: &[Fact], ext: u64) -> Block {
        match at {
            ACCEPT => return self.accept,
            REJECT => return self.reject,
            _ => {}
        }
        let Some(&(op, jt, jf)) = self.ins.get(at as usize) else {
            self.failed = Some(Outcome::Unsupported);
            return self.fallback;
        };
        if self.threading {
            let decided = match op {
                FastOp::Eq { size, k, mask, val } => {
                    known(facts, k, size, mask).map(|v| if v == val { jt } else { jf })
                }
                FastOp::EqAny {
                    size,
                    k,
                    mask,
                    vals,
                } => known(facts, k, size, mask).map(|v| if vals.contains(&v) { jt } else { jf }),
                FastOp::Switch {
                    size,
                    k,
                    mask,
                    cases,
                } => known(facts, k, size, mask)
                    .map(|v| cases.iter().find(|c| c.0 == v).map_or(jf, |c| c.1)),
                _ => None,
            };
            if let Some(to) = decided {
                if to != ACCEPT && to != REJECT && to <= at {
                    self.failed = Some(Outcome::Unsupported);
                    return self.fallback;
                }
                return self.target(to, facts, ext);
            }
        }
        let key = (at, facts.to_vec(), ext);
        if let Some(&blk) = self.memo.get(&key) {
            return blk;
        }
        if self.memo.len() >= MAX_BLOCKS {
            self.failed = Some(Outcome::TooBig);
            return self.fallback;
        }
        let blk = self.b.create_block();
        self.memo.insert(key, blk);
        self.todo.push((blk, at, facts.to_vec(), ext));
        blk
    }

    /// The instructions reachable from `entry`, in increasing order; `None` on a backward jump.
    fn reachable(&self, entry: u32) -> Option<Vec<u32>> {
        let mut seen = vec![false; self.ins.len()];
        let mut stack = vec![entry];
        while let Some(at) = stack.pop() {
            if at == ACCEPT || at == REJECT {
                continue;
            }
            let i = at as usize;
            if *seen.get(i)? {
                continue;
            }
            seen[i] = true;
            let (op, jt, jf) = *self.ins.get(i)?;
            let mut next = vec![jt, jf];
            if let FastOp::Switch { cases, .. } = op {
                next.extend(cases.iter().map(|c| c.1));
            }
            for to in next {
                if to != ACCEPT && to != REJECT && to <= at {
                    return None;
                }
                stack.push(to);
            }
        }
        Some(
            (0..self.ins.len() as u32)
                .filter(|&i| seen[i as usize])
                .collect(),
        )
    }

    /// The furthest end of an absolute load of instructions `order`.
    fn abs_extent(&self, order: &[u32]) -> u64 {
        let mut ext = 0;
        for &at in order {
            let Some(&(op, _, _)) = self.ins.get(at as usize) else {
                continue;
            };
            let end = |k: u32, size: u8| u64::from(k) + u64::from(size);
            let e = match op {
                FastOp::Eq { size, k, .. }
                | FastOp::Range { size, k, .. }
                | FastOp::RangeSet { size, k, .. }
                | FastOp::EqAny { size, k, .. }
                | FastOp::Switch { size, k, .. } => end(k, size),
                FastOp::Port4 { k, .. } | FastOp::Port4Set { k, .. } => end(k, 1),
                FastOp::Ip6Proto { k, .. } => {
                    end(k.wrapping_add(6), 1).max(end(k.wrapping_add(40), 1))
                }
                FastOp::Rel {
                    k,
                    index,
                    size,
                    tcp,
                    ..
                } => {
                    if tcp {
                        end(k, 1)
                    } else {
                        u64::from(index) + end(k, size)
                    }
                }
            };
            ext = ext.max(e);
        }
        ext
    }

    /// Branch-free form of the whole program: every reachable instruction's test is computed
    /// (loads past the captured bytes read zeros instead and are flagged), the verdict and
    /// "a load on the packet's path was out of bounds" are propagated from the verdicts back
    /// to the entry with selects, and the function returns FALLBACK when that flag is set.
    /// The caller has checked that the packet holds `ext` bytes: absolute loads within them
    /// are not checked.
    /// `order`: the instructions reachable from `entry`, in increasing order.
    fn eager(&mut self, entry: u32, order: &[u32], ext: u64) -> Option<()> {
        let one = self.b.ins().iconst(types::I8, 1);
        let zero = self.b.ins().iconst(types::I8, 0);
        let mut vals: HashMap<u32, (Value, Value)> = HashMap::new();
        vals.insert(ACCEPT, (one, zero));
        vals.insert(REJECT, (zero, zero));
        for &at in order.iter().rev() {
            let (op, jt, jf) = *self.ins.get(at as usize)?;
            let (t, oob) = match op {
                FastOp::Eq { size, k, mask, val } => {
                    let (v, oob) = self.clamped_abs(u64::from(k), size, ext);
                    let v = self.mask(v, mask, size);
                    (self.eq_const(v, val), oob)
                }
                FastOp::Range { size, k, lo, hi } => {
                    let (v, oob) = self.clamped_abs(u64::from(k), size, ext);
                    (self.in_range(v, lo, hi), oob)
                }
                FastOp::RangeSet { size, k, ranges } => {
                    let (v, oob) = self.clamped_abs(u64::from(k), size, ext);
                    (self.in_ranges(v, ranges), oob)
                }
                FastOp::Port4 { k, off, lo, hi } => {
                    let (v, oob) = self.clamped_port4(k, off, ext);
                    (self.in_range(v, lo, hi), oob)
                }
                FastOp::Port4Set { k, off, ranges } => {
                    let (v, oob) = self.clamped_port4(k, off, ext);
                    (self.in_ranges(v, ranges), oob)
                }
                FastOp::Ip6Proto { k, val } => {
                    let (nh, o1) = self.clamped_abs(u64::from(k.wrapping_add(6)), 1, ext);
                    let (fnh, o2) = self.clamped_abs(u64::from(k.wrapping_add(40)), 1, ext);
                    let direct = self.eq_const(nh, val);
                    let frag = self.eq_const(nh, 44);
                    let via = self.eq_const(fnh, val);
                    let via = self.b.ins().band(frag, via);
                    let t = self.b.ins().bor(direct, via);
                    // The second load happens only when the first test fails on a fragment.
                    let not_direct = self.b.ins().bxor_imm_u(direct, 1);
                    let o2 = self.b.ins().band(o2, frag);
                    let o2 = self.b.ins().band(o2, not_direct);
                    (t, self.b.ins().bor(o1, o2))
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
                    let (v, oob) = if tcp {
                        let (x, o1) = self.clamped_ihl(k, ext);
                        let xi = self.b.ins().iadd_imm_u(x, i64::from(index));
                        let xi = self.b.ins().uextend(self.ptr, xi);
                        let off = self.b.ins().iadd_imm_u(xi, i64::from(k));
                        let (v, o2) = self.clamped_dyn(off, size);
                        (v, self.b.ins().bor(o1, o2))
                    } else {
                        self.clamped_abs(u64::from(index) + u64::from(k), size, ext)
                    };
                    let v = self.mask(v, mask, size);
                    let w = self.b.ins().iconst(types::I32, i64::from(val));
                    (self.b.ins().icmp(cc(cmp), v, w), oob)
                }
                FastOp::EqAny {
                    size,
                    k,
                    mask,
                    vals: ws,
                } => {
                    let (v, oob) = self.clamped_abs(u64::from(k), size, ext);
                    let v = self.mask(v, mask, size);
                    let mut c = self.b.ins().iconst(types::I8, 0);
                    for &w in ws {
                        let e = self.eq_const(v, w);
                        c = self.b.ins().bor(c, e);
                    }
                    (c, oob)
                }
                FastOp::Switch {
                    size,
                    k,
                    mask,
                    cases,
                } => {
                    let (v, oob) = self.clamped_abs(u64::from(k), size, ext);
                    let v = self.mask(v, mask, size);
                    let (mut r, mut bad) = *vals.get(&jf)?;
                    for &(w, to) in cases.iter().rev() {
                        let (rt, bt) = *vals.get(&to)?;
                        let hit = self.eq_const(v, w);
                        r = self.b.ins().select(hit, rt, r);
                        bad = self.b.ins().select(hit, bt, bad);
                    }
                    let bad = self.b.ins().bor(bad, oob);
                    vals.insert(at, (r, bad));
                    continue;
                }
            };
            let (rt, bt) = *vals.get(&jt)?;
            let (rf, bf) = *vals.get(&jf)?;
            let r = self.b.ins().select(t, rt, rf);
            let bad = self.b.ins().select(t, bt, bf);
            let bad = self.b.ins().bor(bad, oob);
            vals.insert(at, (r, bad));
        }
        let (r, bad) = *vals.get(&entry)?;
        let r = self.b.ins().uextend(types::I32, r);
        let fb = self.b.ins().iconst(types::I32, i64::from(FALLBACK));
        let r = self.b.ins().select(bad, fb, r);
        self.b.ins().return_(&[r]);
        Some(())
    }

    /// A load at absolute offset `k` that reads zeros (and says so) past the captured bytes;
    /// no check when `ext` covers it.
    fn clamped_abs(&mut self, k: u64, size: u8, ext: u64) -> (Value, Value) {
        if k + u64::from(size) <= ext {
            let addr = self.b.ins().iadd_imm_u(self.data, k as i64);
            let zero = self.b.ins().iconst(types::I8, 0);
            return (self.load(addr, size), zero);
        }
        let off = self.b.ins().iconst(self.ptr, k as i64);
        self.clamped_dyn(off, size)
    }

    /// A load at offset `off` that reads zeros past the captured bytes: (value, out of bounds).
    fn clamped_dyn(&mut self, off: Value, size: u8) -> (Value, Value) {
        let end = self.b.ins().iadd_imm_u(off, i64::from(size));
        let oob = self.b.ins().icmp(IntCC::UnsignedLessThan, self.len, end);
        let addr = self.b.ins().iadd(self.data, off);
        let zeros = self.b.ins().iconst(self.ptr, ZEROS.as_ptr() as i64);
        let addr = self.b.ins().select(oob, zeros, addr);
        (self.load(addr, size), oob)
    }

    /// `4 * IHL` read at `k`, clamped.
    fn clamped_ihl(&mut self, k: u32, ext: u64) -> (Value, Value) {
        let (v, oob) = self.clamped_abs(u64::from(k), 1, ext);
        let v = self.b.ins().band_imm_u(v, 0xf);
        (self.b.ins().ishl_imm_u(v, 2), oob)
    }

    /// The port at `4 * IHL(k) + k + off`, clamped.
    fn clamped_port4(&mut self, k: u32, off: u32, ext: u64) -> (Value, Value) {
        let (x, o1) = self.clamped_ihl(k, ext);
        let x = self.b.ins().uextend(self.ptr, x);
        let o = self.b.ins().iadd_imm_u(x, i64::from(k.wrapping_add(off)));
        let (v, o2) = self.clamped_dyn(o, 2);
        (v, self.b.ins().bor(o1, o2))
    }

    /// Whether `to` is a valid successor of `at`.
    fn later(&mut self, at: u32, to: u32) -> bool {
        let ok = to == ACCEPT || to == REJECT || (to > at && (to as usize) < self.ins.len());
        if !ok {
            self.failed = Some(Outcome::Unsupported);
        }
        ok
    }

    /// `facts` plus `f` (sorted, no duplicate), or `facts` without threading.
    fn with(&self, facts: &[Fact], f: Fact) -> Vec<Fact> {
        let mut v = facts.to_vec();
        if self.threading && !v.contains(&f) {
            v.push(f);
            v.sort_unstable();
        }
        v
    }

    /// Generates instruction `at` into the current block.
    fn instruction(&mut self, at: u32, facts: &[Fact], ext: u64) {
        let Some(&(op, jt, jf)) = self.ins.get(at as usize) else {
            self.failed = Some(Outcome::Unsupported);
            return;
        };
        if !self.later(at, jt) || !self.later(at, jf) {
            return;
        }
        match op {
            FastOp::Eq { size, k, mask, val } => {
                let (v, ext) = self.abs_load(u64::from(k), size, ext);
                let m = mask & size_mask(size);
                let v = self.mask(v, m, size);
                let c = self.eq_const(v, val);
                let tf = self.with(facts, (k, size, m, val & m));
                let t = self.target(jt, &tf, ext);
                let f = self.target(jf, facts, ext);
                self.branch(c, t, f);
            }
            FastOp::Range { size, k, lo, hi } => {
                let (v, ext) = self.abs_load(u64::from(k), size, ext);
                let c = self.in_range(v, lo, hi);
                self.go(c, jt, jf, facts, ext);
            }
            FastOp::RangeSet { size, k, ranges } => {
                let (v, ext) = self.abs_load(u64::from(k), size, ext);
                let c = self.in_ranges(v, ranges);
                self.go(c, jt, jf, facts, ext);
            }
            FastOp::Port4 { k, off, lo, hi } => {
                let (v, ext) = self.port4(k, off, ext);
                let c = self.in_range(v, lo, hi);
                self.go(c, jt, jf, facts, ext);
            }
            FastOp::Port4Set { k, off, ranges } => {
                let (v, ext) = self.port4(k, off, ext);
                let c = self.in_ranges(v, ranges);
                self.go(c, jt, jf, facts, ext);
            }
            FastOp::Ip6Proto { k, val } => {
                let (nh, ext) = self.abs_load(u64::from(k.wrapping_add(6)), 1, ext);
                let t = self.target(jt, facts, ext);
                let f = self.target(jf, facts, ext);
                let c = self.eq_const(nh, val);
                let frag = self.b.create_block();
                let after = self.b.create_block();
                self.b.ins().brif(c, t, &[], after, &[]);
                self.b.switch_to_block(after);
                let c = self.eq_const(nh, 44);
                self.b.ins().brif(c, frag, &[], f, &[]);
                self.b.switch_to_block(frag);
                let (v, _) = self.abs_load(u64::from(k.wrapping_add(40)), 1, ext);
                let c = self.eq_const(v, val);
                self.branch(c, t, f);
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
                let (v, ext) = if tcp {
                    let (x, ext) = self.ihl(k, ext);
                    let xi = self.b.ins().iadd_imm_u(x, i64::from(index));
                    let xi = self.b.ins().uextend(self.ptr, xi);
                    let off = self.b.ins().iadd_imm_u(xi, i64::from(k));
                    (self.dyn_load(off, size), ext)
                } else {
                    self.abs_load(u64::from(index) + u64::from(k), size, ext)
                };
                let v = self.mask(v, mask, size);
                let w = self.b.ins().iconst(types::I32, i64::from(val));
                let c = self.b.ins().icmp(cc(cmp), v, w);
                self.go(c, jt, jf, facts, ext);
            }
            FastOp::EqAny {
                size,
                k,
                mask,
                vals,
            } => {
                let (v, ext) = self.abs_load(u64::from(k), size, ext);
                let v = self.mask(v, mask, size);
                let mut c = self.b.ins().iconst(types::I8, 0);
                for &w in vals {
                    let e = self.eq_const(v, w);
                    c = self.b.ins().bor(c, e);
                }
                self.go(c, jt, jf, facts, ext);
            }
            FastOp::Switch {
                size,
                k,
                mask,
                cases,
            } => {
                let (v, ext) = self.abs_load(u64::from(k), size, ext);
                let m = mask & size_mask(size);
                let v = self.mask(v, mask, size);
                for &(w, to) in cases {
                    if !self.later(at, to) {
                        return;
                    }
                    let fs = self.with(facts, (k, size, m, w & m));
                    let t = self.target(to, &fs, ext);
                    let c = self.eq_const(v, w);
                    let next = self.b.create_block();
                    self.b.ins().brif(c, t, &[], next, &[]);
                    self.b.switch_to_block(next);
                }
                let f = self.target(jf, facts, ext);
                self.b.ins().jump(f, &[]);
            }
        }
    }

    /// Branches on `c` to `jt`/`jf` with `facts` unchanged.
    fn go(&mut self, c: Value, jt: u32, jf: u32, facts: &[Fact], ext: u64) {
        let t = self.target(jt, facts, ext);
        let f = self.target(jf, facts, ext);
        self.branch(c, t, f);
    }

    /// Ends the current block: to `t` if `c`, else to `f`; a verdict is returned directly.
    fn branch(&mut self, c: Value, t: Block, f: Block) {
        if t == self.accept && f == self.reject {
            let r = self.b.ins().uextend(types::I32, c);
            self.b.ins().return_(&[r]);
        } else if t == self.reject && f == self.accept {
            let r = self.b.ins().bxor_imm_u(c, 1);
            let r = self.b.ins().uextend(types::I32, r);
            self.b.ins().return_(&[r]);
        } else if t == f {
            self.b.ins().jump(t, &[]);
        } else {
            self.b.ins().brif(c, t, &[], f, &[]);
        }
    }

    /// `v & mask` unless the mask keeps every loaded bit.
    fn mask(&mut self, v: Value, mask: u32, size: u8) -> Value {
        if mask & size_mask(size) == size_mask(size) {
            v
        } else {
            self.b.ins().band_imm_u(v, i64::from(mask))
        }
    }

    /// `v == w` (an i8).
    fn eq_const(&mut self, v: Value, w: u32) -> Value {
        let w = self.b.ins().iconst(types::I32, i64::from(w));
        self.b.ins().icmp(IntCC::Equal, v, w)
    }

    /// `lo <= v <= hi`.
    fn in_range(&mut self, v: Value, lo: u32, hi: u32) -> Value {
        if lo > hi {
            return self.b.ins().iconst(types::I8, 0);
        }
        if lo == hi {
            return self.eq_const(v, lo);
        }
        let l = self.b.ins().iconst(types::I32, i64::from(lo));
        let d = self.b.ins().isub(v, l);
        let w = self.b.ins().iconst(types::I32, i64::from(hi - lo));
        self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, d, w)
    }

    /// `v` in one of `ranges`.
    fn in_ranges(&mut self, v: Value, ranges: &[(u32, u32)]) -> Value {
        let mut c = self.b.ins().iconst(types::I8, 0);
        for &(lo, hi) in ranges {
            let r = self.in_range(v, lo, hi);
            c = self.b.ins().bor(c, r);
        }
        c
    }

    /// Jumps to the fallback unless `end <= caplen`, continuing in a new block.
    fn check(&mut self, short: Value) {
        let ok = self.b.create_block();
        self.b.ins().brif(short, self.fallback, &[], ok, &[]);
        self.b.switch_to_block(ok);
    }

    /// Loads `size` bytes (big-endian) at absolute offset `k` as an i32, checking the length
    /// unless `ext` already covers it; returns the value and the length now known captured.
    fn abs_load(&mut self, k: u64, size: u8, ext: u64) -> (Value, u64) {
        let end = k + u64::from(size);
        let ext = if end > ext {
            let e = self.b.ins().iconst(self.ptr, end as i64);
            let short = self.b.ins().icmp(IntCC::UnsignedLessThan, self.len, e);
            self.check(short);
            end
        } else {
            ext
        };
        let addr = self.b.ins().iadd_imm_u(self.data, k as i64);
        (self.load(addr, size), ext)
    }

    /// Loads `size` bytes at the (pointer-sized) offset `off`, checking the length.
    fn dyn_load(&mut self, off: Value, size: u8) -> Value {
        let end = self.b.ins().iadd_imm_u(off, i64::from(size));
        let short = self.b.ins().icmp(IntCC::UnsignedLessThan, self.len, end);
        self.check(short);
        let addr = self.b.ins().iadd(self.data, off);
        self.load(addr, size)
    }

    /// A big-endian load at `addr`, zero-extended to i32.
    fn load(&mut self, addr: Value, size: u8) -> Value {
        match size {
            1 => self.b.ins().uload8(types::I32, flags(), addr, 0),
            2 => {
                let v = self.b.ins().load(types::I16, flags(), addr, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(types::I32, v)
            }
            _ => {
                let v = self.b.ins().load(types::I32, flags(), addr, 0);
                self.b.ins().bswap(v)
            }
        }
    }

    /// `4 * (P[k] & 0xf)`, the IPv4 header length, as an i32.
    fn ihl(&mut self, k: u32, ext: u64) -> (Value, u64) {
        let (v, ext) = self.abs_load(u64::from(k), 1, ext);
        let v = self.b.ins().band_imm_u(v, 0xf);
        (self.b.ins().ishl_imm_u(v, 2), ext)
    }

    /// The 2-byte port at `4 * IHL(k) + k + off`.
    fn port4(&mut self, k: u32, off: u32, ext: u64) -> (Value, u64) {
        let (x, ext) = self.ihl(k, ext);
        let x = self.b.ins().uextend(self.ptr, x);
        let o = self.b.ins().iadd_imm_u(x, i64::from(k.wrapping_add(off)));
        (self.dyn_load(o, 2), ext)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use como_packet::LinkType;

    use crate::eval::{run, run_slow};

    /// The benchmark's filters (`como_benches::BENCH_FILTERS`, which depends on this crate:
    /// a copy, not a use).
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

    /// Packets are cut at every length up to this one (and also checked whole).
    const CUTS: usize = 160;

    /// How many packets of each trace are cut at every length for every corpus expression (all
    /// of them are, for the bench filters). All packets of all traces at every cut, for every
    /// expression, is 720 million verdicts: 4 minutes in a debug build, checked once by hand.
    const CUT_PACKETS: usize = 12;

    /// Every bundled trace that loads and has packets.
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

    /// Wherever the native code answers, it gives the jump program's verdict, and where it does
    /// not (a load past the captured bytes) the jump program meets an out-of-bounds load too:
    /// every corpus expression and bench filter that compiles for the trace's link type and has
    /// native code, on every packet of every trace, whole and (the first [`CUT_PACKETS`] of each
    /// trace; all of them for the bench filters) cut at every length up to [`CUTS`].
    #[test]
    fn native_code_agrees_with_the_jump_program_on_traces_at_every_length() {
        let mut exprs: Vec<String> = como_tests::corpus_section("valid");
        exprs.extend(BENCH.iter().map(|s| (*s).to_owned()));
        let traces = traces();
        assert!(traces.len() > 100, "only {} traces loaded", traces.len());
        let mut filters: HashMap<(usize, LinkType), Option<crate::Filter>> = HashMap::new();
        let (mut pairs, mut answered, mut fell_back) = (0u64, 0u64, 0u64);
        for t in &traces {
            for (i, e) in exprs.iter().enumerate() {
                let f = filters.entry((i, t.link)).or_insert_with(|| {
                    crate::compile(e, t.link)
                        .ok()
                        .filter(|f| f.prog.has_native())
                });
                let Some(f) = f else { continue };
                pairs += 1;
                let bench = i >= exprs.len() - BENCH.len();
                for (n, p) in t.packets.iter().enumerate() {
                    // Every cut up to `CUTS` bytes (past the furthest load a filter makes, the
                    // verdict no longer changes with the length), then the whole packet.
                    let full = p.data.len();
                    let cuts = if bench || n < CUT_PACKETS {
                        full.min(CUTS)
                    } else {
                        0
                    };
                    let whole = (full > cuts).then_some(full);
                    for len in (0..=cuts).filter(|&l| l < full).chain(whole) {
                        let d = &p.data[..len];
                        let want = run_slow(&f.ir, &f.prog, d, p.wire_len);
                        match f.prog.run_native(d) {
                            Some(b) => {
                                answered += 1;
                                assert_eq!(b, want, "{e:?} on {len} bytes of {:02x?}", p.data);
                            }
                            None => {
                                fell_back += 1;
                                // The threaded code meets the same out-of-bounds load.
                                if f.prog.has_threaded() {
                                    assert_eq!(
                                        f.prog.run_threaded(d),
                                        None,
                                        "{e:?} on {len} bytes"
                                    );
                                }
                            }
                        }
                        assert_eq!(run(&f.ir, &f.prog, d, p.wire_len), want);
                    }
                }
            }
        }
        println!(
            "native: {pairs} (filter, trace) pairs; {answered} answers, {fell_back} fallbacks"
        );
        assert!(pairs > 10_000, "pairs: {pairs}");
        assert!(answered > 10_000_000, "answered: {answered}");
        assert!(fell_back > 100_000, "fell back: {fell_back}");
    }

    /// The benchmark's filters all run as native code on Ethernet.
    #[test]
    fn bench_filters_have_native_code() {
        for e in BENCH {
            let f =
                crate::compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"));
            assert!(f.prog.has_native(), "{e}: no native code");
        }
    }

    /// A filter shared between threads (as the runtime's workers share them) runs its native
    /// code from each, and clones share it.
    #[test]
    fn filters_are_send_and_sync_and_clones_share_the_code() {
        fn shared<T: Send + Sync>(_: &T) {}
        let f = crate::compile("tcp port 80", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
        shared(&f);
        let frame = tcp_frame(0);
        let g = f.clone();
        drop(f);
        let pkt = como_packet::Packet {
            ts_ns: 0,
            wire_len: frame.len() as u32,
            data: &frame,
            link: LinkType::Ethernet,
            interface: 0,
        };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| assert!(g.matches(&pkt)));
            }
        });
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

    /// A packet cut short takes the exact path: `tcp port 80` on a frame cut after the source
    /// port (the destination port's load would fail, but the jump program accepts on the source
    /// port before reaching it), on a frame cut inside the source port (the exact path rejects),
    /// and on one whose IP options push the ports past the captured bytes.
    #[test]
    fn a_packet_cut_short_takes_the_exact_path() {
        let f = crate::compile("tcp port 80", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
        let whole = tcp_frame(0);
        assert_eq!(f.prog.run_native(&whole), Some(true));
        // Source port at 34..36: present in 36 bytes, the destination port is not.
        assert_eq!(f.prog.run_native(&whole[..36]), Some(true));
        let cut = &whole[..35];
        assert_eq!(f.prog.run_native(cut), None, "load past 35 bytes answered");
        assert!(
            !run(&f.ir, &f.prog, cut, 60),
            "exact path: port load out of bounds"
        );
        let opts = tcp_frame(10);
        assert_eq!(f.prog.run_native(&opts), Some(true));
        let cut = &opts[..70];
        assert_eq!(f.prog.run_native(cut), None);
        assert!(!run(&f.ir, &f.prog, cut, 100));
        // `host`: ARP's target address at 38..42; cut at 40 the IPv4 test decides alone.
        let h =
            crate::compile("host 10.9.9.9", LinkType::Ethernet).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.prog.run_native(&whole[..34]), Some(true));
        assert_eq!(h.prog.run_native(&whole[..33]), None);
        assert!(!run(&h.ir, &h.prog, &whole[..33], 60));
        // The branch-free form (packets of 54 bytes and more): `ip6[53]` is at 67. An IPv6
        // frame of 60 bytes falls back (the load is on its path); an IPv4 one does not (the
        // EtherType test rejects it before).
        let syn6 = crate::compile(
            "ip6 and ip6[6] = 6 and ip6[53] & 2 != 0",
            LinkType::Ethernet,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut v6 = vec![0u8; 12];
        v6.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
        v6.extend([0u8; 32]);
        v6.extend(80u16.to_be_bytes());
        v6.extend(1234u16.to_be_bytes());
        v6.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0, 0, 0, 0, 0, 0]);
        assert_eq!(syn6.prog.run_native(&v6), Some(true));
        v6[67] = 0x10;
        assert_eq!(syn6.prog.run_native(&v6), Some(false));
        assert_eq!(syn6.prog.run_native(&v6[..60]), None);
        assert!(!run(&syn6.ir, &syn6.prog, &v6[..60], 74));
        assert_eq!(
            syn6.prog.run_native(&whole[..60.min(whole.len())]),
            Some(false)
        );
    }
}
