//! `protocol`: packets and bytes per IP protocol number, IPv4 and IPv6 alike (for IPv6 the
//! transport protocol after the extension headers; non-first fragments count under the protocol
//! their fragment header names). Packets without an IP layer are not counted.

use como_module::{Cell, Interval, Module, ModuleError, Pkt};
use como_packet::Layers;
use serde::{Deserialize, Serialize};

use crate::{Counts, NoArgs};

/// The `protocol` module.
#[derive(Debug)]
pub struct Protocol;

/// One interval: the protocols seen, ascending by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// (protocol number, counts), only protocols seen.
    pub protos: Vec<(u8, Counts)>,
}

impl Module for Protocol {
    type Config = NoArgs;
    /// One counter per protocol number: no allocation per packet, no hashing.
    type State = Box<[Counts; 256]>;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "protocol";
    /// The protocol is all it reads: [`Layers::ip_proto_of`] finds it without the whole parse.
    const NEEDS_LAYERS: bool = false;

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self)
    }

    fn new_state(&self, _: Interval) -> Self::State {
        Box::new([Counts::default(); 256])
    }

    #[inline(always)]
    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>) {
        if let Some(p) = Layers::ip_proto_of(&pkt.packet) {
            state[usize::from(p)].add(pkt.wire_len());
        }
    }

    fn merge(&self, into: &mut Self::State, other: Self::State) {
        for (a, b) in into.iter_mut().zip(other.iter()) {
            a.merge(*b);
        }
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Self::State, out: &mut Vec<Record>) {
        let protos: Vec<(u8, Counts)> = (0..=255u8)
            .zip(state.iter())
            .filter(|(_, c)| c.pkts > 0)
            .map(|(p, c)| (p, *c))
            .collect();
        if !protos.is_empty() {
            out.push(Record {
                ts: ivl.start_ns,
                protos,
            });
        }
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "proto", "pkts", "bytes"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        for (p, c) in &r.protos {
            row(&[
                Cell::Ts(r.ts),
                Cell::U64(u64::from(*p)),
                Cell::U64(c.pkts),
                Cell::U64(c.bytes),
            ]);
        }
    }
}
