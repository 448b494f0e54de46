//! Value sets of one kernel field: prefix sets (LPM fields) and range sets (array fields).
//!
//! Both are kept canonical, so two sets are equal exactly when their representations are:
//! a [`PrefixSet`] is the list of the *maximal* prefixes contained in the set (sorted, no
//! prefix inside another, no two siblings), a [`RangeSet`] the sorted list of maximal
//! disjoint, non-adjacent inclusive ranges.

/// A prefix of a `width`-bit value, left-aligned in a `u128` (bit 127 is the value's first bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    /// The value's bits, left-aligned; bits past `len` are zero.
    pub bits: u128,
    /// Number of leading bits fixed.
    pub len: u8,
}

/// The mask of the first `len` bits of a left-aligned value.
pub fn top_mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => !(u128::MAX >> l),
    }
}

impl Prefix {
    /// The prefix of length `len` of the left-aligned `bits` (extra bits cleared).
    pub fn new(bits: u128, len: u8) -> Self {
        let len = len.min(128);
        Prefix {
            bits: bits & top_mask(len),
            len,
        }
    }

    /// The prefix of the first `len` bits of a `width`-bit value held in the low bits of `v`.
    pub fn of_value(v: u128, width: u8, len: u8) -> Self {
        let aligned = if width >= 128 {
            v
        } else {
            v << (128 - u32::from(width))
        };
        Prefix::new(aligned, len.min(width))
    }

    /// Whether `self` contains `other` (is an ancestor of it, or it).
    pub fn contains(&self, other: &Prefix) -> bool {
        self.len <= other.len && (self.bits ^ other.bits) & top_mask(self.len) == 0
    }

    /// Whether the left-aligned value `v` is inside the prefix.
    pub fn matches(&self, v: u128) -> bool {
        (self.bits ^ v) & top_mask(self.len) == 0
    }

    /// The last left-aligned value inside the prefix.
    pub fn end(&self) -> u128 {
        self.bits | !top_mask(self.len)
    }

    /// The sibling (same parent), `None` for the root.
    fn sibling(&self) -> Option<Prefix> {
        if self.len == 0 {
            return None;
        }
        let bit = 1u128 << (128 - u32::from(self.len));
        Some(Prefix {
            bits: self.bits ^ bit,
            len: self.len,
        })
    }

    /// The parent (one bit shorter), `None` for the root.
    fn parent(&self) -> Option<Prefix> {
        if self.len == 0 {
            return None;
        }
        Some(Prefix::new(self.bits, self.len - 1))
    }
}

/// Appends the aligned blocks covering the left-aligned range `lo..=hi`.
fn range_blocks(lo: u128, hi: u128, out: &mut Vec<Prefix>) {
    let mut v = lo;
    loop {
        // The largest block aligned at v that ends at or before hi.
        let mut size_log = v.trailing_zeros().min(128);
        let block_end = |s: u32| {
            if s >= 128 {
                u128::MAX
            } else {
                v | ((1u128 << s) - 1)
            }
        };
        while size_log > 0 && block_end(size_log) > hi {
            size_log -= 1;
        }
        out.push(Prefix {
            bits: v,
            len: (128 - size_log) as u8,
        });
        let end = block_end(size_log);
        if end >= hi {
            return;
        }
        v = end + 1;
    }
}

/// A set of `width`-bit values as a canonical list of prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrefixSet {
    /// Bits of the values (at most 128).
    pub width: u8,
    /// Maximal prefixes, sorted.
    pub items: Vec<Prefix>,
}

impl PrefixSet {
    /// The empty set.
    pub fn empty(width: u8) -> Self {
        PrefixSet {
            width,
            items: Vec::new(),
        }
    }

    /// Every value.
    pub fn full(width: u8) -> Self {
        PrefixSet {
            width,
            items: vec![Prefix { bits: 0, len: 0 }],
        }
    }

    /// The union of the given prefixes (lengths are capped at `width`).
    pub fn from_prefixes(width: u8, items: impl IntoIterator<Item = Prefix>) -> Self {
        let mut s = PrefixSet {
            width,
            items: items
                .into_iter()
                .map(|p| Prefix::new(p.bits, p.len.min(width)))
                .collect(),
        };
        s.normalize();
        s
    }

    /// Whether no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether every value is in the set.
    pub fn is_full(&self) -> bool {
        self.items.first().is_some_and(|p| p.len == 0)
    }

    /// Whether the left-aligned value `v` is in the set.
    pub fn matches(&self, v: u128) -> bool {
        self.items.iter().any(|p| p.matches(v))
    }

    fn normalize(&mut self) {
        // Sorted by (bits, length), an ancestor comes right before its descendants, so a
        // prefix inside a kept one is inside the last kept one; two siblings are adjacent
        // and merge into their parent, which may merge again with the one before.
        self.items.sort_unstable_by_key(|p| (p.bits, p.len));
        let mut out: Vec<Prefix> = Vec::with_capacity(self.items.len());
        for p in self.items.drain(..) {
            if out.last().is_some_and(|k| k.contains(&p)) {
                continue;
            }
            out.push(p);
            while out.len() >= 2 {
                let (Some(b), Some(a)) = (out.last().copied(), out.get(out.len() - 2).copied())
                else {
                    break;
                };
                match (a.sibling(), a.parent()) {
                    (Some(sib), Some(parent)) if sib == b => {
                        out.truncate(out.len() - 2);
                        out.push(parent);
                    }
                    _ => break,
                }
            }
        }
        self.items = out;
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &PrefixSet) -> PrefixSet {
        PrefixSet::from_prefixes(
            self.width,
            self.items.iter().chain(other.items.iter()).copied(),
        )
    }

    /// `self ∩ other` (both sorted and disjoint: one merge pass).
    pub fn intersect(&self, other: &PrefixSet) -> PrefixSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.items.get(i), other.items.get(j)) {
            if a.contains(b) {
                out.push(*b);
                j += 1;
            } else if b.contains(a) {
                out.push(*a);
                i += 1;
            } else if a.bits < b.bits {
                i += 1;
            } else {
                j += 1;
            }
        }
        PrefixSet::from_prefixes(self.width, out)
    }

    /// The values not in the set: the gaps between its (sorted, disjoint) prefixes, each cut
    /// into aligned blocks.
    pub fn complement(&self) -> PrefixSet {
        let mut out = Vec::new();
        let mut start: Option<u128> = Some(0);
        for p in &self.items {
            let Some(s) = start else { break };
            if p.bits > s {
                range_blocks(s, p.bits - 1, &mut out);
            }
            start = p.end().checked_add(1);
        }
        if let Some(s) = start {
            range_blocks(s, u128::MAX, &mut out);
        }
        PrefixSet::from_prefixes(self.width, out)
    }

    /// Whether every value of `other` is in `self`.
    pub fn includes(&self, other: &PrefixSet) -> bool {
        let mut i = 0;
        other.items.iter().all(|q| {
            while self.items.get(i).is_some_and(|p| p.end() < q.bits) {
                i += 1;
            }
            self.items.get(i).is_some_and(|p| p.contains(q))
        })
    }
}

/// A set of values `0..size` as canonical inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeSet {
    /// Number of possible values (`0..size`).
    pub size: u32,
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    pub items: Vec<(u32, u32)>,
}

impl RangeSet {
    /// The set of the given ranges (clipped to the domain).
    pub fn from_ranges(size: u32, items: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let max = size.saturating_sub(1);
        let mut v: Vec<(u32, u32)> = items
            .into_iter()
            .filter(|&(lo, hi)| lo <= hi && lo <= max && size > 0)
            .map(|(lo, hi)| (lo, hi.min(max)))
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        RangeSet { size, items: out }
    }

    /// The values `v` of the domain for which `pred(v)` holds.
    pub fn from_predicate(size: u32, mut pred: impl FnMut(u32) -> bool) -> Self {
        let mut items = Vec::new();
        let mut start: Option<u32> = None;
        for v in 0..size {
            match (pred(v), start) {
                (true, None) => start = Some(v),
                (false, Some(s)) => {
                    items.push((s, v - 1));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            items.push((s, size.saturating_sub(1)));
        }
        RangeSet { size, items }
    }

    /// Whether no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether every value is in the set.
    pub fn is_full(&self) -> bool {
        self.items.as_slice() == [(0, self.size.saturating_sub(1))] && self.size > 0
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: u32) -> bool {
        self.items.iter().any(|&(lo, hi)| lo <= v && v <= hi)
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        RangeSet::from_ranges(
            self.size,
            self.items.iter().chain(other.items.iter()).copied(),
        )
    }

    /// `self ∩ other`.
    pub fn intersect(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while let (Some(&(a0, a1)), Some(&(b0, b1))) = (self.items.get(i), other.items.get(j)) {
            let lo = a0.max(b0);
            let hi = a1.min(b1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a1 < b1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet::from_ranges(self.size, out)
    }

    /// The values of the domain not in the set.
    pub fn complement(&self) -> RangeSet {
        let mut out = Vec::new();
        let mut next: u64 = 0;
        for &(lo, hi) in &self.items {
            if u64::from(lo) > next {
                out.push((next as u32, lo - 1));
            }
            next = u64::from(hi) + 1;
        }
        if next < u64::from(self.size) {
            out.push((next as u32, self.size - 1));
        }
        RangeSet {
            size: self.size,
            items: out,
        }
    }

    /// Whether every value of `other` is in `self`.
    pub fn includes(&self, other: &RangeSet) -> bool {
        other
            .items
            .iter()
            .all(|&(lo, hi)| self.items.iter().any(|&(a, b)| a <= lo && hi <= b))
    }
}

/// The constraint of a term on one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldSet {
    /// An LPM field.
    Prefixes(PrefixSet),
    /// An array field.
    Ranges(RangeSet),
}

impl FieldSet {
    /// Whether no value is accepted.
    pub fn is_empty(&self) -> bool {
        match self {
            FieldSet::Prefixes(p) => p.is_empty(),
            FieldSet::Ranges(r) => r.is_empty(),
        }
    }

    /// Whether every value is accepted.
    pub fn is_full(&self) -> bool {
        match self {
            FieldSet::Prefixes(p) => p.is_full(),
            FieldSet::Ranges(r) => r.is_full(),
        }
    }

    /// `self ∩ other` (sets of the same field).
    pub fn intersect(&self, other: &FieldSet) -> FieldSet {
        match (self, other) {
            (FieldSet::Prefixes(a), FieldSet::Prefixes(b)) => FieldSet::Prefixes(a.intersect(b)),
            (FieldSet::Ranges(a), FieldSet::Ranges(b)) => FieldSet::Ranges(a.intersect(b)),
            _ => self.clone(),
        }
    }

    /// `self ∪ other` (sets of the same field).
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        match (self, other) {
            (FieldSet::Prefixes(a), FieldSet::Prefixes(b)) => FieldSet::Prefixes(a.union(b)),
            (FieldSet::Ranges(a), FieldSet::Ranges(b)) => FieldSet::Ranges(a.union(b)),
            _ => self.clone(),
        }
    }

    /// The complement.
    pub fn complement(&self) -> FieldSet {
        match self {
            FieldSet::Prefixes(p) => FieldSet::Prefixes(p.complement()),
            FieldSet::Ranges(r) => FieldSet::Ranges(r.complement()),
        }
    }

    /// Whether every value of `other` is in `self`.
    pub fn includes(&self, other: &FieldSet) -> bool {
        match (self, other) {
            (FieldSet::Prefixes(a), FieldSet::Prefixes(b)) => a.includes(b),
            (FieldSet::Ranges(a), FieldSet::Ranges(b)) => a.includes(b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u32, len: u8) -> Prefix {
        Prefix::of_value(u128::from(a), 32, len)
    }

    #[test]
    fn prefix_complement_and_intersection() {
        let ten = PrefixSet::from_prefixes(32, [v4(0x0a00_0000, 8)]);
        let not_ten = ten.complement();
        assert_eq!(not_ten.items.len(), 8, "{not_ten:?}");
        assert!(!not_ten.matches(v4(0x0a01_0203, 32).bits));
        assert!(not_ten.matches(v4(0x0b01_0203, 32).bits));
        assert_eq!(not_ten.complement(), ten);
        assert!(ten.intersect(&not_ten).is_empty());
        assert!(ten.union(&not_ten).is_full());
        let sub = PrefixSet::from_prefixes(32, [v4(0x0a01_0000, 16)]);
        assert_eq!(ten.intersect(&sub), sub);
        assert!(ten.includes(&sub) && !sub.includes(&ten));
    }

    /// Set operations against plain membership, on random sets of 12-bit values.
    #[test]
    fn operations_agree_with_membership() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let random_set = |next: &mut dyn FnMut() -> u64| {
            let n = next() % 6;
            PrefixSet::from_prefixes(
                12,
                (0..n).map(|_| {
                    let v = u128::from(next() % 4096);
                    Prefix::of_value(v, 12, (next() % 13) as u8)
                }),
            )
        };
        for _ in 0..200 {
            let a = random_set(&mut next);
            let b = random_set(&mut next);
            let (u, i, c) = (a.union(&b), a.intersect(&b), a.complement());
            let mut b_in_a = true;
            for v in 0..4096u128 {
                let x = Prefix::of_value(v, 12, 12).bits;
                b_in_a &= !b.matches(x) || a.matches(x);
            }
            assert_eq!(a.includes(&b), b_in_a, "{a:?} includes {b:?}");
            for v in 0..4096u128 {
                let x = Prefix::of_value(v, 12, 12).bits;
                let (ina, inb) = (a.matches(x), b.matches(x));
                assert_eq!(u.matches(x), ina || inb);
                assert_eq!(i.matches(x), ina && inb);
                assert_eq!(c.matches(x), !ina, "{a:?} complement {c:?} at {v}");
            }
            assert_eq!(c.complement(), a, "canonical form");
            assert!(a.includes(&i));
            assert!(u.includes(&a));
        }
        let host = PrefixSet::from_prefixes(128, [Prefix::of_value(1, 128, 128)]);
        assert_eq!(host.complement().items.len(), 128);
    }

    #[test]
    fn siblings_merge() {
        let s = PrefixSet::from_prefixes(32, [v4(0x0a00_0000, 9), v4(0x0a80_0000, 9)]);
        assert_eq!(s.items, vec![v4(0x0a00_0000, 8)]);
    }

    #[test]
    fn ranges() {
        let a = RangeSet::from_ranges(65536, [(80, 80), (81, 90), (100, 200)]);
        assert_eq!(a.items, vec![(80, 90), (100, 200)]);
        let c = a.complement();
        assert_eq!(c.items, vec![(0, 79), (91, 99), (201, 65535)]);
        assert!(a.intersect(&c).is_empty());
        assert!(a.union(&c).is_full());
        let p = RangeSet::from_predicate(256, |v| v & 2 != 0);
        assert_eq!(p.items.len(), 64);
        assert!(p.contains(2) && !p.contains(4));
    }
}
