//! The object-safe face of a [`Module`], for the runtime and the query server, which hold
//! modules of many kinds in one list.
//!
//! Capture states travel as `Box<dyn CaptureState>` (one per core and interval); stored records
//! travel as encoded bytes ([`crate::encode`]), so inline printing goes through exactly the same
//! load + print path as a query on stored data.

use std::any::Any;
use std::io::Write;
use std::sync::Arc;

use como_packet::{Layers, LinkType, Packet, Parsed};
use como_tracefile::PcapWriter;

use crate::print::{Cell, Format, TablePrinter};
use crate::{decode, encode, Action, Interval, Module, Pkt, PrintParams, RecordError};

/// One core's capture state of one module for one interval.
pub trait CaptureState: Send {
    /// The interval this state accounts for.
    fn interval(&self) -> Interval;
    /// Accounts one packet (CoMo's `update`).
    fn update(&mut self, pkt: &Pkt<'_>);
    /// Accounts the packets of a run that are this module's, in order ([`Run`]): the same as
    /// one [`CaptureState::update`] per packet, in one call. The loop is compiled for the
    /// module's type: no virtual call per packet, and when the compiler inlines the module's
    /// `update` into it (a short one, or one marked `#[inline]`), a header parse done by the
    /// loop keeps only what the module reads (in registers, not stored).
    fn update_run(&mut self, run: &Run<'_, '_>);
    /// The state as `Any`, for the module's own merge.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// A run of packets handed to one module at once ([`CaptureState::update_run`]): packets of
/// one interval, in input order.
#[derive(Debug, Clone, Copy)]
pub struct Run<'r, 'p> {
    /// The packets (some of which may be for other modules only, see `masks`).
    pub pkts: &'r [Packet<'p>],
    /// Sequence number ([`Pkt::seq`]) of `pkts[0]`; packet `j` has `seq0 + j`.
    pub seq0: u64,
    /// Each packet's module mask, the module taking the packets whose mask has `bit`; `None`:
    /// every packet is the module's.
    pub masks: Option<&'r [u64]>,
    /// The module's bit in `masks`.
    pub bit: u64,
    /// Where the packets' headers come from.
    pub layers: RunLayers<'r>,
}

/// The headers of the packets of a [`Run`].
#[derive(Debug, Clone, Copy)]
pub enum RunLayers<'r> {
    /// The module does not read headers: every packet comes with empty [`Layers`].
    Unread,
    /// Parsed by the module's loop, packet by packet.
    Parse,
    /// Already parsed, one per packet of the run (shared by several modules).
    Parsed(&'r [Layers]),
}

/// How the loop of [`each_of_run`] gets headers: none read.
const UNREAD: u8 = 0;
/// ... parsed in place.
const PARSE: u8 = 1;
/// ... copied from [`RunLayers::Parsed`].
const GIVEN: u8 = 2;

/// Calls `module.update` on `state` for the packets of `run` that are the module's (all, or
/// with `MASKED` those whose mask has `run.bit`), their headers got as `HOW` says. One `Pkt` serves the whole run:
/// its headers are written in place (a copy of headers just written would stall on store
/// forwarding). The loop is specialised by constants and calls `update` by name (a closure in
/// between was not inlined for topaddr), so that nothing in it is a call but the module's
/// `update`, which the compiler may inline too.
#[inline(always)]
fn each_of_run<M: Module, const MASKED: bool, const HOW: u8>(
    run: &Run<'_, '_>,
    module: &M,
    state: &mut M::State,
) {
    let (masks, bit) = (run.masks.unwrap_or_default(), run.bit);
    let given = match run.layers {
        RunLayers::Parsed(ls) => ls,
        RunLayers::Unread | RunLayers::Parse => &[],
    };
    let mut cur = Pkt {
        parsed: Parsed {
            layers: Layers::default(),
            packet: Packet::EMPTY,
        },
        seq: 0,
    };
    for (j, p) in run.pkts.iter().enumerate() {
        if MASKED && masks.get(j).is_none_or(|&m| m & bit == 0) {
            continue;
        }
        cur.parsed.packet = *p;
        cur.seq = run.seq0 + j as u64;
        if HOW == PARSE {
            Layers::parse_into(p, &mut cur.parsed.layers);
        } else if HOW == GIVEN {
            if let Some(l) = given.get(j) {
                cur.parsed.layers = *l;
            }
        }
        module.update(state, &cur);
    }
}

/// Runs [`each_of_run`] specialised on how packets are taken and headers come.
#[inline(always)]
fn update_run_with<M: Module>(run: &Run<'_, '_>, module: &M, state: &mut M::State) {
    match (run.masks.is_some(), run.layers) {
        (false, RunLayers::Unread) => each_of_run::<M, false, UNREAD>(run, module, state),
        (false, RunLayers::Parse) => each_of_run::<M, false, PARSE>(run, module, state),
        (false, RunLayers::Parsed(_)) => each_of_run::<M, false, GIVEN>(run, module, state),
        (true, RunLayers::Unread) => each_of_run::<M, true, UNREAD>(run, module, state),
        (true, RunLayers::Parse) => each_of_run::<M, true, PARSE>(run, module, state),
        (true, RunLayers::Parsed(_)) => each_of_run::<M, true, GIVEN>(run, module, state),
    }
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

    fn update_run(&mut self, run: &Run<'_, '_>) {
        update_run_with(run, &*self.module, &mut self.state);
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
