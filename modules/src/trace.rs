//! `trace`: keeps the packets that match the module's filter, cut to `snaplen` bytes, one record
//! per packet; prints them as a table (`ts,wire_len,cap_len,summary`) or as a pcap file
//! (`format=pcap`, through `replay`, which gives the packets back).
//!
//! Per core, the packets of an interval are copied into one growing byte arena (no allocation per
//! packet once the arena has grown); export restores input order from the packets' sequence
//! numbers, so the output does not depend on the number of cores.
//!
//! Args: `snaplen` (1..=262144, default 65535).

use como_module::{
    Cell, Format, Interval, LinkType, Module, ModuleError, Packet, Pkt, RecordError,
};
use como_packet::Summary;
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Bytes kept per packet.
    pub snaplen: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { snaplen: 65_535 }
    }
}

/// The `trace` module.
#[derive(Debug)]
pub struct Trace {
    snaplen: u32,
}

/// Where one kept packet lives in the arena.
#[derive(Debug, Clone, Copy)]
struct Meta {
    seq: u64,
    ts: u64,
    wire_len: u32,
    link: u32,
    off: usize,
    len: usize,
}

/// One core's packets of one interval.
#[derive(Debug, Default)]
pub struct State {
    data: Vec<u8>,
    metas: Vec<Meta>,
}

/// One stored packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Capture timestamp (ns).
    pub ts: u64,
    /// Length on the wire.
    pub wire_len: u32,
    /// LINKTYPE_ number.
    pub link: u32,
    /// The first `snaplen` captured bytes.
    pub data: Vec<u8>,
}

impl Record {
    fn packet(&self) -> Packet<'_> {
        Packet {
            ts_ns: self.ts,
            wire_len: self.wire_len,
            data: &self.data,
            link: LinkType::from_linktype(self.link),
            interface: 0,
        }
    }
}

/// Table formats plus pcap.
const FORMATS: &[Format] = &[
    Format::Json,
    Format::Csv,
    Format::Pretty,
    Format::Plain,
    Format::Gnuplot,
    Format::Pcap,
];

impl Module for Trace {
    type Config = Config;
    type State = State;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "trace";
    /// Reads only the packet's metadata: the runtime may skip header parsing.
    const NEEDS_LAYERS: bool = false;

    fn new(cfg: Config) -> Result<Self, ModuleError> {
        if cfg.snaplen == 0 || cfg.snaplen > 262_144 {
            return Err(ModuleError::Invalid {
                kind: Self::KIND.into(),
                message: format!("snaplen must be 1..=262144, not {}", cfg.snaplen),
            });
        }
        Ok(Self {
            snaplen: cfg.snaplen,
        })
    }

    fn new_state(&self, _: Interval) -> State {
        State::default()
    }

    fn update(&self, state: &mut State, pkt: &Pkt<'_>) {
        let p = &pkt.parsed.packet;
        let keep = p.data.get(..self.snaplen as usize).unwrap_or(p.data);
        state.metas.push(Meta {
            seq: pkt.seq,
            ts: p.ts_ns,
            wire_len: p.wire_len,
            link: p.link.to_linktype(),
            off: state.data.len(),
            len: keep.len(),
        });
        state.data.extend_from_slice(keep);
    }

    fn merge(&self, into: &mut State, other: State) {
        let base = into.data.len();
        into.data.extend_from_slice(&other.data);
        into.metas.extend(other.metas.into_iter().map(|mut m| {
            m.off += base;
            m
        }));
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), _: Interval, mut state: State, out: &mut Vec<Record>) {
        state.metas.sort_unstable_by_key(|m| m.seq);
        for m in &state.metas {
            let data = state
                .data
                .get(m.off..m.off + m.len)
                .unwrap_or_default()
                .to_vec();
            out.push(Record {
                ts: m.ts,
                wire_len: m.wire_len,
                link: m.link,
                data,
            });
        }
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "wire_len", "cap_len", "summary"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        let p = r.packet();
        let line = Summary::new(&p).to_string();
        // The summary starts with the timestamp, already in the `ts` column.
        let summary = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
        row(&[
            Cell::Ts(r.ts),
            Cell::U64(u64::from(r.wire_len)),
            Cell::U64(r.data.len() as u64),
            Cell::Str(summary),
        ]);
    }

    fn formats(&self) -> &'static [Format] {
        FORMATS
    }

    fn replay(
        &self,
        r: &Record,
        out: &mut dyn FnMut(&Packet<'_>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        out(&r.packet())
    }
}
