//! `ewma`: watches the bytes per interval against an exponentially weighted moving average and
//! stores an alert record when an interval leaves the band `[ewma / change_thresh,
//! ewma * change_thresh]`. The average is export-side state that persists across intervals;
//! `action` discards the records of intervals inside the band.
//!
//! Update after each interval: `ewma = weight * ewma + (1 - weight) * bytes` (the first interval
//! only initialises it and never alerts). Intervals without packets produce no record and do not
//! move the average (CoMo's behaviour: a module only sees intervals with traffic).
//!
//! Args: `change_thresh` (> 1, default 2.0), `weight` (0 <= weight < 1, default 0.9).

use como_module::{Action, Cell, Interval, Module, ModuleError, Pkt};
use serde::{Deserialize, Serialize};

use crate::Counts;

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Factor by which an interval must exceed (or fall below) the average to alert.
    pub change_thresh: f64,
    /// Weight of the past in the average.
    pub weight: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            change_thresh: 2.0,
            weight: 0.9,
        }
    }
}

/// The `ewma` module.
#[derive(Debug)]
pub struct Ewma {
    cfg: Config,
}

/// One interval compared with the average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// Bytes in the interval.
    pub bytes: u64,
    /// The average before this interval.
    pub ewma: f64,
    /// bytes / ewma.
    pub ratio: f64,
    /// Whether the interval left the band.
    pub alert: bool,
}

impl Module for Ewma {
    type Config = Config;
    type State = Counts;
    type Export = Option<f64>;
    type Record = Record;
    const KIND: &'static str = "ewma";
    /// Reads only the packet's metadata: the runtime may skip header parsing.
    const NEEDS_LAYERS: bool = false;

    fn new(cfg: Config) -> Result<Self, ModuleError> {
        if !(cfg.change_thresh > 1.0 && cfg.change_thresh.is_finite()) {
            return Err(ModuleError::Invalid {
                kind: Self::KIND.into(),
                message: format!("change_thresh must be > 1, not {}", cfg.change_thresh),
            });
        }
        if !(0.0..1.0).contains(&cfg.weight) {
            return Err(ModuleError::Invalid {
                kind: Self::KIND.into(),
                message: format!("weight must be in [0, 1), not {}", cfg.weight),
            });
        }
        Ok(Self { cfg })
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

    fn new_export(&self) -> Option<f64> {
        None
    }

    fn export(&self, avg: &mut Option<f64>, ivl: Interval, state: Counts, out: &mut Vec<Record>) {
        let bytes = state.bytes as f64;
        match *avg {
            None => *avg = Some(bytes),
            Some(a) => {
                let ratio = if a > 0.0 { bytes / a } else { f64::INFINITY };
                let t = self.cfg.change_thresh;
                out.push(Record {
                    ts: ivl.start_ns,
                    bytes: state.bytes,
                    ewma: a,
                    ratio,
                    alert: ratio > t || ratio < 1.0 / t,
                });
                *avg = Some(self.cfg.weight * a + (1.0 - self.cfg.weight) * bytes);
            }
        }
    }

    fn action(&self, _: &Option<f64>, r: &Record) -> Action {
        if r.alert {
            Action::Store
        } else {
            Action::Discard
        }
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "bytes", "ewma", "ratio"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        row(&[
            Cell::Ts(r.ts),
            Cell::U64(r.bytes),
            Cell::F64((r.ewma * 1000.0).round() / 1000.0),
            Cell::F64((r.ratio * 1000.0).round() / 1000.0),
        ]);
    }
}
