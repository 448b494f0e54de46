//! The object-safe face of a [`Module`], for the runtime and the query server, which hold
//! modules of many kinds in one list.
//!
//! Capture states travel as `Box<dyn CaptureState>` (one per core and interval); stored records
//! travel as encoded bytes ([`crate::encode`]), so inline printing goes through exactly the same
//! load + print path as a query on stored data.

use std::any::Any;
use std::io::Write;
use std::sync::Arc;

use como_packet::{LinkType, Packet};
use como_tracefile::PcapWriter;

use crate::print::{Cell, Format, TablePrinter};
use crate::{decode, encode, Action, Interval, Module, Pkt, PrintParams, RecordError};

/// One core's capture state of one module for one interval.
pub trait CaptureState: Send {
    /// The interval this state accounts for.
    fn interval(&self) -> Interval;
    /// Accounts one packet (CoMo's `update`).
    fn update(&mut self, pkt: &Pkt<'_>);
    /// The state as `Any`, for the module's own merge.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// A record the export side decided to store: its timestamp and encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Storage timestamp (ns), usually the interval start.
    pub ts_ns: u64,
    /// [`crate::encode`]d record.
    pub bytes: Vec<u8>,
}

/// The export side of one module instance: persistent state across intervals.
pub trait Exporter: Send {
    /// Merges the per-core partials of one interval (in the order given, which the runtime keeps
    /// by core index), exports, applies `action`, and appends the stored records to `out`.
    fn export(
        &mut self,
        ivl: Interval,
        partials: Vec<Box<dyn CaptureState>>,
        out: &mut Vec<Exported>,
    ) -> Result<(), RecordError>;
}

/// Consumes encoded records and prints them in one format.
pub trait RecordSink {
    /// Prints one stored record.
    fn record(&mut self, bytes: &[u8]) -> Result<(), RecordError>;
    /// Writes out what is buffered (a `pretty` block), so a streaming reader sees every record
    /// printed so far. Default: nothing buffered.
    fn flush(&mut self) -> Result<(), RecordError> {
        Ok(())
    }
    /// Ends the output (trailers, alignment of `pretty`, flush).
    fn finish(self: Box<Self>) -> Result<(), RecordError>;
}

/// A module of any kind, as the runtime and the query server see it.
pub trait AnyModule: Send + Sync {
    /// Module kind.
    fn kind(&self) -> &'static str;
    /// Whether the capture side reads parsed headers ([`Module::NEEDS_LAYERS`]).
    fn needs_layers(&self) -> bool {
        true
    }
    /// A fresh capture state for `ivl`.
    fn new_state(&self, ivl: Interval) -> Box<dyn CaptureState>;
    /// A fresh export side.
    fn new_exporter(&self) -> Box<dyn Exporter>;
    /// Column names of the printed table.
    fn columns(&self) -> &'static [&'static str];
    /// Supported output formats.
    fn formats(&self) -> &'static [Format];
    /// A printer of encoded records in `format` writing to `out`.
    fn printer<'w>(
        &self,
        format: Format,
        out: Box<dyn Write + Send + 'w>,
    ) -> Result<Box<dyn RecordSink + Send + 'w>, RecordError> {
        self.printer_with(format, out, &PrintParams::new())
    }
    /// A printer with print-time parameters (a name the module does not accept is an error).
    fn printer_with<'w>(
        &self,
        format: Format,
        out: Box<dyn Write + Send + 'w>,
        params: &PrintParams,
    ) -> Result<Box<dyn RecordSink + Send + 'w>, RecordError>;
    /// Names of the accepted print-time parameters.
    fn print_params(&self) -> &'static [&'static str];
    /// Replays one encoded record as packets.
    fn replay(
        &self,
        bytes: &[u8],
        out: &mut dyn FnMut(&Packet<'_>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError>;
}

/// Wraps a typed module into an [`AnyModule`].
pub fn erase<M: Module>(module: M) -> Arc<dyn AnyModule> {
    Arc::new(Erased(Arc::new(module)))
}

struct Erased<M: Module>(Arc<M>);

struct TypedState<M: Module> {
    module: Arc<M>,
    ivl: Interval,
    state: M::State,
}

impl<M: Module> CaptureState for TypedState<M> {
    fn interval(&self) -> Interval {
        self.ivl
    }

    #[inline]
    fn update(&mut self, pkt: &Pkt<'_>) {
        self.module.update(&mut self.state, pkt);
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

struct TypedExporter<M: Module> {
    module: Arc<M>,
    export: M::Export,
    records: Vec<M::Record>,
}

fn internal(what: &str) -> RecordError {
    RecordError::Unsupported(format!("internal error: {what}"))
}

impl<M: Module> Exporter for TypedExporter<M> {
    fn export(
        &mut self,
        ivl: Interval,
        partials: Vec<Box<dyn CaptureState>>,
        out: &mut Vec<Exported>,
    ) -> Result<(), RecordError> {
        let mut merged: Option<M::State> = None;
        for p in partials {
            let typed = p
                .into_any()
                .downcast::<TypedState<M>>()
                .map_err(|_| internal("capture state of another module kind"))?;
            match merged.as_mut() {
                None => merged = Some(typed.state),
                Some(m) => self.module.merge(m, typed.state),
            }
        }
        let state = merged.unwrap_or_else(|| self.module.new_state(ivl));
        self.records.clear();
        self.module
            .export(&mut self.export, ivl, state, &mut self.records);
        for rec in self.records.drain(..) {
            if self.module.action(&self.export, &rec) == Action::Store {
                out.push(Exported {
                    ts_ns: self.module.record_ts(&rec),
                    bytes: encode::<M>(&rec)?,
                });
            }
        }
        Ok(())
    }
}

struct TableSink<'w, M: Module> {
    module: Arc<M>,
    params: PrintParams,
    printer: TablePrinter<Box<dyn Write + Send + 'w>>,
}

impl<M: Module> RecordSink for TableSink<'_, M> {
    fn record(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let rec = decode::<M>(bytes)?;
        let mut result = Ok(());
        let printer = &mut self.printer;
        self.module
            .rows_with(&rec, &self.params, &mut |cells: &[Cell<'_>]| {
                if result.is_ok() {
                    result = printer.row(cells);
                }
            });
        Ok(result?)
    }

    fn flush(&mut self) -> Result<(), RecordError> {
        Ok(self.printer.flush()?)
    }

    fn finish(self: Box<Self>) -> Result<(), RecordError> {
        self.printer.finish()?;
        Ok(())
    }
}

/// Writes replayed packets as a libpcap file (nanosecond timestamps, link type of the first
/// packet; a packet of another link type is an error, pcap having one link type per file).
struct PcapSink<'w, M: Module> {
    module: Arc<M>,
    out: Option<Box<dyn Write + Send + 'w>>,
    writer: Option<PcapWriter<Box<dyn Write + Send + 'w>>>,
}

/// Snapshot length written in pcap headers of replayed records.
const PCAP_SNAPLEN: u32 = 262_144;

impl<M: Module> RecordSink for PcapSink<'_, M> {
    fn record(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let rec = decode::<M>(bytes)?;
        let Self {
            module,
            out,
            writer,
        } = self;
        module.replay(&rec, &mut |pkt: &Packet<'_>| {
            if writer.is_none() {
                let o = out.take().ok_or_else(|| internal("pcap output gone"))?;
                *writer = Some(PcapWriter::new(o, pkt.link, PCAP_SNAPLEN, true)?);
            }
            match writer.as_mut() {
                Some(w) => Ok(w.write_packet(pkt)?),
                None => Err(internal("pcap writer missing")),
            }
        })
    }

    fn finish(self: Box<Self>) -> Result<(), RecordError> {
        match (self.writer, self.out) {
            (Some(w), _) => {
                w.into_inner()?;
            }
            (None, Some(o)) => {
                // No packet: still a valid (empty) pcap file.
                PcapWriter::new(o, LinkType::Ethernet, PCAP_SNAPLEN, true)?.into_inner()?;
            }
            (None, None) => {}
        }
        Ok(())
    }
}

impl<M: Module> AnyModule for Erased<M> {
    fn kind(&self) -> &'static str {
        M::KIND
    }

    fn needs_layers(&self) -> bool {
        M::NEEDS_LAYERS
    }

    fn new_state(&self, ivl: Interval) -> Box<dyn CaptureState> {
        Box::new(TypedState {
            module: Arc::clone(&self.0),
            ivl,
            state: self.0.new_state(ivl),
        })
    }

    fn new_exporter(&self) -> Box<dyn Exporter> {
        Box::new(TypedExporter {
            module: Arc::clone(&self.0),
            export: self.0.new_export(),
            records: Vec::new(),
        })
    }

    fn columns(&self) -> &'static [&'static str] {
        self.0.columns()
    }

    fn formats(&self) -> &'static [Format] {
        self.0.formats()
    }

    fn print_params(&self) -> &'static [&'static str] {
        self.0.print_params()
    }

    fn printer_with<'w>(
        &self,
        format: Format,
        out: Box<dyn Write + Send + 'w>,
        params: &PrintParams,
    ) -> Result<Box<dyn RecordSink + Send + 'w>, RecordError> {
        if let Some(bad) = params
            .keys()
            .find(|k| !self.0.print_params().contains(&k.as_str()))
        {
            return Err(RecordError::Unsupported(format!(
                "module `{}` has no print parameter `{bad}` (it takes: {})",
                M::KIND,
                if self.0.print_params().is_empty() {
                    "none".to_owned()
                } else {
                    self.0.print_params().join(", ")
                }
            )));
        }
        if !self.0.formats().contains(&format) {
            return Err(RecordError::Unsupported(format!(
                "module `{}` does not print format `{}` (it prints: {})",
                M::KIND,
                format.name(),
                self.0
                    .formats()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if format == Format::Pcap {
            return Ok(Box::new(PcapSink {
                module: Arc::clone(&self.0),
                out: Some(out),
                writer: None,
            }));
        }
        Ok(Box::new(TableSink {
            module: Arc::clone(&self.0),
            params: params.clone(),
            printer: TablePrinter::new(out, format, self.0.columns()),
        }))
    }

    fn replay(
        &self,
        bytes: &[u8],
        out: &mut dyn FnMut(&Packet<'_>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        let rec = decode::<M>(bytes)?;
        self.0.replay(&rec, out)
    }
}
