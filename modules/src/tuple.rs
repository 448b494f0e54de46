//! `tuple`: 5-tuple flows per interval (CoMo's unidirectional flows): protocol, source and
//! destination address and port, first and last packet timestamp, packets, bytes and the union
//! of the TCP flags seen. Packets without IP are ignored; packets without ports (ICMP, other
//! protocols, non-first IP fragments) use ports 0.
//!
//! Records are sorted by first timestamp, then by 5-tuple, so the output does not depend on
//! hash order or on the number of worker cores.
//!
//! Differences from tshark's `-z conv,tcp|udp` (which the tests compare against): tshark counts
//! a conversation in both directions (sum this module's two directions to compare), reassembles
//! IP fragments (the datagram then counts as one packet of its last fragment's frame in the
//! conversation, while here each fragment counts, and non-first fragments count under ports 0),
//! and dissects tunnels (IP-in-IP, GRE, VXLAN) down to the inner conversation, where this module
//! keys the outer header. The tests follow tshark on traces without fragments or tunnels.

use std::net::IpAddr;

use como_module::{Cell, Interval, Module, ModuleError, Pkt};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::NoArgs;

/// The `tuple` module.
#[derive(Debug)]
pub struct Tuple;

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

impl Module for Tuple {
    type Config = NoArgs;
    type State = FxHashMap<FlowKey, Flow>;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "tuple";

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self)
    }

    fn new_state(&self, _: Interval) -> Self::State {
        FxHashMap::default()
    }

    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>) {
        let (Some(src), Some(dst), Some(proto)) = (pkt.src_ip(), pkt.dst_ip(), pkt.l4_proto) else {
            return;
        };
        let (src, v6) = to_bits(src);
        let (dst, _) = to_bits(dst);
        let key = FlowKey {
            src,
            dst,
            sport: pkt.src_port().unwrap_or(0),
            dport: pkt.dst_port().unwrap_or(0),
            proto,
            v6,
        };
        let ts = pkt.ts_ns();
        let flags = pkt.tcp_flags().unwrap_or(0);
        let f = state.entry(key).or_insert(Flow {
            first: ts,
            last: ts,
            pkts: 0,
            bytes: 0,
            tcp_flags: 0,
        });
        f.first = f.first.min(ts);
        f.last = f.last.max(ts);
        f.pkts += 1;
        f.bytes += pkt.wire_len();
        f.tcp_flags |= flags;
    }

    fn merge(&self, into: &mut Self::State, other: Self::State) {
        for (k, o) in other {
            into.entry(k)
                .and_modify(|f| {
                    f.first = f.first.min(o.first);
                    f.last = f.last.max(o.last);
                    f.pkts += o.pkts;
                    f.bytes += o.bytes;
                    f.tcp_flags |= o.tcp_flags;
                })
                .or_insert(o);
        }
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Self::State, out: &mut Vec<Record>) {
        let start = out.len();
        out.extend(state.into_iter().map(|(key, flow)| Record {
            ts: ivl.start_ns,
            key: key.into(),
            flow,
        }));
        if let Some(tail) = out.get_mut(start..) {
            tail.sort_unstable_by(|a, b| a.flow.first.cmp(&b.flow.first).then(a.key.cmp(&b.key)));
        }
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
