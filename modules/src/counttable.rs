//! [`CountTable`]: key → [`Counts`] for per-packet updates of tables larger than the CPU's
//! caches (`topaddr`'s addresses of one interval).
//!
//! A general hash map costs one or two cache misses per update once it outgrows the L2 cache,
//! and the next packet waits for them. This table hides them: an update computes where its key
//! lives, asks the CPU for that line ([`prefetch`]) and is applied [`AHEAD`] updates later,
//! when the line has arrived. Open addressing with linear probing, one slot (key and counts)
//! per key, load at most one half, so an update is usually one line. Pending updates are
//! applied before the table is read ([`CountTable::take_all`]), so readers see exact sums.
//!
//! A slot counts packets in 32 bits, so that an IPv4 slot (key, packets, bytes) is 16 bytes:
//! four to a cache line, and a table of 56 000 addresses (one second of the benchmark's trace)
//! 2 MiB instead of 3. The rare key that passes 2^32 packets in one table moves its counts to
//! a spill list and goes on from one packet; reading the table adds them back.

use como_packet::prefetch;

use crate::Counts;

/// Updates in flight between the prefetch of a key's slot and its update (a power of two).
pub(crate) const AHEAD: usize = 16;
const _: () = assert!(AHEAD.is_power_of_two());

/// Smallest number of slots of a table that holds anything.
const MIN_SLOTS: usize = 32;

/// A key of a [`CountTable`].
pub(crate) trait CountKey: Copy + Ord + Default {
    /// A 64-bit hash whose high bits are well mixed (the table indexes with them).
    fn hash64(self) -> u64;
}

impl CountKey for u32 {
    #[inline(always)]
    fn hash64(self) -> u64 {
        u64::from(self).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl CountKey for u128 {
    #[inline(always)]
    fn hash64(self) -> u64 {
        let folded = (self as u64) ^ ((self >> 64) as u64).rotate_left(29);
        (folded ^ (folded >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// One slot: empty when `pkts == 0` (a key in the table has counted a packet).
#[derive(Debug, Clone, Copy, Default)]
struct Slot<K> {
    key: K,
    /// Packets since the key's last spill (see the module docs).
    pkts: u32,
    bytes: u64,
}

impl<K: CountKey> Slot<K> {
    /// The slot's counts.
    fn counts(&self) -> Counts {
        Counts {
            pkts: self.pkts.into(),
            bytes: self.bytes,
        }
    }

    /// Adds `counts` (to an empty slot: its first), spilling the sum when its packets pass 32
    /// bits.
    #[inline(always)]
    fn add(&mut self, counts: Counts, spill: &mut Vec<(K, Counts)>) {
        match u32::try_from(u64::from(self.pkts) + counts.pkts) {
            Ok(pkts) => {
                self.pkts = pkts;
                self.bytes += counts.bytes;
            }
            Err(_) => self.spill(counts, spill),
        }
    }

    /// Moves the slot's counts plus `counts` to `spill` but for one packet, which stays (a
    /// slot with a key is never empty).
    #[cold]
    #[inline(never)]
    fn spill(&mut self, counts: Counts, spill: &mut Vec<(K, Counts)>) {
        let mut sum = self.counts();
        sum.merge(counts);
        sum.pkts -= 1;
        spill.push((self.key, sum));
        self.pkts = 1;
        self.bytes = 0;
    }
}

/// Key → counts, with updates applied [`AHEAD`] calls late (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct CountTable<K: CountKey> {
    /// A power of two long (or empty).
    slots: Vec<Slot<K>>,
    /// `64 - log2(slots.len())`: the index is the hash's top bits.
    shift: u32,
    /// Keys in `slots`.
    len: usize,
    /// Updates not applied yet: the `pending` latest of the ring, oldest at `next`.
    ring: [(K, u64); AHEAD],
    pending: usize,
    next: usize,
    /// Counts moved out of slots whose packets passed 32 bits (almost always empty).
    spill: Vec<(K, Counts)>,
}

impl<K: CountKey> CountTable<K> {
    /// A table sized for `n` keys without growing.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut t = Self::default();
        if n > 0 {
            t.resize(slots_for(n));
        }
        t
    }

    /// Keys counted so far (updates in flight included, counted as new keys).
    pub(crate) fn len(&self) -> usize {
        self.len + self.pending
    }

    /// Whether nothing is counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots allocated.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Counts one packet of `bytes` bytes for `key`.
    #[inline(always)]
    pub(crate) fn add(&mut self, key: K, bytes: u64) {
        if (self.len + AHEAD + 1) * 2 > self.slots.len() {
            self.resize(slots_for(self.len + AHEAD + 1).max(self.slots.len() * 2));
        }
        prefetch(self.slots.as_ptr().wrapping_add(self.index(key.hash64())));
        // Masked, not taken modulo: the compiler then knows the index is in the ring.
        let at = self.next & (AHEAD - 1);
        self.next = (at + 1) & (AHEAD - 1);
        if let Some(slot) = self.ring.get_mut(at) {
            let (old, old_bytes) = std::mem::replace(slot, (key, bytes));
            if self.pending == AHEAD {
                self.insert(
                    old,
                    Counts {
                        pkts: 1,
                        bytes: old_bytes,
                    },
                );
            } else {
                self.pending += 1;
            }
        }
    }

    /// Adds `counts` to `key` now (merging another table).
    pub(crate) fn merge(&mut self, key: K, counts: Counts) {
        if counts.pkts == 0 {
            return;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.resize(slots_for(self.len + 1).max(self.slots.len() * 2));
        }
        self.insert(key, counts);
    }

    /// Applies the updates in flight, hands every key and its counts to `f` and empties the
    /// table (its slots stay allocated for reuse).
    pub(crate) fn take_all(&mut self, mut f: impl FnMut(K, Counts)) {
        self.settle();
        let spill = self.take_spill();
        for slot in &mut self.slots {
            if slot.pkts != 0 {
                let mut counts = slot.counts();
                if !spill.is_empty() {
                    if let Ok(i) = spill.binary_search_by_key(&slot.key, |e| e.0) {
                        if let Some((_, more)) = spill.get(i) {
                            counts.merge(*more);
                        }
                    }
                }
                f(slot.key, counts);
                *slot = Slot::default();
            }
        }
        self.len = 0;
    }

    /// The spilled counts, one entry per key, sorted by key.
    fn take_spill(&mut self) -> Vec<(K, Counts)> {
        let mut spill = std::mem::take(&mut self.spill);
        spill.sort_unstable_by_key(|e| e.0);
        spill.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1.merge(later.1);
            }
            same
        });
        spill
    }

    /// Applies the updates in flight.
    fn settle(&mut self) {
        let first = (self.next + AHEAD - self.pending) % AHEAD;
        for i in 0..self.pending {
            if let Some(&(key, bytes)) = self.ring.get((first + i) % AHEAD) {
                if (self.len + 1) * 2 > self.slots.len() {
                    self.resize(slots_for(self.len + 1).max(self.slots.len() * 2));
                }
                self.insert(key, Counts { pkts: 1, bytes });
            }
        }
        self.pending = 0;
        self.next = 0;
    }

    #[inline(always)]
    fn index(&self, hash: u64) -> usize {
        // Callers grow an empty table before they index it (`shift` is then at most 59), so
        // the mask changes nothing but lets the shift compile to one instruction.
        (hash >> (self.shift & 63)) as usize
    }

    /// Adds `counts` to `key`'s slot, taking an empty one for a new key. The caller keeps the
    /// load at most one half, so an empty slot exists.
    #[inline(always)]
    fn insert(&mut self, key: K, counts: Counts) {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = self.index(key.hash64());
        while let Some(slot) = self.slots.get_mut(i) {
            if slot.pkts == 0 {
                slot.key = key;
                slot.add(counts, &mut self.spill);
                self.len += 1;
                return;
            }
            if slot.key == key {
                slot.add(counts, &mut self.spill);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Moves the keys into a table of `n` slots (a power of two).
    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); n]);
        self.shift = 64 - n.trailing_zeros();
        self.len = 0;
        for slot in old {
            if slot.pkts != 0 {
                self.insert(slot.key, slot.counts());
            }
        }
    }
}

/// Slots for `n` keys at a load of at most one half.
fn slots_for(n: usize) -> usize {
    n.saturating_add(AHEAD)
        .saturating_mul(2)
        .next_power_of_two()
        .max(MIN_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Sums of a table under many adds, merges and reuses equal a `HashMap`'s.
    #[test]
    fn sums_equal_a_hash_map() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = CountTable::<u32>::with_capacity(0);
        for round in 0..4u64 {
            let mut want: HashMap<u32, Counts> = HashMap::new();
            // Few keys, then many: the table grows with updates in flight.
            let keys = [3u64, 50, 5000, 70_000][round as usize];
            for _ in 0..200_000 {
                let k = (rand() % keys) as u32;
                let b = rand() % 1500;
                t.add(k, b);
                want.entry(k).or_default().add(b);
            }
            let mut other = CountTable::<u32>::with_capacity(10);
            for k in 0..100u32 {
                other.add(k, 7);
                want.entry(k).or_default().add(7);
            }
            other.take_all(|k, c| t.merge(k, c));
            assert!(other.is_empty());
            // Updates in flight count as keys until applied.
            assert!(
                (want.len()..=want.len() + AHEAD).contains(&t.len()),
                "round {round}"
            );
            let mut got = HashMap::new();
            t.take_all(|k, c| {
                assert!(got.insert(k, c).is_none(), "key {k} twice");
            });
            assert_eq!(got, want, "round {round}");
            assert!(t.is_empty());
        }
    }

    /// A key past 2^32 packets (in one merge, or by adds onto a full slot, twice) keeps
    /// exact sums, through a resize and beside keys that never spill.
    #[test]
    fn counts_past_32_bits_of_packets_are_exact() {
        let big = u64::from(u32::MAX);
        let mut t = CountTable::<u32>::with_capacity(0);
        let mut want: HashMap<u32, Counts> = HashMap::new();
        let mut count = |t: &mut CountTable<u32>, k: u32, c: Counts| {
            t.merge(k, c);
            want.entry(k).or_default().merge(c);
        };
        count(
            &mut t,
            7,
            Counts {
                pkts: big + 5,
                bytes: 1 << 40,
            },
        );
        count(
            &mut t,
            9,
            Counts {
                pkts: big - 1,
                bytes: 3,
            },
        );
        count(&mut t, 9, Counts { pkts: 1, bytes: 4 });
        for k in 0..1000 {
            // Grows the table past its first size: the slots of 7 and 9 move.
            count(&mut t, k, Counts { pkts: 2, bytes: 10 });
        }
        count(
            &mut t,
            9,
            Counts {
                pkts: big,
                bytes: 5,
            },
        );
        for _ in 0..3 {
            t.add(9, 100);
            t.add(7, 1);
        }
        want.entry(9).or_default().merge(Counts {
            pkts: 3,
            bytes: 300,
        });
        want.entry(7)
            .or_default()
            .merge(Counts { pkts: 3, bytes: 3 });
        let mut got = HashMap::new();
        t.take_all(|k, c| {
            assert!(got.insert(k, c).is_none(), "key {k} twice");
        });
        assert_eq!(got, want);
        assert_eq!(got[&9].pkts, 2 * big + 5);
        // The spill is read once: the table is empty after.
        let mut none = 0;
        t.take_all(|_, _| none += 1);
        assert_eq!(none, 0);
    }

    /// Fewer updates than the look-ahead, and the key 0 (an all-zero address).
    #[test]
    fn short_runs_and_zero_keys_are_counted() {
        let mut t = CountTable::<u128>::with_capacity(0);
        t.add(0, 100);
        t.add(0, 1);
        t.add(u128::MAX, 5);
        let mut got = Vec::new();
        t.take_all(|k, c| got.push((k, c)));
        got.sort_by_key(|e| e.0);
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Counts {
                        pkts: 2,
                        bytes: 101
                    }
                ),
                (u128::MAX, Counts { pkts: 1, bytes: 5 })
            ]
        );
        let mut none = 0;
        t.take_all(|_, _| none += 1);
        assert_eq!(none, 0);
    }
}
