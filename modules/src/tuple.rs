//! `tuple`: 5-tuple flows per interval (CoMo's unidirectional flows): protocol, source and
//! destination address and port, first and last packet timestamp, packets, bytes (wire length)
//! and the union of the TCP flags seen. Packets without IP are ignored; packets of protocols
//! without ports (ICMP ...) use ports 0.
//!
//! Records are sorted by first timestamp, then by 5-tuple, so the output does not depend on
//! hash order or on the number of worker cores.
//!
//! # Where CoMo's and tshark's definitions differ, this module follows tshark
//! The tests compare it with tshark's `-z conv,tcp|udp` (summing this module's two directions,
//! tshark's conversations being bidirectional):
//! - **IP-in-IP tunnels** (IPv4 or IPv6 inside IPv4 or IPv6, protocols 4 and 41, up to 4 levels):
//!   the flow is the innermost packet's 5-tuple (tshark's conversation), its bytes the frame's
//!   wire length. Tunnels inside UDP or GRE (Teredo, VXLAN ...) stay keyed by the outer header:
//!   tshark counts such a frame in both the outer UDP conversation and the inner one, which a
//!   one-flow-per-packet table cannot do; this module keeps the outer one.
//! - **IP fragments**: tshark reassembles them and counts the datagram once, in the frame that
//!   completes it (its timestamp and wire length), under the 5-tuple of the first fragment;
//!   fragments of a datagram that never completes are not counted. This module does the same:
//!   it tracks the byte ranges of each datagram (source, destination, protocol, id) within the
//!   interval; a datagram still incomplete when its interval ends is dropped. Like tshark, only
//!   fragments captured whole take part in reassembly; a first fragment cut by the snapshot
//!   length counts as a packet of its own flow, a later one cut is not counted. (CoMo counted each
//!   fragment, non-first ones under ports 0.) The runtime's flow hash ignores ports for
//!   fragments, so all fragments of a datagram reach the same worker.
//! - **Cut or invalid transport headers** (captured bytes end inside the TCP header, options
//!   included, or the header is malformed): tshark's dissector stops before its conversation
//!   tap, so such a packet is in no conversation; this module skips it too.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use como_module::{Cell, Interval, LinkType, Module, ModuleError, Packet, Pkt};
use como_packet::{Layers, Truncation};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::NoArgs;

/// The `tuple` module.
#[derive(Debug, Default)]
pub struct Tuple {
    /// IPv4 and IPv6 flows of the last exported interval: the capacities of the next
    /// interval's tables, so a busy link does not grow (rehash) its tables from empty at every
    /// interval.
    hint4: AtomicUsize,
    hint6: AtomicUsize,
    /// Emptied tables of exported intervals, reused by the next intervals: a fresh table of a
    /// busy link is megabytes of memory the kernel would zero again at every interval.
    spare: Mutex<Vec<Flows>>,
}

/// Most emptied tables kept for reuse.
const MAX_SPARE: usize = 4;

/// Most flows a fresh table is pre-sized for, per family (4 M IPv4 flows: some 460 MB of
/// buckets, asked for only after an interval that held as many).
const MAX_HINT: usize = 1 << 22;

/// Flows an emptied table may hold room for and still be kept, whatever the last interval's
/// count.
const MIN_SPARE_ROOM: usize = 1 << 16;

/// A unidirectional 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Source port (0 when none).
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port (0 when none).
    pub dport: u16,
}

/// Protocol and ports packed in one word: `proto << 32 | sport << 16 | dport`.
#[inline]
fn pack_ports(sport: u16, dport: u16, proto: u8) -> u64 {
    u64::from(proto) << 32 | u64::from(sport) << 16 | u64::from(dport)
}

/// The (sport, dport, proto) of [`pack_ports`].
#[inline]
fn unpack_ports(p: u64) -> (u16, u16, u8) {
    ((p >> 16) as u16, p as u16, (p >> 32) as u8)
}

/// The hash key of an IPv4 flow on the capture side: 16 bytes, so a table entry is 56 bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
struct Key4 {
    /// `src << 32 | dst`.
    addrs: u64,
    /// [`pack_ports`].
    ports: u64,
}

/// The hash key of an IPv6 flow on the capture side (addresses as pairs of words: 8-byte
/// alignment, 40 bytes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
struct Key6 {
    src: (u64, u64),
    dst: (u64, u64),
    /// [`pack_ports`].
    ports: u64,
}

/// An IPv6 address as two words, high first.
#[inline]
fn split6(a: u128) -> (u64, u64) {
    ((a >> 64) as u64, a as u64)
}

/// The address of [`split6`].
#[inline]
fn join6((hi, lo): (u64, u64)) -> u128 {
    u128::from(hi) << 64 | u128::from(lo)
}

impl Key4 {
    fn key(self) -> Key {
        let (sport, dport, proto) = unpack_ports(self.ports);
        Key {
            proto,
            src: IpAddr::V4(((self.addrs >> 32) as u32).into()),
            sport,
            dst: IpAddr::V4((self.addrs as u32).into()),
            dport,
        }
    }
}

impl Key6 {
    fn key(self) -> Key {
        let (sport, dport, proto) = unpack_ports(self.ports);
        Key {
            proto,
            src: IpAddr::V6(join6(self.src).into()),
            sport,
            dst: IpAddr::V6(join6(self.dst).into()),
            dport,
        }
    }
}

/// What a flow did in one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// First packet's timestamp (ns).
    pub first: u64,
    /// Last packet's timestamp (ns).
    pub last: u64,
    /// Packets.
    pub pkts: u64,
    /// Bytes on the wire.
    pub bytes: u64,
    /// Union of the TCP flags (0 for other protocols).
    pub tcp_flags: u8,
}

/// A [`Flow`] as the capture tables hold it: 32 bytes, the TCP flags in the top byte of the
/// packet count (2^56 packets of one flow in one interval would take years at 100 Mpkt/s).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counters {
    first: u64,
    last: u64,
    /// `tcp_flags << 56 | pkts`.
    pkts_flags: u64,
    bytes: u64,
}

/// Where the packet count of [`Counters::pkts_flags`] ends.
const FLAGS_SHIFT: u32 = 56;

impl Counters {
    #[inline]
    fn new(ts: u64) -> Self {
        Self {
            first: ts,
            last: ts,
            pkts_flags: 0,
            bytes: 0,
        }
    }

    #[inline]
    fn add(&mut self, ts: u64, bytes: u64, flags: u8) {
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
        self.pkts_flags = (self.pkts_flags + 1) | u64::from(flags) << FLAGS_SHIFT;
        self.bytes += bytes;
    }

    #[inline]
    fn merge(&mut self, o: &Self) {
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        let flags = (self.pkts_flags | o.pkts_flags) & !((1 << FLAGS_SHIFT) - 1);
        let pkts = (self.pkts_flags + o.pkts_flags) & ((1 << FLAGS_SHIFT) - 1);
        self.pkts_flags = flags | pkts;
        self.bytes += o.bytes;
    }

    fn flow(self) -> Flow {
        Flow {
            first: self.first,
            last: self.last,
            pkts: self.pkts_flags & ((1 << FLAGS_SHIFT) - 1),
            bytes: self.bytes,
            tcp_flags: (self.pkts_flags >> FLAGS_SHIFT) as u8,
        }
    }
}

/// One flow of one interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// The 5-tuple.
    pub key: Key,
    /// Its counters.
    pub flow: Flow,
}

/// A capture-side flow key: hashed, and ordered for export by [`FlowKey::order`].
trait FlowKey: Copy + Eq + Hash {
    /// The 5-tuple order within one family and one first timestamp: proto, src, sport, dst,
    /// dport (the order of [`Key`] for addresses of one family).
    type Order: Ord;
    fn order(&self) -> Self::Order;
}

impl FlowKey for Key4 {
    type Order = u128;

    #[inline]
    fn order(&self) -> u128 {
        let (sport, dport, proto) = unpack_ports(self.ports);
        u128::from(proto) << 104
            | u128::from(self.addrs >> 32) << 72
            | u128::from(sport) << 56
            | u128::from(self.addrs & 0xffff_ffff) << 24
            | u128::from(dport) << 8
    }
}

impl FlowKey for Key6 {
    type Order = (u8, (u64, u64), u16, (u64, u64), u16);

    #[inline]
    fn order(&self) -> Self::Order {
        let (sport, dport, proto) = unpack_ports(self.ports);
        (proto, self.src, sport, self.dst, dport)
    }
}

/// A flow's counters and its rank of appearance in its table (0 for the first flow).
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: usize,
    counters: Counters,
}

/// The flows of one address family, each with its rank of appearance: at export, the flows
/// are laid out in that order (so, on one core with timestamps rising, already in export
/// order but for ties) instead of sorted.
#[derive(Debug)]
struct Family<K> {
    table: FxHashMap<K, Slot>,
}

impl<K> Default for Family<K> {
    fn default() -> Self {
        Self {
            table: FxHashMap::default(),
        }
    }
}

impl<K: FlowKey + Default> Family<K> {
    fn with_capacity(n: usize) -> Self {
        Self {
            table: FxHashMap::with_capacity_and_hasher(n, Default::default()),
        }
    }

    /// The counters of `key`, new ones (`fresh`) if the flow is new.
    #[inline]
    fn get(&mut self, key: K, fresh: Counters) -> &mut Counters {
        let seq = self.table.len();
        &mut self
            .table
            .entry(key)
            .or_insert(Slot {
                seq,
                counters: fresh,
            })
            .counters
    }

    /// Adds the flows of `other` (left empty).
    fn absorb(&mut self, other: &mut Self) {
        // Flows of several cores are not in time order anyway: the export sorts them whole.
        for (k, o) in other.table.drain() {
            let zero = Counters {
                pkts_flags: 0,
                bytes: 0,
                ..o.counters
            };
            self.get(k, zero).merge(&o.counters);
        }
    }

    /// Empties the table into `out`, sorted by first timestamp, then key: laid out in order of
    /// appearance, then only runs of equal first timestamps sorted when that is time order
    /// (one core, timestamps rising).
    fn drain_sorted(&mut self, out: &mut Vec<(K, Counters)>) {
        out.clear();
        out.resize(self.table.len(), Default::default());
        for (k, s) in self.table.drain() {
            if let Some(x) = out.get_mut(s.seq) {
                *x = (k, s.counters);
            }
        }
        if out.is_sorted_by_key(|(_, c)| c.first) {
            for run in out.chunk_by_mut(|a, b| a.1.first == b.1.first) {
                if run.len() > 1 {
                    run.sort_unstable_by_key(|(k, _)| k.order());
                }
            }
        } else {
            out.sort_unstable_by_key(|(k, c)| (c.first, k.order()));
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Entries held room for.
    fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

/// The export side's buffers of flows in export order, kept across intervals.
#[derive(Debug, Default)]
pub struct Sorting {
    v4: Vec<(Key4, Counters)>,
    v6: Vec<(Key6, Counters)>,
}

/// One core's flows of one interval: IPv4 and IPv6 apart, so the (usually larger) IPv4 table
/// has 16-byte keys.
#[derive(Debug, Default)]
pub struct Flows {
    v4: Family<Key4>,
    v6: Family<Key6>,
}

impl Flows {
    /// Accounts one packet of flow `key` (both addresses of the same family, as in an IP
    /// header).
    #[inline]
    fn account(&mut self, key: Key, ts: u64, bytes: u64, flags: u8) {
        let ports = pack_ports(key.sport, key.dport, key.proto);
        let c = match (key.src, key.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let addrs = u64::from(u32::from(s)) << 32 | u64::from(u32::from(d));
                self.v4.get(Key4 { addrs, ports }, Counters::new(ts))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => self.v6.get(
                Key6 {
                    src: split6(s.into()),
                    dst: split6(d.into()),
                    ports,
                },
                Counters::new(ts),
            ),
            _ => return,
        };
        c.add(ts, bytes, flags);
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// A datagram being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

/// What is known of a fragmented datagram.
#[derive(Debug, Default)]
struct Frag {
    /// Ports and TCP flags, from the fragment at offset 0.
    first: Option<(u16, u16, u8)>,
    /// Byte ranges of the fragment payloads seen.
    ranges: Vec<(u32, u32)>,
    /// Datagram payload length, from the last fragment.
    total: Option<u32>,
}

impl Frag {
    /// Whether `ranges` cover `0..total` and the first fragment was seen.
    fn complete(&mut self) -> bool {
        let (Some(total), Some(_)) = (self.total, self.first) else {
            return false;
        };
        self.ranges.sort_unstable();
        let mut reach = 0;
        for &(a, b) in &self.ranges {
            if a > reach {
                return false;
            }
            reach = reach.max(b);
        }
        reach >= total
    }
}

/// One core's flows and datagrams under reassembly for one interval.
#[derive(Debug, Default)]
pub struct State {
    flows: Flows,
    frags: FxHashMap<FragKey, Frag>,
}

/// The innermost IP packet of IP-in-IP tunnels (at most 4 levels), with its layers; None when
/// the packet is not such a tunnel (its own layers are the ones to read).
fn innermost<'a>(pkt: &Pkt<'a>) -> Option<(Layers, &'a [u8])> {
    let mut found = None;
    let mut layers = &pkt.parsed.layers;
    let mut data = pkt.parsed.packet.data;
    for _ in 0..4 {
        let (Some(4 | 41), Some(l4), None) = (layers.l4_proto, layers.l4, layers.frag) else {
            break;
        };
        let Some(inner) = data.get(usize::from(l4)..) else {
            break;
        };
        let p = Packet {
            ts_ns: 0,
            wire_len: inner.len() as u32,
            data: inner,
            link: LinkType::Raw,
            interface: 0,
        };
        let l = Layers::parse(&p);
        if l.ip_version().is_none() {
            break;
        }
        data = inner;
        layers = &found.insert((l, inner)).0;
    }
    found
}

/// The payload byte range `(start, end)` of a fragment, from its IP header's length fields.
fn frag_range(l: &Layers, d: &[u8], offset: u16) -> Option<(u32, u32)> {
    let l3 = usize::from(l.l3?);
    let be16 = |o: usize| Some(u16::from_be_bytes(*d.get(o..)?.first_chunk::<2>()?));
    let len = if l.ip_version()? == 4 {
        let ihl = u16::from(d.get(l3)? & 0x0f) * 4;
        be16(l3 + 2)?.checked_sub(ihl)?
    } else {
        // Walk the extension headers to the fragment header; data starts 8 bytes after it.
        let mut nh = *d.get(l3 + 6)?;
        let mut q = l3 + 40;
        loop {
            match nh {
                44 => break,
                0 | 43 | 60 => {
                    nh = *d.get(q)?;
                    q += (usize::from(*d.get(q + 1)?) + 1) * 8;
                }
                51 => {
                    nh = *d.get(q)?;
                    q += (usize::from(*d.get(q + 1)?) + 2) * 4;
                }
                _ => return None,
            }
        }
        let end = l3 + 40 + usize::from(be16(l3 + 4)?);
        u16::try_from(end.checked_sub(q + 8)?).ok()?
    };
    Some((u32::from(offset), u32::from(offset) + u32::from(len)))
}

/// Whether the whole IP datagram (as its length field says) was captured.
fn datagram_captured(l: &Layers, d: &[u8]) -> bool {
    let Some(l3) = l.l3.map(usize::from) else {
        return false;
    };
    let be16 = |o: usize| {
        d.get(o..)
            .and_then(|s| s.first_chunk::<2>())
            .map(|b| usize::from(u16::from_be_bytes(*b)))
    };
    let end = match l.ip_version() {
        Some(4) => be16(l3 + 2).map(|n| l3 + n),
        Some(6) => be16(l3 + 4).map(|n| l3 + 40 + n),
        _ => None,
    };
    end.is_some_and(|e| e <= d.len())
}

impl Tuple {
    /// Keeps emptied tables for a next interval (up to [`MAX_SPARE`] of them, none holding
    /// room for more than 4 times the flows of the last exported interval or
    /// [`MIN_SPARE_ROOM`]: an exceptional interval does not pin its memory).
    fn recycle(&self, flows: Flows) {
        let last = self.hint4.load(Ordering::Relaxed) + self.hint6.load(Ordering::Relaxed);
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < MAX_SPARE
                && flows.is_empty()
                && flows.v4.capacity() + flows.v6.capacity()
                    <= last.saturating_mul(4).max(MIN_SPARE_ROOM)
            {
                spare.push(flows);
            }
        }
    }
}

impl Module for Tuple {
    type Config = NoArgs;
    type State = State;
    type Export = Sorting;
    type Record = Record;
    const KIND: &'static str = "tuple";

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self::default())
    }

    fn new_state(&self, _: Interval) -> State {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        let flows = spare.unwrap_or_else(|| {
            let n4 = self.hint4.load(Ordering::Relaxed).min(MAX_HINT);
            let n6 = self.hint6.load(Ordering::Relaxed).min(MAX_HINT);
            Flows {
                v4: Family::with_capacity(n4),
                v6: Family::with_capacity(n6),
            }
        });
        State {
            flows,
            frags: FxHashMap::default(),
        }
    }

    fn update(&self, state: &mut State, pkt: &Pkt<'_>) {
        let inner = innermost(pkt);
        let (l, data) = match &inner {
            Some((l, d)) => (l, *d),
            None => (&pkt.parsed.layers, pkt.parsed.packet.data),
        };
        let (Some(src), Some(dst), Some(proto)) = (l.src_ip(data), l.dst_ip(data), l.l4_proto)
        else {
            return;
        };
        let ts = pkt.ts_ns();
        let ports = |l: &Layers| (l.src_port(data).unwrap_or(0), l.dst_port(data).unwrap_or(0));
        let key = |(sport, dport): (u16, u16)| Key {
            proto,
            src,
            sport,
            dst,
            dport,
        };
        let Some(frag) = l.frag else {
            if l.truncated == Some(Truncation::Transport)
                || l.malformed == Some(Truncation::Transport)
            {
                // tshark's TCP/UDP dissector stops on such a header before its conversation
                // tap: the packet is in no conversation.
                return;
            }
            let flags = l.tcp_flags(data).unwrap_or(0);
            state
                .flows
                .account(key(ports(l)), ts, pkt.wire_len(), flags);
            return;
        };
        let Some((start, end)) = frag_range(l, data, frag.offset) else {
            return;
        };
        if !datagram_captured(l, data) {
            // tshark reassembles only fragments whose bytes were all captured; otherwise a
            // first fragment is dissected (and counted) on its own, the others not at all.
            if frag.offset == 0 {
                let flags = l.tcp_flags(data).unwrap_or(0);
                state
                    .flows
                    .account(key(ports(l)), ts, pkt.wire_len(), flags);
            }
            return;
        }
        let fkey = FragKey {
            src,
            dst,
            id: frag.id,
            proto,
        };
        let entry = state.frags.entry(fkey).or_default();
        entry.ranges.push((start, end));
        if frag.offset == 0 {
            let (sport, dport) = ports(l);
            entry.first = Some((sport, dport, l.tcp_flags(data).unwrap_or(0)));
        }
        if !frag.more {
            entry.total = Some(end);
        }
        if entry.complete() {
            if let Some((sport, dport, flags)) = entry.first {
                state
                    .flows
                    .account(key((sport, dport)), ts, pkt.wire_len(), flags);
            }
            state.frags.remove(&fkey);
        }
    }

    fn merge(&self, into: &mut State, other: State) {
        // Datagrams still incomplete are dropped at export: only flows merge.
        let mut flows = other.flows;
        into.flows.v4.absorb(&mut flows.v4);
        into.flows.v6.absorb(&mut flows.v6);
        self.recycle(flows);
    }

    fn new_export(&self) -> Sorting {
        Sorting::default()
    }

    fn export(&self, sorting: &mut Sorting, ivl: Interval, state: State, out: &mut Vec<Record>) {
        let mut flows = state.flows;
        self.hint4.store(flows.v4.len(), Ordering::Relaxed);
        self.hint6.store(flows.v6.len(), Ordering::Relaxed);
        // Each family sorted on integers, then merged: (first, proto, family, src, sport,
        // dst, dport) orders flows exactly as (first, Key) does (`IpAddr` orders IPv4 before
        // IPv6, then numerically; both addresses of a flow have the same family).
        flows.v4.drain_sorted(&mut sorting.v4);
        flows.v6.drain_sorted(&mut sorting.v6);
        self.recycle(flows);
        out.reserve(sorting.v4.len() + sorting.v6.len());
        let record = |key: Key, c: Counters| Record {
            ts: ivl.start_ns,
            key,
            flow: c.flow(),
        };
        let mut v6 = sorting.v6.drain(..).peekable();
        for (k, c) in sorting.v4.drain(..) {
            // IPv6 flows that come first: earlier, or as early and of a smaller protocol.
            let here = (c.first, k.ports >> 32);
            while let Some((k6, c6)) = v6.next_if(|(k6, c6)| (c6.first, k6.ports >> 32) < here) {
                out.push(record(k6.key(), c6));
            }
            out.push(record(k.key(), c));
        }
        out.extend(v6.map(|(k, c)| record(k.key(), c)));
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &[
            "ts",
            "proto",
            "src",
            "sport",
            "dst",
            "dport",
            "first",
            "last",
            "pkts",
            "bytes",
            "tcp_flags",
        ]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        let k = &r.key;
        let f = &r.flow;
        row(&[
            Cell::Ts(r.ts),
            Cell::U64(u64::from(k.proto)),
            Cell::Ip(k.src),
            Cell::U64(u64::from(k.sport)),
            Cell::Ip(k.dst),
            Cell::U64(u64::from(k.dport)),
            Cell::Ts(f.first),
            Cell::Ts(f.last),
            Cell::U64(f.pkts),
            Cell::U64(f.bytes),
            Cell::U64(u64::from(f.tcp_flags)),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flow keys of both families in no particular order (IPv4 and IPv6 mixed, addresses
    /// neither ascending nor descending), each twice with different protocols and ports.
    fn keys() -> Vec<Key> {
        let addrs: [IpAddr; 5] = [
            "10.0.0.1".parse().expect("ip"),
            "9.255.255.255".parse().expect("ip"),
            "::1".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
            "255.0.0.0".parse().expect("ip"),
        ];
        let mut out = Vec::new();
        for &a in &addrs {
            for &b in &addrs {
                if a.is_ipv4() != b.is_ipv4() {
                    continue;
                }
                for proto in [17u8, 6] {
                    for port in [53u16, 443, 80] {
                        out.push(Key {
                            proto,
                            src: a,
                            sport: port,
                            dst: b,
                            dport: 1000 - port,
                        });
                    }
                }
            }
        }
        out
    }

    fn export(t: &Tuple, state: State) -> Vec<Record> {
        let mut out = Vec::new();
        t.export(
            &mut t.new_export(),
            Interval::containing(0, 1_000),
            state,
            &mut out,
        );
        out
    }

    /// Whether `out` is in the documented order: first timestamp, then the 5-tuple as `Key`
    /// orders it (IPv4 before IPv6, numerically).
    fn in_documented_order(out: &[Record]) -> bool {
        out.is_sorted_by(|a, b| (a.flow.first, a.key) <= (b.flow.first, b.key))
    }

    /// The export order (sorted on integer keys) is the documented one whatever the hash
    /// order, also when packets come out of time order.
    #[test]
    fn export_order_is_first_then_key() {
        let t = Tuple::default();
        let mut state = t.new_state(Interval::containing(0, 1_000));
        let keys = keys();
        for (n, &key) in keys.iter().enumerate() {
            // Few distinct first timestamps, out of order, so ties are broken by the key.
            let ts = (n as u64 * 7 + 3) % 5;
            state.flows.account(key, ts, 100, 0);
        }
        let out = export(&t, state);
        assert_eq!(out.len(), keys.len());
        assert!(in_documented_order(&out));
    }

    /// Flows appearing in time order (the flows are then exported in the order they appeared
    /// but for runs of equal first timestamps, sorted by key): the same documented order, and
    /// a flow's later packets (here one earlier than its first) count in full.
    #[test]
    fn export_order_with_rising_timestamps() {
        let t = Tuple::default();
        let keys = keys();
        for late in [false, true] {
            let mut state = t.new_state(Interval::containing(0, 1_000));
            for (n, &key) in keys.iter().enumerate() {
                // Runs of 7 flows with the same first timestamp, keys out of order.
                state.flows.account(key, 10 + n as u64 / 7, 100, 0x02);
            }
            for &key in &keys {
                state.flows.account(key, 500, 40, 0x10);
            }
            if late {
                // A packet older than its flow's first one: the flows are no longer in time
                // order of appearance.
                let key = keys.last().copied().expect("keys");
                state.flows.account(key, 1, 40, 0x01);
            }
            let out = export(&t, state);
            assert_eq!(out.len(), keys.len());
            assert!(in_documented_order(&out));
            for r in &out {
                let old = late && Some(&r.key) == keys.last();
                assert_eq!(r.flow.last, 500);
                assert_eq!(r.flow.pkts, if old { 3 } else { 2 });
                assert_eq!(r.flow.bytes, if old { 180 } else { 140 });
                assert_eq!(r.flow.tcp_flags, if old { 0x13 } else { 0x12 });
                if old {
                    assert_eq!(r.flow.first, 1);
                }
            }
        }
    }

    /// Two cores' partials merged export exactly what one core seeing every packet exports.
    #[test]
    fn merged_partials_equal_one_core() {
        let t = Tuple::default();
        let ivl = Interval::containing(0, 1_000);
        let keys = keys();
        let mut one = t.new_state(ivl);
        let mut parts = [t.new_state(ivl), t.new_state(ivl)];
        for (n, &key) in keys.iter().enumerate().chain(keys.iter().enumerate().rev()) {
            for p in 0..3u64 {
                let i = n as u64 * 3 + p;
                let (ts, bytes, flags) = ((i * 13) % 97, 60 + i, 1u8 << (i % 8));
                one.flows.account(key, ts, bytes, flags);
                if let Some(part) = parts.get_mut((i % 2) as usize) {
                    part.flows.account(key, ts, bytes, flags);
                }
            }
        }
        let [mut a, b] = parts;
        t.merge(&mut a, b);
        let want = export(&t, one);
        assert_eq!(export(&t, a), want);
        assert!(want
            .iter()
            .all(|r| r.flow.pkts == 6 && r.flow.tcp_flags != 0));
    }
}
