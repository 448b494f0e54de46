//! The CoMo-rs runtime: packet sources → batches → one classification per packet against the
//! filters of all modules → per-core module updates → interval flush → merge → export → sink.
//!
//! ```text
//!  Source ──► dispatcher (caller's thread): parse once, classify against every module's exact
//!             filter → u64 module bitmask, symmetric flow hash → worker, copy into batches
//!        ──► worker threads (N, crossbeam channels): per module whose bit is set,
//!             CaptureState::update on this worker's own state of the current interval
//!        ──► export thread: per (module, interval) the partials of all workers, merged in
//!             worker order once every worker has passed the interval's end (watermarks),
//!             then Exporter::export (+ action) ──► Sink (storage, printer)
//! ```
//!
//! **Intervals.** Interval assignment uses the input's high-water time (the largest timestamp
//! seen so far): a packet older than a packet before it (reordered input) is accounted in the
//! current interval rather than reopening a flushed one; every worker therefore agrees on the
//! current interval of each module. An interval is flushed when the first packet at or beyond
//! its end arrives (the dispatcher then sends an *advance* to every worker before that packet),
//! at the end of the input, and when [`Pipeline::advance`] is called: that is the idle-timeout
//! call for live sources ([`run`] makes it when a source reports [`Next::Idle`] for longer than
//! [`Options::idle_timeout`]).
//!
//! **Threads.** With `workers > 1` each worker is a thread fed by bounded channels; with one
//! worker the module updates run on the dispatcher's thread (no copy, no channel), and only
//! export runs on its own thread.
//!
//! **Determinism.** A flow hashes to the same worker in both directions; module merges are exact
//! and exports sort their records, so the records do not depend on the number of workers (tested
//! with 1 and 3 workers on real traces).

mod live;
mod sink;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use como_module::{AnyModule, CaptureState, Exported, Interval, Pkt, Run, RunLayers};
use como_packet::{L3Proto, Layers, LinkType, Packet, Parsed};
use como_tracefile::TraceReader;
use crossbeam_channel::{bounded, Receiver, Sender};
use ebpf_filters::{Filter, FilterError};

pub use live::{
    Carried, Frame, LiveEnd, LiveOptions, LivePipeline, LiveQueue, QueueStats, WindowTap,
    WorkerCounters, LIVE_BATCH, MAX_SLEEP, MIN_SLEEP, SPIN_POLLS, STATS_EVERY,
};
pub use sink::{CollectSink, PrintSink, StorageSink};

/// Most modules one runtime runs (bits of the classification mask).
pub const MAX_MODULES: usize = 64;

/// Packets per batch handed to a worker.
const BATCH_PKTS: usize = 256;
/// Captured bytes per batch handed to a worker.
const BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight per worker.
const WORKER_QUEUE: usize = 16;

/// Packets between two timed module updates on one worker (CPU accounting by sampling).
pub const CPU_SAMPLE_EVERY: u32 = 256;

/// Packets of one pass of the one-worker path ([`Pipeline::packets`]): their masks are kept
/// on the stack.
const INLINE_PASS: usize = 64;

/// Estimated CPU time per module (index in the module list), for metrics and the resource
/// manager: the capture side is sampled (the `update` calls of one packet in
/// [`CPU_SAMPLE_EVERY`] per worker are timed, and the time scaled up; on the one-worker path,
/// a module's whole run of updates once every [`CPU_SAMPLE_EVERY`] packets), the export side
/// (merge, export, action) is timed at every interval. Wall-clock time of the calls, so time
/// the thread spent preempted counts too. Read it from [`Pipeline::module_cpu`].
#[derive(Debug, Default)]
pub struct ModuleCpu {
    ns: Vec<AtomicU64>,
}

impl ModuleCpu {
    fn new(modules: usize) -> Self {
        Self {
            ns: (0..modules).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    fn add(&self, module: usize, d: Duration) {
        if let Some(c) = self.ns.get(module) {
            c.fetch_add(
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Estimated nanoseconds spent in module `module` so far (0 for an unknown index).
    pub fn nanos(&self, module: usize) -> u64 {
        self.ns.get(module).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// One module instance to run.
#[derive(Clone)]
pub struct ModuleSpec {
    /// Instance name (unique).
    pub name: String,
    /// The module.
    pub module: Arc<dyn AnyModule>,
    /// Filter expression (pcap-filter syntax; empty: every packet).
    pub filter: String,
    /// Interval length.
    pub interval: Duration,
}

impl std::fmt::Debug for ModuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleSpec")
            .field("name", &self.name)
            .field("kind", &self.module.kind())
            .field("filter", &self.filter)
            .field("interval", &self.interval)
            .finish()
    }
}

/// What a source has next.
#[derive(Debug)]
pub enum Next<'a> {
    /// A packet.
    Packet(Packet<'a>),
    /// Nothing right now (live sources); the runtime may flush idle intervals.
    Idle,
    /// The source is exhausted.
    End,
}

/// Most packets in one slice of [`Source::next_batch`].
pub const SOURCE_BATCH: usize = como_tracefile::BATCH;

/// Batches a trace file hands over per [`Source::next_batch`] call (one batch array serves
/// them all; see [`TraceReader::for_each_batch`]).
const TRACE_BATCHES: usize = 16;

/// What [`Source::next_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// This many packets (at least one) were handed over.
    Packets(usize),
    /// Nothing right now (live sources); the runtime may flush idle intervals.
    Idle,
    /// The source is exhausted.
    End,
}

/// A packet source: trace files now, live captures later.
pub trait Source: Send {
    /// Name for messages and metrics.
    fn name(&self) -> String;
    /// The next packet (or idle / end). An error ends the source.
    fn next_packet(&mut self) -> Result<Next<'_>, SourceError>;
    /// The next packets, handed to `f` in one or more slices of up to [`SOURCE_BATCH`] (or idle
    /// / end). An error ends the source; packets read before it are handed over first.
    ///
    /// The default hands over one packet of [`Source::next_packet`]; sources that can read
    /// ahead (trace files) fill a whole batch before `f` reads the first packet.
    fn next_batch(&mut self, f: &mut dyn FnMut(&[Packet<'_>])) -> Result<Got, SourceError> {
        Ok(match self.next_packet()? {
            Next::Packet(p) => {
                f(std::slice::from_ref(&p));
                Got::Packets(1)
            }
            Next::Idle => Got::Idle,
            Next::End => Got::End,
        })
    }
    /// How far a finite source is: `(bytes consumed, total bytes)`, for progress bars; `None`
    /// for sources without a known end (live captures). Default: `None`.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A source failed (a damaged file, a capture error).
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    /// The source.
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

/// A trace file as a source.
pub struct TraceSource {
    reader: TraceReader,
    name: String,
    size: u64,
    /// An error met after the packets of a batch, reported by the next call.
    pending: Option<como_tracefile::Error>,
}

impl TraceSource {
    /// Opens a trace file (pcap, pcapng, ERF).
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, como_tracefile::Error> {
        let reader = TraceReader::open(path)?;
        let name = reader.path().display().to_string();
        let size = std::fs::metadata(reader.path()).map_or(0, |m| m.len());
        Ok(Self {
            reader,
            name,
            size,
            pending: None,
        })
    }

    /// Link type of the file's first interface.
    pub fn link_type(&self) -> LinkType {
        self.reader.link_type()
    }
}

impl Source for TraceSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn progress(&self) -> Option<(u64, u64)> {
        Some((self.reader.offset().min(self.size), self.size))
    }

    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        if let Some(e) = self.pending.take() {
            return Err(source_error(&self.name, &e));
        }
        match self.reader.next_packet() {
            None => Ok(Next::End),
            Some(Ok(p)) => Ok(Next::Packet(p)),
            Some(Err(e)) => Err(source_error(&self.name, &e)),
        }
    }

    fn next_batch(&mut self, f: &mut dyn FnMut(&[Packet<'_>])) -> Result<Got, SourceError> {
        if let Some(e) = self.pending.take() {
            return Err(source_error(&self.name, &e));
        }
        let (n, err) = self.reader.for_each_batch(TRACE_BATCHES, f);
        if n > 0 {
            self.pending = err;
            return Ok(Got::Packets(n));
        }
        match err {
            Some(e) => Err(source_error(&self.name, &e)),
            None => Ok(Got::End),
        }
    }
}

/// A reading error of the source `name` as the runtime reports it.
fn source_error(name: &str, e: &como_tracefile::Error) -> SourceError {
    SourceError {
        source_name: name.to_owned(),
        message: e.to_string(),
    }
}

/// The packets that stored records of a module stand for, through the module's `replay`
/// (CoMo's chaining: run a module over another module's output, e.g. over the `trace` module's
/// stored packets). A record that cannot be replayed ends the source with an error.
pub struct ReplaySource {
    name: String,
    module: Arc<dyn AnyModule>,
    records: Box<dyn Iterator<Item = Result<Vec<u8>, String>> + Send>,
    data: Vec<u8>,
    /// (ts, wire_len, link, interface, offset, length) of the current record's packets.
    pkts: Vec<(u64, u32, LinkType, u32, usize, usize)>,
    next: usize,
}

impl ReplaySource {
    /// Replays `records` (encoded, in storage order) of `module`, named `name` in messages.
    pub fn new(
        name: impl Into<String>,
        module: Arc<dyn AnyModule>,
        records: Box<dyn Iterator<Item = Result<Vec<u8>, String>> + Send>,
    ) -> Self {
        Self {
            name: name.into(),
            module,
            records,
            data: Vec::new(),
            pkts: Vec::new(),
            next: 0,
        }
    }
}

impl Source for ReplaySource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        while self.next >= self.pkts.len() {
            self.pkts.clear();
            self.data.clear();
            self.next = 0;
            let bytes = match self.records.next() {
                None => return Ok(Next::End),
                Some(Ok(b)) => b,
                Some(Err(message)) => {
                    return Err(SourceError {
                        source_name: self.name.clone(),
                        message,
                    })
                }
            };
            let (data, pkts) = (&mut self.data, &mut self.pkts);
            self.module
                .replay(&bytes, &mut |p: &Packet<'_>| {
                    pkts.push((
                        p.ts_ns,
                        p.wire_len,
                        p.link,
                        p.interface,
                        data.len(),
                        p.data.len(),
                    ));
                    data.extend_from_slice(p.data);
                    Ok(())
                })
                .map_err(|e| SourceError {
                    source_name: self.name.clone(),
                    message: e.to_string(),
                })?;
        }
        let Some(&(ts_ns, wire_len, link, interface, off, len)) = self.pkts.get(self.next) else {
            return Ok(Next::End);
        };
        self.next += 1;
        Ok(Next::Packet(Packet {
            ts_ns,
            wire_len,
            data: self.data.get(off..off + len).unwrap_or_default(),
            link,
            interface,
        }))
    }
}

/// Several sources merged into one stream in timestamp order (CoMo's multiple sniffers).
///
/// Each source's next packet is copied into a buffer owned here (reused, so no allocation per
/// packet once warm) to compare timestamps; equal timestamps go to the earlier source. A source
/// that is idle without a buffered packet makes the merge idle (its next packet might be the
/// oldest). The first error of any source ends the merged stream with that error.
pub struct MergedSource {
    sources: Vec<Box<dyn Source>>,
    heads: Vec<Head>,
    /// The head handed out by the last call, to refill on the next one.
    consumed: Option<usize>,
}

#[derive(Default)]
struct Head {
    ended: bool,
    full: bool,
    ts_ns: u64,
    wire_len: u32,
    link: Option<LinkType>,
    interface: u32,
    data: Vec<u8>,
}

impl MergedSource {
    /// Merges `sources`.
    pub fn new(sources: Vec<Box<dyn Source>>) -> Self {
        let heads = sources.iter().map(|_| Head::default()).collect();
        Self {
            sources,
            heads,
            consumed: None,
        }
    }
}

impl Source for MergedSource {
    fn name(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// The sum over the sources, when every one of them knows its progress.
    fn progress(&self) -> Option<(u64, u64)> {
        self.sources.iter().try_fold((0u64, 0u64), |(a, b), s| {
            let (x, y) = s.progress()?;
            Some((a.saturating_add(x), b.saturating_add(y)))
        })
    }

    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        if let Some(i) = self.consumed.take() {
            if let Some(h) = self.heads.get_mut(i) {
                h.full = false;
            }
        }
        let mut idle = false;
        for (src, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            if head.full || head.ended {
                continue;
            }
            match src.next_packet()? {
                Next::Packet(p) => {
                    head.full = true;
                    head.ts_ns = p.ts_ns;
                    head.wire_len = p.wire_len;
                    head.link = Some(p.link);
                    head.interface = p.interface;
                    head.data.clear();
                    head.data.extend_from_slice(p.data);
                }
                Next::Idle => idle = true,
                Next::End => head.ended = true,
            }
        }
        if idle {
            return Ok(Next::Idle);
        }
        let oldest = self
            .heads
            .iter()
            .enumerate()
            .filter(|(_, h)| h.full)
            .min_by_key(|(i, h)| (h.ts_ns, *i))
            .map(|(i, _)| i);
        let Some(i) = oldest else {
            return Ok(Next::End);
        };
        self.consumed = Some(i);
        match self.heads.get(i) {
            Some(h) => Ok(Next::Packet(Packet {
                ts_ns: h.ts_ns,
                wire_len: h.wire_len,
                data: &h.data,
                link: h.link.unwrap_or(LinkType::Ethernet),
                interface: h.interface,
            })),
            None => Ok(Next::End),
        }
    }
}

/// Where exported records go (runs on the export thread).
pub trait Sink: Send + 'static {
    /// The stored records of one interval of module `module` (index in the module list), in
    /// interval order per module. Called for every exported interval, even with no record.
    fn interval(
        &mut self,
        module: usize,
        ivl: Interval,
        records: &[Exported],
    ) -> Result<(), SinkError>;
    /// End of the run: flush, sync.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// A sink failed (disk full, stdout closed ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// The runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// More than [`MAX_MODULES`] modules, or none.
    #[error("a runtime runs 1 to {MAX_MODULES} modules, not {0}")]
    ModuleCount(usize),
    /// A module's interval is zero.
    #[error("module `{0}`: interval must be positive")]
    Interval(String),
    /// A module's filter does not compile for a link type met in the input.
    #[error("module `{module}`: invalid filter for link type {link}: {source}")]
    Filter {
        /// Module name.
        module: String,
        /// Link type name.
        link: &'static str,
        /// The compiler's error.
        source: FilterError,
    },
    /// The sink failed.
    #[error("output: {0}")]
    Sink(#[from] SinkError),
    /// A module's export failed.
    #[error("module `{module}`: export: {message}")]
    Export {
        /// Module name.
        module: String,
        /// What failed.
        message: String,
    },
    /// A thread of the runtime panicked or went away.
    #[error("runtime thread failed: {0}")]
    Thread(String),
}

/// Runtime options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// After this long without packets, a live source's open intervals are flushed up to the
    /// current time.
    pub idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            idle_timeout: Duration::from_secs(1),
        }
    }
}

/// The default number of workers: the cores minus one (for the dispatcher), at least 1.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Packets read from the sources.
    pub packets: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Packets that matched each module's filter.
    pub matched: Vec<u64>,
    /// The source's error, if it ended on one (records before it were exported).
    pub source_error: Option<String>,
    /// Problems that did not stop the run (a module filter that does not compile for a link
    /// type met in the input: that module saw none of those packets).
    pub warnings: Vec<String>,
}

/// A module's filter for one link type.
enum Classifier {
    /// No filter: every packet.
    All,
    /// The compiled expression.
    Expr(Filter),
    /// The expression does not compile for this link type: no packet (a warning in the report).
    Never,
}

/// The module filters compiled for one link type.
struct LinkFilters {
    link: LinkType,
    filters: Vec<Classifier>,
    /// No module has a filter: every packet goes to every module, nothing to evaluate.
    unfiltered: bool,
}

/// Compiles each module's filter for `link`; the errors of those that do not compile.
fn compile_all(specs: &[ModuleSpec], link: LinkType) -> (LinkFilters, Vec<RuntimeError>) {
    let mut filters = Vec::with_capacity(specs.len());
    let mut errors = Vec::new();
    for s in specs {
        if s.filter.trim().is_empty() {
            filters.push(Classifier::All);
            continue;
        }
        match ebpf_filters::compile(&s.filter, link) {
            Ok(f) => filters.push(Classifier::Expr(f)),
            Err(e) => {
                errors.push(RuntimeError::Filter {
                    module: s.name.clone(),
                    link: link.name(),
                    source: e,
                });
                filters.push(Classifier::Never);
            }
        }
    }
    let unfiltered = filters.iter().all(|f| matches!(f, Classifier::All));
    (
        LinkFilters {
            link,
            filters,
            unfiltered,
        },
        errors,
    )
}

/// Checks that every module's filter compiles for `link` (call it with the first link type of
/// a source before reading, so a bad filter fails before any output). A link type met later
/// whose filter does not compile is not an error: that module gets none of those packets and
/// the run's report carries a warning.
pub fn check_filters(specs: &[ModuleSpec], link: LinkType) -> Result<(), RuntimeError> {
    match compile_all(specs, link).1.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One packet in a batch: metadata, where its bytes are, which modules want it.
struct Meta {
    ts_ns: u64,
    /// Time used for interval assignment (the high-water time).
    ivl_ts: u64,
    wire_len: u32,
    link: LinkType,
    interface: u32,
    off: usize,
    len: usize,
    mask: u64,
    seq: u64,
    layers: Layers,
}

/// Packets for one worker, then optionally an advance of its clock.
struct Batch {
    data: Vec<u8>,
    pkts: Vec<Meta>,
    advance: Option<u64>,
}

impl Batch {
    /// An empty batch with room for [`BATCH_PKTS`] packets of up to 128 bytes each (it grows
    /// for larger ones, and keeps that room when it is reused).
    fn new() -> Self {
        Self {
            data: Vec::with_capacity(BATCH_PKTS * 128),
            pkts: Vec::with_capacity(BATCH_PKTS),
            advance: None,
        }
    }

    /// Empties the batch, keeping its buffers.
    fn clear(&mut self) {
        self.data.clear();
        self.pkts.clear();
        self.advance = None;
    }
}

enum ExportMsg {
    Partial {
        worker: usize,
        module: usize,
        state: Box<dyn CaptureState>,
    },
    Watermark {
        worker: usize,
        ts: u64,
    },
}

/// A running pipeline: feed it packets, advance it on idle, finish it.
pub struct Pipeline<S: Sink> {
    specs: Arc<Vec<ModuleSpec>>,
    links: Vec<LinkFilters>,
    last_link: usize,
    lens: Vec<u64>,
    to_workers: Vec<Sender<Batch>>,
    batches: Vec<Batch>,
    /// Batches the workers are done with, to fill again.
    spare: Receiver<Batch>,
    workers: Vec<JoinHandle<()>>,
    /// The single worker, run on the dispatcher's thread (`workers == 1`).
    inline: Option<WorkerCore>,
    exporter: Option<JoinHandle<Result<S, RuntimeError>>>,
    high_water: u64,
    next_boundary: u64,
    seq: u64,
    report: RunReport,
    cpu: Arc<ModuleCpu>,
    /// Bit `i` set: every module (the mask of an unfiltered packet).
    all_mask: u64,
    /// Bit `i` set: module `i` reads parsed headers ([`AnyModule::needs_layers`]).
    layer_mask: u64,
    /// The headers of a run's packets when several of its modules read them (one-worker
    /// path: parsed once, copied per module).
    parsed: Vec<Layers>,
}

/// The modules of packet `j` of a pass of the one-worker path: `all` when every packet goes to
/// every module (`uniform`; `masks` is then empty), else its own mask.
#[inline(always)]
fn mask_at(uniform: bool, all: u64, masks: &[u64], j: usize) -> u64 {
    if uniform {
        all
    } else {
        masks.get(j).copied().unwrap_or(0)
    }
}

/// A symmetric flow hash: the same for both directions of a flow; 0 without IP.
fn flow_hash(p: &Parsed<'_>) -> u64 {
    // The addresses are read as integers straight from the bytes (an `IpAddr` per address
    // cost more than the rest of the hash): both must be captured, as `src_ip`/`dst_ip` need.
    let (l, d) = (&p.layers, p.packet.data);
    let Some(l3) = l.l3.map(usize::from) else {
        return 0;
    };
    let (a, b) = match l.l3_proto {
        Some(L3Proto::Ipv4) => {
            let Some(&[s0, s1, s2, s3, d0, d1, d2, d3]) =
                d.get(l3 + 12..).and_then(<[u8]>::first_chunk::<8>)
            else {
                return 0;
            };
            (
                u64::from(u32::from_be_bytes([s0, s1, s2, s3])),
                u64::from(u32::from_be_bytes([d0, d1, d2, d3])),
            )
        }
        Some(L3Proto::Ipv6) => {
            let Some(both) = d.get(l3 + 8..).and_then(<[u8]>::first_chunk::<32>) else {
                return 0;
            };
            let fold = |half: &[u8; 16]| {
                let x = u128::from_be_bytes(*half);
                (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
            };
            let (src, dst) = both.split_at(16);
            match (src.first_chunk::<16>(), dst.first_chunk::<16>()) {
                (Some(s), Some(t)) => (fold(s), fold(t)),
                _ => return 0,
            }
        }
        _ => return 0,
    };
    // Fragments hash without ports (only the first one has them), so all fragments of a
    // datagram reach the same worker, where modules can reassemble them.
    let (sp, dp) = if l.frag.is_some() {
        (0, 0)
    } else {
        (l.src_port(d).unwrap_or(0), l.dst_port(d).unwrap_or(0))
    };
    mix_flow((a, sp), (b, dp), l.l4_proto.unwrap_or(0))
}

/// The flow hash of two endpoints (an address folded to 64 bits, a port) and the IP protocol:
/// the endpoints are ordered first, so both directions of a flow hash the same.
#[inline]
fn mix_flow(a: (u64, u16), b: (u64, u16), proto: u8) -> u64 {
    let ea = a.0 ^ (u64::from(a.1) << 48);
    let eb = b.0 ^ (u64::from(b.1) << 48);
    let (lo, hi) = if ea <= eb { (ea, eb) } else { (eb, ea) };
    let mut z = lo.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23)
        ^ hi.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ u64::from(proto);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One worker's module states: on a worker thread, or on the dispatcher's thread when the
/// runtime has a single worker (no copy, no channel).
struct WorkerCore {
    id: usize,
    specs: Arc<Vec<ModuleSpec>>,
    lens: Vec<u64>,
    states: Vec<Option<Box<dyn CaptureState>>>,
    /// End of the interval of `states[i]` (0 without a state): one comparison per packet and
    /// module decides whether the state is current.
    ends: Vec<u64>,
    tx: Sender<ExportMsg>,
    cpu: Arc<ModuleCpu>,
    tick: u32,
    /// Packets handed in runs since the last timed run (the one-worker path's sampling).
    untimed: u32,
}

impl WorkerCore {
    fn new(
        id: usize,
        specs: Arc<Vec<ModuleSpec>>,
        lens: Vec<u64>,
        tx: Sender<ExportMsg>,
        cpu: Arc<ModuleCpu>,
    ) -> Self {
        let states = specs.iter().map(|_| None).collect();
        let ends = vec![0; specs.len()];
        Self {
            id,
            specs,
            lens,
            states,
            ends,
            tx,
            cpu,
            tick: 0,
            untimed: 0,
        }
    }

    /// The state of module `i` for the interval of `ivl_ts`, opened when there is none or it
    /// is of an interval that ended; `Ok(None)` for an unknown module, `Err` when the exporter
    /// is gone.
    #[inline]
    fn state(&mut self, i: usize, ivl_ts: u64) -> Result<Option<&mut Box<dyn CaptureState>>, ()> {
        let open = self.ends.get(i).is_some_and(|&end| ivl_ts < end);
        if open {
            if let Some(Some(_)) = self.states.get(i) {
                return Ok(self.states.get_mut(i).and_then(Option::as_mut));
            }
        }
        self.open(i, ivl_ts)
    }

    /// Whether to time the run of `len` packets about to be handed to the modules (the
    /// one-worker path): yes once [`CPU_SAMPLE_EVERY`] packets went by untimed, with the
    /// factor that turns the run's time into the time of the packets it stands for.
    #[inline]
    fn sample_run(&mut self, len: usize) -> Option<f64> {
        self.untimed = self
            .untimed
            .saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
        if self.untimed < CPU_SAMPLE_EVERY || len == 0 {
            return None;
        }
        let scale = f64::from(self.untimed) / len as f64;
        self.untimed = 0;
        Some(scale)
    }

    /// Updates the modules of `mask` with `pkt`, accounted in the interval of `ivl_ts`.
    ///
    /// A worker thread's step, per packet (the one-worker path hands runs of packets instead:
    /// [`Pipeline::packets`]): a packet whose states are open costs a mask walk and one `update`
    /// call per module; opening a state and the CPU-time samples (one packet in
    /// [`CPU_SAMPLE_EVERY`]) are out of line.
    #[inline(always)]
    fn process(&mut self, pkt: &Pkt<'_>, mask: u64, ivl_ts: u64) -> bool {
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(CPU_SAMPLE_EVERY) {
            return self.process_timed(pkt, mask, ivl_ts);
        }
        self.update_all::<false>(pkt, mask, ivl_ts)
    }

    /// [`WorkerCore::process`] timing each module's update.
    #[inline(never)]
    fn process_timed(&mut self, pkt: &Pkt<'_>, mask: u64, ivl_ts: u64) -> bool {
        self.update_all::<true>(pkt, mask, ivl_ts)
    }

    /// Updates the modules of `mask`, timing each update when `TIMED`.
    #[inline(always)]
    fn update_all<const TIMED: bool>(&mut self, pkt: &Pkt<'_>, mut mask: u64, ivl_ts: u64) -> bool {
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let state = match self.state(i, ivl_ts) {
                Ok(Some(state)) => state,
                Ok(None) => continue,
                Err(()) => return false,
            };
            let t = TIMED.then(Instant::now);
            state.update(pkt);
            if let Some(t) = t {
                self.cpu.add(i, t.elapsed() * CPU_SAMPLE_EVERY);
            }
        }
        true
    }

    /// Opens the state of module `i` for the interval of `ivl_ts`, handing the state of an
    /// interval that ended to the exporter first (a safety net: the dispatcher's advance
    /// normally flushed it already). `Err` when the exporter is gone.
    #[cold]
    #[inline(never)]
    fn open(&mut self, i: usize, ivl_ts: u64) -> Result<Option<&mut Box<dyn CaptureState>>, ()> {
        let (Some(slot), Some(end)) = (self.states.get_mut(i), self.ends.get_mut(i)) else {
            return Ok(None);
        };
        if ivl_ts >= *end {
            if let Some(state) = slot.take() {
                let msg = ExportMsg::Partial {
                    worker: self.id,
                    module: i,
                    state,
                };
                if self.tx.send(msg).is_err() {
                    return Err(());
                }
            }
            let (Some(&len), Some(spec)) = (self.lens.get(i), self.specs.get(i)) else {
                return Ok(None);
            };
            let ivl = Interval::containing(ivl_ts, len);
            *end = ivl.end_ns();
            *slot = Some(spec.module.new_state(ivl));
        }
        Ok(slot.as_mut())
    }

    /// Takes the open states of the modules in `mask` out of the core, with the end of their
    /// interval: a reload hands them to the next pipeline instead of flushing them.
    fn take_open(&mut self, mask: u64) -> Vec<(usize, Box<dyn CaptureState>, u64)> {
        let mut out = Vec::new();
        for (module, (slot, end)) in self.states.iter_mut().zip(&mut self.ends).enumerate() {
            if module < MAX_MODULES && mask & (1 << module) != 0 {
                if let Some(state) = slot.take() {
                    out.push((module, state, *end));
                }
                *end = 0;
            }
        }
        out
    }

    /// Puts a state taken by [`WorkerCore::take_open`] (of the same module, in an earlier
    /// pipeline) in place as the open state of `module`.
    fn put_open(&mut self, module: usize, state: Box<dyn CaptureState>, end: u64) {
        if let (Some(slot), Some(e)) = (self.states.get_mut(module), self.ends.get_mut(module)) {
            *slot = Some(state);
            *e = end;
        }
    }

    /// Flushes the states of intervals that end at or before `upto`, then tells the exporter
    /// this worker has passed `upto`. False when the exporter is gone.
    fn advance(&mut self, upto: u64) -> bool {
        for (module, (slot, end)) in self.states.iter_mut().zip(&mut self.ends).enumerate() {
            if slot.is_some() && *end <= upto {
                *end = 0;
                if let Some(state) = slot.take() {
                    let msg = ExportMsg::Partial {
                        worker: self.id,
                        module,
                        state,
                    };
                    if self.tx.send(msg).is_err() {
                        return false;
                    }
                }
            }
        }
        self.tx
            .send(ExportMsg::Watermark {
                worker: self.id,
                ts: upto,
            })
            .is_ok()
    }
}

/// A worker thread: updates its modules with each batch, then hands the emptied batch back
/// to the dispatcher through `back` (dropped when the dispatcher has enough spares).
fn worker_loop(mut core: WorkerCore, rx: Receiver<Batch>, back: Sender<Batch>) {
    for mut batch in rx {
        for m in &batch.pkts {
            let Some(data) = batch.data.get(m.off..m.off + m.len) else {
                continue;
            };
            let pkt = Pkt {
                parsed: Parsed {
                    packet: Packet {
                        ts_ns: m.ts_ns,
                        wire_len: m.wire_len,
                        data,
                        link: m.link,
                        interface: m.interface,
                    },
                    layers: m.layers,
                },
                seq: m.seq,
            };
            if !core.process(&pkt, m.mask, m.ivl_ts) {
                return;
            }
        }
        if let Some(upto) = batch.advance {
            if !core.advance(upto) {
                return;
            }
        }
        batch.clear();
        let _ = back.try_send(batch);
    }
}

/// The partials the export thread holds per module: interval start → (interval, one slot per
/// worker), exported once every worker has passed the interval.
pub(crate) type Pending =
    std::collections::BTreeMap<u64, (Interval, Vec<Option<Box<dyn CaptureState>>>)>;

/// One module's export side handed from a stopping pipeline to the next (a reload that keeps
/// the module): the partials waiting for other workers, and the exporter (its state across
/// intervals: top-N history, EWMA ...).
pub(crate) struct ExportCarry {
    pub(crate) pending: Pending,
    pub(crate) exporter: Box<dyn como_module::Exporter>,
}

/// The export thread: merges the workers' partials of each interval once every worker has
/// passed it, exports, hands the records to `sink`. `carried[m]`: module `m`'s export side from
/// an earlier pipeline. The modules in the `handover` mask at the end (all workers passed
/// `u64::MAX`, i.e. stopped) are not flushed: their export side is returned instead.
fn export_loop<S: Sink>(
    specs: Arc<Vec<ModuleSpec>>,
    workers: usize,
    rx: Receiver<ExportMsg>,
    mut sink: S,
    cpu: Arc<ModuleCpu>,
    carried: Vec<(usize, ExportCarry)>,
    handover: Option<Arc<AtomicU64>>,
) -> Result<(S, Vec<(usize, ExportCarry)>), RuntimeError> {
    let mut pending: Vec<Pending> = specs.iter().map(|_| Pending::new()).collect();
    let mut exporters: Vec<_> = specs.iter().map(|s| s.module.new_exporter()).collect();
    for (m, c) in carried {
        if let (Some(p), Some(e)) = (pending.get_mut(m), exporters.get_mut(m)) {
            *p = c.pending;
            for (_, slots) in p.values_mut() {
                slots.resize_with(workers, || None);
            }
            *e = c.exporter;
        }
    }
    let mut wm = vec![0u64; workers];
    let mut out = Vec::new();
    let kept = |module: usize| {
        module < MAX_MODULES
            && handover
                .as_ref()
                .is_some_and(|h| h.load(Ordering::SeqCst) & (1 << module) != 0)
    };
    for msg in rx {
        match msg {
            ExportMsg::Partial {
                worker,
                module,
                state,
            } => {
                let ivl = state.interval();
                if let Some(p) = pending.get_mut(module) {
                    let entry = p
                        .entry(ivl.start_ns)
                        .or_insert_with(|| (ivl, (0..workers).map(|_| None).collect()));
                    if let Some(slot) = entry.1.get_mut(worker) {
                        *slot = Some(state);
                    }
                }
            }
            ExportMsg::Watermark { worker, ts } => {
                if let Some(w) = wm.get_mut(worker) {
                    *w = (*w).max(ts);
                }
                let low = wm.iter().copied().min().unwrap_or(0);
                for (module, p) in pending.iter_mut().enumerate() {
                    if low == u64::MAX && kept(module) {
                        // Stopped for a reload that keeps this module: handed over below.
                        continue;
                    }
                    while let Some(entry) = p.first_entry() {
                        if entry.get().0.end_ns() > low {
                            break;
                        }
                        let (ivl, partials) = entry.remove();
                        let partials: Vec<_> = partials.into_iter().flatten().collect();
                        out.clear();
                        if let Some(ex) = exporters.get_mut(module) {
                            let t = Instant::now();
                            let result = ex.export(ivl, partials, &mut out);
                            cpu.add(module, t.elapsed());
                            result.map_err(|e| RuntimeError::Export {
                                module: specs
                                    .get(module)
                                    .map(|s| s.name.clone())
                                    .unwrap_or_default(),
                                message: e.to_string(),
                            })?;
                        }
                        sink.interval(module, ivl, &out)?;
                    }
                }
            }
        }
    }
    sink.finish()?;
    let mut handed = Vec::new();
    for (module, (p, spec)) in pending.iter_mut().zip(specs.iter()).enumerate() {
        if kept(module) {
            if let Some(e) = exporters.get_mut(module) {
                handed.push((
                    module,
                    ExportCarry {
                        pending: std::mem::take(p),
                        exporter: std::mem::replace(e, spec.module.new_exporter()),
                    },
                ));
            }
        }
    }
    Ok((sink, handed))
}

impl<S: Sink> Pipeline<S> {
    /// Starts the worker and export threads.
    pub fn start(specs: Vec<ModuleSpec>, opts: &Options, sink: S) -> Result<Self, RuntimeError> {
        if specs.is_empty() || specs.len() > MAX_MODULES {
            return Err(RuntimeError::ModuleCount(specs.len()));
        }
        if let Some(s) = specs.iter().find(|s| s.interval.is_zero()) {
            return Err(RuntimeError::Interval(s.name.clone()));
        }
        let lens: Vec<u64> = specs
            .iter()
            .map(|s| {
                u64::try_from(s.interval.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1)
            })
            .collect();
        let specs = Arc::new(specs);
        let n = opts.workers.max(1);
        let cpu = Arc::new(ModuleCpu::new(specs.len()));
        let (etx, erx) = bounded::<ExportMsg>(4096);
        let mut to_workers = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        let mut inline = None;
        // Emptied batches come back from the workers to be filled again: no allocation and no
        // regrowth of a batch's buffers per batch.
        let (spare_tx, spare) = bounded::<Batch>(n * (WORKER_QUEUE + 2));
        if n == 1 {
            inline = Some(WorkerCore::new(
                0,
                Arc::clone(&specs),
                lens.clone(),
                etx.clone(),
                Arc::clone(&cpu),
            ));
        } else {
            for id in 0..n {
                let (tx, rx) = bounded::<Batch>(WORKER_QUEUE);
                to_workers.push(tx);
                let core = WorkerCore::new(
                    id,
                    Arc::clone(&specs),
                    lens.clone(),
                    etx.clone(),
                    Arc::clone(&cpu),
                );
                let h = std::thread::Builder::new()
                    .name(format!("como-worker-{id}"))
                    .spawn({
                        let back = spare_tx.clone();
                        move || worker_loop(core, rx, back)
                    })
                    .map_err(|e| RuntimeError::Thread(e.to_string()))?;
                workers.push(h);
            }
        }
        drop(etx);
        let especs = Arc::clone(&specs);
        let ecpu = Arc::clone(&cpu);
        let exporter = std::thread::Builder::new()
            .name("como-export".into())
            .spawn(move || {
                export_loop(especs, n, erx, sink, ecpu, Vec::new(), None).map(|(s, _)| s)
            })
            .map_err(|e| RuntimeError::Thread(e.to_string()))?;
        let matched = vec![0; specs.len()];
        let all_mask = u64::MAX >> (64 - specs.len());
        let layer_mask = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.module.needs_layers())
            .fold(0u64, |m, (i, _)| m | 1 << i);
        let batches = (0..to_workers.len()).map(|_| Batch::new()).collect();
        Ok(Self {
            specs,
            links: Vec::new(),
            last_link: 0,
            lens,
            to_workers,
            batches,
            spare,
            workers,
            inline,
            exporter: Some(exporter),
            high_water: 0,
            next_boundary: 0,
            seq: 0,
            cpu,
            report: RunReport {
                matched,
                ..RunReport::default()
            },
            all_mask,
            layer_mask,
            parsed: Vec::new(),
        })
    }

    fn link_index(&mut self, link: LinkType) -> Result<usize, RuntimeError> {
        if self
            .links
            .get(self.last_link)
            .is_some_and(|l| l.link == link)
        {
            return Ok(self.last_link);
        }
        let at = match self.links.iter().position(|l| l.link == link) {
            Some(at) => at,
            None => {
                let (filters, errors) = compile_all(&self.specs, link);
                self.report
                    .warnings
                    .extend(errors.into_iter().map(|e| e.to_string()));
                self.links.push(filters);
                self.links.len() - 1
            }
        };
        self.last_link = at;
        Ok(at)
    }

    fn send(&mut self, worker: usize) -> Result<(), RuntimeError> {
        let (Some(slot), Some(tx)) = (self.batches.get_mut(worker), self.to_workers.get(worker))
        else {
            return Ok(());
        };
        let fresh = self.spare.try_recv().unwrap_or_else(|_| Batch::new());
        let batch = std::mem::replace(slot, fresh);
        tx.send(batch)
            .map_err(|_| RuntimeError::Thread(format!("worker {worker} went away")))
    }

    /// Flushes every interval that ends at or before `ts_ns` (on every worker and module) and
    /// moves the clock there: the idle-timeout call for live sources, also used at end of input.
    pub fn advance(&mut self, ts_ns: u64) -> Result<(), RuntimeError> {
        self.high_water = self.high_water.max(ts_ns);
        if let Some(core) = self.inline.as_mut() {
            if !core.advance(self.high_water) {
                return Err(RuntimeError::Thread("the export thread went away".into()));
            }
        }
        for w in 0..self.batches.len() {
            if let Some(b) = self.batches.get_mut(w) {
                b.advance = Some(self.high_water);
            }
            self.send(w)?;
        }
        self.next_boundary = self
            .lens
            .iter()
            .map(|&len| Interval::containing(self.high_water, len).end_ns())
            .min()
            .unwrap_or(u64::MAX);
        Ok(())
    }

    /// Classifies one packet and hands it to its worker ([`Pipeline::packets`] for a batch).
    pub fn packet(&mut self, pkt: &Packet<'_>) -> Result<(), RuntimeError> {
        self.packets(std::slice::from_ref(pkt))
    }

    /// Classifies a batch of packets and hands each to its worker.
    pub fn packets(&mut self, pkts: &[Packet<'_>]) -> Result<(), RuntimeError> {
        self.report.packets += pkts.len() as u64;
        if self.inline.is_some() {
            for pass in pkts.chunks(INLINE_PASS) {
                self.pass_inline(pass)?;
            }
            return Ok(());
        }
        // Packets of the batch that went to every module (unfiltered link types): the
        // per-module counters are added to once per batch.
        let mut to_all = 0u64;
        let mut result = Ok(());
        for pkt in pkts {
            self.report.bytes += u64::from(pkt.wire_len);
            let mask = match self.link_index(pkt.link) {
                Ok(li) => self.mask_of(li, pkt, &mut to_all),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Err(e) = self.dispatch(pkt, mask) {
                result = Err(e);
                break;
            }
        }
        self.add_to_all(to_all);
        result
    }

    /// One pass of the one-worker path over up to [`INLINE_PASS`] packets.
    ///
    /// The packets are classified first (a mask each, or one for all when they share a link
    /// type that no module filters), then cut before each packet that starts a new interval,
    /// and each run between two cuts is handed to the modules one after the other: a module's
    /// state is looked up once per run and gets the run in one call
    /// ([`CaptureState::update_run`]: the loop, the header parse when the module reads headers
    /// and its `update` are compiled together, per module kind). A run never
    /// spans two intervals of any module, so the order of updates within a module and the
    /// flushes are those of a packet-by-packet walk.
    fn pass_inline(&mut self, pkts: &[Packet<'_>]) -> Result<(), RuntimeError> {
        let Some(pkts) = pkts.get(..INLINE_PASS.min(pkts.len())) else {
            return Ok(());
        };
        let mut masks = [0u64; INLINE_PASS];
        // The packets classified (all, or those before the one whose link type failed).
        let mut n = pkts.len();
        let mut failed = None;
        let mut to_all = 0u64;
        let uniform = match pkts.first() {
            Some(first) if pkts.iter().all(|p| p.link == first.link) => {
                match self.link_index(first.link) {
                    Ok(li) => self.links.get(li).is_some_and(|lf| lf.unfiltered),
                    Err(e) => return Err(e),
                }
            }
            _ => false,
        };
        if uniform {
            // Every packet to every module: no mask per packet.
            self.report.bytes += pkts.iter().map(|p| u64::from(p.wire_len)).sum::<u64>();
            to_all = n as u64;
        } else {
            for (j, (pkt, m)) in pkts.iter().zip(masks.iter_mut()).enumerate() {
                self.report.bytes += u64::from(pkt.wire_len);
                match self.link_index(pkt.link) {
                    Ok(li) => *m = self.mask_of(li, pkt, &mut to_all),
                    Err(e) => {
                        failed = Some(e);
                        n = j;
                        break;
                    }
                }
            }
        }
        self.add_to_all(to_all);
        let seq0 = self.seq;
        self.seq += n as u64;
        let (pkts, masks) = (
            pkts.get(..n).unwrap_or_default(),
            masks.get(..n).unwrap_or_default(),
        );
        let all = self.all_mask;
        let mask = |j: usize| mask_at(uniform, all, masks, j);
        let mut start = 0;
        while start < n {
            // A packet for some module at or past the next interval end starts a run.
            if let Some(p) = pkts.get(start) {
                if mask(start) != 0 && p.ts_ns >= self.next_boundary {
                    self.advance(p.ts_ns)?;
                }
            }
            let boundary = self.next_boundary;
            let end = start
                + 1
                + pkts
                    .iter()
                    .enumerate()
                    .skip(start + 1)
                    .position(|(j, p)| p.ts_ns >= boundary && mask(j) != 0)
                    .unwrap_or(n - start - 1);
            if uniform {
                self.run_inline::<true>(pkts, &[], start..end, seq0)?;
            } else {
                self.run_inline::<false>(pkts, masks, start..end, seq0)?;
            }
            start = end;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Updates the modules with the packets `run` of a pass (within one interval of every
    /// module), module by module; `seq0` is the sequence number of the pass's first packet.
    /// `masks` holds each packet's modules, or with `ALL` is empty: every packet goes to every
    /// module.
    fn run_inline<const ALL: bool>(
        &mut self,
        pkts: &[Packet<'_>],
        masks: &[u64],
        run: std::ops::Range<usize>,
        seq0: u64,
    ) -> Result<(), RuntimeError> {
        let Some(pkts) = pkts.get(run.clone()) else {
            return Ok(());
        };
        let masks = if ALL {
            masks
        } else {
            masks.get(run.clone()).unwrap_or_default()
        };
        let all = self.all_mask;
        let mask = |j: usize| mask_at(ALL, all, masks, j);
        let wanted = if ALL {
            all
        } else {
            masks.iter().fold(0u64, |a, &m| a | m)
        };
        let Some(first) = pkts
            .iter()
            .enumerate()
            .find(|&(j, _)| mask(j) != 0)
            .map(|(_, p)| p)
        else {
            return Ok(());
        };
        // Every packet of the run is in the same interval of every module: the first one's
        // time opens the states. Out-of-order packets count in the interval of the newest
        // time seen (`high_water`).
        let ivl_ts = self.high_water.max(first.ts_ns);
        let Some(core) = self.inline.as_mut() else {
            return Ok(());
        };
        let gone = || RuntimeError::Thread("the export thread went away".into());
        let timed = core.sample_run(pkts.len());
        // Parsed once per packet when several modules read headers, in place when one does.
        let layer_modules = (wanted & self.layer_mask).count_ones();
        let parsed = &mut self.parsed;
        if layer_modules > 1 {
            parsed.resize(INLINE_PASS, Layers::default());
            for (j, (p, l)) in pkts.iter().zip(parsed.iter_mut()).enumerate() {
                if mask(j) & self.layer_mask != 0 {
                    Layers::parse_into(p, l);
                }
            }
        }
        let mut left = wanted;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            let bit = 1u64 << i;
            let state = match core.state(i, ivl_ts) {
                Ok(Some(state)) => state,
                Ok(None) => continue,
                Err(()) => return Err(gone()),
            };
            let layers = if self.layer_mask & bit == 0 {
                RunLayers::Unread
            } else if layer_modules > 1 {
                RunLayers::Parsed(parsed.get(..pkts.len()).unwrap_or_default())
            } else {
                RunLayers::Parse
            };
            let t = timed.map(|_| Instant::now());
            state.update_run(&Run {
                pkts,
                seq0: seq0 + run.start as u64,
                masks: (!ALL).then_some(masks),
                bit,
                layers,
            });
            if let (Some(t), Some(scale)) = (t, timed) {
                core.cpu.add(i, t.elapsed().mul_f64(scale));
            }
        }
        Ok(())
    }

    /// The modules that want `pkt`, of link type `links[li]`: the mask of the link type's
    /// filters that match, each counted; an unfiltered link type counts in `to_all`.
    #[inline(always)]
    fn mask_of(&mut self, li: usize, pkt: &Packet<'_>, to_all: &mut u64) -> u64 {
        let Some(lf) = self.links.get(li) else {
            return 0;
        };
        if lf.unfiltered {
            *to_all += 1;
            return self.all_mask;
        }
        let mut mask = 0u64;
        for (i, f) in lf.filters.iter().enumerate() {
            let hit = match f {
                Classifier::All => true,
                Classifier::Expr(f) => f.matches(pkt),
                Classifier::Never => false,
            };
            if hit {
                mask |= 1 << i;
                if let Some(c) = self.report.matched.get_mut(i) {
                    *c += 1;
                }
            }
        }
        mask
    }

    /// Adds the packets that went to every module to each module's match counter.
    fn add_to_all(&mut self, to_all: u64) {
        if to_all > 0 {
            for c in &mut self.report.matched {
                *c += to_all;
            }
        }
    }

    /// Parses `pkt`, which the modules of `mask` want, and queues it for the worker of its
    /// flow (the multi-worker path).
    fn dispatch(&mut self, pkt: &Packet<'_>, mask: u64) -> Result<(), RuntimeError> {
        let seq = self.seq;
        self.seq += 1;
        if mask == 0 {
            return Ok(());
        }
        if pkt.ts_ns >= self.next_boundary {
            self.advance(pkt.ts_ns)?;
        }
        let ivl_ts = self.high_water.max(pkt.ts_ns);
        let parsed = Parsed {
            packet: *pkt,
            layers: Layers::parse(pkt),
        };
        let n = self.batches.len();
        let worker = if n == 1 {
            0
        } else {
            (flow_hash(&parsed) % n as u64) as usize
        };
        let full = match self.batches.get_mut(worker) {
            Some(b) => {
                let off = b.data.len();
                b.data.extend_from_slice(pkt.data);
                b.pkts.push(Meta {
                    ts_ns: pkt.ts_ns,
                    ivl_ts,
                    wire_len: pkt.wire_len,
                    link: pkt.link,
                    interface: pkt.interface,
                    off,
                    len: pkt.data.len(),
                    mask,
                    seq,
                    layers: parsed.layers,
                });
                b.pkts.len() >= BATCH_PKTS || b.data.len() >= BATCH_BYTES
            }
            None => false,
        };
        if full {
            self.send(worker)?;
        }
        Ok(())
    }

    /// Flushes everything, stops the threads and returns the report and the sink.
    pub fn finish(mut self) -> Result<(RunReport, S), RuntimeError> {
        let result = self.advance(u64::MAX);
        self.to_workers.clear();
        self.inline = None;
        for h in self.workers.drain(..) {
            h.join()
                .map_err(|_| RuntimeError::Thread("a worker panicked".into()))?;
        }
        let sink = match self.exporter.take() {
            Some(h) => h
                .join()
                .map_err(|_| RuntimeError::Thread("the export thread panicked".into()))??,
            None => return Err(RuntimeError::Thread("export thread missing".into())),
        };
        result?;
        Ok((std::mem::take(&mut self.report), sink))
    }

    /// The counters so far (packets, bytes, matches per module): a daemon publishes them to its
    /// metrics every batch of packets.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    /// The per-module CPU accounting of this pipeline (shared; it keeps counting).
    pub fn module_cpu(&self) -> Arc<ModuleCpu> {
        Arc::clone(&self.cpu)
    }

    /// Records that the source ended on an error (the run still flushes what came before).
    pub fn set_source_error(&mut self, e: &SourceError) {
        self.report.source_error = Some(e.to_string());
    }
}

/// Runs `specs` over `source` to its end and returns the report and the sink.
pub fn run<S: Sink>(
    specs: Vec<ModuleSpec>,
    opts: &Options,
    source: &mut dyn Source,
    sink: S,
) -> Result<(RunReport, S), RuntimeError> {
    run_observed(specs, opts, source, sink, &mut |_: &dyn Source| {})
}

/// Packets between two calls of the observer of [`run_observed`].
pub const OBSERVE_EVERY: u64 = 1 << 16;

/// [`run`], calling `observe` with the source every [`OBSERVE_EVERY`] packets, when it goes
/// idle, and at its end (progress bars: [`Source::progress`]).
pub fn run_observed<S: Sink>(
    specs: Vec<ModuleSpec>,
    opts: &Options,
    source: &mut dyn Source,
    sink: S,
    observe: &mut dyn FnMut(&dyn Source),
) -> Result<(RunReport, S), RuntimeError> {
    /// Calls `observe` when the packet count crosses a multiple of [`OBSERVE_EVERY`].
    struct Every<'o> {
        observe: &'o mut dyn FnMut(&dyn Source),
        n: u64,
    }
    impl<S: Sink> Observer<S> for Every<'_> {
        fn progress(&mut self, source: &dyn Source, _: &Pipeline<S>, packets: u64) {
            if packets == 0 || self.n / OBSERVE_EVERY != (self.n + packets) / OBSERVE_EVERY {
                (self.observe)(source);
            }
            self.n += packets;
        }
    }
    let mut pipe = Pipeline::start(specs, opts, sink)?;
    let mut every = Every { observe, n: 0 };
    if let Err(e) = drive(&mut pipe, opts, source, &mut every) {
        // Stop the threads before reporting; a failure of the export side (the sink) is the
        // root cause of a worker that went away.
        return Err(pipe.finish().err().unwrap_or(e));
    }
    pipe.finish()
}

/// What the caller of [`drive`] sees of the run, batch by batch.
pub trait Observer<S: Sink> {
    /// A batch of packets, before the pipeline classifies them (a daemon writes them to its
    /// trace window here). Default: nothing.
    fn packets(&mut self, pkts: &[Packet<'_>]) {
        let _ = pkts;
    }
    /// After each batch (`packets` > 0), at each idle poll and at the end (`packets` == 0):
    /// counters to publish, progress to show. Default: nothing.
    fn progress(&mut self, source: &dyn Source, pipe: &Pipeline<S>, packets: u64) {
        let _ = (source, pipe, packets);
    }
    /// The source went idle after packets (called once per idle period). Default: nothing.
    fn idle(&mut self) {}
}

/// The dispatcher loop: reads `source` batch by batch to its end into `pipe`, advances the
/// intervals after `opts.idle_timeout` of idleness (live sources), records a source error in
/// the report. The caller then calls [`Pipeline::finish`] (also after an error of the pipeline,
/// which stops the loop and is returned).
pub fn drive<S: Sink>(
    pipe: &mut Pipeline<S>,
    opts: &Options,
    source: &mut dyn Source,
    obs: &mut dyn Observer<S>,
) -> Result<(), RuntimeError> {
    // When the source went idle (no clock read per packet).
    let mut idle_since: Option<Instant> = None;
    let mut last_ts = 0u64;
    // The first failure of the pipeline within a batch.
    let mut failed: Option<RuntimeError> = None;
    loop {
        let next = source.next_batch(&mut |pkts| {
            if let Some(newest) = pkts.iter().map(|p| p.ts_ns).max() {
                last_ts = last_ts.max(newest);
            }
            obs.packets(pkts);
            if let Err(e) = pipe.packets(pkts) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed.take() {
            return Err(e);
        }
        match next {
            Ok(Got::Packets(k)) => {
                idle_since = None;
                obs.progress(&*source, pipe, k as u64);
            }
            Ok(Got::Idle) => {
                if idle_since.is_none() {
                    obs.idle();
                }
                let since = *idle_since.get_or_insert_with(Instant::now);
                let idle = since.elapsed();
                if idle >= opts.idle_timeout {
                    let now =
                        last_ts.saturating_add(u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX));
                    pipe.advance(now)?;
                    idle_since = Some(Instant::now());
                    last_ts = now;
                }
                obs.progress(&*source, pipe, 0);
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Got::End) => break,
            Err(e) => {
                tracing::error!("{e}");
                pipe.set_source_error(&e);
                break;
            }
        }
    }
    obs.progress(&*source, pipe, 0);
    Ok(())
}

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;
