//! The CoMo-rs XDP program: parse a frame, classify it against the compiled filters of every
//! module at once, write the result into the XDP metadata and redirect matched frames to the
//! AF_XDP socket of their RX queue.
//!
//! The tables, their layout and the rules for every field are the contract in
//! `ebpf-filters/common` (`ebpf_filters_common`); the userspace reference of this program is
//! `ebpf_filters::kernel::PacketKey::extract` + `Tables::classify`, and the test
//! `tests/tests/xdp_kernel_vs_userspace.rs` checks that both agree on every packet of the
//! project's traces.
//!
//! Per packet: one read of `COMO_CONFIG[0]` and `COMO_GEN[gen]`, a bounded parse (at most
//! [`VLAN_WALK`] tags, no loop over extension headers), one table lookup per field some term of
//! the generation uses (array reads, but a trie walk for IPv6 and MAC addresses and for the L3
//! keys and IPv4 address fields the loader's arrays do not cover; after an L3 key served by
//! `COMO_L3_ARRAY`, only the fields that the terms still possible for it constrain), the AND
//! of the returned term vectors, and one byte-table lookup per non-zero byte of the result.
//! None of this depends on the number of rules; only the per-rule counters cost one increment
//! per rule that matched.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_xdp_adjust_meta, bpf_xdp_get_buff_len},
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray, XskMap},
    programs::XdpContext,
};
use ebpf_filters_common::{
    addr4_chunk_index, addr4_class_index, addr4_top_index, array_index, field, flags,
    l3_array_index, l3_class, l3_key, stat, term_rules_index, tpid_class, Config, GenConfig,
    L3Slot, LpmData, Stats, Terms, XdpMeta, ADDR4_CHUNK, ADDR4_CHUNKS, ADDR4_CLASSES,
    ADDR4_TOP_LEN, ARRAY_FIELDS_LEN, L3_CLASSES, L3_KEY_BITS, LPM_DATA_LEN, LPM_MAX_ENTRIES,
    LPM_ROOT_PREFIX, MAX_QUEUES, MAX_VLAN, META_MAGIC, TERM_RULES_LEN, TERM_WORDS, VLAN_DEEP,
    VLAN_WALK,
};

/// `COMO_CONFIG[0]`: the generation in force and the flags.
#[map(name = "COMO_CONFIG")]
static COMO_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// `COMO_GEN[gen]`: what each generation of the tables holds.
#[map(name = "COMO_GEN")]
static COMO_GEN: Array<GenConfig> = Array::with_max_entries(2, 0);

/// The LPM fields of both generations (key data `[gen, field, value...]`).
#[map(name = "COMO_LPM")]
static COMO_LPM: LpmTrie<LpmData, Terms> = LpmTrie::with_max_entries(LPM_MAX_ENTRIES, 0);

/// The array fields of both generations ([`array_index`]).
#[map(name = "COMO_ARRAY")]
static COMO_ARRAY: Array<Terms> = Array::with_max_entries(2 * ARRAY_FIELDS_LEN, 0);

/// Term-vector byte → rules tables of both generations ([`term_rules_index`]).
#[map(name = "COMO_TERM_RULES")]
static COMO_TERM_RULES: Array<u64> = Array::with_max_entries(2 * TERM_RULES_LEN, 0);

/// The loader's copy of the L3-key lookups of IPv4, IPv6, ARP and RARP frames
/// ([`l3_array_index`]).
#[map(name = "COMO_L3_ARRAY")]
static COMO_L3_ARRAY: Array<L3Slot> = Array::with_max_entries(2 * L3_CLASSES, 0);

/// The loader's copy of the IPv4 address lookups, top level: one entry per /16 of each field
/// ([`addr4_top_index`]), a class or a chunk.
#[map(name = "COMO_ADDR4_TOP")]
static COMO_ADDR4_TOP: Array<u32> = Array::with_max_entries(2 * ADDR4_TOP_LEN, 0);

/// The chunks of 256 entries below the top level ([`addr4_chunk_index`]).
#[map(name = "COMO_ADDR4_CHUNKS")]
static COMO_ADDR4_CHUNKS: Array<u32> = Array::with_max_entries(2 * ADDR4_CHUNKS * 256, 0);

/// The classes of the IPv4 address lookups: terms ([`addr4_class_index`]).
#[map(name = "COMO_ADDR4_CLASSES")]
static COMO_ADDR4_CLASSES: Array<Terms> = Array::with_max_entries(2 * ADDR4_CLASSES, 0);

/// Per-CPU counters: one [`Stats`] per CPU ([`stat`] indexes).
#[map(name = "COMO_STATS")]
static COMO_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// AF_XDP sockets by RX queue.
#[map(name = "COMO_XSKS")]
static COMO_XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// EtherTypes this program tells apart.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_RARP: u16 = 0x8035;
/// Largest wire length the LEN array holds (a longer packet has LEN absent).
const LEN_MAX: u32 = 65_535;

/// The program. Multi-buffer aware (`xdp.frags`): it attaches to interfaces whose MTU needs
/// several buffers per frame (jumbo frames); it parses the headers in the first buffer (a
/// field past it is *absent*: the rules that use it are re-checked in userspace on the whole
/// packet) and takes the wire length of the whole frame.
#[xdp(frags)]
pub fn como_xdp(ctx: XdpContext) -> u32 {
    classify_and_route(&ctx)
}

/// This CPU's counters, looked up once per packet.
struct Counters(*mut Stats);

impl Counters {
    /// The lookup (a null pointer if it failed: then nothing is counted).
    #[inline(always)]
    fn get() -> Self {
        Self(COMO_STATS.get_ptr_mut(0).unwrap_or(core::ptr::null_mut()))
    }

    /// Adds `n` to counter `idx`, an index the compiler knows (a constant, or one computed
    /// from constants and bounded loop counters): its bounds check then folds away, and the
    /// verifier sees the same bound.
    #[inline(always)]
    fn add(&self, idx: u32, n: u64) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: a non-null pointer comes from the map lookup and points to this CPU's
        // `Stats`; nothing else on this CPU runs the program at the same time, and no other
        // reference to it lives.
        let stats = unsafe { &mut *self.0 };
        if let Some(c) = stats.c.get_mut(idx as usize) {
            *c += n;
        }
    }

    /// [`Counters::add`] for an index read from memory (a count-trailing-zeros table): the
    /// bounds check must reach the verifier, and LLVM would drop it where it can prove the
    /// index in range, which the verifier cannot.
    #[inline(always)]
    fn add_loaded(&self, idx: u32, n: u64) {
        let mut i = idx;
        // SAFETY: a register move; no memory is touched.
        unsafe { core::arch::asm!("{i} = {i}", i = inout(reg) i, options(nomem, nostack)) };
        self.add(i, n);
    }
}

/// Reads `N` bytes at `off` of the packet, `None` when they are not all in it.
///
/// The bounds check is written in assembly so that it stays in the one form the verifier
/// turns into a packet range (`p + N > data_end` on a copy of `p`): LLVM rewrites
/// `p + 1 > end` into `p >= end`, which gives no range when `p` has no constant offset.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<[u8; N]> {
    let mut p = ctx.data() + off;
    let end = ctx.data_end();
    let mut ok: u64 = 0;
    // SAFETY: register arithmetic and one conditional jump over the next instruction; no
    // memory is touched.
    unsafe {
        core::arch::asm!(
            "{e} = {p}",
            "{e} += {n}",
            "if {e} > {end} goto +1",
            "{ok} = 1",
            p = inout(reg) p,
            e = out(reg) _,
            end = in(reg) end,
            n = const N,
            ok = inout(reg) ok,
            options(nostack),
        );
    }
    if ok == 0 {
        return None;
    }
    // SAFETY: `p..p + N` is inside the packet (checked just above against `data_end`).
    Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
}

/// Reads the big-endian `u16` at `off`.
#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    bytes::<2>(ctx, off).map(u16::from_be_bytes)
}

/// Reads the byte at `off`.
#[inline(always)]
fn byte(ctx: &XdpContext, off: usize) -> Option<u8> {
    bytes::<1>(ctx, off).map(|b| b[0])
}

/// Fields that depend on the L3 header (absent together when the walk or the L3 key is cut).
const L3_DEP: u32 = (1 << field::SADDR4)
    | (1 << field::DADDR4)
    | (1 << field::SADDR6)
    | (1 << field::DADDR6)
    | (1 << field::SPORT)
    | (1 << field::DPORT)
    | (1 << field::L4B0)
    | (1 << field::L4B1)
    | (1 << field::L4B13);

/// Where the layers of one packet start (offsets from the start of the frame), after the
/// contract's extraction rules (`ebpf_filters::kernel::PacketKey::extract`). A field is
/// *present* (a value or an offset), *not applicable* (`None` and its bit clear in `absent`:
/// no lookup) or *absent* (its bit set in `absent`: uncertain when used).
struct Layout {
    /// Fields whose header is there but whose bytes are past the end of the packet.
    absent: u32,
    /// The L3 key (meaningful unless its bit is set in `absent`).
    l3: [u8; 5],
    /// The key's slot in `COMO_L3_ARRAY` ([`l3_class`]), when `has_class`.
    l3_class: u32,
    /// Whether the key has a slot in `COMO_L3_ARRAY` (else: the trie).
    has_class: bool,
    /// EtherType after the tags (0 when deeper than [`MAX_VLAN`] or when the walk was cut).
    ethertype: u16,
    /// Offset of the L3 header.
    l3_off: usize,
    /// Transport offset (IPv4: `l3 + 4 * IHL`; IPv6: `l3 + 40`); 0: not applicable.
    l4_off: usize,
    /// VLAN ids of the first two tags.
    vid: [u16; MAX_VLAN as usize],
    /// Bit `k`: tag `k` was walked and its VLAN id is in `vid[k]`.
    vid_present: u8,
}

/// The VLAN walk, the L3 key and the offsets of the other fields.
#[inline(always)]
fn layout(ctx: &XdpContext) -> Layout {
    let mut out = Layout {
        absent: 0,
        l3: [0; 5],
        l3_class: 0,
        has_class: false,
        ethertype: 0,
        l3_off: 0,
        l4_off: 0,
        vid: [0; MAX_VLAN as usize],
        vid_present: 0,
    };
    // The VLAN stack: a bounded walk of at most VLAN_WALK tags.
    let mut depth: u8 = 0;
    let mut tpids = [0u8; MAX_VLAN as usize];
    let mut off: usize = 12;
    let mut ethertype: u16 = 0;
    let mut i: u8 = 0;
    while i < VLAN_WALK {
        let Some(t) = be16(ctx, off) else {
            // Cut inside the tag stack: the L3 key and what depends on it are absent, and
            // so are the VLAN ids of the tags not reached.
            out.absent |= (1 << field::L3) | L3_DEP;
            if depth == 0 {
                out.absent |= 1 << field::VID0;
            }
            if depth <= 1 {
                out.absent |= 1 << field::VID1;
            }
            return out;
        };
        let class = tpid_class(t);
        if class == 0 {
            ethertype = t;
            break;
        }
        if depth >= MAX_VLAN {
            depth = VLAN_DEEP;
            break;
        }
        if let Some(slot) = tpids.get_mut(depth as usize) {
            *slot = class;
        }
        match be16(ctx, off + 2) {
            Some(tci) => {
                if let Some(slot) = out.vid.get_mut(depth as usize) {
                    *slot = tci & 0x0fff;
                }
                out.vid_present |= 1 << depth;
            }
            None => out.absent |= 1 << (field::VID0 + depth),
        }
        depth += 1;
        off += 4;
        i += 1;
    }
    let (tpid0, tpid1) = (tpids[0], tpids[1]);
    let l3 = off + 2;
    out.l3_off = l3;
    if depth == VLAN_DEEP {
        out.l3 = l3_key(depth, tpid0, tpid1, 0, 0, 0);
        return out;
    }
    out.ethertype = ethertype;
    let (a, b) = match ethertype {
        ETH_P_IP => match (be16(ctx, l3 + 6), byte(ctx, l3 + 9)) {
            (Some(frag), Some(proto)) => (u8::from(frag & 0x1fff == 0), proto),
            _ => {
                out.absent |= (1 << field::L3) | L3_DEP;
                return out;
            }
        },
        ETH_P_IPV6 => match byte(ctx, l3 + 6) {
            Some(44) => match byte(ctx, l3 + 40) {
                Some(b) => (44, b),
                None => {
                    out.absent |= (1 << field::L3) | L3_DEP;
                    return out;
                }
            },
            Some(nh) => (nh, 0),
            None => {
                out.absent |= (1 << field::L3) | L3_DEP;
                return out;
            }
        },
        _ => (0, 0),
    };
    out.l3 = l3_key(depth, tpid0, tpid1, ethertype, a, b);
    if let Some(c) = l3_class(depth, tpid0, tpid1, ethertype, a, b) {
        out.l3_class = c;
        out.has_class = true;
    }
    match ethertype {
        ETH_P_IP => match byte(ctx, l3) {
            Some(vihl) => out.l4_off = l3 + 4 * usize::from(vihl & 0x0f),
            // Not reached: `l3 + 10` bytes are in the packet.
            None => out.absent |= L3_DEP,
        },
        ETH_P_IPV6 => out.l4_off = l3 + 40,
        _ => {}
    }
    out
}

/// Term accumulation over the used fields of one generation.
struct Acc {
    gen: u32,
    /// The fields some term of the generation uses: a used field past the packet end makes
    /// the classification uncertain, looked up or not.
    used: u32,
    /// The used fields still to look up: after an L3 key served by `COMO_L3_ARRAY`, those
    /// that the terms of its slot constrain.
    look: u32,
    /// The IPv4 address fields served by the `COMO_ADDR4_*` arrays.
    addr4: u32,
    terms: Terms,
    uncertain: bool,
}

/// All terms: where a packet's AND of the field lookups starts.
static TERMS_ALL: Terms = Terms::ALL;
/// An LPM key's data with every byte zero.
static LPM_DATA_ZERO: LpmData = LpmData {
    bytes: [0; LPM_DATA_LEN],
};

/// A copy of `v` read from memory. Initialising a local with a constant array (or copying one
/// whose contents LLVM knows) compiles to a call of this target's byte-loop `memset`, five
/// instructions a byte; a volatile read is loads and stores.
#[inline(always)]
fn fresh<T: Copy>(v: &'static T) -> T {
    // SAFETY: `v` is a valid, aligned reference to an initialised `T`.
    unsafe { core::ptr::read_volatile(v) }
}

/// An LPM key of generation `gen` and field `f` whose value bytes are zero.
#[inline(always)]
fn lpm_key(gen: u32, f: u8, prefix_len: u32) -> Key<LpmData> {
    let mut data = fresh(&LPM_DATA_ZERO);
    data.bytes[0] = gen as u8;
    data.bytes[1] = f;
    Key::new(prefix_len, data)
}

impl Acc {
    /// Whether field `f` is used by some term.
    #[inline(always)]
    fn uses(&self, f: u8) -> bool {
        self.used & (1 << f) != 0
    }

    /// Whether field `f` is to be looked up (used, and constrained by a term still possible).
    #[inline(always)]
    fn looks(&self, f: u8) -> bool {
        self.look & (1 << f) != 0
    }

    /// ANDs the LPM entry of `key` (a miss: uncertain).
    #[inline(always)]
    fn lpm_lookup(&mut self, key: &Key<LpmData>) {
        match COMO_LPM.get(key) {
            Some(t) => self.terms.and_with(t),
            None => self.uncertain = true,
        }
    }

    /// ANDs the LPM lookup of the `N`-byte value at `off` of the packet (`!applicable`: no
    /// lookup; bytes past the end: absent, uncertain).
    #[inline(always)]
    fn lpm_at<const N: usize>(&mut self, ctx: &XdpContext, f: u8, off: usize, applicable: bool) {
        if !applicable || !self.uses(f) {
            return;
        }
        let Some(v) = bytes::<N>(ctx, off) else {
            self.uncertain = true;
            return;
        };
        if !self.looks(f) {
            return;
        }
        let mut key = lpm_key(self.gen, f, LPM_ROOT_PREFIX + 8 * N as u32);
        let mut i = 0;
        while i < N && i + 2 < LPM_DATA_LEN {
            key.data.bytes[i + 2] = v[i];
            i += 1;
        }
        self.lpm_lookup(&key);
    }

    /// ANDs the lookup of the IPv4 address at `off` of field `f`: in the `COMO_ADDR4_*`
    /// arrays when the loader built them for the field, else in the trie (`!applicable`: no
    /// lookup; bytes past the end: absent, uncertain).
    #[inline(always)]
    fn addr4_at(&mut self, ctx: &XdpContext, f: u8, off: usize, applicable: bool) {
        if self.addr4 & (1 << f) == 0 {
            self.lpm_at::<4>(ctx, f, off, applicable);
            return;
        }
        if !applicable || !self.uses(f) {
            return;
        }
        let Some(v) = bytes::<4>(ctx, off) else {
            self.uncertain = true;
            return;
        };
        if !self.looks(f) {
            return;
        }
        let a = u32::from_be_bytes(v);
        let Some(&top) = COMO_ADDR4_TOP.get(addr4_top_index(self.gen, f, a)) else {
            self.uncertain = true;
            return;
        };
        // At most two chunk levels: the next 8 bits of the address, then the last 8.
        let mut e = top;
        for byte in [a >> 8, a] {
            if e & ADDR4_CHUNK == 0 {
                break;
            }
            let i = addr4_chunk_index(self.gen, e & !ADDR4_CHUNK, byte);
            let Some(&next) = COMO_ADDR4_CHUNKS.get(i) else {
                self.uncertain = true;
                return;
            };
            e = next;
        }
        match COMO_ADDR4_CLASSES.get(addr4_class_index(self.gen, e)) {
            Some(t) if e & ADDR4_CHUNK == 0 => self.terms.and_with(t),
            _ => self.uncertain = true,
        }
    }

    /// ANDs the `COMO_L3_ARRAY` slot of the L3 key (the loader's copy of its trie lookup),
    /// and keeps for the other lookups only the fields its terms constrain.
    #[inline(always)]
    fn l3_array(&mut self, class: u32) {
        if !self.uses(field::L3) {
            return;
        }
        match COMO_L3_ARRAY.get(l3_array_index(self.gen, class)) {
            Some(s) => {
                self.terms.and_with(&s.terms);
                self.look &= s.fields;
            }
            None => self.uncertain = true,
        }
    }

    /// ANDs the LPM lookup of the L3 key.
    #[inline(always)]
    fn lpm_l3(&mut self, v: &[u8; 5]) {
        if !self.uses(field::L3) {
            return;
        }
        let mut key = lpm_key(self.gen, field::L3, LPM_ROOT_PREFIX + L3_KEY_BITS);
        let mut i = 0;
        while i < 5 {
            key.data.bytes[i + 2] = v[i];
            i += 1;
        }
        self.lpm_lookup(&key);
    }

    /// ANDs the array lookup of the big-endian `N`-byte value at `off` (bytes past the end:
    /// absent, uncertain).
    #[inline(always)]
    fn array_at<const N: usize>(&mut self, ctx: &XdpContext, f: u8, off: usize) {
        if !self.uses(f) {
            return;
        }
        let Some(v) = bytes::<N>(ctx, off) else {
            self.uncertain = true;
            return;
        };
        let mut x = 0u32;
        let mut i = 0;
        while i < N {
            x = (x << 8) | u32::from(v[i]);
            i += 1;
        }
        self.array(f, x);
    }

    /// ANDs the array lookup of value `v` of array field `f`.
    #[inline(always)]
    fn array(&mut self, f: u8, v: u32) {
        if !self.looks(f) {
            return;
        }
        match COMO_ARRAY.get(array_index(self.gen, f, v)) {
            Some(t) => self.terms.and_with(t),
            None => self.uncertain = true,
        }
    }
}

/// Classifies the packet, writes the metadata, counts, and returns the XDP action.
#[inline(always)]
fn classify_and_route(ctx: &XdpContext) -> u32 {
    let stats = Counters::get();
    let count = |idx: u32, n: u64| stats.add(idx, n);
    count(stat::SEEN, 1);
    let Some(cfg) = COMO_CONFIG.get(0) else {
        count(stat::PASSED, 1);
        return xdp_action::XDP_PASS;
    };
    let gen = cfg.gen & 1;
    let cfg_flags = cfg.flags;
    let Some(g) = COMO_GEN.get(gen) else {
        count(stat::PASSED, 1);
        return xdp_action::XDP_PASS;
    };
    let (gen_rules, gen_flagged, used, nterms) = (g.rules, g.flagged, g.used, g.nterms);
    let addr4 = g.addr4;

    // SAFETY: the helper takes the program's own context and only reads it.
    let wire_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let lay = layout(ctx);
    let mut absent = lay.absent;
    if wire_len > LEN_MAX {
        absent |= 1 << field::LEN;
    }
    let mut acc = Acc {
        gen,
        used,
        look: used,
        addr4,
        terms: fresh(&TERMS_ALL),
        uncertain: used & absent != 0,
    };
    if !acc.uncertain {
        if lay.has_class {
            acc.l3_array(lay.l3_class);
        } else {
            acc.lpm_l3(&lay.l3);
        }
        // IPv4 addresses (ARP/RARP: sender and target protocol addresses).
        let (a4s, a4d, v4) = match lay.ethertype {
            ETH_P_IP => (lay.l3_off + 12, lay.l3_off + 16, true),
            ETH_P_ARP | ETH_P_RARP => (lay.l3_off + 14, lay.l3_off + 24, true),
            _ => (0, 0, false),
        };
        acc.addr4_at(ctx, field::SADDR4, a4s, v4);
        acc.addr4_at(ctx, field::DADDR4, a4d, v4);
        let v6 = lay.ethertype == ETH_P_IPV6;
        acc.lpm_at::<16>(ctx, field::SADDR6, lay.l3_off + 8, v6);
        acc.lpm_at::<16>(ctx, field::DADDR6, lay.l3_off + 24, v6);
        acc.lpm_at::<6>(ctx, field::SMAC, 6, true);
        acc.lpm_at::<6>(ctx, field::DMAC, 0, true);
        if lay.vid_present & 1 != 0 {
            acc.array(field::VID0, u32::from(lay.vid[0]));
        }
        if lay.vid_present & 2 != 0 {
            acc.array(field::VID1, u32::from(lay.vid[1]));
        }
        acc.array(field::LEN, wire_len);
        let t = lay.l4_off;
        if t != 0 {
            acc.array_at::<2>(ctx, field::SPORT, t);
            acc.array_at::<2>(ctx, field::DPORT, t + 2);
            acc.array_at::<1>(ctx, field::L4B0, t);
            acc.array_at::<1>(ctx, field::L4B1, t + 1);
            acc.array_at::<1>(ctx, field::L4B13, t + 13);
        }
    }

    let (rules, recheck) = if acc.uncertain {
        count(stat::PARSE_ERRORS, 1);
        (gen_rules, gen_rules)
    } else {
        let rules = term_rules(gen, &acc.terms, nterms) & gen_rules;
        (rules, rules & gen_flagged)
    };

    write_meta(
        ctx,
        &XdpMeta {
            rules,
            recheck,
            magic: META_MAGIC,
            gen,
        },
    );

    if rules == 0 {
        if cfg_flags & flags::DROP_UNMATCHED != 0 {
            count(stat::DROPPED, 1);
            return xdp_action::XDP_DROP;
        }
        count(stat::PASSED, 1);
        return xdp_action::XDP_PASS;
    }
    count(stat::MATCHED, 1);
    count(stat::MATCHED_BYTES, u64::from(wire_len));
    count_rules(&stats, rules);
    match COMO_XSKS.redirect(ctx.rx_queue_index(), u64::from(xdp_action::XDP_PASS)) {
        Ok(action) => {
            count(stat::REDIRECTED, 1);
            action
        }
        Err(action) => {
            count(stat::REDIRECT_FAILED, 1);
            count(stat::PASSED, 1);
            action
        }
    }
}

/// The rules of the terms set in `terms` (terms `nterms..` ignored): one byte-table lookup per
/// non-zero byte of the vector; a zero word is passed over whole (the common case: a frame
/// that matches nothing, whatever the number of terms).
#[inline(always)]
fn term_rules(gen: u32, terms: &Terms, nterms: u32) -> u64 {
    let mut rules = 0u64;
    let mut w = 0usize;
    while w < TERM_WORDS {
        let first = (w as u32) * 64;
        let mut word = terms.w[w];
        if nterms <= first {
            word = 0;
        } else if nterms - first < 64 {
            word &= (1u64 << (nterms - first)) - 1;
        }
        if word == 0 {
            w += 1;
            continue;
        }
        let mut b = 0u32;
        while b < 8 {
            let v = (word >> (8 * b)) as u8;
            if v != 0 {
                if let Some(r) = COMO_TERM_RULES.get(term_rules_index(gen, (w as u32) * 8 + b, v)) {
                    rules |= *r;
                }
            }
            b += 1;
        }
        w += 1;
    }
    rules
}

/// One increment of the per-rule counter of every rule in `rules`. One rule (the common case):
/// its index by count-trailing-zeros. More: a test per byte, then a test per bit of the
/// non-zero bytes, with constant counter indexes (BPF has no count-trailing-zeros instruction;
/// its software form per rule costs more than the bit tests).
#[inline(always)]
fn count_rules(stats: &Counters, rules: u64) {
    if rules & rules.wrapping_sub(1) == 0 {
        if rules != 0 {
            stats.add_loaded(stat::RULE_BASE + rules.trailing_zeros(), 1);
        }
        return;
    }
    let mut byte = 0u32;
    while byte < 8 {
        let v = (rules >> (8 * byte)) as u8;
        if v != 0 {
            let mut bit = 0u32;
            while bit < 8 {
                if v & (1 << bit) != 0 {
                    stats.add(stat::RULE_BASE + byte * 8 + bit, 1);
                }
                bit += 1;
            }
        }
        byte += 1;
    }
}

/// Writes `meta` in front of the packet (`bpf_xdp_adjust_meta`); nothing when the driver has
/// no room for metadata.
#[inline(always)]
fn write_meta(ctx: &XdpContext, meta: &XdpMeta) {
    const SIZE: usize = core::mem::size_of::<XdpMeta>();
    // SAFETY: the helper takes the program's own context; a failure leaves the packet as is.
    let ret = unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(SIZE as i32)) };
    if ret != 0 {
        return;
    }
    let start = ctx.metadata();
    if start + SIZE > ctx.data() {
        return;
    }
    // SAFETY: `start..start + SIZE` lies between `data_meta` and `data` (checked just above),
    // the metadata area the helper just reserved.
    unsafe { core::ptr::write_unaligned(start as *mut XdpMeta, *meta) };
}

/// The program never panics (every access is checked); the verifier would reject a call here.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The licence the kernel reads (GPL-compatible for `bpf_redirect_map` & co).
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
