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
    /// Flows of the last exported interval: the capacity of the next interval's table, so a
    /// busy link does not grow (rehash) its table from empty at every interval.
    flows_hint: AtomicUsize,
    /// Emptied tables of exported intervals, reused by the next intervals: a fresh table of a
    /// busy link is megabytes of memory the kernel would zero again at every interval.
    spare: Mutex<Vec<FxHashMap<FlowKey, Flow>>>,
}

/// Most emptied tables kept for reuse.
const MAX_SPARE: usize = 4;

/// Most flows a fresh table is pre-sized for (about 2.5 MB of buckets).
const MAX_HINT: usize = 1 << 16;

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

/// The hash key of a flow on the capture side: addresses as 128-bit integers (cheaper to hash
/// than `IpAddr`), converted to a [`Key`] at export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    src: u128,
    dst: u128,
    sport: u16,
    dport: u16,
    proto: u8,
    v6: bool,
}

fn to_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), false),
        IpAddr::V6(v) => (u128::from(v), true),
    }
}

fn from_bits(x: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(x.into())
    } else {
        IpAddr::V4((x as u32).into())
    }
}

impl From<FlowKey> for Key {
    fn from(k: FlowKey) -> Self {
        Key {
            proto: k.proto,
            src: from_bits(k.src, k.v6),
            sport: k.sport,
            dst: from_bits(k.dst, k.v6),
            dport: k.dport,
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

/// A datagram being reassembled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FragKey {
    src: u128,
    dst: u128,
    id: u32,
    proto: u8,
    v6: bool,
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
    flows: FxHashMap<FlowKey, Flow>,
    frags: FxHashMap<FragKey, Frag>,
}

/// The innermost IP packet of IP-in-IP tunnels (at most 4 levels), with its layers.
fn innermost<'a>(pkt: &Pkt<'a>) -> (Layers, &'a [u8]) {
    let mut layers = pkt.parsed.layers;
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
        layers = l;
        data = inner;
    }
    (layers, data)
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
    /// Keeps an emptied table for a next interval (up to [`MAX_SPARE`] tables, none holding
    /// room for more than 4 × [`MAX_HINT`] entries: an exceptional interval does not pin its
    /// memory).
    fn recycle(&self, table: FxHashMap<FlowKey, Flow>) {
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < MAX_SPARE && table.is_empty() && table.capacity() <= 4 * MAX_HINT {
                spare.push(table);
            }
        }
    }

    fn account(state: &mut State, key: FlowKey, ts: u64, bytes: u64, flags: u8) {
        let f = state.flows.entry(key).or_insert(Flow {
            first: ts,
            last: ts,
            pkts: 0,
            bytes: 0,
            tcp_flags: 0,
        });
        f.first = f.first.min(ts);
        f.last = f.last.max(ts);
        f.pkts += 1;
        f.bytes += bytes;
        f.tcp_flags |= flags;
    }
}

impl Module for Tuple {
    type Config = NoArgs;
    type State = State;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "tuple";

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self::default())
    }

    fn new_state(&self, _: Interval) -> State {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        let flows = spare.unwrap_or_else(|| {
            let n = self.flows_hint.load(Ordering::Relaxed).min(MAX_HINT);
            FxHashMap::with_capacity_and_hasher(n, Default::default())
        });
        State {
            flows,
            frags: FxHashMap::default(),
        }
    }

    fn update(&self, state: &mut State, pkt: &Pkt<'_>) {
        let (l, data) = innermost(pkt);
        let (Some(src), Some(dst), Some(proto)) = (l.src_ip(data), l.dst_ip(data), l.l4_proto)
        else {
            return;
        };
        let (src, v6) = to_bits(src);
        let (dst, _) = to_bits(dst);
        let ts = pkt.ts_ns();
        let ports = |l: &Layers| (l.src_port(data).unwrap_or(0), l.dst_port(data).unwrap_or(0));
        let key = |(sport, dport): (u16, u16)| FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
            v6,
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
            Self::account(state, key(ports(&l)), ts, pkt.wire_len(), flags);
            return;
        };
        let fkey = FragKey {
            src,
            dst,
            id: frag.id,
            proto,
            v6,
        };
        let Some((start, end)) = frag_range(&l, data, frag.offset) else {
            return;
        };
        if !datagram_captured(&l, data) {
            // tshark reassembles only fragments whose bytes were all captured; otherwise a
            // first fragment is dissected (and counted) on its own, the others not at all.
            if frag.offset == 0 {
                let flags = l.tcp_flags(data).unwrap_or(0);
                Self::account(state, key(ports(&l)), ts, pkt.wire_len(), flags);
            }
            return;
        }
        let entry = state.frags.entry(fkey.clone()).or_default();
        entry.ranges.push((start, end));
        if frag.offset == 0 {
            let (sport, dport) = ports(&l);
            entry.first = Some((sport, dport, l.tcp_flags(data).unwrap_or(0)));
        }
        if !frag.more {
            entry.total = Some(end);
        }
        if entry.complete() {
            if let Some((sport, dport, flags)) = entry.first {
                Self::account(state, key((sport, dport)), ts, pkt.wire_len(), flags);
            }
            state.frags.remove(&fkey);
        }
    }

    fn merge(&self, into: &mut State, other: State) {
        // Datagrams still incomplete are dropped at export: only flows merge.
        let mut table = other.flows;
        for (k, o) in table.drain() {
            into.flows
                .entry(k)
                .and_modify(|f| {
                    f.first = f.first.min(o.first);
                    f.last = f.last.max(o.last);
                    f.pkts += o.pkts;
                    f.bytes += o.bytes;
                    f.tcp_flags |= o.tcp_flags;
                })
                .or_insert(o);
        }
        self.recycle(table);
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Self::State, out: &mut Vec<Record>) {
        self.flows_hint.store(state.flows.len(), Ordering::Relaxed);
        // Sorted on the integer form of the key: (first, proto, family, src, sport, dst,
        // dport) orders flows exactly as (first, Key) does (`IpAddr` orders IPv4 before IPv6,
        // then numerically; both addresses of a flow have the same family), but compares
        // integers instead of address enums.
        let mut table = state.flows;
        let mut flows: Vec<(FlowKey, Flow)> = table.drain().collect();
        self.recycle(table);
        flows.sort_unstable_by_key(|(k, f)| {
            (f.first, k.proto, k.v6, k.src, k.sport, k.dst, k.dport)
        });
        out.reserve(flows.len());
        out.extend(flows.into_iter().map(|(key, flow)| Record {
            ts: ivl.start_ns,
            key: key.into(),
            flow,
        }));
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

    /// The export order (sorted on integer keys) is the documented one: first timestamp, then
    /// the 5-tuple as `Key` orders it (IPv4 before IPv6, numerically), whatever the hash order.
    #[test]
    fn export_order_is_first_then_key() {
        let t = Tuple::default();
        let mut state = t.new_state(Interval::containing(0, 1_000));
        let addrs: [IpAddr; 5] = [
            "10.0.0.1".parse().expect("ip"),
            "9.255.255.255".parse().expect("ip"),
            "::1".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
            "255.0.0.0".parse().expect("ip"),
        ];
        let mut n = 0u64;
        for (i, &a) in addrs.iter().enumerate() {
            for (j, &b) in addrs.iter().enumerate() {
                if a.is_ipv4() != b.is_ipv4() {
                    continue;
                }
                for proto in [6u8, 17] {
                    for port in [53u16, 443, 80] {
                        n += 1;
                        let (src, v6) = to_bits(a);
                        let key = FlowKey {
                            src,
                            dst: to_bits(b).0,
                            sport: port,
                            dport: 1000 - port,
                            proto,
                            v6,
                        };
                        // Few distinct first timestamps, so ties are broken by the key.
                        let ts = (n * 7 + i as u64 + j as u64) % 5;
                        Tuple::account(&mut state, key, ts, 100, 0);
                    }
                }
            }
        }
        let mut out = Vec::new();
        t.export(&mut (), Interval::containing(0, 1_000), state, &mut out);
        assert_eq!(out.len() as u64, n);
        let mut want = out.clone();
        want.sort_by(|a, b| a.flow.first.cmp(&b.flow.first).then(a.key.cmp(&b.key)));
        assert_eq!(out, want);
    }
}
