//! The live form of the runtime: one worker thread per capture queue (an AF_XDP socket),
//! pinned to a core, classifying with the XDP program's metadata and running the module
//! updates on its own states (no dispatcher, no copy, no channel on the packet path).
//!
//! ```text
//!  LiveQueue q ──► worker q (thread como-live-q, pinned): recv a batch; per frame:
//!                   XdpMeta valid (magic, generation) → mask = meta.rules, re-check the
//!                   `recheck` bits with the exact Filter; otherwise classify with every
//!                   exact Filter; module updates on this worker's states; frames returned
//!                   when the batch's callback returns; counters flushed once per batch
//!             ──► export thread: partials of all workers merged per interval (watermarks)
//! ```
//!
//! **Time.** A live packet's timestamp is the wall-clock time (ns since the Unix epoch) at which
//! its batch was taken from the ring: one clock read per poll, derived from the monotonic clock
//! and the wall-clock time at start, so it never goes backwards. Every worker uses the same
//! clock, so each one advances its intervals by itself: when the clock passes the end of an
//! interval, after a batch or while idle, the worker flushes its partial states and sends its
//! watermark; an idle queue therefore never stalls the export of the others.
//!
//! **Idle.** A worker spins while frames come, and only after [`SPIN_POLLS`] empty polls
//! yields, then sleeps (from [`MIN_SLEEP`] doubling to [`MAX_SLEEP`]); a frame resets it.
//!
//! **Counters** ([`WorkerCounters`]) are atomics written once per batch (and once per
//! statistics period for the queue's own drop counters): nothing per packet but local adds.
//!
//! **The packet window** ([`LivePipeline::start_with_window`]) is one more rule of the kernel
//! tables, with its own bit (not a module's): a frame whose metadata has that bit set (checked
//! exactly with the window's filter when the kernel flags it, or classified in userspace when
//! the metadata is missing or stale) goes to the worker's [`WindowTap`], whether or not a module
//! wants it. The tap is called with `None` when the worker goes idle (after [`SPIN_POLLS`]
//! empty polls), every [`STATS_EVERY`] while it stays idle, and when it stops: the moments to
//! hand a partial buffer to the disk (the tap decides; see `como run`'s live docs).
//!
//! **Replacing the module set.** [`LivePipeline::stop`] flushes and returns the queues (the
//! sockets stay open, frames wait in their rings); [`LivePipeline::start`] with the new module
//! set and the new table generation goes on. A frame classified by another generation than
//! the one given is classified again in userspace with the new exact filters: no packet is
//! counted for a module under the tables of another module set.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use como_module::Pkt;
use como_packet::{Layers, LinkType, Packet, Parsed};
use crossbeam_channel::bounded;
use ebpf_filters_common::XdpMeta;

use crate::{
    compile_all, export_loop, Classifier, ExportCarry, ExportMsg, ModuleCpu, ModuleSpec,
    RuntimeError, Sink, SourceError, WorkerCore, MAX_MODULES,
};
use como_module::CaptureState;

#[cfg(test)]
pub(crate) mod tests_support {
    //! Helpers shared by the runtime's test files.
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::ModuleSpec;

    /// The metadata block the XDP program writes in front of a frame, as bytes.
    pub(crate) fn meta_bytes(m: ebpf_filters_common::XdpMeta) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&m.rules.to_ne_bytes());
        v.extend_from_slice(&m.recheck.to_ne_bytes());
        v.extend_from_slice(&m.magic.to_ne_bytes());
        v.extend_from_slice(&m.gen.to_ne_bytes());
        v
    }

    /// A bundled trace.
    pub(crate) fn trace(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/traces")
            .join(rel)
    }

    /// A module instance of `kind` with `args` (TOML) and `filter`.
    pub(crate) fn spec(kind: &str, args: &str, filter: &str, interval: Duration) -> ModuleSpec {
        let args: toml::Value = toml::from_str(args).expect("args toml");
        ModuleSpec {
            name: kind.to_owned(),
            module: como_modules::build(kind, Some(&args)).expect("build"),
            filter: filter.to_owned(),
            interval,
        }
    }
}

/// Frames asked from a queue per poll.
pub const LIVE_BATCH: usize = 64;
/// Empty polls a worker spins before it yields.
pub const SPIN_POLLS: u32 = 20_000;
/// Yields after the spinning, before sleeping.
const YIELD_POLLS: u32 = 200;
/// First sleep of an idle worker.
pub const MIN_SLEEP: Duration = Duration::from_micros(20);
/// Longest sleep of an idle worker (a 2048-entry ring holds 4 ms at 0.5 Mpps).
pub const MAX_SLEEP: Duration = Duration::from_micros(500);
/// How often a worker reads its queue's drop statistics.
pub const STATS_EVERY: Duration = Duration::from_millis(100);

/// One worker's consumer of the packets the window rule selects: called with `Some(packet)`
/// for each such packet (in ring order, on the worker's thread; it must not block), and with
/// `None` when the worker goes idle, every [`STATS_EVERY`] while it stays idle, and when it
/// stops.
pub type WindowTap = Box<dyn FnMut(Option<&Packet<'_>>) + Send>;

/// The kernel's drop statistics of one queue (cumulative since the socket was opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames dropped by the kernel for lack of a free frame (`XDP_STATISTICS` rx_dropped).
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub fill_ring_empty: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
}

/// One received frame, as a [`LiveQueue`] hands it to the runtime.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The bytes in front of the packet that the XDP program may have written (`XdpMeta`);
    /// empty when the queue has none.
    pub meta: &'a [u8],
    /// The packet, from its Ethernet header.
    pub data: &'a [u8],
}

/// A capture queue: an AF_XDP socket bound to one RX queue (or a test double).
pub trait LiveQueue: Send {
    /// Name for messages and metrics labels (the device).
    fn device(&self) -> String;
    /// The RX queue number.
    fn queue(&self) -> u32;
    /// Takes at most `max` frames from the ring and calls `f` on each, in ring order; the
    /// frames go back to the kernel (fill ring) before this returns. Returns the number of
    /// frames (0: none ready). An error stops the worker.
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(Frame<'_>)) -> Result<usize, SourceError>;
    /// The kernel's drop statistics (read every [`STATS_EVERY`]).
    fn stats(&mut self) -> QueueStats;
}

/// Counters of one worker, written once per batch, read by metrics at scrape time.
#[derive(Debug)]
pub struct WorkerCounters {
    /// Device the worker reads.
    pub device: String,
    /// RX queue the worker reads.
    pub queue: u32,
    /// Frames received.
    pub packets: AtomicU64,
    /// Their bytes (frame length: XDP sees the whole frame).
    pub bytes: AtomicU64,
    /// Frames classified in userspace because their metadata was missing, invalid, or of
    /// another table generation.
    pub no_meta: AtomicU64,
    /// Frames whose kernel match was re-checked with the exact filter.
    pub rechecked: AtomicU64,
    /// Nanoseconds spent on polls that returned frames.
    pub busy_ns: AtomicU64,
    /// Nanoseconds since the worker started.
    pub total_ns: AtomicU64,
    /// Packets each module got (index in the module list).
    pub module_packets: Vec<AtomicU64>,
    /// Packets handed to the packet window's tap (the window's rule selected them).
    pub window_packets: AtomicU64,
    /// The queue's statistics (last read).
    pub rx_dropped: AtomicU64,
    /// See [`QueueStats::rx_ring_full`].
    pub rx_ring_full: AtomicU64,
    /// See [`QueueStats::fill_ring_empty`].
    pub fill_ring_empty: AtomicU64,
    /// See [`QueueStats::rx_invalid_descs`].
    pub rx_invalid_descs: AtomicU64,
}

impl WorkerCounters {
    fn new(device: String, queue: u32, modules: usize) -> Self {
        Self {
            device,
            queue,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            no_meta: AtomicU64::new(0),
            rechecked: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            module_packets: (0..modules).map(|_| AtomicU64::new(0)).collect(),
            window_packets: AtomicU64::new(0),
            rx_dropped: AtomicU64::new(0),
            rx_ring_full: AtomicU64::new(0),
            fill_ring_empty: AtomicU64::new(0),
            rx_invalid_descs: AtomicU64::new(0),
        }
    }

    /// The queue's statistics as last read.
    pub fn queue_stats(&self) -> QueueStats {
        QueueStats {
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            rx_ring_full: self.rx_ring_full.load(Ordering::Relaxed),
            fill_ring_empty: self.fill_ring_empty.load(Ordering::Relaxed),
            rx_invalid_descs: self.rx_invalid_descs.load(Ordering::Relaxed),
        }
    }

    /// Fraction of the time spent on polls that returned frames (0 to 1).
    pub fn busy_ratio(&self) -> f64 {
        let total = self.total_ns.load(Ordering::Relaxed);
        if total == 0 {
            0.0
        } else {
            (self.busy_ns.load(Ordering::Relaxed) as f64 / total as f64).min(1.0)
        }
    }
}

/// Options of a live pipeline.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Core of worker `i` (`cpus[i]`; missing or `None`: not pinned).
    pub cpus: Vec<Option<usize>>,
    /// Generation of the kernel tables compiled from this module set: frames whose metadata
    /// carries another generation are classified in userspace. `None`: trust any generation.
    pub generation: Option<u32>,
    /// Counters to go on from (a module set replacement keeps the capture counters; module
    /// counters start anew). `None`: new counters.
    pub counters: Option<Vec<Arc<WorkerCounters>>>,
}

/// A module's open state on one worker: (module index, state, end of its interval).
type OpenState = (usize, Box<dyn CaptureState>, u64);

/// One module's open state on each worker (`None`: that worker had none): (state, end).
type OpenStates = Vec<Option<(Box<dyn CaptureState>, u64)>>;

/// What a worker returns when it stops: its queue, its error, the open states it hands over.
type WorkerResult = (Box<dyn LiveQueue>, Result<(), SourceError>, Vec<OpenState>);

/// What the export thread returns: the sink, the export sides it hands over.
type ExportResult<S> = Result<(S, Vec<(usize, ExportCarry)>), RuntimeError>;

/// A running live pipeline: one pinned worker per queue and the export thread.
pub struct LivePipeline<S: Sink> {
    stop: Arc<AtomicBool>,
    /// The modules (bit = index) whose open interval is handed over at stop, not flushed.
    handover: Arc<AtomicU64>,
    workers: Vec<JoinHandle<WorkerResult>>,
    exporter: Option<JoinHandle<ExportResult<S>>>,
    counters: Vec<Arc<WorkerCounters>>,
    cpu: Arc<ModuleCpu>,
}

/// What a stopping live pipeline hands to the next one for the modules a reload keeps
/// unchanged ([`LivePipeline::stop_keeping`], [`LivePipeline::start_carrying`]): their open
/// interval (each worker's capture state) and their export side (partials waiting for other
/// workers, the exporter's state across intervals). The interval open at the reload is then
/// stored once, as if there had been no reload. Empty by default.
#[derive(Default)]
pub struct Carried {
    /// (index in the next module set, each worker's open state and its end, export side).
    modules: Vec<(usize, OpenStates, ExportCarry)>,
}

impl Carried {
    /// How many modules are carried.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether no module is carried.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Renumbers the carried modules (`to(index)`: the index in the module set that will take
    /// them; `None` drops the module's state).
    pub fn remap(&mut self, to: impl Fn(usize) -> Option<usize>) {
        let modules = std::mem::take(&mut self.modules);
        self.modules = modules
            .into_iter()
            .filter_map(|(m, states, export)| Some((to(m)?, states, export)))
            .collect();
    }
}

/// How a live pipeline ended.
pub struct LiveEnd<S> {
    /// The queues, still open (to start the next module set on them).
    pub queues: Vec<Box<dyn LiveQueue>>,
    /// The first queue error, if a worker stopped on one.
    pub error: Option<SourceError>,
    /// The sink, after `finish`.
    pub sink: S,
    /// The capture counters (to go on from with the next module set).
    pub counters: Vec<Arc<WorkerCounters>>,
}

/// Wall-clock nanoseconds now.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A worker's own copy of the exact filters (Ethernet: XDP sees Ethernet frames).
struct Exact {
    filters: Vec<Classifier>,
    all_mask: u64,
}

impl Exact {
    fn new(specs: &[ModuleSpec]) -> Self {
        // The configuration compiled these filters for Ethernet already; one that fails
        // here is `Never` (no packet), like in the file runtime.
        let (lf, _) = compile_all(specs, LinkType::Ethernet);
        Self {
            filters: lf.filters,
            all_mask: u64::MAX >> (64 - specs.len().clamp(1, 64)),
        }
    }

    #[inline]
    fn matches(&self, i: usize, pkt: &Packet<'_>) -> bool {
        match self.filters.get(i) {
            Some(Classifier::All) => true,
            Some(Classifier::Expr(f)) => f.matches(pkt),
            Some(Classifier::Never) | None => false,
        }
    }

    /// Every module whose filter matches.
    #[inline]
    fn classify(&self, pkt: &Packet<'_>) -> u64 {
        let mut mask = 0;
        for i in 0..self.filters.len() {
            if self.matches(i, pkt) {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// Keeps the bits of `recheck` whose exact filter matches.
    #[inline]
    fn recheck(&self, mut mask: u64, mut recheck: u64, pkt: &Packet<'_>) -> u64 {
        while recheck != 0 {
            let i = recheck.trailing_zeros() as usize;
            recheck &= recheck - 1;
            if !self.matches(i, pkt) {
                mask &= !(1 << i);
            }
        }
        mask
    }
}

/// Per-batch totals of one worker, added to its [`WorkerCounters`] once per batch.
struct Local {
    packets: u64,
    bytes: u64,
    no_meta: u64,
    rechecked: u64,
    window: u64,
    modules: Vec<u64>,
}

impl Local {
    fn flush(&mut self, c: &WorkerCounters) {
        c.packets.fetch_add(self.packets, Ordering::Relaxed);
        c.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        if self.no_meta != 0 {
            c.no_meta.fetch_add(self.no_meta, Ordering::Relaxed);
        }
        if self.rechecked != 0 {
            c.rechecked.fetch_add(self.rechecked, Ordering::Relaxed);
        }
        if self.window != 0 {
            c.window_packets.fetch_add(self.window, Ordering::Relaxed);
        }
        for (n, a) in self.modules.iter_mut().zip(&c.module_packets) {
            if *n != 0 {
                a.fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        self.packets = 0;
        self.bytes = 0;
        self.no_meta = 0;
        self.rechecked = 0;
        self.window = 0;
    }
}

/// A worker's part of the packet window: its rule bit, exact filter and tap.
struct WorkerWindow {
    /// `1 << bit`.
    bit: u64,
    /// The window's exact filter.
    filter: Classifier,
    /// Where the selected packets go.
    tap: WindowTap,
}

impl WorkerWindow {
    /// Offers `pkt` to the tap when the window wants it (`rules`/`recheck`: the kernel's bits,
    /// `None` when the frame must be classified here).
    #[inline]
    fn offer(&mut self, kernel: Option<(u64, u64)>, pkt: &Packet<'_>) -> bool {
        let wanted = match kernel {
            Some((rules, _)) if rules & self.bit == 0 => false,
            Some((_, recheck)) if recheck & self.bit == 0 => true,
            _ => match &self.filter {
                Classifier::All => true,
                Classifier::Expr(f) => f.matches(pkt),
                Classifier::Never => false,
            },
        };
        if wanted {
            (self.tap)(Some(pkt));
        }
        wanted
    }
}

struct LiveWorker {
    core: WorkerCore,
    /// The packet window's rule and tap, when the window is on.
    window: Option<WorkerWindow>,
    exact: Exact,
    layer_mask: u64,
    lens: Vec<u64>,
    generation: Option<u32>,
    counters: Arc<WorkerCounters>,
    stop: Arc<AtomicBool>,
    /// See [`LivePipeline::handover`].
    handover: Arc<AtomicU64>,
    /// Strictly increasing sequence number of this worker's packets (time-ordered).
    seq: u64,
}

impl LiveWorker {
    fn next_boundary(&self, hw: u64) -> u64 {
        self.lens
            .iter()
            .map(|&len| como_module::Interval::containing(hw, len).end_ns())
            .min()
            .unwrap_or(u64::MAX)
    }

    fn run(mut self, mut queue: Box<dyn LiveQueue>) -> WorkerResult {
        let base_wall = wall_ns();
        let base = Instant::now();
        let mut hw = base_wall;
        let mut boundary = self.next_boundary(hw);
        let mut idle: u32 = 0;
        let mut sleep = MIN_SLEEP;
        let mut last_stats = base;
        let mut local = Local {
            packets: 0,
            bytes: 0,
            no_meta: 0,
            rechecked: 0,
            window: 0,
            modules: vec![0; self.exact.filters.len()],
        };
        let mut busy_ns: u64 = 0;
        let mut failed = None;
        let mut export_gone = false;
        while !self.stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            let since = u64::try_from(t0.duration_since(base).as_nanos()).unwrap_or(u64::MAX);
            let ts = base_wall.saturating_add(since).max(hw);
            hw = ts;
            if hw >= boundary {
                if !self.core.advance(hw) {
                    export_gone = true;
                    break;
                }
                boundary = self.next_boundary(hw);
            }
            let n = {
                let Self {
                    core,
                    exact,
                    layer_mask,
                    generation,
                    seq,
                    window,
                    ..
                } = &mut self;
                let local = &mut local;
                let ok = &mut true;
                let r = queue.recv(LIVE_BATCH, &mut |frame: Frame<'_>| {
                    let Ok(wire_len) = u32::try_from(frame.data.len()) else {
                        return;
                    };
                    let pkt = Packet {
                        ts_ns: ts,
                        wire_len,
                        data: frame.data,
                        link: LinkType::Ethernet,
                        interface: 0,
                    };
                    local.packets += 1;
                    local.bytes += u64::from(wire_len);
                    let meta = XdpMeta::read_before_packet(frame.meta)
                        .filter(|m| generation.is_none_or(|g| g == m.gen));
                    if let Some(w) = window {
                        if w.offer(meta.map(|m| (m.rules, m.recheck)), &pkt) {
                            local.window += 1;
                        }
                    }
                    let mask = match meta {
                        Some(m) => {
                            let mask = m.rules & exact.all_mask;
                            let recheck = m.recheck & mask;
                            if recheck == 0 {
                                mask
                            } else {
                                local.rechecked += 1;
                                exact.recheck(mask, recheck, &pkt)
                            }
                        }
                        None => {
                            local.no_meta += 1;
                            exact.classify(&pkt)
                        }
                    };
                    if mask == 0 {
                        return;
                    }
                    let mut bits = mask;
                    while bits != 0 {
                        let i = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if let Some(c) = local.modules.get_mut(i) {
                            *c += 1;
                        }
                    }
                    *seq = (*seq + 1).max(ts);
                    let mut full = Pkt {
                        parsed: Parsed {
                            packet: pkt,
                            layers: Layers::default(),
                        },
                        seq: *seq,
                    };
                    if mask & *layer_mask != 0 {
                        Layers::parse_into(&pkt, &mut full.parsed.layers);
                    }
                    if !core.process(&full, mask, ts) {
                        *ok = false;
                    }
                });
                if !*ok {
                    export_gone = true;
                }
                r
            };
            if export_gone {
                break;
            }
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let now = Instant::now();
            if n > 0 {
                local.flush(&self.counters);
                busy_ns = busy_ns
                    .saturating_add(u64::try_from((now - t0).as_nanos()).unwrap_or(u64::MAX));
                self.counters.busy_ns.store(busy_ns, Ordering::Relaxed);
                idle = 0;
                sleep = MIN_SLEEP;
            } else {
                idle = idle.saturating_add(1);
                if idle == SPIN_POLLS {
                    // Going idle: the window's partial buffer to the disk.
                    if let Some(w) = &mut self.window {
                        (w.tap)(None);
                    }
                }
                if idle > SPIN_POLLS + YIELD_POLLS {
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(MAX_SLEEP);
                } else if idle > SPIN_POLLS {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            if now.duration_since(last_stats) >= STATS_EVERY {
                last_stats = now;
                self.publish_stats(queue.as_mut(), base, now);
                if idle > 0 {
                    if let Some(w) = &mut self.window {
                        (w.tap)(None);
                    }
                }
            }
        }
        local.flush(&self.counters);
        if let Some(w) = &mut self.window {
            (w.tap)(None);
        }
        self.publish_stats(queue.as_mut(), base, Instant::now());
        let mut open = Vec::new();
        if !export_gone {
            // Hand over the open intervals of the modules a reload keeps, flush the others.
            open = self.core.take_open(self.handover.load(Ordering::SeqCst));
            self.core.advance(u64::MAX);
        }
        (queue, failed.map_or(Ok(()), Err), open)
    }

    fn publish_stats(&self, queue: &mut dyn LiveQueue, base: Instant, now: Instant) {
        let s = queue.stats();
        let c = &self.counters;
        c.rx_dropped.store(s.rx_dropped, Ordering::Relaxed);
        c.rx_ring_full.store(s.rx_ring_full, Ordering::Relaxed);
        c.fill_ring_empty
            .store(s.fill_ring_empty, Ordering::Relaxed);
        c.rx_invalid_descs
            .store(s.rx_invalid_descs, Ordering::Relaxed);
        c.total_ns.store(
            u64::try_from(now.duration_since(base).as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl<S: Sink> LivePipeline<S> {
    /// Starts one worker per queue (worker `i` reads `queues[i]`, pinned to `opts.cpus[i]`)
    /// and the export thread.
    pub fn start(
        specs: Vec<ModuleSpec>,
        queues: Vec<Box<dyn LiveQueue>>,
        opts: &LiveOptions,
        sink: S,
    ) -> Result<Self, RuntimeError> {
        Self::start_with_window(specs, queues, opts, sink, None)
    }

    /// [`LivePipeline::start`] with the packet window: `window = (bit, filter, taps)`, the
    /// window's rule bit in the kernel tables (above the modules' bits `0..specs.len()`), its
    /// filter (pcap-filter for Ethernet, the one compiled into that bit; empty: every packet)
    /// and one tap per queue (worker `i` feeds `taps[i]`). See the module docs.
    pub fn start_with_window(
        specs: Vec<ModuleSpec>,
        queues: Vec<Box<dyn LiveQueue>>,
        opts: &LiveOptions,
        sink: S,
        window: Option<(u32, &str, Vec<WindowTap>)>,
    ) -> Result<Self, RuntimeError> {
        Self::start_carrying(specs, queues, opts, sink, window, Carried::default())
    }

    /// [`LivePipeline::start_with_window`] going on with what an earlier pipeline over the same
    /// queues handed over ([`LivePipeline::stop_keeping`]): the carried modules' open
    /// intervals and export sides.
    pub fn start_carrying(
        specs: Vec<ModuleSpec>,
        queues: Vec<Box<dyn LiveQueue>>,
        opts: &LiveOptions,
        sink: S,
        window: Option<(u32, &str, Vec<WindowTap>)>,
        carried: Carried,
    ) -> Result<Self, RuntimeError> {
        if specs.is_empty() || specs.len() > MAX_MODULES {
            return Err(RuntimeError::ModuleCount(specs.len()));
        }
        let mut taps: Vec<Option<WorkerWindow>> = Vec::with_capacity(queues.len());
        match window {
            None => taps.resize_with(queues.len(), || None),
            Some((bit, filter, t)) => {
                if bit as usize >= MAX_MODULES || (bit as usize) < specs.len() {
                    // The window's bit must not be a module's: 63 modules at most with it.
                    return Err(RuntimeError::ModuleCount(specs.len() + 1));
                }
                if t.len() != queues.len() {
                    return Err(RuntimeError::Thread(format!(
                        "{} window taps for {} queues",
                        t.len(),
                        queues.len()
                    )));
                }
                for tap in t {
                    let filter = if filter.trim().is_empty() {
                        Classifier::All
                    } else {
                        let f = ebpf_filters::compile(filter, LinkType::Ethernet).map_err(
                            |source| RuntimeError::Filter {
                                module: "trace window".into(),
                                link: LinkType::Ethernet.name(),
                                source,
                            },
                        )?;
                        Classifier::Expr(f)
                    };
                    taps.push(Some(WorkerWindow {
                        bit: 1 << bit,
                        filter,
                        tap,
                    }));
                }
            }
        }
        if let Some(s) = specs.iter().find(|s| s.interval.is_zero()) {
            return Err(RuntimeError::Interval(s.name.clone()));
        }
        if queues.is_empty() {
            return Err(RuntimeError::Thread("a live pipeline needs a queue".into()));
        }
        let lens: Vec<u64> = specs
            .iter()
            .map(|s| {
                u64::try_from(s.interval.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1)
            })
            .collect();
        let layer_mask = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.module.needs_layers())
            .fold(0u64, |m, (i, _)| m | 1 << i);
        let specs = Arc::new(specs);
        let n = queues.len();
        let cpu = Arc::new(ModuleCpu::new(specs.len()));
        let stop = Arc::new(AtomicBool::new(false));
        let (etx, erx) = bounded::<ExportMsg>(4096);
        let counters: Vec<Arc<WorkerCounters>> = match &opts.counters {
            Some(c) if c.len() == n => c
                .iter()
                .zip(&queues)
                .map(|(old, q)| {
                    // Capture counters go on; module counters are for this module set.
                    let new = WorkerCounters::new(q.device(), q.queue(), specs.len());
                    for (a, b) in [
                        (&new.packets, &old.packets),
                        (&new.bytes, &old.bytes),
                        (&new.no_meta, &old.no_meta),
                        (&new.rechecked, &old.rechecked),
                        (&new.window_packets, &old.window_packets),
                    ] {
                        a.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                    Arc::new(new)
                })
                .collect(),
            _ => queues
                .iter()
                .map(|q| Arc::new(WorkerCounters::new(q.device(), q.queue(), specs.len())))
                .collect(),
        };
        // Carried open states, per worker: (module, state, end).
        let mut open: Vec<Vec<OpenState>> = (0..n).map(|_| Vec::new()).collect();
        let mut export_carry = Vec::with_capacity(carried.modules.len());
        for (module, states, export) in carried.modules {
            if module >= specs.len() || states.len() != n {
                return Err(RuntimeError::Thread(format!(
                    "carried state of module {module} on {} workers, for {} modules on {n}",
                    states.len(),
                    specs.len()
                )));
            }
            for (w, st) in states.into_iter().enumerate() {
                if let (Some((state, end)), Some(o)) = (st, open.get_mut(w)) {
                    o.push((module, state, end));
                }
            }
            export_carry.push((module, export));
        }
        let handover = Arc::new(AtomicU64::new(0));
        // The export thread first: workers send to it from their first interval on.
        let especs = Arc::clone(&specs);
        let ecpu = Arc::clone(&cpu);
        let ehandover = Arc::clone(&handover);
        let exporter = std::thread::Builder::new()
            .name("como-export".into())
            .spawn(move || export_loop(especs, n, erx, sink, ecpu, export_carry, Some(ehandover)))
            .map_err(|e| RuntimeError::Thread(e.to_string()))?;
        let mut workers = Vec::with_capacity(n);
        for (id, ((queue, window), open)) in queues.into_iter().zip(taps).zip(open).enumerate() {
            let mut core = WorkerCore::new(
                id,
                Arc::clone(&specs),
                lens.clone(),
                etx.clone(),
                Arc::clone(&cpu),
            );
            for (module, state, end) in open {
                core.put_open(module, state, end);
            }
            let worker = LiveWorker {
                window,
                core,
                exact: Exact::new(&specs),
                layer_mask,
                lens: lens.clone(),
                generation: opts.generation,
                counters: Arc::clone(
                    counters
                        .get(id)
                        .ok_or_else(|| RuntimeError::Thread("worker counters missing".into()))?,
                ),
                stop: Arc::clone(&stop),
                handover: Arc::clone(&handover),
                seq: 0,
            };
            let core_id = opts.cpus.get(id).copied().flatten();
            let name = format!("como-live-{}", queue.queue());
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if let Some(c) = core_id {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                            tracing::warn!("worker {id}: could not pin to core {c}");
                        }
                    }
                    worker.run(queue)
                })
                .map_err(|e| RuntimeError::Thread(e.to_string()));
            match h {
                Ok(h) => workers.push(h),
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        drop(etx);
        Ok(Self {
            stop,
            handover,
            workers,
            exporter: Some(exporter),
            counters,
            cpu,
        })
    }

    /// The workers' counters (shared; they keep counting), in queue order.
    pub fn counters(&self) -> &[Arc<WorkerCounters>] {
        &self.counters
    }

    /// The per-module CPU accounting of this pipeline.
    pub fn module_cpu(&self) -> Arc<ModuleCpu> {
        Arc::clone(&self.cpu)
    }

    /// Whether a worker has stopped by itself (a queue error, or the export side failed).
    pub fn is_broken(&self) -> bool {
        self.workers.iter().any(JoinHandle::is_finished)
    }

    /// Stops the workers, flushes every open interval, waits for the export, returns the
    /// queues and the sink.
    pub fn stop(self) -> Result<LiveEnd<S>, RuntimeError> {
        self.stop_keeping(&[]).map(|(end, _)| end)
    }

    /// [`LivePipeline::stop`], except for the modules of `keep` = (index here, index in the
    /// next module set): their open interval and export side are not flushed but returned,
    /// for [`LivePipeline::start_carrying`] on the same queues.
    pub fn stop_keeping(
        mut self,
        keep: &[(usize, usize)],
    ) -> Result<(LiveEnd<S>, Carried), RuntimeError> {
        let mask = keep
            .iter()
            .filter(|(old, _)| *old < MAX_MODULES)
            .fold(0u64, |m, (old, _)| m | 1 << old);
        self.handover.store(mask, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        let n = self.workers.len();
        let mut queues = Vec::with_capacity(n);
        let mut open: Vec<OpenStates> = Vec::new();
        let mut error = None;
        let mut panicked = false;
        for (w, h) in self.workers.drain(..).enumerate() {
            match h.join() {
                Ok((q, r, states)) => {
                    queues.push(q);
                    if let Err(e) = r {
                        error.get_or_insert(e);
                    }
                    for (module, state, end) in states {
                        if open.len() <= module {
                            open.resize_with(module + 1, Vec::new);
                        }
                        if let Some(o) = open.get_mut(module) {
                            o.resize_with(n, || None);
                            if let Some(slot) = o.get_mut(w) {
                                *slot = Some((state, end));
                            }
                        }
                    }
                }
                Err(_) => panicked = true,
            }
        }
        let (sink, mut exports) = match self.exporter.take() {
            Some(h) => h
                .join()
                .map_err(|_| RuntimeError::Thread("the export thread panicked".into()))??,
            None => return Err(RuntimeError::Thread("export thread missing".into())),
        };
        if panicked {
            return Err(RuntimeError::Thread("a live worker panicked".into()));
        }
        let mut carried = Carried::default();
        for &(old, new) in keep {
            let Some(at) = exports.iter().position(|(m, _)| *m == old) else {
                continue;
            };
            let (_, export) = exports.swap_remove(at);
            let mut states = open.get_mut(old).map(std::mem::take).unwrap_or_default();
            states.resize_with(n, || None);
            carried.modules.push((new, states, export));
        }
        Ok((
            LiveEnd {
                queues,
                error,
                sink,
                counters: std::mem::take(&mut self.counters),
            },
            carried,
        ))
    }
}

impl<S: Sink> Drop for LivePipeline<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod window_tests {
    //! The packet window's rule in the live worker: packets reach the tap iff the window's
    //! bit is set (re-checked exactly when flagged; classified in userspace without metadata),
    //! whatever the modules want; the tap is told to flush when the worker stops. Also the
    //! hand-over of the open intervals of kept modules from one pipeline to the next (reload),
    //! on the same in-memory queues.

    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use como_packet::{LinkType, Packet};
    use ebpf_filters::kernel::{PacketKey, Tables};
    use ebpf_filters_common::XdpMeta;

    use super::tests_support::{meta_bytes, spec, trace};
    use super::{
        wall_ns, Carried, Frame, LiveOptions, LivePipeline, LiveQueue, QueueStats, WindowTap,
    };
    use crate::{CollectSink, ModuleSpec, Next, RuntimeError, Source, SourceError, TraceSource};

    /// The window's bit, as `como run` gives it (the last one).
    const BIT: u32 = 63;

    /// Frames (metadata, data) handed out in batches of at most `max`, then nothing.
    struct MemQueue {
        frames: Vec<(Vec<u8>, Vec<u8>)>,
        next: usize,
    }

    impl LiveQueue for MemQueue {
        fn device(&self) -> String {
            "mem0".into()
        }

        fn queue(&self) -> u32 {
            0
        }

        fn recv(&mut self, max: usize, f: &mut dyn FnMut(Frame<'_>)) -> Result<usize, SourceError> {
            let end = (self.next + max).min(self.frames.len());
            let n = end - self.next;
            for (meta, data) in self.frames.get(self.next..end).unwrap_or_default() {
                f(Frame { meta, data });
            }
            self.next = end;
            Ok(n)
        }

        fn stats(&mut self) -> QueueStats {
            QueueStats::default()
        }
    }

    fn packets(file: &str) -> Vec<Vec<u8>> {
        let mut src = TraceSource::open(trace(file)).expect("open");
        let mut out = Vec::new();
        while let Ok(Next::Packet(p)) = src.next_packet() {
            out.push(p.data.to_vec());
        }
        assert!(out.len() > 100, "{file}: {} packets", out.len());
        out
    }

    fn compile(expr: &str) -> ebpf_filters::Filter {
        ebpf_filters::compile(expr, LinkType::Ethernet).expect("filter")
    }

    fn matches(expr: &str, data: &[u8]) -> bool {
        compile(expr).matches(&Packet {
            ts_ns: 0,
            wire_len: data.len() as u32,
            data,
            link: LinkType::Ethernet,
            interface: 0,
        })
    }

    /// What the XDP program writes for `data` with the module filters `modules` in bits
    /// `0..` and `window` in [`BIT`].
    fn kernel_meta(modules: &[&str], window: &str, data: &[u8]) -> XdpMeta {
        let fs: Vec<_> = modules.iter().map(|e| compile(e)).collect();
        let w = compile(window);
        let mut refs: Vec<Option<&ebpf_filters::Filter>> = fs.iter().map(Some).collect();
        refs.resize(BIT as usize, None);
        refs.push(Some(&w));
        let tables = Tables::compile(&refs).expect("tables");
        tables.classify(&PacketKey::extract(data, data.len() as u32))
    }

    /// Runs one worker over `frames`; the packets the tap got and how often it was told to
    /// flush, and the per-module packet counts.
    fn run(
        specs: Vec<ModuleSpec>,
        window: &str,
        frames: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> (Vec<Vec<u8>>, usize, Vec<u64>, u64) {
        let total = frames.len() as u64;
        let got = Arc::new(Mutex::new((Vec::<Vec<u8>>::new(), 0usize)));
        let g = Arc::clone(&got);
        let tap: WindowTap = Box::new(move |p: Option<&Packet<'_>>| {
            let mut g = g.lock().unwrap_or_else(PoisonError::into_inner);
            match p {
                Some(p) => g.0.push(p.data.to_vec()),
                None => g.1 += 1,
            }
        });
        let queues: Vec<Box<dyn LiveQueue>> = vec![Box::new(MemQueue { frames, next: 0 })];
        let pipe = LivePipeline::start_with_window(
            specs,
            queues,
            &LiveOptions::default(),
            CollectSink::default(),
            Some((BIT, window, vec![tap])),
        )
        .expect("start");
        let t = Instant::now();
        while pipe.counters()[0].packets.load(Ordering::Relaxed) < total {
            assert!(t.elapsed() < Duration::from_secs(20), "worker stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let c = Arc::clone(&pipe.counters()[0]);
        pipe.stop().expect("stop");
        let modules = c
            .module_packets
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .collect();
        let window_count = c.window_packets.load(Ordering::Relaxed);
        let g = got.lock().unwrap_or_else(PoisonError::into_inner);
        (g.0.clone(), g.1, modules, window_count)
    }

    fn tcp_module() -> Vec<ModuleSpec> {
        vec![spec("traffic", "", "tcp", Duration::from_secs(3600))]
    }

    #[test]
    fn window_gets_its_packets_when_no_module_wants_them() {
        // Modules on tcp, window on udp: kernel metadata as the XDP program writes it.
        let data = packets("nDPI/teams.pcap");
        let frames: Vec<_> = data
            .iter()
            .map(|d| (meta_bytes(kernel_meta(&["tcp"], "udp", d)), d.clone()))
            .collect();
        let want: Vec<_> = data.iter().filter(|d| matches("udp", d)).cloned().collect();
        let tcp = data.iter().filter(|d| matches("tcp", d)).count() as u64;
        assert!(!want.is_empty() && tcp > 0);
        let (got, flushes, modules, count) = run(tcp_module(), "udp", frames);
        assert_eq!(got.len(), want.len(), "window packets");
        assert!(
            got == want,
            "the window got other packets than `udp` selects"
        );
        assert_eq!(count, want.len() as u64, "window_packets counter");
        assert_eq!(modules, vec![tcp], "the module still gets tcp only");
        assert!(flushes >= 1, "the tap was never told to flush");
    }

    #[test]
    fn window_bit_decides_and_flagged_bits_are_rechecked() {
        let data = packets("nDPI/teams.pcap");
        let udp: Vec<_> = data.iter().filter(|d| matches("udp", d)).cloned().collect();
        // The kernel says "window" for every packet and flags it: only the exact filter's
        // packets may reach the tap.
        let flagged = XdpMeta {
            rules: 1 << BIT | 1,
            recheck: 1 << BIT,
            magic: ebpf_filters_common::META_MAGIC,
            gen: 0,
        };
        let frames = data
            .iter()
            .map(|d| (meta_bytes(flagged), d.clone()))
            .collect();
        let (got, ..) = run(tcp_module(), "udp", frames);
        assert!(got == udp, "flagged window bit not re-checked exactly");
        // Trusted (not flagged) bits are taken as they are: a bit cleared by the kernel keeps
        // the packet out, a set one lets it in.
        let frames: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let rules = if i % 2 == 0 { 1 << BIT } else { 0 };
                let m = XdpMeta {
                    rules,
                    recheck: 0,
                    magic: ebpf_filters_common::META_MAGIC,
                    gen: 0,
                };
                (meta_bytes(m), d.clone())
            })
            .collect();
        let even: Vec<_> = data.iter().step_by(2).cloned().collect();
        let (got, ..) = run(tcp_module(), "udp", frames);
        assert!(got == even, "trusted window bits not obeyed");
    }

    #[test]
    fn window_without_metadata_is_classified_in_userspace() {
        let data = packets("zeek/workshop_2011_browse.pcap");
        let expr = "src host 192.150.187.43 and tcp[tcpflags] & tcp-push != 0";
        let want: Vec<_> = data.iter().filter(|d| matches(expr, d)).cloned().collect();
        assert!(!want.is_empty());
        let frames = data.iter().map(|d| (Vec::new(), d.clone())).collect();
        let (got, ..) = run(tcp_module(), expr, frames);
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "userspace classification of the window differs"
        );
        // An empty window filter: every packet.
        let frames = data.iter().map(|d| (Vec::new(), d.clone())).collect();
        let (got, ..) = run(tcp_module(), "", frames);
        assert!(got == data, "an empty window filter must take every packet");
    }

    #[test]
    fn window_bit_must_not_be_a_module_bit() {
        let queues: Vec<Box<dyn LiveQueue>> = vec![Box::new(MemQueue {
            frames: Vec::new(),
            next: 0,
        })];
        let tap: WindowTap = Box::new(|_| {});
        let r = LivePipeline::start_with_window(
            tcp_module(),
            queues,
            &LiveOptions::default(),
            CollectSink::default(),
            Some((0, "udp", vec![tap])),
        );
        assert!(matches!(r, Err(RuntimeError::ModuleCount(2))));
    }

    /// Runs `specs` on one worker per frame list (no metadata: classified in userspace) until
    /// every frame is counted, then stops keeping `keep` for the next set.
    fn phase(
        specs: Vec<ModuleSpec>,
        frames: Vec<Vec<u8>>,
        workers: usize,
        carried: Carried,
        keep: &[(usize, usize)],
    ) -> (CollectSink, Carried) {
        let total = frames.len() as u64;
        let mut lists: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, f) in frames.into_iter().enumerate() {
            lists[i % workers].push((Vec::new(), f));
        }
        let queues: Vec<Box<dyn LiveQueue>> = lists
            .into_iter()
            .map(|frames| Box::new(MemQueue { frames, next: 0 }) as Box<dyn LiveQueue>)
            .collect();
        let pipe = LivePipeline::start_carrying(
            specs,
            queues,
            &LiveOptions::default(),
            CollectSink::default(),
            None,
            carried,
        )
        .expect("start");
        let t = Instant::now();
        let seen = || -> u64 {
            pipe.counters()
                .iter()
                .map(|c| c.packets.load(Ordering::Relaxed))
                .sum()
        };
        while seen() < total {
            assert!(t.elapsed() < Duration::from_secs(20), "workers stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (end, carried) = pipe.stop_keeping(keep).expect("stop");
        (end.sink, carried)
    }

    /// (interval start, packets, bytes) of the traffic records module `m` exported.
    fn traffic_rows(sink: &CollectSink, m: usize) -> Vec<(u64, u64, u64)> {
        sink.intervals
            .iter()
            .filter(|(i, _, _)| *i == m)
            .flat_map(|(_, _, recs)| recs)
            .map(|r| {
                let rec = como_module::decode::<como_modules::traffic::Traffic>(&r.bytes)
                    .expect("traffic record");
                (rec.ts, rec.counts.pkts, rec.counts.bytes)
            })
            .collect()
    }

    #[test]
    fn a_reload_that_keeps_a_module_stores_its_open_interval_once() {
        let hour = Duration::from_secs(3600);
        let data = packets("nDPI/teams.pcap");
        let (a, b) = data.split_at(data.len() / 2);
        let wire: u64 = data.iter().map(|d| d.len() as u64).sum();
        let hour_ns = 3_600_000_000_000u64;
        let before = wall_ns() / hour_ns;
        // First set: traffic (kept, moves from index 0 to 1) and topaddr (dropped); second:
        // protocol (new) and traffic. Two workers; the reload falls inside one hour-long interval.
        let first = vec![spec("traffic", "", "", hour), spec("topaddr", "", "", hour)];
        let (sink1, carried) = phase(first, a.to_vec(), 2, Carried::default(), &[(0, 1)]);
        assert_eq!(carried.len(), 1);
        let second = vec![
            spec("protocol", "", "", hour),
            spec("traffic", "", "", hour),
        ];
        let (sink2, rest) = phase(second, b.to_vec(), 2, carried, &[]);
        assert!(rest.is_empty());
        let after = wall_ns() / hour_ns;
        // The dropped module was flushed at the reload; the kept one was not.
        assert!(sink1
            .intervals
            .iter()
            .any(|(m, _, r)| *m == 1 && !r.is_empty()));
        assert_eq!(traffic_rows(&sink1, 0), vec![]);
        let rows = traffic_rows(&sink2, 1);
        let pkts: u64 = rows.iter().map(|r| r.1).sum();
        let bytes: u64 = rows.iter().map(|r| r.2).sum();
        assert_eq!((pkts, bytes), (data.len() as u64, wire), "{rows:?}");
        if before == after {
            // One interval, one record: as if there had been no reload.
            assert_eq!(rows.len(), 1, "{rows:?}");
        }
        // Without keeping it, the interval open at the reload is stored twice.
        let first = vec![spec("traffic", "", "", hour)];
        let (sink1, carried) = phase(first, a.to_vec(), 2, Carried::default(), &[]);
        assert!(carried.is_empty());
        let (sink2, _) = phase(
            vec![spec("traffic", "", "", hour)],
            b.to_vec(),
            2,
            carried,
            &[],
        );
        let split = traffic_rows(&sink1, 0).len() + traffic_rows(&sink2, 0).len();
        assert!(split >= 2, "{split} records");
    }
}
