//! The packet trace window of CoMo-rs: every packet (up to a snaplen) of a time window kept on
//! disk as pcapng segments that Wireshark and tshark open as they are, indexed by time,
//! address, port and protocol, and queried with tcpdump's filter language.
//!
//! # Data path
//! A capture worker owns a [`WindowWriter`] and calls [`WindowWriter::write`] per packet: the
//! packet is encoded as a pcapng EPB straight into the worker's current staging buffer
//! ([`staging`]; anonymous memory, on hugepages when available). No syscall, lock or atomic on
//! that path. A full buffer goes to the writer thread over a channel and the worker takes an
//! empty one from the pool; when the pool is empty (the disk does not keep up) the packet is
//! dropped for the window only and counted as `disk_slow`: the worker never blocks.
//!
//! The writer thread (module `writer`) writes each buffer at the end of the open segment with
//! io_uring (`O_DIRECT`, registered buffers, fixed file; blocking `pwrite` when io_uring is
//! refused, buffered I/O where `O_DIRECT` is refused, each logged) and indexes it while the
//! write is in flight.
//!
//! # Segment layout (pcapng, little-endian)
//! ```text
//! offset 0      SHB · IDB (one per link type, interface id = order) · padding block → 4096
//! 4096·k        EPB · EPB · … · EPB · padding block        (one staging buffer, a multiple
//!               of 4096 bytes: what one O_DIRECT write carries)
//! …             [IDB … · padding block → 4096]             (a link type met mid-segment)
//! ```
//! The padding block is a *local-use* block type (`0x80000BAD`, see [`block`]); readers skip
//! it silently. Every write starts and ends on a 4096-byte boundary, as `O_DIRECT` requires,
//! and the file is a valid pcapng after every completed write: a crash leaves at worst a torn
//! last chunk, cut at open time ([`segment::recover`]).
//!
//! Segments rotate by size (`segment_bytes`) and by packet time (`segment_secs`); a finished
//! segment is fsynced, its index written, and it is renamed atomically to a name carrying its
//! time range ([`segment`]). Retention ([`segment::enforce`]) deletes the oldest closed segments
//! one at a time while the age, byte or free-disk limit is exceeded; a segment being read is
//! skipped (kept) and the next-oldest goes in its place, so a slow query holds back only the
//! segments it reads, which a later pass deletes once it is done. A closed segment whose index
//! was lost is re-indexed in the background when the window opens ([`reindex`]). Queries
//! ([`mod@query`]) prune segments by time, groups by time and by the keys the filter requires,
//! then apply the exact filter.
//!
//! # Hooking a capture worker
//! ```no_run
//! # use como_window::{Window, WindowConfig};
//! # fn packets() -> Vec<como_packet::Packet<'static>> { Vec::new() }
//! let window = Window::open(WindowConfig::new("/var/lib/como/trace")).expect("window");
//! let mut w = window.writer(); // one per worker thread
//! for p in packets() {
//!     w.write(&p); // live sources: never blocks (drops counted as disk_slow)
//! }
//! w.flush(); // at the end (when idle: `w.idle(max_age)`): the partial buffer reaches the disk
//! drop(w);
//! let counters = window.finish(); // closes the open segment
//! # let _ = counters;
//! ```
//! Trace-file sources call [`WindowWriter::write_wait`] instead, which waits for a free
//! buffer rather than dropping.

pub mod block;
pub mod disk;
pub mod index;
pub mod keys;
pub mod query;
pub mod reindex;
pub mod segment;
pub mod staging;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use como_packet::{LinkType, Packet};
use crossbeam_channel::{Receiver, Sender};
use ebpf_filters::Filter;

pub use disk::EngineInfo;
pub use query::{query, write_query, OutFormat, Query, QueryError, QueryStats};
pub use segment::{Limits, Segment};

/// Most staging buffers (ids are u16; one more is the writer's header buffer).
const MAX_BUFFERS: usize = 4096;

/// The window's settings.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Folder of the segments (created if missing). Nothing outside it is ever touched.
    pub dir: PathBuf,
    /// Bytes kept per packet (0: no limit, written as 262144).
    pub snaplen: u32,
    /// Segment size at which a new segment starts.
    pub segment_bytes: u64,
    /// Packet-time span at which a new segment starts (ns; checked per staging buffer, so the
    /// split is as fine as a buffer's time span: at most `flush_ns` of wall time).
    pub segment_ns: Option<u64>,
    /// Retention limits.
    pub limits: Limits,
    /// Bytes per staging buffer (a multiple of 4096; one write each).
    pub buffer_bytes: usize,
    /// Staging buffers in the pool (shared by all handles).
    pub buffers: usize,
    /// What enters the window (pcap-filter syntax; empty: every packet).
    pub filter: String,
    /// Open segments with `O_DIRECT` (falls back to buffered where refused).
    pub direct: bool,
    /// Use io_uring (falls back to blocking writes where refused).
    pub uring: bool,
    /// Staging buffers on hugepages when available.
    pub hugepages: bool,
    /// A handle sends its partial buffer once it is this old (wall clock, ns; checked every
    /// 64 packets, so an idle worker must call [`WindowWriter::flush`] itself).
    pub flush_ns: u64,
}

impl WindowConfig {
    /// Defaults: snaplen 65535, 1 GiB or 1 h segments, 16 buffers of 2 MiB (one hugepage
    /// each when the kernel has some reserved), O_DIRECT, io_uring, partial buffers flushed
    /// after 1 s, no limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WindowConfig {
            dir: dir.into(),
            snaplen: 65535,
            segment_bytes: 1 << 30,
            segment_ns: Some(3600 * 1_000_000_000),
            limits: Limits::default(),
            buffer_bytes: 2 << 20,
            buffers: 16,
            filter: String::new(),
            direct: true,
            uring: true,
            hugepages: true,
            flush_ns: 1_000_000_000,
        }
    }
}

/// Errors of the window.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File system error.
    #[error("trace window {path}: {source}")]
    Io {
        /// What was accessed.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad settings.
    #[error("trace window: {0}")]
    Config(String),
    /// The window's filter does not compile.
    #[error("trace window filter: {0}")]
    Filter(#[from] ebpf_filters::FilterError),
}

/// Counters of the window (Prometheus: `como_trace_*`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Packets handed to the writer.
    pub packets: AtomicU64,
    /// Bytes written to segment files.
    pub file_bytes: AtomicU64,
    /// Packets dropped because no staging buffer was free (the disk does not keep up).
    pub drops_disk_slow: AtomicU64,
    /// Packets dropped because the disk is full or failing.
    pub drops_disk_full: AtomicU64,
    /// Packets dropped because the window was closed.
    pub drops_closed: AtomicU64,
    /// Packets larger than a staging buffer.
    pub drops_too_big: AtomicU64,
    /// Failed writes.
    pub write_errors: AtomicU64,
    /// Segments closed.
    pub segments_closed: AtomicU64,
    /// Segments deleted by retention.
    pub segments_deleted: AtomicU64,
    /// Bytes deleted by retention.
    pub bytes_deleted: AtomicU64,
    /// CPU time (thread CPU clock) the writer thread spent indexing (ns).
    pub index_ns: AtomicU64,
    /// Closed segments whose lost index (missing, unreadable, or describing more bytes than
    /// the segment holds) was rebuilt after the window opened ([`reindex`]).
    pub reindexed_segments: AtomicU64,
    /// Writing is stopped (disk full).
    pub disk_full: AtomicBool,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::packets`].
    pub packets: u64,
    /// See [`Stats::file_bytes`].
    pub file_bytes: u64,
    /// See [`Stats::drops_disk_slow`].
    pub drops_disk_slow: u64,
    /// See [`Stats::drops_disk_full`].
    pub drops_disk_full: u64,
    /// See [`Stats::drops_closed`].
    pub drops_closed: u64,
    /// See [`Stats::drops_too_big`].
    pub drops_too_big: u64,
    /// See [`Stats::write_errors`].
    pub write_errors: u64,
    /// See [`Stats::segments_closed`].
    pub segments_closed: u64,
    /// See [`Stats::segments_deleted`].
    pub segments_deleted: u64,
    /// See [`Stats::bytes_deleted`].
    pub bytes_deleted: u64,
    /// See [`Stats::index_ns`].
    pub index_ns: u64,
    /// See [`Stats::reindexed_segments`].
    pub reindexed_segments: u64,
    /// See [`Stats::disk_full`].
    pub disk_full: bool,
}

impl Stats {
    /// A snapshot.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            packets: g(&self.packets),
            file_bytes: g(&self.file_bytes),
            drops_disk_slow: g(&self.drops_disk_slow),
            drops_disk_full: g(&self.drops_disk_full),
            drops_closed: g(&self.drops_closed),
            drops_too_big: g(&self.drops_too_big),
            write_errors: g(&self.write_errors),
            segments_closed: g(&self.segments_closed),
            segments_deleted: g(&self.segments_deleted),
            bytes_deleted: g(&self.bytes_deleted),
            index_ns: g(&self.index_ns),
            reindexed_segments: g(&self.reindexed_segments),
            disk_full: self.disk_full.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text exposition of the counters.
    pub fn prometheus(&self) -> String {
        let s = self.snapshot();
        format!(
            "# HELP como_trace_packets_total Packets written to the trace window.\n\
             # TYPE como_trace_packets_total counter\ncomo_trace_packets_total {}\n\
             # HELP como_trace_bytes_total Bytes written to trace window segments.\n\
             # TYPE como_trace_bytes_total counter\ncomo_trace_bytes_total {}\n\
             # HELP como_trace_drops_total Packets not written to the trace window, by reason.\n\
             # TYPE como_trace_drops_total counter\n\
             como_trace_drops_total{{reason=\"disk_slow\"}} {}\n\
             como_trace_drops_total{{reason=\"disk_full\"}} {}\n\
             como_trace_drops_total{{reason=\"closed\"}} {}\n\
             como_trace_drops_total{{reason=\"too_big\"}} {}\n\
             # HELP como_trace_write_errors_total Failed segment writes.\n\
             # TYPE como_trace_write_errors_total counter\ncomo_trace_write_errors_total {}\n\
             # HELP como_trace_segments_closed_total Segments closed.\n\
             # TYPE como_trace_segments_closed_total counter\ncomo_trace_segments_closed_total {}\n\
             # HELP como_trace_segments_deleted_total Segments deleted by retention.\n\
             # TYPE como_trace_segments_deleted_total counter\ncomo_trace_segments_deleted_total {}\n\
             # HELP como_trace_segments_reindexed_total Closed segments whose lost index was rebuilt.\n\
             # TYPE como_trace_segments_reindexed_total counter\ncomo_trace_segments_reindexed_total {}\n\
             # HELP como_trace_disk_full 1 while the window stopped writing for lack of space.\n\
             # TYPE como_trace_disk_full gauge\ncomo_trace_disk_full {}\n",
            s.packets,
            s.file_bytes,
            s.drops_disk_slow,
            s.drops_disk_full,
            s.drops_closed,
            s.drops_too_big,
            s.write_errors,
            s.segments_closed,
            s.segments_deleted,
            s.reindexed_segments,
            u8::from(s.disk_full),
        )
    }
}

/// Messages to the writer thread.
pub(crate) enum Msg {
    /// A full (or flushed) buffer.
    Buf(staging::Buf),
    /// Close the open segment now; reply when done.
    Rotate(Sender<()>),
    /// Wait for the writes in flight; reply when done.
    Sync(Sender<()>),
    /// Close and exit.
    Stop,
}

/// State shared by the window, its handles and the writer thread.
pub(crate) struct Shared {
    /// Settings.
    pub(crate) cfg: WindowConfig,
    /// Empty buffers.
    pub(crate) free_tx: Sender<staging::Buf>,
    /// Empty buffers (taken by the handles).
    free_rx: Receiver<staging::Buf>,
    /// To the writer.
    tx: Sender<Msg>,
    /// Link type of each interface id (taken by a handle when it meets a new link type).
    links: Mutex<Vec<LinkType>>,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
}

impl Shared {
    /// The link types registered so far.
    pub(crate) fn links(&self) -> Vec<LinkType> {
        self.links.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The interface id of `link`, registering it.
    fn iface(&self, link: LinkType) -> u32 {
        let Ok(mut l) = self.links.lock() else {
            return 0;
        };
        match l.iter().position(|&x| x == link) {
            Some(i) => i as u32,
            None => {
                l.push(link);
                (l.len() - 1) as u32
            }
        }
    }
}

/// The trace window: its writer thread and the handles' shared pool.
pub struct Window {
    /// Shared state.
    shared: Arc<Shared>,
    /// The writer thread.
    thread: Option<JoinHandle<()>>,
    /// The thread rebuilding lost indexes ([`reindex`]), while it runs.
    reindex: Option<JoinHandle<()>>,
    /// Tells the rebuilding thread to stop (set when the window closes).
    reindex_stop: Arc<AtomicBool>,
    /// Engine features in use.
    info: EngineInfo,
    /// Whether the buffers are on hugepages.
    huge: bool,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("dir", &self.shared.cfg.dir)
            .field("engine", &self.info)
            .field("hugepages", &self.huge)
            .finish()
    }
}

impl Window {
    /// Opens the window in `cfg.dir`: recovers a segment left open by a crash (cut at its last
    /// complete block, indexed, kept), removes orphan index files, allocates the staging
    /// buffers and starts the writer thread, and a thread that rebuilds the lost indexes of
    /// closed segments ([`reindex`]; counted in [`Stats::reindexed_segments`]).
    pub fn open(cfg: WindowConfig) -> Result<Window, Error> {
        let dir = cfg.dir.clone();
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        if !cfg.buffer_bytes.is_multiple_of(staging::ALIGN) || cfg.buffer_bytes < 2 * staging::ALIGN
        {
            return Err(Error::Config(format!(
                "staging buffer size {} is not a multiple of 4096 of at least 8192",
                cfg.buffer_bytes
            )));
        }
        let cut = if cfg.snaplen == 0 {
            262_144
        } else {
            cfg.snaplen as usize
        };
        if cfg.buffer_bytes < block::epb_len(cut) + block::MIN_BLOCK {
            return Err(Error::Config(format!(
                "staging buffers of {} bytes cannot hold one packet of snaplen {cut}",
                cfg.buffer_bytes
            )));
        }
        if cfg.buffers == 0 || cfg.buffers > MAX_BUFFERS {
            return Err(Error::Config("staging buffer count out of range".into()));
        }
        if !cfg.filter.trim().is_empty() {
            ebpf_filters::compile(&cfg.filter, LinkType::Ethernet)?;
        }
        std::fs::create_dir_all(&cfg.dir).map_err(io)?;
        let mut next_seq = 1;
        let mut newest = 0;
        for s in segment::list(&cfg.dir).map_err(io)? {
            next_seq = next_seq.max(s.seq + 1);
            if s.open {
                match segment::recover(&s) {
                    Ok(Some(p)) => tracing::info!("trace window: recovered {}", p.display()),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("trace window: cannot recover {}: {e}", s.path.display())
                    }
                }
            }
        }
        segment::clean_orphans(&cfg.dir).map_err(io)?;
        // Listed before the writer starts: every closed segment it makes has its index.
        let closed = segment::list(&cfg.dir).map_err(io)?;
        for s in &closed {
            if let Some((_, end)) = s.range {
                newest = newest.max(end);
            }
        }
        let mut bufs = Vec::with_capacity(cfg.buffers + 1);
        let mut huge = cfg.hugepages;
        for i in 0..cfg.buffers {
            let (b, h) = staging::Buf::alloc(cfg.buffer_bytes, i as u16, huge).map_err(io)?;
            huge &= h;
            bufs.push(b);
        }
        let (hdr, _) =
            staging::Buf::alloc(cfg.buffer_bytes, cfg.buffers as u16, false).map_err(io)?;
        if cfg.hugepages && !huge {
            tracing::info!(
                "trace window: staging buffers on normal pages (no hugepages available)"
            );
        }
        // The engine registers pool + header buffer; the header's registered index is the last.
        let mut all = bufs;
        all.push(hdr);
        let engine = disk::Engine::new(&all, cfg.uring);
        let info = engine.info();
        let Some(hdr) = all.pop() else {
            return Err(Error::Config("no header buffer".into()));
        };
        let (free_tx, free_rx) = crossbeam_channel::unbounded();
        for b in all {
            let _ = free_tx.send(b);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            cfg,
            free_tx,
            free_rx,
            tx,
            links: Mutex::new(Vec::new()),
            stats: Arc::new(Stats::default()),
        });
        let w = writer::Writer::new(shared.clone(), rx, engine, hdr, next_seq, newest);
        let thread = std::thread::Builder::new()
            .name("como-window".into())
            .spawn(move || w.run())
            .map_err(io)?;
        let reindex_stop = Arc::new(AtomicBool::new(false));
        let reindex = if closed.is_empty() {
            None
        } else {
            let (stats, stop) = (shared.stats.clone(), reindex_stop.clone());
            let spawned = std::thread::Builder::new()
                .name("como-reindex".into())
                .spawn(move || reindex::run(&closed, &stats, &stop));
            match spawned {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("trace window: cannot start the index rebuild thread: {e}");
                    None
                }
            }
        };
        Ok(Window {
            shared,
            thread: Some(thread),
            reindex,
            reindex_stop,
            info,
            huge,
        })
    }

    /// A handle for one capture worker.
    pub fn writer(&self) -> WindowWriter {
        let cut = if self.shared.cfg.snaplen == 0 {
            262_144
        } else {
            self.shared.cfg.snaplen as usize
        };
        WindowWriter {
            shared: self.shared.clone(),
            cur: None,
            links: Vec::new(),
            cut,
            since_check: 0,
            cur_since: std::time::Instant::now(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The counters, shared (for a metrics endpoint that outlives borrows).
    pub fn stats_shared(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Engine features in use.
    pub fn engine(&self) -> EngineInfo {
        self.info
    }

    /// Whether the staging buffers are on hugepages.
    pub fn hugepages(&self) -> bool {
        self.huge
    }

    /// Time (ns) of the newest packet in a closed segment of the window (a segment left open
    /// by a crash is closed when the window opens, so it counts), `None` when it holds none:
    /// where a file source re-read after a restart resumes writing, so the window does not
    /// store the same packets twice.
    pub fn newest_stored_ns(&self) -> Option<u64> {
        segment::list(self.dir())
            .ok()?
            .iter()
            .filter_map(|s| s.range.map(|r| r.1))
            .max()
    }

    /// The folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.shared.cfg.dir
    }

    /// Closes the open segment now (after the buffers handed over so far are written).
    pub fn rotate(&self) {
        let (t, r) = crossbeam_channel::bounded(1);
        if self.shared.tx.send(Msg::Rotate(t)).is_ok() {
            let _ = r.recv();
        }
    }

    /// Waits until the buffers handed over so far are written.
    pub fn sync(&self) {
        let (t, r) = crossbeam_channel::bounded(1);
        if self.shared.tx.send(Msg::Sync(t)).is_ok() {
            let _ = r.recv();
        }
    }

    /// Closes the open segment and stops the writer; returns the final counters. Handles
    /// still alive drop their packets from then on (counted as `closed`).
    pub fn finish(mut self) -> StatsSnapshot {
        self.stop();
        self.shared.stats.snapshot()
    }

    fn stop(&mut self) {
        self.reindex_stop.store(true, Ordering::Relaxed);
        let _ = self.shared.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.reindex.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which packets of a link type enter the window.
enum Select {
    /// Every packet (no filter).
    All,
    /// Those the filter matches.
    Filter(Box<Filter>),
    /// None (the filter does not apply to this link type).
    Nothing,
}

/// A capture worker's handle on the window: per packet, a copy into a staging buffer.
pub struct WindowWriter {
    /// Shared state.
    shared: Arc<Shared>,
    /// The buffer being filled.
    cur: Option<staging::Buf>,
    /// Interface id per link type met, with the window's selection for it.
    links: Vec<(LinkType, u32, Select)>,
    /// Snaplen cut.
    cut: usize,
    /// Packets since the last look at the clock.
    since_check: u32,
    /// When the current buffer got its first packet (approximately).
    cur_since: std::time::Instant,
}

impl std::fmt::Debug for WindowWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowWriter")
            .field("cut", &self.cut)
            .finish()
    }
}

impl WindowWriter {
    /// Offers one packet to the window: applies the window's filter, copies it (cut to the
    /// snaplen) into the staging buffer. Never blocks. Returns whether it was stored (false:
    /// not selected by the filter, or dropped and counted).
    #[inline]
    pub fn write(&mut self, p: &Packet<'_>) -> bool {
        self.offer(p, false)
    }

    /// As [`WindowWriter::write`], but waits for a free staging buffer instead of dropping
    /// the packet: for trace-file sources, whose packets must all reach the window (a live
    /// worker must call [`WindowWriter::write`]).
    pub fn write_wait(&mut self, p: &Packet<'_>) -> bool {
        self.offer(p, true)
    }

    #[inline]
    fn offer(&mut self, p: &Packet<'_>, wait: bool) -> bool {
        let iface = match self.links.iter().find(|l| l.0 == p.link) {
            Some((_, i, sel)) => {
                match sel {
                    Select::All => {}
                    Select::Filter(f) => {
                        if !f.matches(p) {
                            return false;
                        }
                    }
                    Select::Nothing => return false,
                }
                *i
            }
            None => {
                let i = self.shared.iface(p.link);
                let expr = &self.shared.cfg.filter;
                let f = if u16::try_from(p.link.to_linktype()).is_err() {
                    tracing::warn!(
                        "trace window: link type {} does not fit pcapng; its packets are not stored",
                        p.link.to_linktype()
                    );
                    Select::Nothing
                } else if expr.trim().is_empty() {
                    Select::All
                } else {
                    match ebpf_filters::compile(expr, p.link) {
                        Ok(f) => Select::Filter(Box::new(f)),
                        Err(e) => {
                            tracing::warn!("trace window: filter {expr:?} does not apply to link type {}: {e}; its packets are not stored", p.link.name());
                            Select::Nothing
                        }
                    }
                };
                self.links.push((p.link, i, f));
                return self.offer(p, wait);
            }
        };
        self.store(p, iface, wait)
    }

    #[inline]
    fn store(&mut self, p: &Packet<'_>, iface: u32, wait: bool) -> bool {
        if self.cur.is_none() {
            self.cur_since = std::time::Instant::now();
            self.since_check = 0;
            self.cur = if wait {
                self.shared.free_rx.recv().ok()
            } else {
                self.shared.free_rx.try_recv().ok()
            };
        }
        let Some(b) = &mut self.cur else {
            self.shared
                .stats
                .drops_disk_slow
                .fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if !b.push(p, self.cut, iface) {
            if b.packets == 0 {
                self.shared
                    .stats
                    .drops_too_big
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            self.flush();
            return self.store(p, iface, wait);
        }
        self.since_check += 1;
        if self.since_check >= 64 {
            self.since_check = 0;
            if self.cur_since.elapsed().as_nanos() >= u128::from(self.shared.cfg.flush_ns) {
                self.flush();
            }
        }
        true
    }

    /// The worker is idle: hands the partial buffer to the writer when it holds at least one
    /// 4 KiB block of packets (the write then wastes less than half of what it writes on
    /// padding) or its first packet is `max_age` old; keeps it otherwise, so a trickle of
    /// packets does not cost a 4 KiB block each. Returns whether it was handed over. No
    /// syscall (one clock read, from the vDSO); call it at each idle moment.
    pub fn idle(&mut self, max_age: std::time::Duration) -> bool {
        let Some(b) = &self.cur else {
            return false;
        };
        if b.packets == 0 || (b.used < staging::ALIGN && self.cur_since.elapsed() < max_age) {
            return false;
        }
        self.flush();
        true
    }

    /// Hands the partial buffer to the writer (call when idle, so the last packets reach the
    /// disk).
    pub fn flush(&mut self) {
        if let Some(b) = self.cur.take() {
            if b.packets == 0 {
                self.cur = Some(b);
                return;
            }
            let n = u64::from(b.packets);
            if self.shared.tx.send(Msg::Buf(b)).is_err() {
                self.shared
                    .stats
                    .drops_closed
                    .fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for WindowWriter {
    fn drop(&mut self) {
        self.flush();
        if let Some(b) = self.cur.take() {
            let _ = self.shared.free_tx.send(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Packets of the open segment visible to a query, after the writes handed over so far.
    fn visible(w: &Window) -> u64 {
        w.sync();
        let mut n = 0;
        query::query(w.dir(), &Query::all(""), &mut |_| {
            n += 1;
            Ok(())
        })
        .expect("query");
        n
    }

    #[test]
    fn idle_hands_over_a_partial_buffer_once_it_fills_a_block_or_is_old() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cfg = WindowConfig::new(tmp.path());
        cfg.buffer_bytes = 64 * 1024;
        cfg.buffers = 2;
        cfg.snaplen = 1500;
        let w = Window::open(cfg).expect("window");
        let mut h = w.writer();
        let d = [0u8; 100]; // EPBs of 132 bytes
        let mut sent = 0u64;
        let mut send = |h: &mut WindowWriter, n: u64| {
            for _ in 0..n {
                sent += 1;
                let p = Packet {
                    ts_ns: 1_700_000_000_000_000_000 + sent,
                    wire_len: 100,
                    data: &d,
                    link: LinkType::Ethernet,
                    interface: 0,
                };
                assert!(h.write(&p));
            }
            sent
        };
        let hour = Duration::from_secs(3600);
        // Nothing pending: nothing to hand over.
        assert!(!h.idle(Duration::ZERO));
        // A trickle (less than one 4 KiB block) stays in the buffer while young...
        send(&mut h, 10);
        assert!(!h.idle(hour));
        assert_eq!(visible(&w), 0);
        // ...and goes once old enough.
        assert!(h.idle(Duration::ZERO));
        assert_eq!(visible(&w), 10);
        // A burst that fills a block goes at the first idle moment, however young.
        let n = send(&mut h, 40);
        assert!(h.idle(hour));
        assert_eq!(visible(&w), n);
        drop(h);
        assert_eq!(w.finish().packets, n);
    }
}
