//! CoMo-rs query server: CoMo's HTTP interface over the modules' databases, plus `/status`,
//! `/modules` and Prometheus `/metrics`.
//!
//! The server runs axum on its own small tokio runtime ([`Server::start`]), on threads of its
//! own: the packet path (sources, workers, export, storage) stays on plain threads and shares
//! only [`NodeState`] with it (atomic counters, the databases' read handles).
//!
//! # Endpoints
//! - `GET /<module>?time=A:B&format=F&wait=no&source=M&k=v`: the module's stored records in the
//!   time range, printed in `format` (see [`params`] for every parameter form). When the end of
//!   the range is in the future and `wait=no` is not given, the response is streamed (chunked):
//!   records are sent as their intervals are stored, until a record at or past the end arrives,
//!   the wall clock passes the end by more than the module's interval plus [`STREAM_SLACK`], or
//!   the node's runtime has ended (all sources consumed). `source=M` runs this module (a fresh
//!   instance of its kind, args, filter and interval) over module `M`'s stored records turned
//!   back into packets by `M`'s `replay` (CoMo's chaining; `M` is usually a `trace` module).
//!   When the end of the range is in the future (and no `wait=no`), the chained query follows
//!   `M`'s database as a plain query follows its own: `M`'s new records are fed to the module
//!   as they are stored, each interval of the module is sent when it completes, and the query
//!   ends as a plain streaming one does (a record of `M` at or past the end, the end plus
//!   `M`'s interval plus [`STREAM_SLACK`], the runtime's end). Otherwise it runs over what `M`
//!   has stored when the query arrives, output sent in chunks. `source=trace` (with a trace
//!   window and no module named `trace`) runs the module over the window's stored packets of
//!   the time range instead: CoMo's query on past traffic.
//!   Other parameters are the module's print-time parameters (`topn` ...).
//! - `GET /status`: node, uptime, sources (packets, bytes, state), modules (stored bytes, time
//!   range), whether the runtime still runs. JSON.
//! - `GET /modules`: name, kind, filter, interval, formats, print parameters of each module. JSON.
//! - `GET /metrics`: Prometheus text ([`Metrics`]), plus the trace window's `como_trace_*`.
//! - `GET /trace?filter=EXPR&time=A:B&format=pcap|pcapng` (or `start=`/`end=`): the packets of
//!   the packet trace window (`[trace]`) in the time range that match the filter (tcpdump's
//!   syntax, URL-encoded; default every packet), streamed as a pcap (default) or pcapng file.
//!   The range is `[A, B)`; `start`/`end` are Unix seconds as for module queries
//!   ([`params::parse_trace`]). Without a trace window, `/trace` is the module named `trace` if
//!   there is one.
//!
//! - `POST /reload`: reloads the configuration as SIGHUP does on a live node, and answers once
//!   the new module set runs: 200 with JSON ([`ReloadReport`]: `modules` running now, `kept`
//!   with their open interval, `added`, `removed`, `changed`, `tables_generation`), 400 with
//!   the configuration error (`FILE:LINE:COL: message`, as `como validate` prints it; the
//!   running set is kept), 500 when applying a valid configuration failed (the running set
//!   is kept), 409 when the node cannot reload (no live source, no configuration file: the
//!   body says which) or while another reload asked over HTTP runs in the node, 504 after
//!   [`RELOAD_TIMEOUT`] (the reload goes on, and further `POST /reload`s get 409 until the
//!   node has done it). The reload runs on the daemon's loop, not on the server's threads: the
//!   request is handed over a channel ([`NodeState::set_reloader`]) with a reply channel.
//!
//! Errors: an unknown module → 404; a bad parameter, format or print parameter → 400; the
//! reason is the body (one line of text).
//!
//! # Concurrency
//! Each query's answer is produced on a thread of its own. At most [`NodeState::max_queries`]
//! (`[query] max_queries`) run at once, streaming ones included while they stream; beyond
//! that a query is refused with 503, a `Retry-After: 1` header and a body naming the limit
//! (counted in `como_query_rejected_total`; `como_queries_running` is the running count). A
//! query's place is freed when its producer ends: at the end of its range, when the client
//! goes away (seen at the next chunk sent, or within [`FOLLOW_POLL`] while a streaming query
//! waits for records), or when it panics.
//!
//! # Reloads
//! One server runs for the node's life; a reload replaces the module set it serves
//! ([`NodeState::replace_modules`]). A streaming query (plain or chained) of a module the new
//! set keeps under the same name, kind and args goes on over the new set's database of the
//! module, every record sent once (see `ModuleRecords`); one of a module the new set drops
//! ends, its answer complete up to the reload; `/trace` streams are not affected (the window
//! stays open across reloads).

pub mod metrics;
pub mod params;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use como_config::ModuleConfig;
use como_module::{Exported, Format, Interval, RecordSink};
use como_runtime::{ModuleCpu, ModuleSpec, Options, PrintSink, ReplaySource, Sink, SinkError};
use como_storage::ReadHandle;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

pub use metrics::Metrics;
pub use params::{ParamError, QueryParams};

/// How long past the end of its range (plus the module's interval) a streaming query waits.
pub const STREAM_SLACK: Duration = Duration::from_secs(5);

/// Output chunk size of query responses.
const CHUNK: usize = 64 * 1024;

/// State of a packet source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Not started yet.
    Pending,
    /// Being read.
    Running,
    /// Consumed to its end.
    Done,
    /// Ended on an error.
    Failed(String),
}

/// A packet source as `/status` shows it.
#[derive(Debug)]
pub struct SourceStatus {
    /// Source name (`file:PATH`).
    pub name: String,
    /// Type (`file` ...).
    pub kind: &'static str,
    /// Packets read (updated per batch).
    pub packets: AtomicU64,
    /// Bytes on the wire read (updated per batch).
    pub bytes: AtomicU64,
    state: Mutex<SourceState>,
}

impl SourceStatus {
    /// A pending source.
    pub fn new(name: String, kind: &'static str) -> Self {
        Self {
            name,
            kind,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            state: Mutex::new(SourceState::Pending),
        }
    }

    /// Sets the state.
    pub fn set_state(&self, s: SourceState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    /// The state.
    pub fn state(&self) -> SourceState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A module the server answers for: its configuration and its database's read handle.
#[derive(Clone)]
pub struct ServedModule {
    /// The module's configuration.
    pub config: ModuleConfig,
    /// Readers of its database.
    pub read: ReadHandle,
}

/// The modules served at one time; a reload replaces the whole set
/// ([`NodeState::replace_modules`]).
pub struct ModuleSet {
    /// The modules, in configuration order.
    pub modules: Vec<ServedModule>,
    /// 0 for the set the node started with, one more at each replacement.
    pub generation: u64,
}

impl ModuleSet {
    /// The module named `name`.
    pub fn get(&self, name: &str) -> Option<&ServedModule> {
        self.modules.iter().find(|m| m.config.name == name)
    }
}

/// Everything the query server knows about the node; shared with the packet path.
pub struct NodeState {
    /// `[node]` of the configuration.
    pub node: como_config::Node,
    /// The modules served now (replaced whole by a reload).
    modules: RwLock<Arc<ModuleSet>>,
    /// The sources, in configuration order.
    pub sources: Vec<Arc<SourceStatus>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    started: Instant,
    finished: AtomicBool,
    stopping: AtomicBool,
    cpu: Mutex<Option<Arc<ModuleCpu>>>,
    trace: OnceLock<TraceWindow>,
    /// Where `POST /reload` sends its requests, or why the node cannot reload.
    reloader: Mutex<Result<std::sync::mpsc::Sender<ReloadRequest>, String>>,
    /// Whether a reload asked by `POST /reload` is in the node (one at a time): set when the
    /// request is sent, cleared when the daemon's loop answers or drops it, not when the HTTP
    /// request ends (a reload that timed out with 504 goes on).
    reloading: AtomicBool,
    /// How long `POST /reload` waits for the node's answer ([`RELOAD_TIMEOUT`]).
    reload_timeout: Mutex<Duration>,
    /// Queries whose producer runs now.
    queries: AtomicUsize,
    /// Most queries running at once (`[query] max_queries`).
    max_queries: AtomicUsize,
}

/// The packet trace window as the server sees it.
#[derive(Clone)]
pub struct TraceWindow {
    /// Its folder.
    pub dir: std::path::PathBuf,
    /// Its counters (absent when the node does not write the window itself).
    pub stats: Option<Arc<como_window::Stats>>,
}

impl NodeState {
    /// A node whose runtime is running.
    pub fn new(
        node: como_config::Node,
        modules: Vec<ServedModule>,
        sources: Vec<Arc<SourceStatus>>,
    ) -> Result<Self, prometheus::Error> {
        let metrics = Metrics::new(
            &sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            &modules
                .iter()
                .map(|m| m.config.name.clone())
                .collect::<Vec<_>>(),
        )?;
        Ok(Self {
            node,
            modules: RwLock::new(Arc::new(ModuleSet {
                modules,
                generation: 0,
            })),
            sources,
            metrics,
            started: Instant::now(),
            finished: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            cpu: Mutex::new(None),
            trace: OnceLock::new(),
            reloader: Mutex::new(Err(NO_LIVE_SOURCE.to_owned())),
            reloading: AtomicBool::new(false),
            reload_timeout: Mutex::new(RELOAD_TIMEOUT),
            queries: AtomicUsize::new(0),
            max_queries: AtomicUsize::new(como_config::DEFAULT_MAX_QUERIES),
        })
    }

    /// Sets the most queries running at once (`[query] max_queries`; default
    /// [`como_config::DEFAULT_MAX_QUERIES`]; 0 reads as 1). Queries already running go on.
    pub fn set_max_queries(&self, max: usize) {
        self.max_queries.store(max.max(1), Ordering::SeqCst);
    }

    /// The most queries running at once.
    pub fn max_queries(&self) -> usize {
        self.max_queries.load(Ordering::SeqCst)
    }

    /// Queries running now (module queries, `/trace`, chained queries; a streaming one until
    /// it ends).
    pub fn queries_running(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Gives the runtime's per-module CPU accounting (indexed as the module set served now)
    /// to `/metrics`; a reload gives the new runtime's.
    pub fn set_module_cpu(&self, cpu: Arc<ModuleCpu>) {
        *self.cpu.lock().unwrap_or_else(PoisonError::into_inner) = Some(cpu);
    }

    /// The runtime's per-module CPU accounting, once the runtime has started.
    pub fn module_cpu(&self) -> Option<Arc<ModuleCpu>> {
        self.cpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The modules served now.
    pub fn modules(&self) -> Arc<ModuleSet> {
        Arc::clone(&self.modules.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Generation of the module set served now (see [`ModuleSet::generation`]).
    pub fn module_generation(&self) -> u64 {
        self.modules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Serves `modules` from now on (a reload); the new set's generation.
    ///
    /// Call it once the runtime of the previous set has stopped and its databases' writers are
    /// closed (everything they stored is acknowledged), and before the new runtime starts:
    /// a streaming query that has read all its old reader holds then moves to the new set's
    /// database of the same module (same name, kind and args: the same records), skipping
    /// what it has sent; one of a module the new set does not have ends. `/modules`,
    /// `/status` and `/metrics` show the new set at once; the metric series of the modules
    /// that left are dropped (Prometheus' practice for a target's vanished series), those of
    /// the modules that stay go on. The CPU accounting and the capture probe's module
    /// counters are the previous runtime's until the new ones are given
    /// ([`NodeState::set_module_cpu`], [`Metrics::set_capture_probe`]): they are cleared here.
    pub fn replace_modules(&self, modules: Vec<ServedModule>) -> u64 {
        let names: Vec<String> = modules.iter().map(|m| m.config.name.clone()).collect();
        let mut generation = 0;
        self.metrics.set_modules(&names, || {
            *self.cpu.lock().unwrap_or_else(PoisonError::into_inner) = None;
            let mut set = self.modules.write().unwrap_or_else(PoisonError::into_inner);
            generation = set.generation + 1;
            *set = Arc::new(ModuleSet {
                modules,
                generation,
            });
        });
        generation
    }

    /// Makes `POST /reload` send its requests to `tx` (the daemon's loop answers them).
    pub fn set_reloader(&self, tx: std::sync::mpsc::Sender<ReloadRequest>) {
        *self.reloader.lock().unwrap_or_else(PoisonError::into_inner) = Ok(tx);
    }

    /// Sets how long `POST /reload` waits for the node's answer before it answers 504 (the
    /// default: [`RELOAD_TIMEOUT`]).
    pub fn set_reload_timeout(&self, wait: Duration) {
        *self
            .reload_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = wait;
    }

    /// Makes `POST /reload` answer 409 with `why` (the default: [`NO_LIVE_SOURCE`]).
    pub fn set_reload_unavailable(&self, why: impl Into<String>) {
        *self.reloader.lock().unwrap_or_else(PoisonError::into_inner) = Err(why.into());
    }

    /// Serves the packet trace window on `/trace` (once; later calls are ignored).
    pub fn set_trace(&self, trace: TraceWindow) {
        let _ = self.trace.set(trace);
    }

    /// Marks the runtime as ended: everything is stored, no record will be added.
    pub fn set_finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// Whether the runtime has ended.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

/// Why a node without a live source does not reload (`POST /reload` → 409).
pub const NO_LIVE_SOURCE: &str = "this node cannot reload: it has no live source (a node reading files runs the module set it started with to the end; restart it with the new configuration)";

/// How long `POST /reload` waits for the daemon's answer before it answers 504 (the reload
/// goes on).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a reload did (`POST /reload`'s JSON answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// The modules running now, in configuration order.
    pub modules: Vec<String>,
    /// Modules left unchanged (same name, kind, filter, interval, args): their open interval
    /// and export state went on through the reload.
    pub kept: Vec<String>,
    /// Modules the previous set did not have.
    pub added: Vec<String>,
    /// Modules of the previous set that are gone (their open interval was stored).
    pub removed: Vec<String>,
    /// Modules whose definition changed: their open interval was stored and they started
    /// anew (same database).
    pub changed: Vec<String>,
    /// Generation of the kernel tables now installed.
    pub tables_generation: u32,
}

/// Why a reload did not happen; the running modules are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The configuration does not validate (`FILE:LINE:COL: message` as `como validate`
    /// prints it) or its modules cannot run on this node: 400.
    #[error("{0}")]
    Invalid(String),
    /// The node failed to apply a valid configuration: 500.
    #[error("{0}")]
    Failed(String),
}

/// A `POST /reload` waiting for the daemon's loop, which answers with [`ReloadRequest::answer`].
/// Until it is answered or dropped, the node refuses other `POST /reload`s (409), also after
/// the HTTP request timed out (504).
pub struct ReloadRequest {
    reply: oneshot::Sender<Result<ReloadReport, ReloadError>>,
    /// Clears [`NodeState::reloading`] when the request is answered or dropped.
    busy: Reloading,
}

impl ReloadRequest {
    /// Answers the request (ignored when the client's wait has ended); the node accepts the
    /// next `POST /reload` from then on.
    pub fn answer(self, outcome: Result<ReloadReport, ReloadError>) {
        let Self { reply, busy } = self;
        // Free first, so that a client that posts again as soon as it has the answer is not
        // refused.
        drop(busy);
        let _ = reply.send(outcome);
    }
}

/// One running query's place among the node's `max_queries`, taken before its producer
/// starts and released when dropped: when the producer ends (the range is done, or the client
/// went away), also by a panic (the slot is dropped while the thread unwinds).
struct QuerySlot(Arc<NodeState>);

impl QuerySlot {
    /// A slot, or the 503 response (with `Retry-After: 1`) when `max_queries` run already
    /// (counted in `como_query_rejected_total`).
    #[expect(
        clippy::result_large_err,
        reason = "the error is the HTTP response, returned at once, once per request"
    )]
    fn take(st: &Arc<NodeState>) -> Result<Self, Response> {
        let max = st.max_queries();
        let taken = st
            .queries
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Self(Arc::clone(st))),
            Err(_) => {
                st.metrics.add_query_rejected();
                let mut resp = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "too many queries running: the limit is {max} ([query] max_queries); retry later"
                    ),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                Err(resp)
            }
        }
    }
}

impl Drop for QuerySlot {
    fn drop(&mut self) {
        self.0.queries.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running query server.
pub struct Server {
    addr: SocketAddr,
    state: Arc<NodeState>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds `listen` and serves `state` on a tokio runtime of two threads, on a thread of its
    /// own. Binding errors are returned here.
    pub fn start(state: Arc<NodeState>, listen: SocketAddr) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(Arc::clone(&state));
        let thread = std::thread::Builder::new()
            .name("como-query".into())
            .spawn(move || -> io::Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("como-query-rt")
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await
                })
            })?;
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends streaming queries, waits for the server thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.state.stopping.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("query server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// The axum router over `state` (exposed for in-process tests).
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/modules", get(modules))
        .route("/metrics", get(metrics_text))
        .route("/trace", get(trace))
        .route("/reload", post(reload))
        .route("/{module}", get(query))
        .with_state(state)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ts_json(ns: Option<u64>) -> serde_json::Value {
    match ns {
        Some(ns) => json!(ns as f64 / 1e9),
        None => serde_json::Value::Null,
    }
}

fn json_response(v: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{v:#}\n"),
    )
        .into_response()
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

async fn status(State(st): State<Arc<NodeState>>) -> Response {
    let sources: Vec<_> = st
        .sources
        .iter()
        .map(|s| {
            let (state, err) = match s.state() {
                SourceState::Pending => ("pending", None),
                SourceState::Running => ("running", None),
                SourceState::Done => ("done", None),
                SourceState::Failed(e) => ("failed", Some(e)),
            };
            json!({
                "name": s.name,
                "type": s.kind,
                "packets": s.packets.load(Ordering::Relaxed),
                "bytes": s.bytes.load(Ordering::Relaxed),
                "state": state,
                "error": err,
            })
        })
        .collect();
    let set = st.modules();
    let modules: Vec<_> = set
        .modules
        .iter()
        .map(|m| {
            json!({
                "name": m.config.name,
                "kind": m.config.kind,
                "stored_bytes": m.read.stored_bytes(),
                "first_ts": ts_json(m.read.first_ts()),
                "last_ts": ts_json(m.read.last_ts()),
            })
        })
        .collect();
    json_response(&json!({
        "node": { "name": st.node.name, "location": st.node.location },
        "uptime_s": st.started.elapsed().as_secs_f64(),
        "running": !st.is_finished(),
        "sources": sources,
        "modules": modules,
    }))
}

async fn modules(State(st): State<Arc<NodeState>>) -> Response {
    let set = st.modules();
    let list: Vec<_> = set
        .modules
        .iter()
        .map(|m| {
            let c = &m.config;
            json!({
                "name": c.name,
                "kind": c.kind,
                "filter": c.filter,
                "interval_s": c.interval.as_secs_f64(),
                "formats": c.module.formats().iter().map(|f| f.name()).collect::<Vec<_>>(),
                "columns": c.module.columns(),
                "print_params": c.module.print_params(),
                "streamsize": c.streamsize,
                "retention_s": c.retention.map(|r| r.as_secs_f64()),
                "priority": c.priority,
            })
        })
        .collect();
    json_response(&serde_json::Value::Array(list))
}

async fn metrics_text(State(st): State<Arc<NodeState>>) -> Response {
    match st.metrics.render(&st) {
        Ok(mut text) => {
            if let Some(stats) = st.trace.get().and_then(|t| t.stats.as_ref()) {
                text.push_str(&stats.prometheus());
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Clears [`NodeState::reloading`] when dropped: it travels in the [`ReloadRequest`], so the
/// flag stays set while the node works on the reload, whatever became of the HTTP request
/// (answered, timed out, or the client went away).
struct Reloading(Arc<NodeState>);

impl Drop for Reloading {
    fn drop(&mut self) {
        self.0.reloading.store(false, Ordering::SeqCst);
    }
}

/// `POST /reload`: asks the daemon's loop to reload the configuration, as SIGHUP does, and
/// answers once it is done (see the crate docs).
async fn reload(State(st): State<Arc<NodeState>>) -> Response {
    let tx = match &*st.reloader.lock().unwrap_or_else(PoisonError::into_inner) {
        Ok(tx) => tx.clone(),
        Err(why) => return error(StatusCode::CONFLICT, why),
    };
    if st.reloading.swap(true, Ordering::SeqCst) {
        let mut resp = error(
            StatusCode::CONFLICT,
            "a reload is already running; retry once it has answered",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    }
    let busy = Reloading(Arc::clone(&st));
    let (reply, answer) = oneshot::channel();
    // A request the loop cannot take comes back in the error and is dropped: the flag clears.
    if tx.send(ReloadRequest { reply, busy }).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping: no reload",
        );
    }
    let wait = *st
        .reload_timeout
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(Ok(report))) => match serde_json::to_value(&report) {
            Ok(v) => json_response(&v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        // The running modules are kept.
        Ok(Ok(Err(ReloadError::Invalid(e)))) => error(StatusCode::BAD_REQUEST, e),
        Ok(Ok(Err(ReloadError::Failed(e)))) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node stopped before the reload was done",
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the reload did not finish within {:.1} s; it goes on in the node (see /modules; POST /reload answers 409 until it is done)",
                wait.as_secs_f64()
            ),
        ),
    }
}

/// A `Write` into a buffer shared with the thread that sends the chunks.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Chunks = mpsc::Sender<Result<Bytes, io::Error>>;

/// A `Write` that sends a chunk every [`CHUNK`] bytes and the rest when dropped (for output
/// written by a writer that owns it, as `/trace`'s pcap writer).
struct ChunkWriter {
    tx: Chunks,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// Sends what the buffer holds; false when the client went away.
fn send(tx: &Chunks, buf: &SharedBuf) -> bool {
    let data = buf.take();
    if data.is_empty() {
        return !tx.is_closed();
    }
    tx.blocking_send(Ok(Bytes::from(data))).is_ok()
}

fn content_type(f: Format) -> &'static str {
    match f {
        Format::Json => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Pcap => "application/vnd.tcpdump.pcap",
        _ => "text/plain; charset=utf-8",
    }
}

/// Prints a re-run module's records (chained queries, `source=trace`) into a buffer and sends
/// it as a chunk after each interval: at once when `eager` (a chained query following its
/// source as intervals complete), else once [`CHUNK`] bytes are waiting. A client that went
/// away fails the sink (checked at every interval), which ends the run.
struct StreamSink {
    print: PrintSink,
    buf: SharedBuf,
    tx: Chunks,
    eager: bool,
}

impl Sink for StreamSink {
    fn interval(
        &mut self,
        module: usize,
        ivl: Interval,
        records: &[Exported],
    ) -> Result<(), SinkError> {
        if self.tx.is_closed() {
            return Err(SinkError("the client went away".into()));
        }
        self.print.interval(module, ivl, records)?;
        if self.eager {
            // A `pretty` table's rows of this interval out now, not at the end.
            self.print.flush()?;
        }
        if (self.eager || self.buf.len() >= CHUNK) && !send(&self.tx, &self.buf) {
            return Err(SinkError("the client went away".into()));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.print.finish()?;
        if !send(&self.tx, &self.buf) {
            return Err(SinkError("the client went away".into()));
        }
        Ok(())
    }
}

/// A fresh instance of module `m` as a runtime spec, with a sink printing the query's format
/// to `tx` (after every interval when `eager`): what a query that runs the module again (over
/// the trace window or over another module's replay) needs. The error is the response to send.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP response, returned at once, once per request"
)]
fn rerun(
    m: &ModuleConfig,
    format: Format,
    q: &QueryParams,
    tx: &Chunks,
    eager: bool,
) -> Result<(ModuleSpec, StreamSink), Response> {
    let module = m
        .build()
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let buf = SharedBuf::default();
    let printer = module
        .printer_with(format, Box::new(buf.clone()), &q.print)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let spec = ModuleSpec {
        name: m.name.clone(),
        module,
        filter: m.filter.clone(),
        interval: m.interval,
    };
    let sink = StreamSink {
        print: PrintSink::new(vec![printer]),
        buf,
        tx: tx.clone(),
        eager,
    };
    Ok((spec, sink))
}

/// When a streaming query over module `m` gives up waiting: the end of its range plus `m`'s
/// interval plus [`STREAM_SLACK`].
fn give_up_ns(m: &ModuleConfig, end_ns: u64) -> u64 {
    let interval_ns = u64::try_from(m.interval.as_nanos()).unwrap_or(u64::MAX);
    end_ns
        .saturating_add(interval_ns)
        .saturating_add(u64::try_from(STREAM_SLACK.as_nanos()).unwrap_or(0))
}

/// What [`ModuleRecords::next`] found.
enum Step {
    /// The next record.
    Record(como_storage::Record),
    /// The database failed.
    Failed(como_storage::Error),
    /// Everything stored so far is read (following: wait and look again).
    CaughtUp,
    /// A reload removed the module (or changed what its records are): nothing more will come.
    Gone,
}

/// The records of one module from a start time, oldest first, as its database stores them:
/// a snapshot of what is stored, or (`follow`) also the records stored later, across reloads
/// of the module set.
///
/// A reader sees only what its own database writer stores, and a reload closes the module's
/// database and opens it again (same folder) for the new set. So a follower that has read
/// everything while the module set it started from has been replaced (the old writer is then
/// closed: [`NodeState::replace_modules`]) moves to the new set's database of the module,
/// from the timestamp of the last record it returned, skipping the records at that timestamp
/// it has already returned. When the new set has no module of that name with the same kind
/// and args (the same records), the follower ends ([`Step::Gone`]).
struct ModuleRecords {
    st: Arc<NodeState>,
    module: ServedModule,
    /// Generation of the module set `module` comes from.
    generation: u64,
    reader: como_storage::Reader,
    follow: bool,
    start_ns: u64,
    /// Timestamp of the last record returned, and how many were returned at it.
    last: Option<(u64, u64)>,
    /// Records at `last`'s timestamp still to skip (already returned from the previous
    /// database).
    skip: u64,
}

impl ModuleRecords {
    /// The records of `module` (of module set `generation`) in `start_ns..end_ns`, or from
    /// `start_ns` on when `follow`.
    fn new(
        st: Arc<NodeState>,
        module: ServedModule,
        generation: u64,
        start_ns: u64,
        end_ns: u64,
        follow: bool,
    ) -> Self {
        let reader = if follow {
            module.read.follow(start_ns..)
        } else {
            module.read.reader(start_ns..end_ns)
        };
        Self {
            st,
            module,
            generation,
            reader,
            follow,
            start_ns,
            last: None,
            skip: 0,
        }
    }

    fn next(&mut self) -> Step {
        loop {
            // Looked at before reading: when the set was replaced before this read, the old
            // writer was closed before, and an empty read means all it stored is read.
            let generation = self.st.module_generation();
            match self.reader.next() {
                Some(Ok(rec)) => {
                    if self.skip > 0 && self.last.is_some_and(|(ts, _)| ts == rec.ts) {
                        self.skip -= 1;
                        continue;
                    }
                    self.skip = 0;
                    self.last = match self.last {
                        Some((ts, n)) if ts == rec.ts => Some((ts, n + 1)),
                        _ => Some((rec.ts, 1)),
                    };
                    return Step::Record(rec);
                }
                Some(Err(e)) => return Step::Failed(e),
                None if !self.follow || generation == self.generation => return Step::CaughtUp,
                None => {
                    let set = self.st.modules();
                    let old = &self.module.config;
                    let Some(m) = set
                        .get(&old.name)
                        .filter(|m| m.config.kind == old.kind && m.config.args == old.args)
                    else {
                        return Step::Gone;
                    };
                    let (from, skip) = self.last.unwrap_or((self.start_ns, 0));
                    self.reader = m.read.follow(from..);
                    self.skip = skip;
                    self.module = m.clone();
                    self.generation = set.generation;
                }
            }
        }
    }

    /// Blocks until the database acknowledges new records or `timeout` passes.
    fn wait(&mut self, timeout: Duration) {
        self.reader.wait(timeout);
    }
}

/// The records of a module in `start..end` as its database stores them, following new ones
/// (a chained query whose end is in the future): blocks on the reader until a record at or
/// past the end arrives, the wall clock passes `give_up_ns`, the node's runtime ends, the
/// server stops, a reload removes the module, or the client goes away.
struct FollowRecords {
    records: ModuleRecords,
    end_ns: u64,
    give_up_ns: u64,
    tx: Chunks,
    done: bool,
}

impl Iterator for FollowRecords {
    type Item = Result<Vec<u8>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            // Read before looking: a record stored before the runtime ended is still read.
            let st = Arc::clone(&self.records.st);
            let finished = st.is_finished();
            match self.records.next() {
                Step::Record(rec) if rec.ts < self.end_ns => return Some(Ok(rec.payload)),
                Step::Record(_) | Step::Gone => self.done = true,
                Step::Failed(e) => {
                    self.done = true;
                    return Some(Err(e.to_string()));
                }
                Step::CaughtUp => {
                    if finished
                        || st.stopping.load(Ordering::SeqCst)
                        || self.tx.is_closed()
                        || now_ns() > self.give_up_ns
                    {
                        self.done = true;
                    } else {
                        self.records.wait(FOLLOW_POLL);
                    }
                }
            }
        }
        None
    }
}

/// Longest a streaming query blocks on its database before it looks again at the clock, the
/// node and the client.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

async fn query(
    State(st): State<Arc<NodeState>>,
    Path(name): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let set = st.modules();
    let Some(m) = set.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no module `{name}`"));
    };
    let now = now_ns();
    let q = match params::parse(&pairs, now) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A query whose end is in the future follows what is stored until its end.
    let follow = q.wait && q.end_ns > now;
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let format = q.format;
    let window = st.trace.get().filter(|_| set.get("trace").is_none());
    if let (Some("trace"), Some(tw)) = (q.source.as_deref(), window) {
        // A past-traffic run: the module over the packets the trace window stored.
        let (spec, sink) = match rerun(&m.config, format, &q, &tx, false) {
            Ok(sp) => sp,
            Err(resp) => return resp,
        };
        let slot = match QuerySlot::take(&st) {
            Ok(slot) => slot,
            Err(busy) => return busy,
        };
        // The module's own filter prunes the window through its index; the runtime applies
        // it again (same filter, same answer).
        let wq = como_window::Query {
            filter: m.config.filter.clone(),
            start_ns: q.start_ns,
            end_ns: q.end_ns.saturating_sub(1),
        };
        let dir = tw.dir.clone();
        let name = m.config.name.clone();
        spawn_producer(slot, tx.clone(), move || {
            let mut source = WindowSource::start(dir, wq);
            rerun_over(
                &mut source,
                spec,
                sink,
                &format!("`{name}` over the trace window"),
            );
        });
    } else if let Some(src) = q.source.clone() {
        let Some(from) = set.get(&src) else {
            return error(StatusCode::NOT_FOUND, format!("no source module `{src}`"));
        };
        let (spec, sink) = match rerun(&m.config, format, &q, &tx, follow) {
            Ok(sp) => sp,
            Err(resp) => return resp,
        };
        let slot = match QuerySlot::take(&st) {
            Ok(slot) => slot,
            Err(busy) => return busy,
        };
        let records: Box<dyn Iterator<Item = Result<Vec<u8>, String>> + Send> = if follow {
            Box::new(FollowRecords {
                records: ModuleRecords::new(
                    Arc::clone(&st),
                    from.clone(),
                    set.generation,
                    q.start_ns,
                    q.end_ns,
                    true,
                ),
                end_ns: q.end_ns,
                give_up_ns: give_up_ns(&from.config, q.end_ns),
                tx: tx.clone(),
                done: false,
            })
        } else {
            let reader = from.read.reader(q.start_ns..q.end_ns);
            Box::new(reader.map(|r| r.map(|r| r.payload).map_err(|e| e.to_string())))
        };
        let replayed = Arc::clone(&from.config.module);
        spawn_producer(slot, tx.clone(), move || {
            let mut source = ReplaySource::new(format!("replay:{src}"), replayed, records);
            rerun_over(
                &mut source,
                spec,
                sink,
                &format!("chained query over `{src}`"),
            );
        });
    } else {
        let buf = SharedBuf::default();
        let printer = match m
            .config
            .module
            .printer_with(format, Box::new(buf.clone()), &q.print)
        {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let slot = match QuerySlot::take(&st) {
            Ok(slot) => slot,
            Err(busy) => return busy,
        };
        let records = ModuleRecords::new(
            Arc::clone(&st),
            m.clone(),
            set.generation,
            q.start_ns,
            q.end_ns,
            follow,
        );
        spawn_producer(slot, tx.clone(), move || {
            produce(records, &q, printer, &buf, &tx);
        });
    }
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    (
        [(header::CONTENT_TYPE, content_type(format))],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Runs one module (`spec`, printing into `sink`) over `source` on one worker: the producer
/// of a query that re-runs a module; `what` names it in logs.
fn rerun_over(
    source: &mut dyn como_runtime::Source,
    spec: ModuleSpec,
    sink: StreamSink,
    what: &str,
) {
    let opts = Options {
        workers: 1,
        ..Options::default()
    };
    match como_runtime::run(vec![spec], &opts, source, sink) {
        Ok((report, _)) => {
            if let Some(e) = report.source_error {
                tracing::warn!("{what}: {e}");
            }
        }
        // A failing sink is most often a client that went away: not worth a warning.
        Err(e @ como_runtime::RuntimeError::Sink(_)) => tracing::debug!("{what}: {e}"),
        Err(e) => tracing::warn!("{what}: {e}"),
    }
}

/// One packet read from the trace window.
struct WindowPacket {
    ts_ns: u64,
    wire_len: u32,
    link: como_packet::LinkType,
    data: Vec<u8>,
}

/// The packets of a trace-window query as a runtime source: a thread runs the query and hands
/// over batches of packets (bounded channel: the query waits for the modules).
struct WindowSource {
    rx: std::sync::mpsc::Receiver<Result<Vec<WindowPacket>, String>>,
    batch: Vec<WindowPacket>,
    next: usize,
}

impl WindowSource {
    fn start(dir: std::path::PathBuf, q: como_window::Query) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let spawned = std::thread::Builder::new()
            .name("como-window-read".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(512);
                let res = como_window::query(&dir, &q, &mut |p| {
                    batch.push(WindowPacket {
                        ts_ns: p.ts_ns,
                        wire_len: p.wire_len,
                        link: p.link,
                        data: p.data.to_vec(),
                    });
                    if batch.len() >= 512 {
                        tx.send(Ok(std::mem::take(&mut batch)))
                            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "run ended"))?;
                    }
                    Ok(())
                });
                let _ = match res {
                    Ok(_) => tx.send(Ok(batch)),
                    Err(como_window::QueryError::Sink(_)) => Ok(()),
                    Err(e) => tx.send(Err(e.to_string())),
                };
            });
        let (tx2, rx2) = std::sync::mpsc::sync_channel(1);
        let rx = match spawned {
            Ok(_) => rx,
            Err(e) => {
                let _ = tx2.send(Err(format!("cannot start the window reader: {e}")));
                rx2
            }
        };
        WindowSource {
            rx,
            batch: Vec::new(),
            next: 0,
        }
    }
}

impl como_runtime::Source for WindowSource {
    fn name(&self) -> String {
        "trace window".into()
    }

    fn next_packet(&mut self) -> Result<como_runtime::Next<'_>, como_runtime::SourceError> {
        while self.next >= self.batch.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.batch = b;
                    self.next = 0;
                }
                Ok(Err(message)) => {
                    return Err(como_runtime::SourceError {
                        source_name: "trace window".into(),
                        message,
                    })
                }
                Err(_) => return Ok(como_runtime::Next::End),
            }
        }
        let i = self.next;
        self.next += 1;
        match self.batch.get(i) {
            Some(p) => Ok(como_runtime::Next::Packet(como_packet::Packet {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                data: &p.data,
                link: p.link,
                interface: 0,
            })),
            None => Ok(como_runtime::Next::End),
        }
    }
}

/// `GET /trace`: packets of the trace window.
async fn trace(
    State(st): State<Arc<NodeState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Some(tw) = st.trace.get().cloned() else {
        if st.modules().get("trace").is_some() {
            return query(State(st), Path("trace".to_owned()), Query(pairs)).await;
        }
        return error(
            StatusCode::NOT_FOUND,
            "no packet trace window ([trace] is off)",
        );
    };
    let p = match params::parse_trace(&pairs, now_ns()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let slot = match QuerySlot::take(&st) {
        Ok(slot) => slot,
        Err(busy) => return busy,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let format = p.format;
    let q = como_window::Query {
        filter: p.filter,
        start_ns: p.start_ns,
        // The window's end is inclusive, the query's exclusive.
        end_ns: match p.end_ns {
            u64::MAX => u64::MAX,
            e => e.saturating_sub(1),
        },
    };
    let out = ChunkWriter {
        tx: tx.clone(),
        buf: Vec::new(),
    };
    spawn_producer(slot, tx, move || {
        let out = io::BufWriter::with_capacity(CHUNK, out);
        match como_window::write_query(&tw.dir, &q, format, out) {
            Ok((_, skipped)) if skipped > 0 => tracing::info!(
                "/trace: {skipped} packets of other link types left out of the pcap answer (ask format=pcapng)"
            ),
            Ok(_) => {}
            Err(como_window::QueryError::Sink(_)) => {} // the client went away
            Err(e) => tracing::warn!("/trace: {e}"),
        }
    });
    let ctype = match format {
        como_window::OutFormat::Pcap => "application/vnd.tcpdump.pcap",
        como_window::OutFormat::PcapNg => "application/x-pcapng",
    };
    (
        [(header::CONTENT_TYPE, ctype)],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// Runs a query's producer `f` on a thread of its own, holding `slot` until `f` returns or
/// panics, and the answer open until then (when the thread cannot start, the slot is released
/// at once and the response ends with an error).
fn spawn_producer(
    slot: QuerySlot,
    tx: Chunks,
    f: impl FnOnce() + Send + 'static,
) -> Option<JoinHandle<()>> {
    // The thread keeps a sender until its slot is released: the client sees the end of the
    // answer only once the query's place is free again (also when `f` panics: locals drop
    // in reverse order while the thread unwinds).
    let keep = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("como-query-producer".into())
        .spawn(move || {
            let _keep = keep;
            let _slot = slot;
            f();
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!("cannot start a query thread: {e}");
            let _ = tx.try_send(Err(io::Error::other(e)));
            None
        }
    }
}

/// Prints `records` up to the query's end into chunks (following new records, across reloads,
/// when they follow).
fn produce(
    mut records: ModuleRecords,
    q: &QueryParams,
    mut printer: Box<dyn RecordSink + Send>,
    buf: &SharedBuf,
    tx: &Chunks,
) {
    let st = Arc::clone(&records.st);
    let name = records.module.config.name.clone();
    let give_up_ns = give_up_ns(&records.module.config, q.end_ns);
    loop {
        let finished = st.is_finished();
        match records.next() {
            Step::Record(rec) => {
                if rec.ts >= q.end_ns {
                    break;
                }
                if let Err(e) = printer.record(&rec.payload) {
                    tracing::warn!("query `{name}`: {e}");
                    let _ = writeln!(buf.clone(), "error: {e}");
                    break;
                }
                if buf.len() >= CHUNK && !send(tx, buf) {
                    return;
                }
            }
            Step::Failed(e) => {
                tracing::error!("query `{name}`: {e}");
                break;
            }
            Step::Gone => {
                tracing::info!("query `{name}`: a reload removed the module; the answer ends");
                break;
            }
            Step::CaughtUp => {
                if !records.follow
                    || finished
                    || st.stopping.load(Ordering::SeqCst)
                    || now_ns() > give_up_ns
                {
                    break;
                }
                // Caught up: what is printed goes out now (a `pretty` block included).
                if let Err(e) = printer.flush() {
                    tracing::warn!("query `{name}`: {e}");
                    break;
                }
                if !send(tx, buf) {
                    return;
                }
                records.wait(FOLLOW_POLL);
            }
        }
    }
    if let Err(e) = printer.finish() {
        tracing::warn!("query `{name}`: {e}");
    }
    send(tx, buf);
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    fn state() -> Arc<NodeState> {
        let node = como_config::Node {
            name: "t".into(),
            location: String::new(),
            db_path: std::path::PathBuf::from("unused"),
        };
        Arc::new(NodeState::new(node, Vec::new(), Vec::new()).expect("state"))
    }

    /// A producer that panics frees its place; the limit holds in between.
    #[test]
    fn a_panicking_producer_frees_its_slot() {
        let st = state();
        st.set_max_queries(1);
        let (tx, _rx) = mpsc::channel(1);
        let slot = QuerySlot::take(&st).expect("a free slot");
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let h = spawn_producer(slot, tx, move || {
            let _ = wait.recv();
            panic!("a producer's bug");
        })
        .expect("thread");
        assert_eq!(st.queries_running(), 1);
        let Err(busy) = QuerySlot::take(&st) else {
            panic!("a second query was let in beyond max_queries = 1");
        };
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            busy.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let _ = go.send(());
        assert!(h.join().is_err(), "the producer panicked");
        assert_eq!(st.queries_running(), 0);
        assert!(QuerySlot::take(&st).is_ok());
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;

    fn traces() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/traces")
    }

    /// A finished window in `dir` (small buffers and segments, snaplen 1600) holding every
    /// packet of `original`; its counters.
    fn window_of(original: &std::path::Path, dir: &std::path::Path) -> Arc<como_window::Stats> {
        let mut cfg = como_window::WindowConfig::new(dir);
        cfg.buffer_bytes = 64 * 1024;
        cfg.snaplen = 1600;
        cfg.buffers = 4;
        cfg.segment_bytes = 256 * 1024;
        let w = como_window::Window::open(cfg).expect("window");
        {
            let mut h = w.writer();
            let mut r = como_tracefile::TraceReader::open(original).expect("trace");
            while let Some(p) = r.next_packet() {
                assert!(h.write_wait(&p.expect("packet")));
            }
        }
        let stats = w.stats_shared();
        let _ = w.finish();
        stats
    }

    /// Packets of a pcap or pcapng file: (ts in µs, wire length, bytes).
    fn packets(bytes: Vec<u8>) -> Vec<(u64, u32, Vec<u8>)> {
        let mut r = como_tracefile::TraceReader::from_bytes("answer", bytes).expect("a trace");
        let mut v = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.expect("complete");
            v.push((p.ts_ns / 1000, p.wire_len, p.data.to_vec()));
        }
        v
    }

    #[test]
    fn trace_route_streams_what_tcpdump_selects() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("window");
        let original = traces().join("nDPI/teams.pcap");
        let stats = window_of(&original, &dir);
        let node = como_config::Node {
            name: "t".into(),
            location: String::new(),
            db_path: tmp.path().join("db"),
        };
        let st = Arc::new(NodeState::new(node, Vec::new(), Vec::new()).expect("state"));
        st.set_trace(TraceWindow {
            dir: dir.clone(),
            stats: Some(stats),
        });
        let server =
            Server::start(Arc::clone(&st), "127.0.0.1:0".parse().expect("addr")).expect("server");
        let base = format!("http://{}", server.addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for (filter, format) in [
            ("host 52.114.77.33", "pcap"),
            ("tcp port 443 and not host 52.113.194.132", "pcapng"),
            ("", "pcap"),
        ] {
            let mut resp = agent
                .get(format!("{base}/trace"))
                .query("filter", filter)
                .query("format", format)
                .call()
                .expect("GET /trace");
            assert_eq!(resp.status().as_u16(), 200, "{filter}");
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .expect("body");
            let got = packets(body);
            let want_file = tmp.path().join("want.pcap");
            let ok = std::process::Command::new("tcpdump")
                .arg("-r")
                .arg(&original)
                .arg("-w")
                .arg(&want_file)
                .arg(filter)
                .output()
                .expect("tcpdump runs (the oracle)")
                .status
                .success();
            assert!(ok, "tcpdump {filter}");
            let want = packets(std::fs::read(&want_file).expect("tcpdump output"));
            assert!(!want.is_empty());
            assert_eq!(got.len(), want.len(), "{filter}");
            assert!(got == want, "{filter}: packets differ");
        }
        // A time range selects by packet time; errors are 400 with the reason.
        let mut resp = agent
            .get(format!("{base}/trace?time=@0:@1&filter=tcp"))
            .call()
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.body_mut().read_to_vec().expect("body");
        assert!(packets(body).is_empty());
        for bad in [
            "filter=tcp%20and",
            "format=erf",
            "time=1",
            "color=red",
            "start=@5&end=@1",
        ] {
            let resp = agent
                .get(format!("{base}/trace?{bad}"))
                .call()
                .expect("GET");
            assert_eq!(resp.status().as_u16(), 400, "{bad}");
        }
        // `/trace` takes a place among `max_queries` like module queries (a bad one does not).
        st.set_max_queries(1);
        let held = QuerySlot::take(&st).expect("a free slot");
        let resp = agent.get(format!("{base}/trace")).call().expect("GET");
        assert_eq!(resp.status().as_u16(), 503);
        let resp = agent
            .get(format!("{base}/trace?format=erf"))
            .call()
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 400);
        drop(held);
        let resp = agent.get(format!("{base}/trace")).call().expect("GET");
        assert_eq!(resp.status().as_u16(), 200);
        let mut m = agent
            .get(format!("{base}/metrics"))
            .call()
            .expect("metrics");
        let text = m.body_mut().read_to_string().expect("text");
        assert!(
            text.contains("como_trace_drops_total{reason=\"disk_slow\"} 0"),
            "{text}"
        );
        assert!(text.contains("como_query_rejected_total 1"), "{text}");
        server.stop().expect("stop");
    }

    /// `GET /<module>?source=trace` runs the module over the window's packets: the same
    /// records as the module run over the original trace.
    #[test]
    fn module_over_the_window_equals_module_over_the_trace() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("window");
        let original = traces().join("nDPI/teams.pcap");
        window_of(&original, &dir);
        let conf = como_config::Config::parse(
            "[[module]]\nname = \"web\"\nkind = \"traffic\"\nfilter = \"tcp port 443\"\ninterval = \"5s\"\n",
            "test.toml",
        )
        .expect("config");
        let mc = conf.modules.into_iter().next().expect("module");
        // The module over the original trace, printed as JSON.
        let expected = {
            let out = SharedBuf::default();
            let printer = mc
                .module
                .printer_with(
                    Format::Json,
                    Box::new(out.clone()),
                    &como_module::PrintParams::new(),
                )
                .expect("printer");
            let spec = ModuleSpec {
                name: mc.name.clone(),
                module: mc.build().expect("module"),
                filter: mc.filter.clone(),
                interval: mc.interval,
            };
            let mut src = como_runtime::TraceSource::open(&original).expect("source");
            let opts = Options {
                workers: 1,
                ..Options::default()
            };
            como_runtime::run(vec![spec], &opts, &mut src, PrintSink::new(vec![printer]))
                .expect("run");
            String::from_utf8(out.take()).expect("utf-8")
        };
        assert!(expected.lines().count() > 3, "{expected}");
        let db =
            como_storage::Database::open(tmp.path().join("db"), como_storage::Options::default())
                .expect("db");
        let node = como_config::Node {
            name: "t".into(),
            location: String::new(),
            db_path: tmp.path().join("db"),
        };
        let served = ServedModule {
            config: mc,
            read: db.read_handle(),
        };
        let st = Arc::new(NodeState::new(node, vec![served], Vec::new()).expect("state"));
        st.set_trace(TraceWindow { dir, stats: None });
        let server = Server::start(st, "127.0.0.1:0".parse().expect("addr")).expect("server");
        let mut resp = ureq::get(format!(
            "http://{}/web?source=trace&format=json",
            server.addr()
        ))
        .call()
        .expect("GET");
        let got = resp.body_mut().read_to_string().expect("body");
        assert_eq!(got, expected);
        server.stop().expect("stop");
    }
}
