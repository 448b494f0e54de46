//! Types shared between the filter compiler (userspace) and the XDP program (kernel).
//!
//! `no_std`, `#[repr(C)]` only, after aya-template's `-common` crate: this file *is* the
//! contract between `ebpf-filters::kernel` (which fills the tables) and `xdp-prog` (which reads
//! them). With the `user` feature the types implement `aya::Pod`.
//!
//! # How a packet is classified
//!
//! Every module's filter (a *rule*, one bit of a `u64`) is compiled into a disjunction of
//! conjunctive *terms* (at most [`MAX_TERMS`] over all rules). The XDP program extracts a fixed
//! set of *fields* from the packet ([`field`]), looks each one up in its table, and gets back a
//! [`Terms`] bit vector: the terms whose constraints on that field the value satisfies (a term
//! that does not constrain the field has its bit set everywhere). The AND of all field vectors is
//! the set of matching terms; the byte tables of `COMO_TERM_RULES` turn it into the set of
//! matching rules. The work per packet is one lookup per field plus at most
//! `TERM_WORDS * 8` byte-table lookups: it does not grow with the number of rules.
//!
//! Fields follow libpcap's offsets (what tcpdump's BPF code loads), so a rule compiled exactly
//! gives tcpdump's verdict:
//! * The VLAN stack: `depth` = number of leading tags (TPID 0x8100, 0x88a8 or 0x9100), capped
//!   at [`VLAN_DEEP`] ("more than [`MAX_VLAN`]"), and the class of the first two TPIDs.
//! * The *L3 key* ([`field::L3`], see [`l3_key`]): VLAN byte, EtherType after the tags, then for
//!   IPv4 (first-fragment flag, protocol), for IPv6 (next header, next header behind a fragment
//!   header), for anything else two zero bytes. IPv6 extension headers are not walked (libpcap
//!   does not either, except for `protochain`).
//! * Addresses: IPv4 source/destination (for ARP and RARP the sender/target protocol address),
//!   IPv6 source/destination, Ethernet source/destination.
//! * Ports and transport bytes at libpcap's transport offset: IPv4 `L3 + 4 * IHL` (whatever the
//!   protocol and fragment offset), IPv6 `L3 + 40`. VLAN ids of the first two tags, the wire
//!   length, transport bytes 0, 1 and 13 (ICMP type/code, TCP flags).
//!
//! A field is *present* (its bytes are in the packet), *not applicable* (the packet has no such
//! header, e.g. ports of an ARP frame: no lookup, all ones, and no term can need it because its
//! protocol check fails), or *absent* (the header is there but the field's bytes are past the
//! end): its lookup is skipped too (all ones), but if it is one that some term of the active
//! generation uses (`GenConfig::used` bit), libpcap's program might have read past the packet
//! end, which rejects the whole packet, so the classification is *uncertain*: the XDP program then reports every active rule
//! as matched and as to be re-checked (`XdpMeta::recheck`), and counts a parse error.
//!
//! # Tables and the generation switch
//!
//! Every table key starts with the generation (0 or 1). The program reads `COMO_CONFIG[0].gen`
//! once per packet and then only that generation's entries; userspace writes the other
//! generation completely, then flips `gen` (one aligned 4-byte store), then waits before it
//! reuses the old generation. No packet is classified under a half-written table.
//!
//! | map | kind | key | value |
//! |---|---|---|---|
//! | `COMO_CONFIG` | array, 1 entry | 0 | [`Config`] |
//! | `COMO_GEN` | array, 2 entries | generation | [`GenConfig`] |
//! | `COMO_LPM` | LPM trie, [`LPM_MAX_ENTRIES`] | [`LpmData`] behind a prefix length | [`Terms`] |
//! | `COMO_ARRAY` | array, `2 * ARRAY_FIELDS_LEN` | [`array_index`] | [`Terms`] |
//! | `COMO_TERM_RULES` | array, `2 * TERM_RULES_LEN` | [`term_rules_index`] | `u64` rule bits |
//! | `COMO_L3_ARRAY` | array, `2 * L3_CLASSES` | [`l3_array_index`] | [`L3Slot`] |
//! | `COMO_ADDR4_TOP` | array, `2 * ADDR4_TOP_LEN` | [`addr4_top_index`] | `u32` class or chunk |
//! | `COMO_ADDR4_CHUNKS` | array, `2 * ADDR4_CHUNKS * 256` | [`addr4_chunk_index`] | `u32` class or chunk |
//! | `COMO_ADDR4_CLASSES` | array, `2 * ADDR4_CLASSES` | [`addr4_class_index`] | [`Terms`] |
//! | `COMO_STATS` | per-CPU array, 1 entry | 0 | [`Stats`] (counters by [`stat`] index) |
//! | `COMO_XSKS` | XSK map, [`MAX_QUEUES`] | rx queue index | AF_XDP socket |
//!
//! LPM fields (L3 key, addresses, MACs) share one trie: the key's data is
//! `[generation, field, value...]` and a prefix length of `16 + n` bits constrains the first
//! `n` bits of the value. Every generation/field pair has a root entry (prefix length 16), so a
//! lookup never misses for a used field. Array fields index `COMO_ARRAY` directly by value.
#![no_std]

/// Most rules (modules, plus the packet window) one classification serves: one bit each in a `u64`.
pub const MAX_RULES: usize = 64;
/// Most conjunctive terms over all rules of one generation.
pub const MAX_TERMS: usize = 256;
/// `u64` words in a [`Terms`] vector.
pub const TERM_WORDS: usize = MAX_TERMS / 64;
/// VLAN tags classified exactly (VLAN ids and TPID classes of tags `0..MAX_VLAN`).
pub const MAX_VLAN: u8 = 2;
/// The `depth` value meaning "more than [`MAX_VLAN`] tags" (the EtherType is then 0).
pub const VLAN_DEEP: u8 = MAX_VLAN + 1;
/// Tags the XDP program walks before it gives up (a deeper stack is `VLAN_DEEP`).
pub const VLAN_WALK: u8 = VLAN_DEEP;
/// Entries of the LPM trie (both generations).
pub const LPM_MAX_ENTRIES: u32 = 65_536;
/// Most RX queues (entries of the XSK map).
pub const MAX_QUEUES: u32 = 64;
/// Magic value of [`XdpMeta::magic`]: the metadata was written by this program.
pub const META_MAGIC: u32 = 0xC0C0_0001;

/// A bit vector of terms.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Terms {
    /// Bit `t % 64` of word `t / 64` is term `t`.
    pub w: [u64; TERM_WORDS],
}

impl Terms {
    /// No term.
    pub const NONE: Terms = Terms { w: [0; TERM_WORDS] };
    /// Every term.
    pub const ALL: Terms = Terms {
        w: [u64::MAX; TERM_WORDS],
    };

    /// Sets term `t` (ignored when out of range).
    #[inline]
    pub fn set(&mut self, t: usize) {
        if let Some(w) = self.w.get_mut(t / 64) {
            *w |= 1 << (t % 64);
        }
    }

    /// Whether term `t` is set.
    #[inline]
    pub fn get(&self, t: usize) -> bool {
        self.w.get(t / 64).is_some_and(|w| w & (1 << (t % 64)) != 0)
    }

    /// `self &= other`.
    #[inline(always)]
    pub fn and_with(&mut self, other: &Terms) {
        let mut i = 0;
        while i < TERM_WORDS {
            self.w[i] &= other.w[i];
            i += 1;
        }
    }
}

/// Field identifiers (the second byte of an LPM key, or the array-field selector).
pub mod field {
    /// The L3 key ([`crate::l3_key`]); LPM, [`crate::L3_KEY_BITS`] bits.
    pub const L3: u8 = 0;
    /// IPv4 source (ARP/RARP: sender protocol address); LPM, 32 bits.
    pub const SADDR4: u8 = 1;
    /// IPv4 destination (ARP/RARP: target protocol address); LPM, 32 bits.
    pub const DADDR4: u8 = 2;
    /// IPv6 source; LPM, 128 bits.
    pub const SADDR6: u8 = 3;
    /// IPv6 destination; LPM, 128 bits.
    pub const DADDR6: u8 = 4;
    /// Ethernet source; LPM, 48 bits.
    pub const SMAC: u8 = 5;
    /// Ethernet destination; LPM, 48 bits.
    pub const DMAC: u8 = 6;
    /// Source port (2 bytes at the transport offset); array, 65536.
    pub const SPORT: u8 = 7;
    /// Destination port (2 bytes at transport offset + 2); array, 65536.
    pub const DPORT: u8 = 8;
    /// VLAN id (TCI & 0xfff) of the first tag; array, 4096.
    pub const VID0: u8 = 9;
    /// VLAN id of the second tag; array, 4096.
    pub const VID1: u8 = 10;
    /// Wire length, capped at 65535; array, 65536.
    pub const LEN: u8 = 11;
    /// Transport byte 0 (ICMP/ICMPv6 type); array, 256.
    pub const L4B0: u8 = 12;
    /// Transport byte 1 (ICMP/ICMPv6 code); array, 256.
    pub const L4B1: u8 = 13;
    /// Transport byte 13 (TCP flags); array, 256.
    pub const L4B13: u8 = 14;
    /// Number of fields.
    pub const COUNT: u8 = 15;
    /// First array field.
    pub const FIRST_ARRAY: u8 = SPORT;
}

/// Bits of the L3 key value (`(VLAN byte, EtherType, a, b)`, see [`l3_key`]).
pub const L3_KEY_BITS: u32 = 40;

/// Class of a TPID in the L3 key's VLAN byte: 0 none, 1 = 0x8100, 2 = 0x88a8, 3 = 0x9100.
#[inline(always)]
pub const fn tpid_class(tpid: u16) -> u8 {
    match tpid {
        0x8100 => 1,
        0x88a8 => 2,
        0x9100 => 3,
        _ => 0,
    }
}

/// The L3 key, as the 5 bytes of an LPM value (most significant first):
/// `[depth << 6 | tpid0 << 4 | tpid1 << 2, ethertype_hi, ethertype_lo, a, b]` where
/// `depth` is 0..=[`VLAN_DEEP`], `tpid0`/`tpid1` are the [`tpid_class`] of tags 0 and 1 (0 when
/// absent), `ethertype` is the EtherType after the tags (0 when `depth == VLAN_DEEP`), and
/// * IPv4 (0x0800): `a` = 1 if the fragment offset (`ip[6:2] & 0x1fff`) is 0 else 0,
///   `b` = protocol (`ip[9]`);
/// * IPv6 (0x86dd): `a` = next header (`ip6[6]`), `b` = `ip6[40]` when `a == 44` else 0;
/// * anything else: `a = b = 0`.
#[inline(always)]
pub const fn l3_key(depth: u8, tpid0: u8, tpid1: u8, ethertype: u16, a: u8, b: u8) -> [u8; 5] {
    [
        (depth << 6) | ((tpid0 & 3) << 4) | ((tpid1 & 3) << 2),
        (ethertype >> 8) as u8,
        ethertype as u8,
        a,
        b,
    ]
}

/// Entries of one generation's part of `COMO_L3_ARRAY`: the L3 keys of IPv4, IPv6, ARP and
/// RARP frames under at most [`MAX_VLAN`] tags, each with its own slot ([`l3_class`]).
///
/// `COMO_L3_ARRAY` is a loader-side cache of the `COMO_LPM` lookup of the L3 key: the loader
/// fills slot `l3_class(k)` with the terms of the longest `COMO_LPM` prefix of L3 key `k` and
/// the fields those terms constrain ([`L3Slot`]; the compiler does not write it), and the XDP
/// program reads the slot instead of walking the trie when the key has one. Keys without a
/// slot (other EtherTypes, deeper VLAN stacks) use the trie, and then look up every used
/// field. Same answer, one array read instead of a trie walk whose length grows with the
/// nesting of the L3 prefixes (negated protocol tests make long chains).
pub const L3_CLASSES: u32 = 48 * L3_CLASS_STRIDE;
/// Slots per VLAN context (depth and TPID classes) in `COMO_L3_ARRAY`.
pub const L3_CLASS_STRIDE: u32 = 1026;

/// The slot of the L3 key `(depth, tpid0, tpid1, ethertype, a, b)` (see [`l3_key`]) in one
/// generation's part of `COMO_L3_ARRAY`, or `None` when it has none (EtherType other than
/// IPv4, IPv6, ARP and RARP, or `depth > MAX_VLAN`). Context `depth * 16 + tpid0 * 4 +
/// tpid1`, then IPv4: `a * 256 + b` (`a` is 0 or 1); IPv6: `512 + a`, or `768 + b` when `a` is
/// 44; ARP: 1024; RARP: 1025.
#[inline(always)]
pub const fn l3_class(
    depth: u8,
    tpid0: u8,
    tpid1: u8,
    ethertype: u16,
    a: u8,
    b: u8,
) -> Option<u32> {
    if depth > MAX_VLAN {
        return None;
    }
    let ctx = (depth as u32) * 16 + ((tpid0 & 3) as u32) * 4 + (tpid1 & 3) as u32;
    let slot = match ethertype {
        0x0800 => {
            if a > 1 {
                return None;
            }
            (a as u32) * 256 + b as u32
        }
        0x86dd => {
            if a == 44 {
                768 + b as u32
            } else {
                512 + a as u32
            }
        }
        0x0806 => 1024,
        0x8035 => 1025,
        _ => return None,
    };
    Some(ctx * L3_CLASS_STRIDE + slot)
}

/// A `COMO_L3_ARRAY` slot: the terms of the L3 key's longest `COMO_LPM` prefix, and the
/// fields the program still has to look up for a frame of this L3 class.
///
/// `fields` holds bit `1 << f` for every field `f` (other than [`field::L3`]) that some term
/// of `terms` constrains, i.e. that some value of `f` rejects. The program looks up only the
/// used fields in `fields`: a field no term still possible constrains would clear no bit of
/// the AND (a `tcp port 80` rule's ports for a UDP frame, the TCP flags of a `tcp[13]` rule
/// for an IPv6 frame, the addresses of `host` rules for a VLAN-tagged frame, which they do
/// not accept). The program still checks that the bytes of every used field
/// ([`GenConfig::used`]) are in the packet (past the end: uncertain), so the verdict is the
/// same as with every used field looked up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct L3Slot {
    /// The terms of the longest prefix.
    pub terms: Terms,
    /// Fields to look up after the L3 key (bit `1 << f`).
    pub fields: u32,
    /// Zero (keeps the layout free of padding).
    pub reserved: u32,
}

/// Index in `COMO_L3_ARRAY` of slot `class` ([`l3_class`]) in generation `gen`.
#[inline(always)]
pub const fn l3_array_index(gen: u32, class: u32) -> u32 {
    gen * L3_CLASSES + class
}

/// Bit of a `COMO_ADDR4_TOP` or `COMO_ADDR4_CHUNKS` entry that makes it a chunk number (the
/// next 8 bits of the address index that chunk); clear, the entry is a class
/// (`COMO_ADDR4_CLASSES`).
pub const ADDR4_CHUNK: u32 = 1 << 31;
/// Entries of one generation's part of `COMO_ADDR4_TOP`: one per /16 of each IPv4 address
/// field ([`field::SADDR4`], [`field::DADDR4`]).
pub const ADDR4_TOP_LEN: u32 = 2 * 65_536;
/// Chunks of 256 entries in one generation's part of `COMO_ADDR4_CHUNKS` (the /17-/24 and
/// /25-/32 levels of both fields).
pub const ADDR4_CHUNKS: u32 = 1024;
/// Classes (distinct answers) in one generation's part of `COMO_ADDR4_CLASSES`.
pub const ADDR4_CLASSES: u32 = 4096;
const _: () = assert!(ADDR4_CHUNKS < ADDR4_CHUNK && ADDR4_CLASSES < ADDR4_CHUNK);

/// Index in `COMO_ADDR4_TOP` of IPv4 address `addr` (host order) of field `f`
/// ([`field::SADDR4`] or [`field::DADDR4`]) in generation `gen`: the address's top 16 bits.
///
/// `COMO_ADDR4_TOP`, `COMO_ADDR4_CHUNKS` and `COMO_ADDR4_CLASSES` are, like
/// `COMO_L3_ARRAY`, a loader-side cache of `COMO_LPM` lookups: a three-level table over the
/// address (16, 8 and 8 bits) whose leaves are classes, each class holding the terms of one
/// longest `COMO_LPM` prefix. The loader builds it from the generation's IPv4 address
/// prefixes and sets the field's bit in [`GenConfig::addr4`] when it fits
/// ([`ADDR4_CHUNKS`], [`ADDR4_CLASSES`]); the program then reads two to four array entries
/// instead of walking the trie (a walk whose length grows with the prefixes' nesting).
#[inline(always)]
pub const fn addr4_top_index(gen: u32, f: u8, addr: u32) -> u32 {
    gen * ADDR4_TOP_LEN
        + ((f as u32).wrapping_sub(field::SADDR4 as u32) & 1) * 65_536
        + (addr >> 16)
}

/// Index in `COMO_ADDR4_CHUNKS` of entry `byte` of chunk `chunk` (an entry's value without
/// [`ADDR4_CHUNK`]) in generation `gen`.
#[inline(always)]
pub const fn addr4_chunk_index(gen: u32, chunk: u32, byte: u32) -> u32 {
    gen * ADDR4_CHUNKS * 256 + chunk * 256 + (byte & 255)
}

/// Index in `COMO_ADDR4_CLASSES` of class `class` in generation `gen`.
#[inline(always)]
pub const fn addr4_class_index(gen: u32, class: u32) -> u32 {
    gen * ADDR4_CLASSES + class
}

/// Bytes of [`LpmData`]: generation, field, and up to 16 bytes of value.
pub const LPM_DATA_LEN: usize = 18;
/// Prefix length that covers the generation and field bytes (a field's root entry).
pub const LPM_ROOT_PREFIX: u32 = 16;

/// The data part of an LPM trie key (the prefix length is carried beside it by the map's key).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LpmData {
    /// `[generation, field, value bytes, zero padding]`.
    pub bytes: [u8; LPM_DATA_LEN],
}

/// Size of the array field `f` (values are `0..size`), 0 for non-array fields.
#[inline(always)]
pub const fn array_field_len(f: u8) -> u32 {
    match f {
        field::SPORT | field::DPORT | field::LEN => 65_536,
        field::VID0 | field::VID1 => 4_096,
        field::L4B0 | field::L4B1 | field::L4B13 => 256,
        _ => 0,
    }
}

/// Offset of array field `f` inside one generation's part of `COMO_ARRAY`.
#[inline(always)]
pub const fn array_field_base(f: u8) -> u32 {
    let mut base = 0;
    let mut g = field::FIRST_ARRAY;
    while g < f {
        base += array_field_len(g);
        g += 1;
    }
    base
}

/// Entries of one generation's part of `COMO_ARRAY`.
pub const ARRAY_FIELDS_LEN: u32 = array_field_base(field::COUNT);

/// Index in `COMO_ARRAY` of `value` of array field `f` in generation `gen`.
#[inline(always)]
pub const fn array_index(gen: u32, f: u8, value: u32) -> u32 {
    gen * ARRAY_FIELDS_LEN + array_field_base(f) + value
}

/// Entries of one generation's part of `COMO_TERM_RULES`: one 256-entry table per byte of a
/// [`Terms`] vector.
pub const TERM_RULES_LEN: u32 = (TERM_WORDS as u32) * 8 * 256;

/// Index in `COMO_TERM_RULES`: the rules of the terms set in byte `byte` (0 = terms 0..8) of
/// a [`Terms`] vector whose value is `value`, in generation `gen`.
#[inline(always)]
pub const fn term_rules_index(gen: u32, byte: u32, value: u8) -> u32 {
    gen * TERM_RULES_LEN + byte * 256 + value as u32
}

/// `COMO_CONFIG[0]`: what the program reads first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// Generation of the tables in force (0 or 1).
    pub gen: u32,
    /// [`flags`] bits.
    pub flags: u32,
}

/// Bits of [`Config::flags`].
pub mod flags {
    /// Drop packets no rule matches (default: `XDP_PASS` them to the kernel stack).
    pub const DROP_UNMATCHED: u32 = 1;
}

/// `COMO_GEN[gen]`: what one generation of the tables holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GenConfig {
    /// Rules of this generation (bit per rule).
    pub rules: u64,
    /// Rules whose kernel tables over-approximate: their matches must be re-checked in
    /// userspace with the exact evaluator.
    pub flagged: u64,
    /// Bit `1 << f` for every field `f` some term constrains (unused fields are not looked up).
    pub used: u32,
    /// Number of terms (terms `0..nterms` are valid).
    pub nterms: u32,
    /// Bit `1 << f` for each IPv4 address field whose lookups the loader serves from the
    /// `COMO_ADDR4_*` arrays ([`addr4_top_index`]); the other fields use `COMO_LPM`. The
    /// compiler leaves it 0; the loader sets it.
    pub addr4: u32,
    /// Zero (keeps the layout free of padding).
    pub reserved: u32,
}

/// What the XDP program writes in front of the packet (`bpf_xdp_adjust_meta`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct XdpMeta {
    /// Rules that match (exact for unflagged rules; a superset for flagged ones).
    pub rules: u64,
    /// Rules the worker must re-check with the exact evaluator (flagged rules that matched,
    /// or every rule when the classification was uncertain).
    pub recheck: u64,
    /// [`META_MAGIC`].
    pub magic: u32,
    /// Generation of the tables that classified the packet.
    pub gen: u32,
}

impl XdpMeta {
    /// Bytes of the metadata in front of a packet.
    pub const LEN: usize = core::mem::size_of::<XdpMeta>();

    /// Reads the metadata from the first [`XdpMeta::LEN`] bytes of `b` (native byte order, as
    /// the program wrote it); `None` when `b` is shorter or the magic is not [`META_MAGIC`]
    /// (no metadata, or not this program's).
    pub fn read(b: &[u8]) -> Option<XdpMeta> {
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
        };
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
        };
        let meta = XdpMeta {
            rules: u64_at(0)?,
            recheck: u64_at(8)?,
            magic: u32_at(16)?,
            gen: u32_at(20)?,
        };
        (meta.magic == META_MAGIC).then_some(meta)
    }

    /// Reads the metadata that ends where the packet starts: the last [`XdpMeta::LEN`] bytes
    /// of `headroom` (the bytes in front of the packet in an AF_XDP frame).
    pub fn read_before_packet(headroom: &[u8]) -> Option<XdpMeta> {
        let start = headroom.len().checked_sub(Self::LEN)?;
        Self::read(headroom.get(start..)?)
    }
}

/// Every counter of the program on one CPU: the one value of the per-CPU map `COMO_STATS`, so
/// that one map lookup per packet serves all the counters it updates (a lookup per counter
/// made the per-rule counters the one cost that grew with the rules).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Counter `i` is [`stat`] index `i`.
    pub c: [u64; stat::LEN as usize],
}

/// Indexes of the counters in [`Stats`] (per-CPU `u64` counters).
pub mod stat {
    /// Packets the program saw.
    pub const SEEN: u32 = 0;
    /// Packets some rule matched.
    pub const MATCHED: u32 = 1;
    /// Packets redirected to an AF_XDP socket.
    pub const REDIRECTED: u32 = 2;
    /// Matched packets whose redirect failed (no socket on that queue).
    pub const REDIRECT_FAILED: u32 = 3;
    /// Packets passed to the kernel stack.
    pub const PASSED: u32 = 4;
    /// Unmatched packets dropped (`flags::DROP_UNMATCHED`).
    pub const DROPPED: u32 = 5;
    /// Packets whose classification was uncertain (a used field past the packet end).
    pub const PARSE_ERRORS: u32 = 6;
    /// Bytes (wire length) of the packets some rule matched.
    pub const MATCHED_BYTES: u32 = 7;
    /// First per-rule counter: `RULE_BASE + r` counts the packets rule `r` matched.
    pub const RULE_BASE: u32 = 16;
    /// Entries of the map.
    pub const LEN: u32 = RULE_BASE + crate::MAX_RULES as u32;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is `#[repr(C)]`, `Copy`, made only of integers (no padding
    // bytes: each is laid out with its fields' natural alignment filling it exactly), so any
    // bit pattern is a valid value, as `aya::Pod` requires.
    unsafe impl aya::Pod for super::Terms {}
    // SAFETY: as above (18 bytes of `u8`).
    unsafe impl aya::Pod for super::LpmData {}
    // SAFETY: as above (two `u32`).
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above (two `u64` then four `u32`: 32 bytes, no padding).
    unsafe impl aya::Pod for super::GenConfig {}
    // SAFETY: as above (two `u64` then two `u32`: 24 bytes, no padding).
    unsafe impl aya::Pod for super::XdpMeta {}
    // SAFETY: as above (an array of `u64`).
    unsafe impl aya::Pod for super::Stats {}
    // SAFETY: as above (`Terms`, then two `u32`: 40 bytes, no padding).
    unsafe impl aya::Pod for super::L3Slot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_layout_is_contiguous_and_disjoint() {
        assert_eq!(array_field_base(field::SPORT), 0);
        assert_eq!(array_field_base(field::DPORT), 65_536);
        assert_eq!(array_field_base(field::VID0), 2 * 65_536);
        assert_eq!(ARRAY_FIELDS_LEN, 3 * 65_536 + 2 * 4_096 + 3 * 256);
        assert_eq!(
            array_index(1, field::SPORT, 0),
            ARRAY_FIELDS_LEN,
            "generation 1 starts after generation 0"
        );
    }

    #[test]
    fn addr4_layout_is_disjoint_per_field_and_generation() {
        assert_eq!(addr4_top_index(0, field::SADDR4, 0), 0);
        assert_eq!(addr4_top_index(0, field::SADDR4, u32::MAX), 65_535);
        assert_eq!(addr4_top_index(0, field::DADDR4, 0), 65_536);
        assert_eq!(
            addr4_top_index(1, field::SADDR4, 0x0a00_0001),
            ADDR4_TOP_LEN + 0x0a00
        );
        assert_eq!(
            addr4_chunk_index(0, ADDR4_CHUNKS - 1, 255) + 1,
            addr4_chunk_index(1, 0, 0)
        );
        assert_eq!(addr4_class_index(1, 0), ADDR4_CLASSES);
        assert_eq!(core::mem::size_of::<GenConfig>(), 32, "no padding");
        assert_eq!(core::mem::size_of::<L3Slot>(), 40, "no padding");
    }

    #[test]
    fn l3_key_packs_fields_msb_first() {
        assert_eq!(
            l3_key(1, tpid_class(0x8100), 0, 0x0800, 1, 6),
            [0b0101_0000, 0x08, 0x00, 1, 6]
        );
        assert_eq!(l3_key(VLAN_DEEP, 1, 2, 0, 0, 0)[0], 0b1101_1000);
    }

    #[test]
    fn l3_classes_are_distinct_and_in_range() {
        let mut seen = [false; L3_CLASSES as usize];
        let mut n = 0;
        for depth in 0..=VLAN_DEEP {
            for t0 in 0..4u8 {
                for t1 in 0..4u8 {
                    for (et, alist, blist) in [
                        (0x0800u16, 0..=1u8, 0..=255u8),
                        (0x86dd, 0..=255, 0..=0),
                        (0x86dd, 44..=44, 0..=255),
                        (0x0806, 0..=0, 0..=0),
                        (0x8035, 0..=0, 0..=0),
                    ] {
                        for a in alist.clone() {
                            for b in blist.clone() {
                                let Some(c) = l3_class(depth, t0, t1, et, a, b) else {
                                    assert!(depth > MAX_VLAN);
                                    continue;
                                };
                                if et == 0x86dd && a == 44 && blist.end() == &0 {
                                    continue;
                                }
                                assert!(c < L3_CLASSES);
                                assert!(!seen[c as usize], "slot {c} twice");
                                seen[c as usize] = true;
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 48 * (512 + 255 + 256 + 2));
        assert_eq!(l3_class(0, 0, 0, 0x0800, 2, 6), None);
        assert_eq!(l3_class(0, 0, 0, 0x88cc, 0, 0), None);
        assert_eq!(l3_array_index(1, 0), L3_CLASSES);
    }

    #[test]
    fn meta_reads_checks_magic_and_length() {
        let m = XdpMeta {
            rules: 0x8000_0000_0000_0001,
            recheck: 1,
            magic: META_MAGIC,
            gen: 1,
        };
        let mut b = [0u8; 32];
        b[8..16].copy_from_slice(&m.rules.to_ne_bytes());
        b[16..24].copy_from_slice(&m.recheck.to_ne_bytes());
        b[24..28].copy_from_slice(&m.magic.to_ne_bytes());
        b[28..32].copy_from_slice(&m.gen.to_ne_bytes());
        assert_eq!(XdpMeta::read_before_packet(&b), Some(m));
        assert_eq!(XdpMeta::read(&b[8..]), Some(m));
        assert_eq!(XdpMeta::read(&b[8..30]), None, "too short");
        assert_eq!(XdpMeta::read_before_packet(&b[..20]), None);
        b[24] ^= 1;
        assert_eq!(XdpMeta::read_before_packet(&b), None, "bad magic");
    }

    #[test]
    fn terms_set_get_and() {
        let mut t = Terms::NONE;
        t.set(0);
        t.set(200);
        t.set(MAX_TERMS);
        assert!(t.get(0) && t.get(200) && !t.get(1));
        let mut a = Terms::ALL;
        a.and_with(&t);
        assert_eq!(a, t);
    }
}
