//! `ethtypes`: packets and bytes per EtherType of the network layer (after VLAN/MPLS/PPPoE
//! encapsulations; IP over PPP, NULL or raw links is mapped to 0x0800/0x86dd). Packets whose
//! link layer names no protocol are counted under EtherType 0.

use como_module::{Cell, Interval, Module, ModuleError, Pkt};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::{Counts, NoArgs};

/// The `ethtypes` module.
#[derive(Debug)]
pub struct EthTypes;

/// One interval: EtherTypes seen, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// (EtherType, counts).
    pub types: Vec<(u16, Counts)>,
}

impl Module for EthTypes {
    type Config = NoArgs;
    type State = FxHashMap<u16, Counts>;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "ethtypes";

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self)
    }

    fn new_state(&self, _: Interval) -> Self::State {
        FxHashMap::default()
    }

    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>) {
        let t = pkt.ethertype.or(pkt.link_proto).unwrap_or(0);
        state.entry(t).or_default().add(pkt.wire_len());
    }

    fn merge(&self, into: &mut Self::State, other: Self::State) {
        for (k, v) in other {
            into.entry(k).or_default().merge(v);
        }
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Self::State, out: &mut Vec<Record>) {
        let mut types: Vec<(u16, Counts)> = state.into_iter().collect();
        types.sort_unstable_by_key(|(t, _)| *t);
        out.push(Record {
            ts: ivl.start_ns,
            types,
        });
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "ethertype", "pkts", "bytes"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        for (t, c) in &r.types {
            let name = format!("0x{t:04x}");
            row(&[
                Cell::Ts(r.ts),
                Cell::Str(&name),
                Cell::U64(c.pkts),
                Cell::U64(c.bytes),
            ]);
        }
    }
}
