//! Sinks for exported records: collect them (tests, chaining), print them (`como inline`), or
//! store them in one `como-storage` database per module.

use std::path::Path;

use como_module::{Exported, Interval, RecordSink};
use como_storage::{Database, Options as DbOptions};

use crate::{Sink, SinkError};

/// Keeps every exported interval in memory: `(module, interval, records)`.
#[derive(Debug, Default)]
pub struct CollectSink {
    /// What was exported, in export order.
    pub intervals: Vec<(usize, Interval, Vec<Exported>)>,
}

impl Sink for CollectSink {
    fn interval(
        &mut self,
        module: usize,
        ivl: Interval,
        records: &[Exported],
    ) -> Result<(), SinkError> {
        self.intervals.push((module, ivl, records.to_vec()));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Prints each module's records through its own printer (one per module, same order).
pub struct PrintSink {
    printers: Vec<Option<Box<dyn RecordSink + Send>>>,
}

impl PrintSink {
    /// A sink printing module `i`'s records with `printers[i]`.
    pub fn new(printers: Vec<Box<dyn RecordSink + Send>>) -> Self {
        Self {
            printers: printers.into_iter().map(Some).collect(),
        }
    }

    /// Writes out what the printers buffer (`pretty` blocks): a streaming query calls it
    /// before it sends what was printed.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        for p in self.printers.iter_mut().flatten() {
            p.flush().map_err(io_error)?;
        }
        Ok(())
    }
}

fn io_error(e: como_module::RecordError) -> SinkError {
    SinkError(e.to_string())
}

impl Sink for PrintSink {
    fn interval(
        &mut self,
        module: usize,
        _: Interval,
        records: &[Exported],
    ) -> Result<(), SinkError> {
        if let Some(Some(p)) = self.printers.get_mut(module) {
            for r in records {
                p.record(&r.bytes).map_err(io_error)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for p in self.printers.iter_mut().filter_map(Option::take) {
            p.finish().map_err(io_error)?;
        }
        Ok(())
    }
}

/// Appends each module's records to its own database and syncs after every interval, so an
/// exported interval is acknowledged (durable, visible to readers) as a whole.
///
/// Storage timestamps never go down: a record whose timestamp is older than the previous one
/// of the same module (a `trace` record of a reordered packet) is stored under the previous
/// timestamp.
pub struct StorageSink {
    dbs: Vec<(Database, u64)>,
}

impl StorageSink {
    /// Opens (or creates) `<root>/<name>` for each module name, with `opts` for all.
    pub fn open(root: &Path, names: &[String], opts: &DbOptions) -> Result<Self, SinkError> {
        let mut dbs = Vec::with_capacity(names.len());
        for n in names {
            let db = Database::open(root.join(n), opts.clone())
                .map_err(|e| SinkError(format!("database `{n}`: {e}")))?;
            let last = db.last_ts().unwrap_or(0);
            dbs.push((db, last));
        }
        Ok(Self { dbs })
    }

    /// Opens (or creates) `<root>/<name>` for each `(name, options)`: per-module caps
    /// (`streamsize`, `retention`).
    pub fn open_each(root: &Path, dbs: &[(String, DbOptions)]) -> Result<Self, SinkError> {
        let mut out = Vec::with_capacity(dbs.len());
        for (n, opts) in dbs {
            let db = Database::open(root.join(n), opts.clone())
                .map_err(|e| SinkError(format!("database `{n}`: {e}")))?;
            let last = db.last_ts().unwrap_or(0);
            out.push((db, last));
        }
        Ok(Self { dbs: out })
    }

    /// The databases (for readers).
    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.dbs.iter().map(|(d, _)| d)
    }
}

impl Sink for StorageSink {
    fn interval(
        &mut self,
        module: usize,
        _: Interval,
        records: &[Exported],
    ) -> Result<(), SinkError> {
        let Some((db, last)) = self.dbs.get_mut(module) else {
            return Ok(());
        };
        if records.is_empty() {
            return Ok(());
        }
        for r in records {
            let ts = r.ts_ns.max(*last);
            db.append(ts, &r.bytes)
                .map_err(|e| SinkError(format!("append: {e}")))?;
            *last = ts;
        }
        db.sync().map_err(|e| SinkError(format!("sync: {e}")))?;
        db.enforce_caps();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for (db, _) in &mut self.dbs {
            db.sync().map_err(|e| SinkError(format!("sync: {e}")))?;
        }
        Ok(())
    }
}
