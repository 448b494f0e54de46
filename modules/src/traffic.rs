//! `traffic`: packets and bytes (wire length) per interval. The smallest complete module.

use como_module::{Cell, Interval, Module, ModuleError, Pkt};
use serde::{Deserialize, Serialize};

use crate::{Counts, NoArgs};

/// The `traffic` module.
#[derive(Debug)]
pub struct Traffic;

/// One interval's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// Packets and bytes.
    pub counts: Counts,
}

impl Module for Traffic {
    type Config = NoArgs;
    type State = Counts;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "traffic";
    /// Reads only the packet's metadata: the runtime may skip header parsing.
    const NEEDS_LAYERS: bool = false;

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self)
    }

    fn new_state(&self, _: Interval) -> Counts {
        Counts::default()
    }

    fn update(&self, state: &mut Counts, pkt: &Pkt<'_>) {
        state.add(pkt.wire_len());
    }

    fn merge(&self, into: &mut Counts, other: Counts) {
        into.merge(other);
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Counts, out: &mut Vec<Record>) {
        out.push(Record {
            ts: ivl.start_ns,
            counts: state,
        });
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "pkts", "bytes"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        row(&[
            Cell::Ts(r.ts),
            Cell::U64(r.counts.pkts),
            Cell::U64(r.counts.bytes),
        ]);
    }
}
