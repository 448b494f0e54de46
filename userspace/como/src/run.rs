//! `como run -c FILE [-e] [-r TRACE ...]`: the daemon.
//!
//! Sources (the config's `[[source]]`s and any `-r` file) → `como-runtime` (classification,
//! workers, export) → one `como-storage` database per module under `db_path` (caps from
//! `streamsize` / `retention`) → the HTTP query server (`como-server`, its own tokio threads).
//! The first line on stdout is `listening on ADDR` once the query server is bound.
//!
//! - `-e` exits once every file source is consumed and everything is flushed and stored;
//!   without it the daemon keeps answering queries until SIGTERM or SIGINT.
//! - SIGTERM / SIGINT: stop reading, flush the open intervals, sync, exit 0.
//! - SIGHUP (a reload for a live node) is logged and ignored, and `POST /reload` answers 409:
//!   a node reading files runs the module set it started with.
//! - `[trace]` (the packet trace window): every packet read from the file sources that the
//!   window's filter selects is written into the window (`WindowWriter::write_wait`: a file
//!   source waits for the disk rather than losing packets); once every source is consumed the
//!   open segment is closed (indexed); `/trace` and `source=trace` answer from it. Restarted
//!   on the same input, the window skips the packets up to the newest one it already holds
//!   (as the modules' databases skip what they stored).
//! - An `xdp` source runs the live form instead (`crate::live`: XDP + AF_XDP, pinned
//!   workers, SIGHUP reloads the module set).
//! - **Restart on the same `db_path`** (after a crash or kill -9): each module's database is
//!   reopened (a torn tail is cut by the storage manager) and the export side skips what is
//!   already stored: records older than the newest stored timestamp, and at that timestamp as
//!   many records as are stored (an interval whose storing was cut by the crash is completed,
//!   not duplicated). This assumes the restarted node re-reads the same input (file sources) or
//!   newer traffic (live sources); after a SIGTERM, whose flush stores the open intervals as
//!   they were, re-reading the same file does not complete those intervals.
//!
//! Exit status: 0 on success, 2 for a bad configuration or filter, 1 for an unreadable source,
//! a storage failure or a port already in use.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use como_config::{Config, SourceConfig, SourceKind};
use como_module::{Exported, Interval};
use como_packet::Packet;
use como_runtime::{
    check_filters, Got, MergedSource, ModuleSpec, Next, Observer, Options, Pipeline, Sink,
    SinkError, Source, SourceError, StorageSink, TraceSource,
};
use como_server::{NodeState, ServedModule, Server, SourceState, SourceStatus, TraceWindow};
use como_window::{Window, WindowWriter};

use crate::Failure;

/// Arguments of `como run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Configuration file (TOML); without it the embedded default configuration (and without
    /// `-r` either: the live capture demo, `como demo`).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Exit once every file source is consumed and everything is stored.
    #[arg(short = 'e')]
    exit_at_end: bool,
    /// A trace file to read, in addition to the configuration's sources (repeatable).
    #[arg(short = 'r', value_name = "TRACE")]
    files: Vec<PathBuf>,
    /// Worker threads (default: cores - 1, at least 1).
    #[arg(long)]
    workers: Option<usize>,
}

/// Packets between two publications of the counters.
const PUBLISH_EVERY: u64 = 1024;

/// Counts a source's packets for `/status` and `/metrics` (published per batch), paces it when
/// asked, and stops it when the daemon is told to stop.
struct Observed {
    inner: Box<dyn Source>,
    counts: Counts,
    pacer: Pacer,
    started: bool,
}

/// Replays a file at `speed` times its recorded pace (none: as fast as it reads), and stops
/// when the daemon is told to.
struct Pacer {
    stop: Arc<AtomicBool>,
    speed: Option<f64>,
    /// (first packet's ts, when it was read).
    origin: Option<(u64, Instant)>,
}

/// A source's counters not yet published.
struct Counts {
    index: usize,
    node: Arc<NodeState>,
    packets: u64,
    bytes: u64,
}

impl Counts {
    fn publish(&mut self) {
        if let Some(s) = self.node.sources.get(self.index) {
            s.packets.fetch_add(self.packets, Ordering::Relaxed);
            s.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        }
        self.node
            .metrics
            .add_source(self.index, self.packets, self.bytes);
        self.packets = 0;
        self.bytes = 0;
    }

    fn set_state(&self, st: SourceState) {
        if let Some(s) = self.node.sources.get(self.index) {
            s.set_state(st);
        }
    }
}

impl Pacer {
    /// Sleeps until the packet's paced time; false if told to stop meanwhile.
    fn wait(&mut self, ts_ns: u64) -> bool {
        let Some(speed) = self.speed else {
            return true;
        };
        let (t0, at) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let due = at + Duration::from_secs_f64(ts_ns.saturating_sub(t0) as f64 / 1e9 / speed);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }
}

impl Observed {
    /// Marks the source running at the first call; false once the daemon is told to stop.
    fn go_on(&mut self) -> bool {
        if !self.started {
            self.started = true;
            self.counts.set_state(SourceState::Running);
        }
        if self.pacer.stop.load(Ordering::Relaxed) {
            self.counts.publish();
            return false;
        }
        true
    }

    /// Publishes the counters when the source is idle, ended or failed, and sets its state.
    fn settle(counts: &mut Counts, res: Result<Got, &SourceError>) {
        match res {
            Ok(Got::Packets(_)) => {}
            Ok(Got::Idle) => counts.publish(),
            Ok(Got::End) => {
                counts.publish();
                counts.set_state(SourceState::Done);
            }
            Err(e) => {
                counts.publish();
                counts.set_state(SourceState::Failed(e.message.clone()));
            }
        }
    }
}

impl Counts {
    /// Counts one packet, publishing every [`PUBLISH_EVERY`].
    fn count(&mut self, p: &Packet<'_>) {
        self.packets += 1;
        self.bytes += u64::from(p.wire_len);
        if self.packets >= PUBLISH_EVERY {
            self.publish();
        }
    }
}

impl Source for Observed {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn progress(&self) -> Option<(u64, u64)> {
        self.inner.progress()
    }

    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        if !self.go_on() {
            return Ok(Next::End);
        }
        let Self {
            inner,
            counts,
            pacer,
            ..
        } = self;
        let res = inner.next_packet();
        let got = match &res {
            Ok(Next::Packet(p)) => {
                if !pacer.wait(p.ts_ns) {
                    counts.publish();
                    return Ok(Next::End);
                }
                counts.count(p);
                Ok(Got::Packets(1))
            }
            Ok(Next::Idle) => Ok(Got::Idle),
            Ok(Next::End) => Ok(Got::End),
            Err(e) => Err(e),
        };
        Self::settle(counts, got);
        res
    }

    fn next_batch(&mut self, f: &mut dyn FnMut(&[Packet<'_>])) -> Result<Got, SourceError> {
        if !self.go_on() {
            return Ok(Got::End);
        }
        let Self {
            inner,
            counts,
            pacer,
            ..
        } = self;
        let mut stopped = false;
        let res = inner.next_batch(&mut |pkts| match pacer.speed {
            None => {
                for p in pkts {
                    counts.count(p);
                }
                f(pkts);
            }
            // Paced: each packet handed over at its own time, not with its batch.
            Some(_) => {
                for p in pkts {
                    if stopped || !pacer.wait(p.ts_ns) {
                        stopped = true;
                        return;
                    }
                    counts.count(p);
                    f(std::slice::from_ref(p));
                }
            }
        });
        if stopped {
            counts.publish();
            return Ok(Got::End);
        }
        Self::settle(counts, res.as_ref().copied());
        res
    }
}

/// Skips what a previous run already stored (see the module docs), then stores through
/// [`StorageSink`]; counts stored records in the metrics.
pub(crate) struct ResumeSink {
    pub(crate) inner: StorageSink,
    pub(crate) resume: Vec<Resume>,
    pub(crate) node: Arc<NodeState>,
    pub(crate) kept: Vec<Exported>,
}

/// One module's resume point.
pub(crate) struct Resume {
    /// Newest stored timestamp at open (`None`: empty database).
    last: Option<u64>,
    /// The records stored at `last`, oldest first, still to be matched.
    at_last: VecDeque<Vec<u8>>,
    /// Storage timestamp of the previous exported record (StorageSink's clamp).
    running: u64,
    skipped: u64,
}

impl Resume {
    /// Stores every record: a live source's traffic is always new, nothing to skip.
    pub(crate) fn nothing_stored() -> Self {
        Self {
            last: None,
            at_last: VecDeque::new(),
            running: 0,
            skipped: 0,
        }
    }
}

impl Sink for ResumeSink {
    fn interval(
        &mut self,
        module: usize,
        ivl: Interval,
        records: &[Exported],
    ) -> Result<(), SinkError> {
        self.kept.clear();
        match self.resume.get_mut(module) {
            Some(Resume {
                last: Some(last),
                at_last,
                running,
                skipped,
            }) => {
                for r in records {
                    let ts = r.ts_ns.max(*running);
                    *running = ts;
                    let already = ts < *last || (ts == *last && at_last.pop_front().is_some());
                    if already {
                        *skipped += 1;
                    } else {
                        self.kept.push(r.clone());
                    }
                }
            }
            _ => self.kept.extend_from_slice(records),
        }
        self.inner.interval(module, ivl, &self.kept)?;
        self.node
            .metrics
            .add_module_records(module, self.kept.len() as u64);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for (i, r) in self.resume.iter().enumerate() {
            if r.skipped > 0 {
                let set = self.node.modules();
                let name = set.modules.get(i).map(|m| m.config.name.as_str());
                tracing::info!(
                    "module {}: {} records were already stored by a previous run",
                    name.unwrap_or("?"),
                    r.skipped
                );
            }
        }
        self.inner.finish()
    }
}

fn open_source(s: &SourceConfig) -> anyhow::Result<(TraceSource, Option<f64>)> {
    match &s.kind {
        SourceKind::File { path, speed } => {
            let t = TraceSource::open(path).with_context(|| format!("source {}", s.name()))?;
            Ok((t, *speed))
        }
        SourceKind::Xdp(x) => Err(anyhow!(
            "source {}: an xdp source (interface {}) is read by the live runtime",
            s.name(),
            x.interface
        )),
    }
}

/// What a previous run stored, per module (see the module docs).
pub(crate) type Resumes = Vec<Resume>;

/// Opens (or creates) one database per module under `db_path`, with what each already holds.
pub(crate) fn open_storage(
    config: &Config,
) -> Result<(StorageSink, Vec<como_storage::ReadHandle>, Resumes), Failure> {
    let file = |e: anyhow::Error| Failure::File(e);
    let root = &config.node.db_path;
    std::fs::create_dir_all(root)
        .with_context(|| format!("db_path {}", root.display()))
        .map_err(file)?;
    let db_opts: Vec<(String, como_storage::Options)> = config
        .modules
        .iter()
        .map(|m| {
            let opts = como_storage::Options {
                max_bytes: m.streamsize,
                retention_ns: m
                    .retention
                    .map(|r| u64::try_from(r.as_nanos()).unwrap_or(u64::MAX)),
                ..como_storage::Options::default()
            };
            (m.name.clone(), opts)
        })
        .collect();
    let storage = StorageSink::open_each(root, &db_opts).map_err(|e| file(e.into()))?;
    let reads: Vec<_> = storage.databases().map(|d| d.read_handle()).collect();
    let mut resume = Vec::with_capacity(reads.len());
    for r in &reads {
        let last = r.last_ts();
        let mut at_last = VecDeque::new();
        if let Some(t) = last {
            for rec in r.reader(t..=t) {
                let rec = rec.map_err(|e| file(e.into()))?;
                at_last.push_back(rec.payload);
            }
        }
        resume.push(Resume {
            last,
            at_last,
            running: 0,
            skipped: 0,
        });
    }
    Ok((storage, reads, resume))
}

/// The query server's view of `config`'s modules over their databases' read handles (in
/// configuration order, as [`open_storage`] returns them).
pub(crate) fn served_modules(
    config: &Config,
    reads: Vec<como_storage::ReadHandle>,
) -> Vec<ServedModule> {
    config
        .modules
        .iter()
        .zip(reads)
        .map(|(m, read)| ServedModule {
            config: m.clone(),
            read,
        })
        .collect()
}

/// The node's shared state and its query server, listening (prints `listening on ADDR`).
pub(crate) fn start_node(
    config: &Config,
    reads: Vec<como_storage::ReadHandle>,
    statuses: Vec<Arc<SourceStatus>>,
) -> Result<(Arc<NodeState>, Server), Failure> {
    let file = |e: anyhow::Error| Failure::File(e);
    let served = served_modules(config, reads);
    let node = Arc::new(
        NodeState::new(config.node.clone(), served, statuses)
            .map_err(|e| file(anyhow!("metrics: {e}")))?,
    );
    node.set_max_queries(config.query.max_queries);
    let server = Server::start(Arc::clone(&node), config.query.listen)
        .with_context(|| format!("query server on {}", config.query.listen))
        .map_err(file)?;
    tracing::info!("query server listening on {}", server.addr());
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", server.addr());
        let _ = out.flush();
    }
    Ok((node, server))
}

/// The runtime's module specs of a configuration.
pub(crate) fn module_specs(config: &Config) -> Vec<ModuleSpec> {
    config
        .modules
        .iter()
        .map(|m| ModuleSpec {
            name: m.name.clone(),
            module: Arc::clone(&m.module),
            filter: m.filter.clone(),
            interval: m.interval,
        })
        .collect()
}

/// Runs `como run`.
pub(crate) fn run(args: &RunArgs) -> Result<(), Failure> {
    let usage = |e: anyhow::Error| Failure::Filter(e);
    let file = |e: anyhow::Error| Failure::File(e);
    if args.config.is_none() && args.files.is_empty() {
        // Nothing to read: the live capture demo on the embedded configuration.
        return crate::demo::run(&crate::demo::DemoArgs::defaults());
    }
    let mut config = match &args.config {
        Some(p) => Config::load(p),
        None => Config::default_config(),
    }
    .map_err(|e| usage(anyhow!("{e}")))?;
    for f in &args.files {
        config.sources.push(SourceConfig {
            kind: SourceKind::File {
                path: f.clone(),
                speed: None,
            },
        });
    }
    if args.workers == Some(0) {
        return Err(usage(anyhow!("--workers must be at least 1")));
    }
    if config
        .sources
        .iter()
        .any(|s| matches!(s.kind, SourceKind::Xdp(_)))
    {
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("signal handler")
                .map_err(file)?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
            .context("signal handler")
            .map_err(file)?;
        return crate::live::run(crate::live::LiveRun {
            config_path: args.config.as_deref(),
            config,
            stop,
            reload,
        });
    }
    // Sources first: an unreadable file or a filter that does not fit it fails before anything.
    let specs = module_specs(&config);
    let mut opened = Vec::with_capacity(config.sources.len());
    for s in &config.sources {
        let (t, speed) = open_source(s).map_err(file)?;
        check_filters(&specs, t.link_type()).map_err(|e| usage(e.into()))?;
        opened.push((t, speed));
    }

    let window = match &config.trace {
        Some(t) => Some(Arc::new(
            Window::open(crate::trace::window_config(t))
                .with_context(|| format!("trace window {}", t.path.display()))
                .map_err(file)?,
        )),
        None => None,
    };
    let (storage, reads, resume) = open_storage(&config)?;
    let statuses: Vec<Arc<SourceStatus>> = config
        .sources
        .iter()
        .map(|s| Arc::new(SourceStatus::new(s.name(), s.type_name())))
        .collect();
    let (node, server) = start_node(&config, reads, statuses)?;
    if let Some(w) = &window {
        node.set_trace(TraceWindow {
            dir: w.dir().to_path_buf(),
            stats: Some(w.stats_shared()),
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("signal handler")
            .map_err(file)?;
    }
    // SIGHUP reloads a live node; this one logs it and goes on (by default it would end the
    // process).
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("signal handler")
        .map_err(file)?;

    let mut sources: Vec<Box<dyn Source>> = opened
        .into_iter()
        .enumerate()
        .map(|(index, (t, speed))| {
            Box::new(Observed {
                inner: Box::new(t),
                counts: Counts {
                    index,
                    node: Arc::clone(&node),
                    packets: 0,
                    bytes: 0,
                },
                pacer: Pacer {
                    stop: Arc::clone(&stop),
                    speed,
                    origin: None,
                },
                started: false,
            }) as Box<dyn Source>
        })
        .collect();
    let opts = Options {
        workers: args.workers.unwrap_or_else(como_runtime::default_workers),
        ..Options::default()
    };
    let sink = ResumeSink {
        inner: storage,
        resume,
        node: Arc::clone(&node),
        kept: Vec::new(),
    };
    let pnode = Arc::clone(&node);
    let pwindow = window.clone();
    let pipeline = std::thread::Builder::new()
        .name("como-dispatch".into())
        .spawn(move || -> anyhow::Result<()> {
            let source: Option<Box<dyn Source>> = match sources.len() {
                0 => None,
                1 => sources.pop(),
                _ => Some(Box::new(MergedSource::new(sources))),
            };
            // A restart re-reads the files: the window resumes after what it already holds.
            let writer = pwindow
                .as_ref()
                .map(|w| (w.writer(), w.newest_stored_ns().unwrap_or(0)));
            let result = drive(specs, &opts, source, sink, &pnode, writer);
            if let Some(w) = &pwindow {
                // Every packet read is in the window: close (and index) its segment.
                w.rotate();
            }
            pnode.set_finished();
            result
        })
        .context("dispatcher thread")
        .map_err(file)?;
    tracing::info!(
        "running {} modules over {} sources",
        config.modules.len(),
        config.sources.len()
    );

    let mut result = Ok(());
    let mut pipeline = Some(pipeline);
    loop {
        if pipeline.as_ref().is_some_and(|p| p.is_finished()) {
            if let Some(p) = pipeline.take() {
                result = match p.join() {
                    Ok(r) => r.map_err(file),
                    Err(_) => Err(file(anyhow!("the dispatcher thread panicked"))),
                };
            }
            tracing::info!("all sources consumed; everything stored");
            if args.exit_at_end || result.is_err() {
                break;
            }
        }
        if hup.swap(false, Ordering::Relaxed) {
            tracing::warn!("SIGHUP ignored: {}", como_server::NO_LIVE_SOURCE);
        }
        if stop.load(Ordering::Relaxed) {
            tracing::info!("signal received: flushing");
            if let Some(p) = pipeline.take() {
                result = match p.join() {
                    Ok(r) => r.map_err(file),
                    Err(_) => Err(file(anyhow!("the dispatcher thread panicked"))),
                };
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(e) = server.stop() {
        tracing::warn!("query server: {e}");
    }
    drop(node);
    if let Some(w) = window {
        // The dispatcher has ended (its writer is flushed): close the open segment.
        match Arc::try_unwrap(w) {
            Ok(w) => {
                let s = w.finish();
                tracing::info!(
                    "trace window: {} packets written, {} dropped (disk full)",
                    s.packets,
                    s.drops_disk_full
                );
            }
            // Still shared (a dispatcher that did not end): dropping the last handle closes it.
            Err(w) => drop(w),
        }
    }
    result
}

/// The dispatcher loop ([`como_runtime::drive`]), publishing the per-module counters every
/// [`PUBLISH_EVERY`] packets, and writing every packet newer than the window's newest stored
/// one into the trace window (`window`: the writer and that time; its own filter selects).
fn drive(
    specs: Vec<ModuleSpec>,
    opts: &Options,
    source: Option<Box<dyn Source>>,
    sink: ResumeSink,
    node: &NodeState,
    window: Option<(WindowWriter, u64)>,
) -> anyhow::Result<()> {
    /// The daemon's view of the run: window writes, counters, progress bar.
    struct Daemon<'n> {
        node: &'n NodeState,
        window: Option<(WindowWriter, u64)>,
        published: Vec<u64>,
        unpublished: u64,
        bar: indicatif::ProgressBar,
    }
    impl Daemon<'_> {
        fn publish(&mut self, pipe: &Pipeline<ResumeSink>) {
            for (i, (&now, old)) in pipe
                .report()
                .matched
                .iter()
                .zip(self.published.iter_mut())
                .enumerate()
            {
                self.node.metrics.add_module_packets(i, now - *old);
                *old = now;
            }
            self.unpublished = 0;
        }
    }
    impl Observer<ResumeSink> for Daemon<'_> {
        fn packets(&mut self, pkts: &[Packet<'_>]) {
            if let Some((w, stored_until)) = &mut self.window {
                for p in pkts.iter().filter(|p| p.ts_ns > *stored_until) {
                    w.write_wait(p);
                }
            }
        }
        fn progress(&mut self, source: &dyn Source, pipe: &Pipeline<ResumeSink>, packets: u64) {
            self.unpublished += packets;
            // Every PUBLISH_EVERY packets, and when the source is idle or ended with packets
            // not yet published (not at every idle poll).
            if self.unpublished >= PUBLISH_EVERY || (packets == 0 && self.unpublished > 0) {
                self.publish(pipe);
                if let Some((done, _)) = source.progress() {
                    self.bar.set_position(done);
                }
            }
        }
        fn idle(&mut self) {
            if let Some((w, _)) = &mut self.window {
                w.flush();
            }
        }
    }
    let mut pipe = Pipeline::start(specs, opts, sink)?;
    node.set_module_cpu(pipe.module_cpu());
    let mut daemon = Daemon {
        node,
        window,
        published: vec![0u64; pipe.report().matched.len()],
        unpublished: 0,
        bar: indicatif::ProgressBar::hidden(),
    };
    if let Some(mut source) = source {
        daemon.bar = crate::inline::progress_bar(source.progress());
        if let Err(e) = como_runtime::drive(&mut pipe, opts, &mut *source, &mut daemon) {
            return Err(pipe.finish().err().unwrap_or(e).into());
        }
        daemon.bar.finish_and_clear();
    }
    let Daemon { window, .. } = daemon;
    // The last partial buffer to the writer.
    drop(window);
    let (report, _) = pipe.finish()?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}
