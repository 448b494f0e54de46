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
use ebpf_filters_common::{XdpMeta, META_MAGIC};

use crate::{
    compile_all, export_loop, Classifier, ExportMsg, ModuleCpu, ModuleSpec, RuntimeError, Sink,
    SourceError, WorkerCore, MAX_MODULES,
};

#[cfg(test)]
pub(crate) mod tests_support {
    //! Helpers shared by the runtime's test files.
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::ModuleSpec;

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

/// Decodes the [`XdpMeta`] in front of a frame: `None` when it is missing, short, or its magic
/// is not [`META_MAGIC`] (the frame must then be classified in userspace).
pub fn decode_meta(bytes: &[u8]) -> Option<XdpMeta> {
    const LEN: usize = core::mem::size_of::<XdpMeta>();
    // The metadata ends where the packet starts: take the last LEN bytes.
    let start = bytes.len().checked_sub(LEN)?;
    let b = bytes.get(start..)?;
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?)) };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    let meta = XdpMeta {
        rules: u64_at(0)?,
        recheck: u64_at(8)?,
        magic: u32_at(16)?,
        gen: u32_at(20)?,
    };
    (meta.magic == META_MAGIC).then_some(meta)
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

/// What a worker returns when it stops.
type WorkerResult = (Box<dyn LiveQueue>, Result<(), SourceError>);

/// A running live pipeline: one pinned worker per queue and the export thread.
pub struct LivePipeline<S: Sink> {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<WorkerResult>>,
    exporter: Option<JoinHandle<Result<S, RuntimeError>>>,
    counters: Vec<Arc<WorkerCounters>>,
    cpu: Arc<ModuleCpu>,
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
    }
}

struct LiveWorker {
    core: WorkerCore,
    exact: Exact,
    layer_mask: u64,
    lens: Vec<u64>,
    generation: Option<u32>,
    counters: Arc<WorkerCounters>,
    stop: Arc<AtomicBool>,
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
                    let meta =
                        decode_meta(frame.meta).filter(|m| generation.is_none_or(|g| g == m.gen));
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
            }
        }
        local.flush(&self.counters);
        self.publish_stats(queue.as_mut(), base, Instant::now());
        if !export_gone {
            // Flush every open interval.
            self.core.advance(u64::MAX);
        }
        (queue, failed.map_or(Ok(()), Err))
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
        if specs.is_empty() || specs.len() > MAX_MODULES {
            return Err(RuntimeError::ModuleCount(specs.len()));
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
        // The export thread first: workers send to it from their first interval on.
        let especs = Arc::clone(&specs);
        let ecpu = Arc::clone(&cpu);
        let exporter = std::thread::Builder::new()
            .name("como-export".into())
            .spawn(move || export_loop(especs, n, erx, sink, ecpu))
            .map_err(|e| RuntimeError::Thread(e.to_string()))?;
        let mut workers = Vec::with_capacity(n);
        for (id, queue) in queues.into_iter().enumerate() {
            let worker = LiveWorker {
                core: WorkerCore::new(
                    id,
                    Arc::clone(&specs),
                    lens.clone(),
                    etx.clone(),
                    Arc::clone(&cpu),
                ),
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
    pub fn stop(mut self) -> Result<LiveEnd<S>, RuntimeError> {
        self.stop.store(true, Ordering::SeqCst);
        let mut queues = Vec::with_capacity(self.workers.len());
        let mut error = None;
        let mut panicked = false;
        for h in self.workers.drain(..) {
            match h.join() {
                Ok((q, r)) => {
                    queues.push(q);
                    if let Err(e) = r {
                        error.get_or_insert(e);
                    }
                }
                Err(_) => panicked = true,
            }
        }
        let sink = match self.exporter.take() {
            Some(h) => h
                .join()
                .map_err(|_| RuntimeError::Thread("the export thread panicked".into()))??,
            None => return Err(RuntimeError::Thread("export thread missing".into())),
        };
        if panicked {
            return Err(RuntimeError::Thread("a live worker panicked".into()));
        }
        Ok(LiveEnd {
            queues,
            error,
            sink,
            counters: std::mem::take(&mut self.counters),
        })
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
