//! `topaddr`: the top-N source addresses (or destination addresses with `use_dst = true`) of
//! each interval, ranked by bytes (then packets, then address), IPv4 and IPv6, optionally
//! aggregated to prefixes (`mask` for IPv4, `mask6` for IPv6). Packets without IP are ignored.
//!
//! Args: `topn` (default 10, 1..=100000), `mask` (0..=32, default 32), `mask6` (0..=128, default
//! 128), `use_dst` (default false).

use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use como_module::{Cell, Interval, Module, ModuleError, Pkt, PrintParams};
use como_packet::Layers;
use serde::{Deserialize, Serialize};

use crate::counttable::CountTable;
use crate::Counts;

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How many addresses per interval.
    pub topn: usize,
    /// IPv4 prefix length to aggregate to.
    pub mask: u8,
    /// IPv6 prefix length to aggregate to.
    pub mask6: u8,
    /// Rank destination addresses instead of sources.
    pub use_dst: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            topn: 10,
            mask: 32,
            mask6: 128,
            use_dst: false,
        }
    }
}

/// The `topaddr` module.
#[derive(Debug)]
pub struct TopAddr {
    cfg: Config,
    /// IPv4 prefix mask (`mask` leading one bits).
    mask4: u32,
    /// IPv6 prefix mask (`mask6` leading one bits).
    mask6: u128,
    /// IPv4 and IPv6 addresses of the last exported interval: the capacities of the next
    /// interval's tables (no rehashing from empty at every interval).
    hint4: AtomicUsize,
    hint6: AtomicUsize,
    /// Emptied tables of exported intervals, reused by the next intervals (no fresh memory
    /// for the kernel to zero at every interval).
    spare: Mutex<Vec<Table>>,
}

/// Most emptied tables kept for reuse.
const MAX_SPARE: usize = 4;

/// One core's counters of one interval: IPv4 and IPv6 apart, so the (usually far larger)
/// IPv4 table has 4-byte keys and stays small enough for the core's cache.
#[derive(Debug, Default)]
pub struct Table {
    v4: CountTable<u32>,
    v6: CountTable<u128>,
}

/// Most addresses a fresh table is pre-sized for.
const MAX_HINT: usize = 1 << 16;

/// One interval's ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// Ranked addresses, first = most bytes.
    pub top: Vec<(IpAddr, Counts)>,
}

/// The first `n` of the entries offered by bytes, then packets (both descending), then key: a
/// total order, so the ranking does not depend on hash order or on the number of cores.
///
/// Holds `n` entries, not every entry offered: a heap whose root is the last one kept, which a
/// better entry replaces (most entries of a large table cost one comparison with the root, and
/// an interval's export allocates nothing in proportion to its table).
#[derive(Debug)]
pub struct TopN<K> {
    n: usize,
    heap: BinaryHeap<Ranked<K>>,
}

/// An entry ordered by its ranking: the greater, the further down.
#[derive(Debug, PartialEq, Eq)]
struct Ranked<K>(K, Counts);

impl<K: Ord> Ord for Ranked<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.1.bytes.cmp(&self.1.bytes))
            .then(other.1.pkts.cmp(&self.1.pkts))
            .then(self.0.cmp(&other.0))
    }
}

impl<K: Ord> PartialOrd for Ranked<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord> TopN<K> {
    /// Keeps the first `n`.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024)),
        }
    }

    /// Offers `key` with its counts.
    #[inline]
    pub fn offer(&mut self, key: K, counts: Counts) {
        let entry = Ranked(key, counts);
        if self.heap.len() < self.n {
            self.heap.push(entry);
        } else if let Some(mut last) = self.heap.peek_mut() {
            if entry < *last {
                *last = entry;
            }
        }
    }

    /// The entries kept, first first.
    pub fn into_sorted(self) -> Vec<(K, Counts)> {
        let sorted = self.heap.into_sorted_vec();
        sorted.into_iter().map(|Ranked(k, c)| (k, c)).collect()
    }
}

/// An address as a hash key: 128 bits plus the family (cheaper to hash than `IpAddr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(u128, bool);

impl From<IpAddr> for AddrKey {
    #[inline]
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(v) => Self(u128::from(u32::from(v)), false),
            IpAddr::V6(v) => Self(u128::from(v), true),
        }
    }
}

impl From<AddrKey> for IpAddr {
    fn from(k: AddrKey) -> Self {
        if k.1 {
            IpAddr::V6(k.0.into())
        } else {
            IpAddr::V4((k.0 as u32).into())
        }
    }
}

impl TopAddr {
    /// Keeps an emptied table for a next interval (up to [`MAX_SPARE`] tables, none holding
    /// room for more than 4 × [`MAX_HINT`] entries: an exceptional interval does not pin its
    /// memory).
    fn recycle(&self, table: Table) {
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < MAX_SPARE
                && table.v4.is_empty()
                && table.v6.is_empty()
                && table.v4.slots() + table.v6.slots() <= 8 * MAX_HINT
            {
                spare.push(table);
            }
        }
    }
}

impl Module for TopAddr {
    type Config = Config;
    type State = Table;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "topaddr";
    /// The address is all it reads: [`Layers::ip_addr_of`] finds it without the whole parse.
    const NEEDS_LAYERS: bool = false;

    fn new(cfg: Config) -> Result<Self, ModuleError> {
        let bad = |message: String| ModuleError::Invalid {
            kind: Self::KIND.into(),
            message,
        };
        if cfg.topn == 0 || cfg.topn > 100_000 {
            return Err(bad(format!("topn must be 1..=100000, not {}", cfg.topn)));
        }
        if cfg.mask > 32 || cfg.mask6 > 128 {
            return Err(bad("mask must be 0..=32 and mask6 0..=128".into()));
        }
        let mask4 = u32::MAX.checked_shl(32 - u32::from(cfg.mask)).unwrap_or(0);
        let mask6 = u128::MAX
            .checked_shl(128 - u32::from(cfg.mask6))
            .unwrap_or(0);
        Ok(Self {
            cfg,
            mask4,
            mask6,
            hint4: AtomicUsize::new(0),
            hint6: AtomicUsize::new(0),
            spare: Mutex::new(Vec::new()),
        })
    }

    fn new_state(&self, _: Interval) -> Self::State {
        if let Some(t) = self.spare.lock().ok().and_then(|mut s| s.pop()) {
            return t;
        }
        let n4 = self.hint4.load(Ordering::Relaxed).min(MAX_HINT);
        let n6 = self.hint6.load(Ordering::Relaxed).min(MAX_HINT);
        Table {
            v4: CountTable::with_capacity(n4),
            v6: CountTable::with_capacity(n6),
        }
    }

    #[inline(always)]
    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>) {
        match Layers::ip_addr_of(&pkt.packet, self.cfg.use_dst) {
            Some(IpAddr::V4(a)) => state.v4.add(u32::from(a) & self.mask4, pkt.wire_len()),
            Some(IpAddr::V6(a)) => state.v6.add(u128::from(a) & self.mask6, pkt.wire_len()),
            None => {}
        }
    }

    fn merge(&self, into: &mut Self::State, mut other: Self::State) {
        other.v4.take_all(|k, c| into.v4.merge(k, c));
        other.v6.take_all(|k, c| into.v6.merge(k, c));
        self.recycle(other);
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, mut state: Self::State, out: &mut Vec<Record>) {
        self.hint4.store(state.v4.len(), Ordering::Relaxed);
        self.hint6.store(state.v6.len(), Ordering::Relaxed);
        if state.v4.is_empty() && state.v6.is_empty() {
            self.recycle(state);
            return;
        }
        let mut top = TopN::new(self.cfg.topn);
        state.v4.take_all(|a, c| top.offer(IpAddr::V4(a.into()), c));
        state.v6.take_all(|a, c| top.offer(IpAddr::V6(a.into()), c));
        self.recycle(state);
        out.push(Record {
            ts: ivl.start_ns,
            top: top.into_sorted(),
        });
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "rank", "addr", "pkts", "bytes"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        self.rows_with(r, &PrintParams::new(), row);
    }

    fn print_params(&self) -> &'static [&'static str] {
        &["topn"]
    }

    /// `topn=N` prints only the first N of each stored ranking (a bad number prints all).
    fn rows_with(&self, r: &Record, params: &PrintParams, row: &mut dyn FnMut(&[Cell<'_>])) {
        let n = params
            .get("topn")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        for (i, (a, c)) in r.top.iter().take(n).enumerate() {
            row(&[
                Cell::Ts(r.ts),
                Cell::U64(i as u64 + 1),
                Cell::Ip(*a),
                Cell::U64(c.pkts),
                Cell::U64(c.bytes),
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `n` entries of a sort by the ranking's order, ties of bytes and of packets
    /// included, for `n` of none, one, some and more than offered.
    #[test]
    fn top_n_is_the_head_of_the_sorted_entries() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let entries: Vec<(u32, Counts)> = (0..5000)
            .map(|_| {
                let c = Counts {
                    pkts: rand(4),
                    bytes: rand(50),
                };
                (rand(100_000) as u32, c)
            })
            .collect();
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| (b.1.bytes, b.1.pkts, a.0).cmp(&(a.1.bytes, a.1.pkts, b.0)));
        for n in [0, 1, 2, 10, 4999, 5000, 6000] {
            let mut top = TopN::new(n);
            for &(k, c) in &entries {
                top.offer(k, c);
            }
            let want = &sorted[..n.min(sorted.len())];
            assert_eq!(top.into_sorted(), want, "n = {n}");
        }
    }

    /// The precomputed masks keep the same bits as `como_module::mask_addr`, every length.
    #[test]
    fn masks_match_mask_addr() {
        for m in 0..=32u8 {
            let t = TopAddr::new(Config {
                mask: m,
                ..Config::default()
            })
            .expect("valid");
            let all = IpAddr::V4(u32::MAX.into());
            assert_eq!(
                IpAddr::V4(t.mask4.into()),
                como_module::mask_addr(all, m, 128),
                "{m}"
            );
        }
        for m in 0..=128u8 {
            let t = TopAddr::new(Config {
                mask6: m,
                ..Config::default()
            })
            .expect("valid");
            let all = IpAddr::V6(u128::MAX.into());
            assert_eq!(
                IpAddr::V6(t.mask6.into()),
                como_module::mask_addr(all, 32, m),
                "{m}"
            );
        }
    }
}
