//! `topports`: the top-N transport ports of each interval, ranked by bytes (then packets, then
//! protocol and port). By default the destination port is counted; `use_src = true` counts
//! source ports instead. Packets without ports are ignored.
//!
//! Args: `topn` (default 10, 1..=65536), `use_src` (default false).

use como_module::{Cell, Interval, Module, ModuleError, Pkt};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::topaddr::TopN;
use crate::Counts;

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How many ports per interval.
    pub topn: usize,
    /// Count source ports instead of destination ports.
    pub use_src: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            topn: 10,
            use_src: false,
        }
    }
}

/// The `topports` module.
#[derive(Debug)]
pub struct TopPorts {
    cfg: Config,
}

/// One interval's ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// Ranked ((IP protocol, port), counts).
    pub top: Vec<((u8, u16), Counts)>,
}

impl Module for TopPorts {
    type Config = Config;
    type State = FxHashMap<(u8, u16), Counts>;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "topports";

    fn new(cfg: Config) -> Result<Self, ModuleError> {
        if cfg.topn == 0 || cfg.topn > 65_536 {
            return Err(ModuleError::Invalid {
                kind: Self::KIND.into(),
                message: format!("topn must be 1..=65536, not {}", cfg.topn),
            });
        }
        Ok(Self { cfg })
    }

    fn new_state(&self, _: Interval) -> Self::State {
        FxHashMap::default()
    }

    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>) {
        let port = if self.cfg.use_src {
            pkt.src_port()
        } else {
            pkt.dst_port()
        };
        if let (Some(port), Some(proto)) = (port, pkt.l4_proto) {
            state.entry((proto, port)).or_default().add(pkt.wire_len());
        }
    }

    fn merge(&self, into: &mut Self::State, other: Self::State) {
        for (k, v) in other {
            into.entry(k).or_default().merge(v);
        }
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Self::State, out: &mut Vec<Record>) {
        if state.is_empty() {
            return;
        }
        let mut top = TopN::new(self.cfg.topn);
        for (k, c) in state {
            top.offer(k, c);
        }
        out.push(Record {
            ts: ivl.start_ns,
            top: top.into_sorted(),
        });
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "rank", "proto", "port", "pkts", "bytes"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        for (i, ((proto, port), c)) in r.top.iter().enumerate() {
            row(&[
                Cell::Ts(r.ts),
                Cell::U64(i as u64 + 1),
                Cell::U64(u64::from(*proto)),
                Cell::U64(u64::from(*port)),
                Cell::U64(c.pkts),
                Cell::U64(c.bytes),
            ]);
        }
    }
}
