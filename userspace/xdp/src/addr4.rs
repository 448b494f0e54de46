//! The `COMO_ADDR4_*` arrays of one generation: the loader's cache of the `COMO_LPM` lookups
//! of the IPv4 address fields ([`field::SADDR4`], [`field::DADDR4`]), laid out as the contract
//! says ([`ebpf_filters_common::addr4_top_index`]).
//!
//! A three-level table over the address, 16 then 8 then 8 bits (the DIR-16-8-8 form of
//! routers' forwarding tables): a top entry per /16, a chunk of 256 entries for a /16 that
//! holds a longer prefix, another for a /24 that holds a prefix longer than /24. Leaves are
//! classes, each the terms of one longest prefix (equal terms share a class). Prefixes are
//! written shortest first, each over the range it covers, so a longer prefix overwrites the
//! shorter ones around it: every address ends at the terms of its longest prefix, which is
//! what the trie answers. A field whose prefixes need more chunks or classes than the
//! contract has (or that has no root entry) is left to the trie.

use std::collections::HashMap;

use ebpf_filters_common::{
    field, LpmData, Terms, ADDR4_CHUNK, ADDR4_CHUNKS, ADDR4_CLASSES, ADDR4_TOP_LEN,
    LPM_ROOT_PREFIX, TERM_WORDS,
};

/// One generation's `COMO_ADDR4_*` contents, each at its full length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addr4 {
    /// `ADDR4_TOP_LEN` entries: class, or `ADDR4_CHUNK | chunk`.
    pub(crate) top: Vec<u32>,
    /// `ADDR4_CHUNKS * 256` entries: class, or `ADDR4_CHUNK | chunk`.
    pub(crate) chunks: Vec<u32>,
    /// `ADDR4_CLASSES` terms.
    pub(crate) classes: Vec<Terms>,
    /// `1 << f` for every field built (the program's `GenConfig::addr4`).
    pub(crate) fields: u32,
}

/// The builder's state: chunks and classes taken so far.
struct Builder {
    out: Addr4,
    /// Chunks in use.
    nchunks: u32,
    /// Class of each distinct terms vector.
    class_of: HashMap<[u64; TERM_WORDS], u32>,
}

/// Why a field cannot be built (it then stays in the trie).
struct Full;

impl Builder {
    /// The class of `terms`, taking a new one if needed.
    fn class(&mut self, terms: &Terms) -> Result<u32, Full> {
        if let Some(&c) = self.class_of.get(&terms.w) {
            return Ok(c);
        }
        let c = self.class_of.len() as u32;
        let slot = self.out.classes.get_mut(c as usize).ok_or(Full)?;
        *slot = *terms;
        self.class_of.insert(terms.w, c);
        Ok(c)
    }

    /// The chunk `entry` points to, making `entry` (a class) a chunk of 256 copies of it
    /// first when it is not one.
    fn chunk_below(&mut self, entry: u32) -> Result<(u32, u32), Full> {
        if entry & ADDR4_CHUNK != 0 {
            return Ok((entry, entry & !ADDR4_CHUNK));
        }
        if self.nchunks == ADDR4_CHUNKS {
            return Err(Full);
        }
        let k = self.nchunks;
        self.nchunks += 1;
        let start = k as usize * 256;
        if let Some(c) = self.out.chunks.get_mut(start..start + 256) {
            c.fill(entry);
        }
        Ok((ADDR4_CHUNK | k, k))
    }

    /// The entries of the top level (`top`) or of the chunks.
    fn level(&mut self, top: bool) -> &mut Vec<u32> {
        if top {
            &mut self.out.top
        } else {
            &mut self.out.chunks
        }
    }

    /// The chunk below entry `at` of a level, made first (and the entry pointed at it) when
    /// the entry is a class.
    fn descend(&mut self, top: bool, at: usize) -> Result<u32, Full> {
        let e = self.level(top).get(at).copied().ok_or(Full)?;
        let (entry, k) = self.chunk_below(e)?;
        if let Some(slot) = self.level(top).get_mut(at) {
            *slot = entry;
        }
        Ok(k)
    }

    /// Writes field `f`'s prefixes (`(bits, value)` and terms, shortest first, the first being
    /// the root): each over the entries it covers at the level of its length (/0-/16 in the
    /// top level, /17-/24 and /25-/32 in chunks), making the chunks on its way.
    fn field(&mut self, f: u8, prefixes: &[(u32, u32, Terms)]) -> Result<(), Full> {
        let base = usize::from(f - field::SADDR4) * 65_536;
        for &(bits, v, ref terms) in prefixes {
            let class = self.class(terms)?;
            let (mut top, mut at) = (true, base + (v >> 16) as usize);
            for (end, next) in [(16, (v >> 8) & 255), (24, v & 255), (32, 0)] {
                if bits <= end {
                    let n = 1usize << (end - bits);
                    if let Some(s) = self.level(top).get_mut(at..at + n) {
                        s.fill(class);
                    }
                    break;
                }
                let k = self.descend(top, at)?;
                (top, at) = (false, k as usize * 256 + next as usize);
            }
        }
        Ok(())
    }
}

/// The IPv4 address prefixes of field `f` among `lpm` as `(bits, value, terms)`, shortest
/// first; `None` when the field has no root entry.
fn prefixes(lpm: &[(u32, LpmData, Terms)], f: u8) -> Option<Vec<(u32, u32, Terms)>> {
    let mut out: Vec<(u32, u32, Terms)> = lpm
        .iter()
        .filter(|(plen, data, _)| data.bytes[1] == f && *plen >= LPM_ROOT_PREFIX)
        .map(|(plen, data, terms)| {
            let bits = (plen - LPM_ROOT_PREFIX).min(32);
            let v =
                u32::from_be_bytes([data.bytes[2], data.bytes[3], data.bytes[4], data.bytes[5]]);
            let v = v & u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            (bits, v, *terms)
        })
        .collect();
    out.sort_by_key(|e| e.0);
    (out.first()?.0 == 0).then_some(out)
}

/// The `COMO_ADDR4_*` contents for the IPv4 address fields of `used` among `lpm` (one
/// generation's LPM entries).
pub(crate) fn build(lpm: &[(u32, LpmData, Terms)], used: u32) -> Addr4 {
    let mut b = Builder {
        out: Addr4 {
            top: vec![0; ADDR4_TOP_LEN as usize],
            chunks: vec![0; (ADDR4_CHUNKS * 256) as usize],
            classes: vec![Terms::NONE; ADDR4_CLASSES as usize],
            fields: 0,
        },
        nchunks: 0,
        class_of: HashMap::new(),
    };
    for f in [field::SADDR4, field::DADDR4] {
        if used & (1 << f) == 0 {
            continue;
        }
        let Some(p) = prefixes(lpm, f) else { continue };
        // A field that does not fit gives back the chunks and classes it took (their
        // contents are rewritten when taken again) and its top entries.
        let (nchunks, classes) = (b.nchunks, b.class_of.clone());
        if b.field(f, &p).is_ok() {
            b.out.fields |= 1 << f;
        } else {
            b.nchunks = nchunks;
            b.class_of = classes;
            let base = usize::from(f - field::SADDR4) * 65_536;
            if let Some(top) = b.out.top.get_mut(base..base + 65_536) {
                top.fill(0);
            }
        }
    }
    b.out
}

#[cfg(test)]
impl Addr4 {
    /// What the program finds for `addr` in field `f` (the walk of `xdp-prog`), `None` when
    /// the field is not built.
    pub(crate) fn lookup(&self, f: u8, addr: u32) -> Option<Terms> {
        if self.fields & (1 << f) == 0 {
            return None;
        }
        let base = usize::from(f - field::SADDR4) * 65_536;
        let mut e = *self.top.get(base + (addr >> 16) as usize)?;
        for byte in [(addr >> 8) & 255, addr & 255] {
            if e & ADDR4_CHUNK == 0 {
                break;
            }
            e = *self
                .chunks
                .get(((e & !ADDR4_CHUNK) * 256 + byte) as usize)?;
        }
        self.classes.get(e as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LPM entry of field `f`: `value/bits` with terms `{t}`.
    fn entry(f: u8, value: u32, bits: u32, t: usize) -> (u32, LpmData, Terms) {
        let mut data = LpmData::default();
        data.bytes[1] = f;
        data.bytes[2..6].copy_from_slice(&value.to_be_bytes());
        let mut terms = Terms::NONE;
        terms.set(t);
        (LPM_ROOT_PREFIX + bits, data, terms)
    }

    /// The trie's answer: the terms of the longest prefix of `f` containing `addr`.
    fn longest(lpm: &[(u32, LpmData, Terms)], f: u8, addr: u32) -> Option<Terms> {
        prefixes(lpm, f)?
            .into_iter()
            .rfind(|&(bits, v, _)| {
                let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                addr & m == v
            })
            .map(|e| e.2)
    }

    /// Nested prefixes of every length class on both fields; every boundary address and many
    /// random ones get the trie's answer.
    #[test]
    fn every_address_gets_its_longest_prefix() {
        let s = field::SADDR4;
        let d = field::DADDR4;
        let lpm = vec![
            entry(s, 0, 0, 0),
            entry(s, 0x0a00_0000, 8, 1),
            entry(s, 0x0a01_0000, 16, 2),
            entry(s, 0x0a01_0200, 23, 3),
            entry(s, 0x0a01_0300, 24, 4),
            entry(s, 0x0a01_0380, 25, 5),
            entry(s, 0x0a01_0381, 32, 6),
            entry(s, 0xc0a8_0000, 15, 7),
            entry(s, 0xc0a9_ff00, 24, 8),
            entry(s, 0xffff_ffff, 32, 9),
            entry(d, 0, 0, 10),
            entry(d, 0x0a01_0381, 32, 11),
            // A prefix of another field is not this one's.
            entry(field::SADDR6, 0, 0, 12),
        ];
        let t = build(&lpm, (1 << s) | (1 << d));
        assert_eq!(t.fields, (1 << s) | (1 << d));
        let mut addrs = Vec::new();
        for (_, data, _) in &lpm {
            let v =
                u32::from_be_bytes([data.bytes[2], data.bytes[3], data.bytes[4], data.bytes[5]]);
            for delta in [0u32, 1, 127, 128, 255, 256, 65_535, 65_536] {
                addrs.push(v.wrapping_add(delta));
                addrs.push(v.wrapping_sub(delta));
            }
        }
        let mut x = 0x9e37_79b9u32;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            addrs.push(x);
            // Near the prefixes too.
            addrs.push(0x0a01_0000 | (x & 0xffff));
        }
        for &a in &addrs {
            for f in [s, d] {
                assert_eq!(t.lookup(f, a), longest(&lpm, f, a), "field {f}, {a:#010x}");
            }
        }
    }

    /// A field without a root entry, an unused field, and a field with more long prefixes than
    /// chunks are left to the trie; the fields that fit are built.
    #[test]
    fn fields_that_do_not_fit_stay_in_the_trie() {
        let s = field::SADDR4;
        let d = field::DADDR4;
        let no_root = vec![entry(s, 0x0a00_0000, 8, 1)];
        assert_eq!(build(&no_root, 1 << s).fields, 0);
        let unused = vec![entry(s, 0, 0, 0)];
        assert_eq!(build(&unused, 1 << d).fields, 0);
        // One /32 in each of ADDR4_CHUNKS /16s needs two chunks each.
        let mut lpm = vec![
            entry(s, 0, 0, 0),
            entry(d, 0, 0, 0),
            entry(d, 0x0a00_0001, 32, 1),
        ];
        for i in 0..ADDR4_CHUNKS {
            lpm.push(entry(s, i << 16 | 1, 32, 2));
        }
        let t = build(&lpm, (1 << s) | (1 << d));
        assert_eq!(t.fields, 1 << d);
        assert_eq!(t.lookup(d, 0x0a00_0001), longest(&lpm, d, 0x0a00_0001));
        assert_eq!(t.lookup(s, 1), None);
    }
}
