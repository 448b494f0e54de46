//! The CoMo-rs module API: CoMo's module callbacks, in Rust.
//!
//! A module is a small piece of code that computes one traffic statistic (packets per interval,
//! top talkers, flows ...). The runtime (`como-runtime`) feeds it the packets that match its
//! filter, cuts time into intervals, and stores or prints what it produces. A module implements
//! [`Module`]; the runtime sees it through the object-safe [`AnyModule`] that [`erase`] builds.
//!
//! # CoMo's callbacks and where they went
//!
//! | CoMo (C)   | here | notes |
//! |------------|------|-------|
//! | `init`     | [`Module::new`] from [`Module::Config`] | typed config deserialized from the TOML `args` table with `deny_unknown_fields` ([`from_args`]) |
//! | `check`    | the module's filter (pcap-filter syntax, compiled by `ebpf-filters`) + early returns in [`Module::update`] | the runtime classifies each packet once against every module's filter and calls only the modules whose bit is set |
//! | `hash`     | the runtime's symmetric flow hash | picks the worker core; both directions of a flow land on the same core |
//! | `match` + `update` | [`Module::update`] | updates the capture-side [`Module::State`] of one core; must not allocate in the common case |
//! | `flush`    | the runtime moves the `State` out at interval end (the interval's per-core partial result) and starts a fresh one with [`Module::new_state`] | a `State` never spans two intervals |
//! | (per-core merge, new in CoMo-rs) | [`Module::merge`] | merges the per-core partials of one interval; must be exact so results do not depend on the number of cores |
//! | `ematch` + `export` | [`Module::export`] | folds the merged interval into the export-side [`Module::Export`] state, which persists across intervals (top-N, EWMA), and emits records |
//! | `compare`  | the ordering [`Module::export`] gives its records (it sorts them) | |
//! | `action`   | [`Module::action`] | store or discard each record |
//! | `store` / `load` | [`encode`] / [`decode`]: serde, one version byte + postcard | see "Record encoding" |
//! | `print`    | [`Module::columns`] + [`Module::rows`] rendered by [`print::TablePrinter`] in every [`Format`]; `pcap` through `replay` | CSV/JSON/pretty/plain/gnuplot share one row model; print-time parameters (a query's `topn=`) through [`Module::rows_with`] |
//! | `replay`   | [`Module::replay`] | turns a stored record back into packets (`trace`); the default says unsupported |
//!
//! # Intervals
//! Every module has an interval length; interval boundaries are epoch-aligned:
//! `start = ts - ts % interval` ([`Interval::containing`]). An interval is flushed when the first
//! packet beyond it arrives, at the end of the input, and on live sources when the runtime's idle
//! timer fires (`como_runtime` exposes that as a call). Intervals in which a module saw no packet
//! produce no record, as in CoMo.
//!
//! # Record encoding
//! Stored records are `[version byte][postcard bytes]`. postcard is a maintained serde format with
//! a documented, stable wire format (1.0 specification), compact varints, no schema to carry and
//! no allocation beyond the output buffer; JSON would be 3-5x larger for the flow records that
//! dominate storage. The version byte is [`Module::RECORD_VERSION`]: a module that changes its
//! record type bumps it, and [`decode`] refuses a record of another version with a clear error
//! instead of misreading it.

//! # Writing a module
//! A complete module that counts the packets longer than `min_len` bytes per interval:
//!
//! ```
//! use como_module::{Cell, Interval, Module, ModuleError, Pkt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Config { min_len: u32 }
//! impl Default for Config { fn default() -> Self { Self { min_len: 1000 } } }
//!
//! struct BigPackets { min_len: u64 }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Record { ts: u64, pkts: u64 }
//!
//! impl Module for BigPackets {
//!     type Config = Config;
//!     type State = u64;          // this core's count for the interval
//!     type Export = ();          // nothing kept across intervals
//!     type Record = Record;
//!     const KIND: &'static str = "bigpackets";
//!
//!     fn new(c: Config) -> Result<Self, ModuleError> { Ok(Self { min_len: c.min_len.into() }) }
//!     fn new_state(&self, _: Interval) -> u64 { 0 }
//!     fn update(&self, n: &mut u64, pkt: &Pkt<'_>) {
//!         if pkt.wire_len() > self.min_len { *n += 1 }
//!     }
//!     fn merge(&self, into: &mut u64, other: u64) { *into += other }
//!     fn new_export(&self) {}
//!     fn export(&self, _: &mut (), ivl: Interval, n: u64, out: &mut Vec<Record>) {
//!         out.push(Record { ts: ivl.start_ns, pkts: n });
//!     }
//!     fn record_ts(&self, r: &Record) -> u64 { r.ts }
//!     fn columns(&self) -> &'static [&'static str] { &["ts", "pkts"] }
//!     fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
//!         row(&[Cell::Ts(r.ts), Cell::U64(r.pkts)]);
//!     }
//! }
//!
//! let args: toml::Value = toml::from_str("min_len = 1400").unwrap();
//! let m: BigPackets = como_module::from_args(Some(&args)).unwrap();
//! assert_eq!(m.min_len, 1400);
//! let bad: toml::Value = toml::from_str("minlen = 1400").unwrap();
//! let e = como_module::from_args::<BigPackets>(Some(&bad)).err().unwrap();
//! assert!(e.to_string().contains("unknown field `minlen`"));
//! let any = como_module::erase(m); // what the runtime holds
//! assert_eq!(any.columns(), ["ts", "pkts"]);
//! ```

pub mod duration;
mod erased;
pub mod print;

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use como_packet::{LinkType, Packet, Parsed};
pub use duration::{parse_duration, DurationError};
pub use erased::{erase, AnyModule, CaptureState, Exported, Exporter, RecordSink, Run, RunLayers};
pub use print::{Cell, Format, TablePrinter};

/// One interval: `[start_ns, start_ns + len_ns)`, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    /// First nanosecond of the interval (a multiple of `len_ns`).
    pub start_ns: u64,
    /// Length in nanoseconds (at least 1).
    pub len_ns: u64,
}

impl Interval {
    /// The interval of length `len_ns` (0 is taken as 1) that contains `ts_ns`.
    #[inline]
    pub fn containing(ts_ns: u64, len_ns: u64) -> Self {
        let len_ns = len_ns.max(1);
        Self {
            start_ns: ts_ns - ts_ns % len_ns,
            len_ns,
        }
    }

    /// First nanosecond after the interval (saturating at `u64::MAX`).
    #[inline]
    pub fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.len_ns)
    }

    /// Whether `ts_ns` falls in the interval.
    #[inline]
    pub fn contains(&self, ts_ns: u64) -> bool {
        ts_ns >= self.start_ns && ts_ns < self.end_ns()
    }
}

/// A packet as a module's `update` sees it: the parsed packet plus its position in the input.
#[derive(Debug, Clone, Copy)]
pub struct Pkt<'a> {
    /// The packet and its parsed layers.
    pub parsed: Parsed<'a>,
    /// Position of the packet in the input (0-based, over all sources); lets modules that keep
    /// packets (`trace`) restore input order after merging per-core partials.
    pub seq: u64,
}

impl<'a> std::ops::Deref for Pkt<'a> {
    type Target = Parsed<'a>;

    #[inline]
    fn deref(&self) -> &Parsed<'a> {
        &self.parsed
    }
}

impl Pkt<'_> {
    /// Capture timestamp in nanoseconds.
    #[inline]
    pub fn ts_ns(&self) -> u64 {
        self.parsed.packet.ts_ns
    }

    /// Length on the wire in bytes.
    #[inline]
    pub fn wire_len(&self) -> u64 {
        u64::from(self.parsed.packet.wire_len)
    }
}

/// Print-time parameters: name → value as the user wrote it.
pub type PrintParams = std::collections::BTreeMap<String, String>;

/// What [`Module::action`] decides for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Store (or, in inline mode, print) the record.
    Store,
    /// Drop it.
    Discard,
}

/// A module's configuration or construction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// No module of that kind exists.
    #[error("unknown module kind `{kind}` (known: {known})")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The known kinds, comma separated.
        known: String,
    },
    /// The `args` table does not deserialize into the module's config.
    #[error("module `{kind}`: bad args: {message}")]
    Args {
        /// Module kind.
        kind: String,
        /// What is wrong (field names, expected types).
        message: String,
    },
    /// The args deserialize but a value is out of range.
    #[error("module `{kind}`: {message}")]
    Invalid {
        /// Module kind.
        kind: String,
        /// What is wrong.
        message: String,
    },
}

/// A stored record could not be decoded, printed or replayed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Empty record (no version byte).
    #[error("empty record")]
    Empty,
    /// The record was written by another version of the module.
    #[error("record version {found}, this module reads version {expected}")]
    Version {
        /// Version byte found.
        found: u8,
        /// Version this module reads.
        expected: u8,
    },
    /// The bytes do not decode.
    #[error("record does not decode: {0}")]
    Decode(#[from] postcard::Error),
    /// The module does not support this format or replay.
    #[error("{0}")]
    Unsupported(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// A CoMo module. See the crate docs for the mapping from CoMo's callbacks.
///
/// The capture side (`new_state`, `update`) runs on worker cores, one `State` per core and
/// interval; the export side (`merge`, `export`, `action`) runs on the export thread.
pub trait Module: Send + Sync + Sized + 'static {
    /// Typed configuration, deserialized from the module's TOML `args` table (use
    /// `#[serde(deny_unknown_fields, default)]`).
    type Config: DeserializeOwned;
    /// Capture-side state of one core for one interval (the interval's partial result).
    type State: Send + 'static;
    /// Export-side state, persisting across intervals.
    type Export: Send + 'static;
    /// One stored record.
    type Record: Serialize + DeserializeOwned + Send + 'static;

    /// The module kind (`traffic`, `topaddr` ...).
    const KIND: &'static str;
    /// Version byte of the stored record encoding; bump it when `Record` changes.
    const RECORD_VERSION: u8 = 1;
    /// Whether [`Module::update`] reads the parsed headers (`pkt.layers`, addresses, ports,
    /// protocol ...). A module that reads only the packet itself (timestamp, wire length,
    /// captured bytes: `pkt.parsed.packet`) says `false`; when no module a packet goes to needs
    /// its headers and no filter or flow hash did, the runtime skips parsing them and
    /// `pkt.layers` is empty ([`como_packet::Layers::default`]). Default: `true`.
    const NEEDS_LAYERS: bool = true;

    /// CoMo's `init`: builds the module from its config, checking ranges.
    fn new(config: Self::Config) -> Result<Self, ModuleError>;

    /// A fresh, empty capture state for `ivl`.
    fn new_state(&self, ivl: Interval) -> Self::State;

    /// CoMo's `update`: accounts one packet that matched the module's filter. The runtime
    /// calls it from a loop compiled for the module ([`CaptureState::update_run`]); marking it
    /// `#[inline]` lets that loop inline it, which pays for modules that read few header
    /// fields (the parse then keeps only those).
    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>);

    /// Merges another core's partial of the same interval into `into` (exactly).
    fn merge(&self, into: &mut Self::State, other: Self::State);

    /// A fresh export-side state.
    fn new_export(&self) -> Self::Export;

    /// CoMo's `export`: folds the merged state of `ivl` into `export` and appends the
    /// interval's records to `out`, in a deterministic order.
    fn export(
        &self,
        export: &mut Self::Export,
        ivl: Interval,
        state: Self::State,
        out: &mut Vec<Self::Record>,
    );

    /// CoMo's `action`: store or discard a record (default: store all).
    fn action(&self, _export: &Self::Export, _record: &Self::Record) -> Action {
        Action::Store
    }

    /// Timestamp (ns) under which `record` is stored: usually its interval's start.
    fn record_ts(&self, record: &Self::Record) -> u64;

    /// Column names of the table rows (the CSV header).
    fn columns(&self) -> &'static [&'static str];

    /// CoMo's `print`: the table rows of one record (one call of `row` per row).
    fn rows(&self, record: &Self::Record, row: &mut dyn FnMut(&[Cell<'_>]));

    /// Names of the print-time parameters this module accepts (a query's extra `k=v`, such
    /// as `topn` for `topaddr`); others are refused. Default: none.
    fn print_params(&self) -> &'static [&'static str] {
        &[]
    }

    /// The rows of one record under print-time `params` (only names from [`Self::print_params`]
    /// reach it). Default: [`Self::rows`], ignoring them.
    fn rows_with(
        &self,
        record: &Self::Record,
        _params: &PrintParams,
        row: &mut dyn FnMut(&[Cell<'_>]),
    ) {
        self.rows(record, row);
    }

    /// Output formats this module supports.
    fn formats(&self) -> &'static [Format] {
        Format::TABLES
    }

    /// CoMo's `replay`: the packets a record stands for (default: unsupported).
    fn replay(
        &self,
        _record: &Self::Record,
        _out: &mut dyn FnMut(&Packet<'_>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        Err(RecordError::Unsupported(format!(
            "module `{}` cannot replay its records as packets",
            Self::KIND
        )))
    }
}

/// Builds module `M` from its TOML `args` table (`None` or an empty table: all defaults).
pub fn from_args<M: Module>(args: Option<&toml::Value>) -> Result<M, ModuleError> {
    let value = args
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::map::Map::new()));
    let config: M::Config = value
        .try_into()
        .map_err(|e: toml::de::Error| ModuleError::Args {
            kind: M::KIND.to_owned(),
            message: e.message().trim().to_owned(),
        })?;
    M::new(config)
}

/// Encodes a record for storage: version byte, then postcard.
pub fn encode<M: Module>(record: &M::Record) -> Result<Vec<u8>, RecordError> {
    // Usually one allocation: the body is appended after the version byte, in a buffer the size
    // of the record in memory (postcard's varints make most records smaller than that).
    let mut out = Vec::with_capacity(1 + std::mem::size_of::<M::Record>().max(15));
    out.push(M::RECORD_VERSION);
    Ok(postcard::to_extend(record, out)?)
}

/// Decodes a stored record written by [`encode`], checking its version byte.
pub fn decode<M: Module>(bytes: &[u8]) -> Result<M::Record, RecordError> {
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    if version != M::RECORD_VERSION {
        return Err(RecordError::Version {
            found: version,
            expected: M::RECORD_VERSION,
        });
    }
    Ok(postcard::from_bytes(body)?)
}

/// Keeps the first `prefix` bits of `addr` (IPv4 prefixes up to 32, IPv6 up to 128).
pub fn mask_addr(addr: IpAddr, prefix4: u8, prefix6: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let p = u32::from(prefix4.min(32));
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let p = u32::from(prefix6.min(128));
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_epoch_aligned() {
        let s = 1_000_000_000;
        let i = Interval::containing(1_700_000_123_456_789_012, 60 * s);
        assert_eq!(i.start_ns % (60 * s), 0);
        assert_eq!(i.start_ns, 1_700_000_100_000_000_000);
        assert_eq!(i.end_ns(), 1_700_000_160_000_000_000);
        assert!(i.contains(1_700_000_159_999_999_999));
        assert!(!i.contains(1_700_000_160_000_000_000));
        let half = Interval::containing(1_500_000_000, s / 2);
        assert_eq!(half.start_ns, 1_500_000_000);
        assert_eq!(
            Interval::containing(1_499_999_999, s / 2).start_ns,
            1_000_000_000
        );
        assert_eq!(Interval::containing(7, 0).len_ns, 1);
        assert_eq!(Interval::containing(u64::MAX, 10).end_ns(), u64::MAX);
    }

    #[test]
    fn masks() {
        let a: IpAddr = "192.168.37.201".parse().expect("addr");
        assert_eq!(mask_addr(a, 24, 128).to_string(), "192.168.37.0");
        assert_eq!(mask_addr(a, 0, 128).to_string(), "0.0.0.0");
        assert_eq!(mask_addr(a, 40, 128), a);
        let b: IpAddr = "2001:db8:aa:bb::1".parse().expect("addr");
        assert_eq!(mask_addr(b, 32, 48).to_string(), "2001:db8:aa::");
    }
}
