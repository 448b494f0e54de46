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
//! the generation uses, the AND of the returned term vectors, and one byte-table lookup per
//! non-zero byte of the result. None of this depends on the number of rules; only the per-rule
//! counters cost one increment per rule that matched.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_adjust_meta,
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray, XskMap},
    programs::XdpContext,
};
use ebpf_filters_common::{
    array_index, field, flags, l3_key, stat, term_rules_index, tpid_class, Config, GenConfig,
    LpmData, Terms, XdpMeta, ARRAY_FIELDS_LEN, L3_KEY_BITS, LPM_DATA_LEN, LPM_MAX_ENTRIES,
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

/// Per-CPU counters ([`stat`]).
#[map(name = "COMO_STATS")]
static COMO_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::LEN, 0);

/// AF_XDP sockets by RX queue.
#[map(name = "COMO_XSKS")]
static COMO_XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// EtherTypes this program tells apart.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_RARP: u16 = 0x8035;
/// The wire length field is capped here (the LEN array has 65536 entries).
const LEN_CAP: u32 = 65_535;

/// The program.
#[xdp]
pub fn como_xdp(ctx: XdpContext) -> u32 {
    classify_and_route(&ctx)
}

/// Adds `n` to this CPU's counter `idx`.
#[inline(always)]
fn count(idx: u32, n: u64) {
    if let Some(p) = COMO_STATS.get_ptr_mut(idx) {
        // SAFETY: the pointer comes from the map lookup, points to this CPU's `u64` counter and
        // nothing else on this CPU runs the program at the same time.
        unsafe { *p += n };
    }
}

/// Reads `N` bytes at `off` of the packet, `None` when they are not all in it.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + N > end {
        return None;
    }
    // SAFETY: `off..off + N` is inside the packet (checked just above against `data_end`).
    Some(unsafe { core::ptr::read_unaligned((start + off) as *const [u8; N]) })
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

/// Where the layers of one packet start (offsets from the start of the frame).
struct Layout {
    /// The L3 key, `None` when its bytes are not all in the packet.
    l3: Option<[u8; 5]>,
    /// EtherType after the tags (0 when deeper than [`MAX_VLAN`]).
    ethertype: u16,
    /// Offset of the L3 header.
    l3_off: usize,
    /// Transport offset (IPv4: `l3 + 4 * IHL`; IPv6: `l3 + 40`), `None` for other EtherTypes or
    /// when the IHL byte is not in the packet.
    l4_off: Option<usize>,
    /// VLAN ids of the first two tags, `None` when absent.
    vid: [Option<u16>; MAX_VLAN as usize],
}

/// The VLAN walk and the L3 key.
#[inline(always)]
fn layout(ctx: &XdpContext) -> Layout {
    let mut out = Layout {
        l3: None,
        ethertype: 0,
        l3_off: 0,
        l4_off: None,
        vid: [None; MAX_VLAN as usize],
    };
    // The VLAN stack: a bounded walk of at most VLAN_WALK tags.
    let mut depth: u8 = 0;
    let mut tpids = [0u8; MAX_VLAN as usize];
    let mut off: usize = 12;
    let mut ethertype: Option<u16> = None;
    let mut i: u8 = 0;
    while i < VLAN_WALK {
        let Some(t) = be16(ctx, off) else { break };
        let class = tpid_class(t);
        if class == 0 {
            ethertype = Some(t);
            break;
        }
        if depth >= MAX_VLAN {
            depth = VLAN_DEEP;
            ethertype = Some(0);
            break;
        }
        if let Some(slot) = tpids.get_mut(depth as usize) {
            *slot = class;
        }
        if let Some(slot) = out.vid.get_mut(depth as usize) {
            *slot = be16(ctx, off + 2).map(|tci| tci & 0x0fff);
        }
        depth += 1;
        off += 4;
        i += 1;
    }
    let Some(ethertype) = ethertype else {
        return out;
    };
    let (tpid0, tpid1) = (tpids[0], tpids[1]);
    let l3 = off + 2;
    out.ethertype = ethertype;
    out.l3_off = l3;
    out.l3 = match ethertype {
        ETH_P_IP if depth < VLAN_DEEP => {
            if let Some(vihl) = byte(ctx, l3) {
                out.l4_off = Some(l3 + 4 * usize::from(vihl & 0x0f));
            }
            match (be16(ctx, l3 + 6), byte(ctx, l3 + 9)) {
                (Some(frag), Some(proto)) => {
                    let first = u8::from(frag & 0x1fff == 0);
                    Some(l3_key(depth, tpid0, tpid1, ethertype, first, proto))
                }
                _ => None,
            }
        }
        ETH_P_IPV6 if depth < VLAN_DEEP => {
            out.l4_off = Some(l3 + 40);
            match byte(ctx, l3 + 6) {
                Some(44) => {
                    byte(ctx, l3 + 40).map(|b| l3_key(depth, tpid0, tpid1, ethertype, 44, b))
                }
                Some(nh) => Some(l3_key(depth, tpid0, tpid1, ethertype, nh, 0)),
                None => None,
            }
        }
        _ => Some(l3_key(depth, tpid0, tpid1, ethertype, 0, 0)),
    };
    out
}

/// Term accumulation over the used fields of one generation.
struct Acc {
    gen: u32,
    used: u32,
    terms: Terms,
    uncertain: bool,
    key: Key<LpmData>,
}

impl Acc {
    /// Whether field `f` is used by some term.
    #[inline(always)]
    fn uses(&self, f: u8) -> bool {
        self.used & (1 << f) != 0
    }

    /// ANDs the LPM entry of the key in `self.key` (a miss: uncertain).
    #[inline(always)]
    fn lpm_lookup(&mut self) {
        match COMO_LPM.get(&self.key) {
            Some(t) => self.terms.and_with(t),
            None => self.uncertain = true,
        }
    }

    /// ANDs the LPM lookup of the `N`-byte value at `off` of the packet (`None` or not all
    /// in the packet: absent, uncertain).
    #[inline(always)]
    fn lpm_at<const N: usize>(&mut self, ctx: &XdpContext, f: u8, off: Option<usize>) {
        if !self.uses(f) {
            return;
        }
        let Some(v) = off.and_then(|off| bytes::<N>(ctx, off)) else {
            self.uncertain = true;
            return;
        };
        self.key.prefix_len = LPM_ROOT_PREFIX + 8 * N as u32;
        self.key.data.bytes[1] = f;
        let mut i = 0;
        while i < N && i + 2 < LPM_DATA_LEN {
            self.key.data.bytes[i + 2] = v[i];
            i += 1;
        }
        self.lpm_lookup();
    }

    /// ANDs the LPM lookup of the L3 key.
    #[inline(always)]
    fn lpm_l3(&mut self, v: Option<[u8; 5]>) {
        if !self.uses(field::L3) {
            return;
        }
        let Some(v) = v else {
            self.uncertain = true;
            return;
        };
        self.key.prefix_len = LPM_ROOT_PREFIX + L3_KEY_BITS;
        self.key.data.bytes[1] = field::L3;
        let mut i = 0;
        while i < 5 {
            self.key.data.bytes[i + 2] = v[i];
            i += 1;
        }
        self.lpm_lookup();
    }

    /// ANDs the array lookup of value `v` of array field `f` (absent: uncertain).
    #[inline(always)]
    fn array(&mut self, f: u8, v: Option<u32>) {
        if !self.uses(f) {
            return;
        }
        let Some(v) = v else {
            self.uncertain = true;
            return;
        };
        match COMO_ARRAY.get(array_index(self.gen, f, v)) {
            Some(t) => self.terms.and_with(t),
            None => self.uncertain = true,
        }
    }
}

/// Classifies the packet, writes the metadata, counts, and returns the XDP action.
#[inline(always)]
fn classify_and_route(ctx: &XdpContext) -> u32 {
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

    let wire = (ctx.data_end() - ctx.data()) as u32;
    let wire_len = if wire > LEN_CAP { LEN_CAP } else { wire };
    let lay = layout(ctx);
    let mut acc = Acc {
        gen,
        used,
        terms: Terms::ALL,
        uncertain: false,
        key: Key::new(
            0,
            LpmData {
                bytes: [0; LPM_DATA_LEN],
            },
        ),
    };
    acc.key.data.bytes[0] = gen as u8;
    acc.lpm_l3(lay.l3);
    // IPv4 addresses (ARP/RARP: sender and target protocol addresses).
    let (a4s, a4d) = match lay.ethertype {
        ETH_P_IP => (Some(lay.l3_off + 12), Some(lay.l3_off + 16)),
        ETH_P_ARP | ETH_P_RARP => (Some(lay.l3_off + 14), Some(lay.l3_off + 24)),
        _ => (None, None),
    };
    acc.lpm_at::<4>(ctx, field::SADDR4, a4s);
    acc.lpm_at::<4>(ctx, field::DADDR4, a4d);
    let v6 = lay.ethertype == ETH_P_IPV6;
    acc.lpm_at::<16>(ctx, field::SADDR6, v6.then_some(lay.l3_off + 8));
    acc.lpm_at::<16>(ctx, field::DADDR6, v6.then_some(lay.l3_off + 24));
    acc.lpm_at::<6>(ctx, field::SMAC, Some(6));
    acc.lpm_at::<6>(ctx, field::DMAC, Some(0));
    let l4 = lay.l4_off;
    acc.array(field::SPORT, l4.and_then(|t| be16(ctx, t)).map(u32::from));
    acc.array(
        field::DPORT,
        l4.and_then(|t| be16(ctx, t + 2)).map(u32::from),
    );
    acc.array(field::VID0, lay.vid[0].map(u32::from));
    acc.array(field::VID1, lay.vid[1].map(u32::from));
    acc.array(field::LEN, Some(wire_len));
    acc.array(field::L4B0, l4.and_then(|t| byte(ctx, t)).map(u32::from));
    acc.array(
        field::L4B1,
        l4.and_then(|t| byte(ctx, t + 1)).map(u32::from),
    );
    acc.array(
        field::L4B13,
        l4.and_then(|t| byte(ctx, t + 13)).map(u32::from),
    );

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
    count_rules(rules);
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
/// non-zero byte of the vector.
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

/// One increment of the per-rule counter of every rule in `rules`.
#[inline(always)]
fn count_rules(rules: u64) {
    let mut r = rules;
    let mut i = 0;
    while i < 64 {
        if r == 0 {
            break;
        }
        let bit = r.trailing_zeros();
        r &= r - 1;
        count(stat::RULE_BASE + bit, 1);
        i += 1;
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
