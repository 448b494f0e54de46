//! CoMo-rs configuration: one TOML file describing the node, the query server, the packet
//! sources and the modules.
//!
//! ```toml
//! [node]
//! name = "probe-1"            # default: "como"
//! location = "rack 4, TAP 2"  # default: ""
//! db_path = "/var/lib/como"   # one database per module below it; default: "como-db"
//!
//! [query]
//! listen = "127.0.0.1:44444"  # the HTTP query server (the default)
//! max_queries = 32            # most queries running at once, streaming ones included;
//!                             # more get 503 + Retry-After (default 32, at least 1)
//!
//! [[source]]
//! type = "file"               # trace file: pcap, pcapng or ERF
//! path = "/data/trace.pcap"
//! speed = 1.0                 # optional: pace the file at this multiple of its own time
//!
//! [[source]]
//! type = "xdp"                # live capture: XDP program + one AF_XDP socket per queue
//! interface = "eth1"          # required
//! queues = "all"              # "all" (every RX queue of the interface) or a list: [0, 1]
//! mode = "auto"               # XDP attach mode: native, skb or auto (native, else skb)
//! zero_copy = "auto"          # auto (zero-copy if the driver has it), on (required), off
//! frame_size = 4096           # UMEM frame size: 2048 or 4096
//! frames = 4096               # UMEM frames per queue (power of two)
//! rx_ring = 2048              # RX ring entries (power of two); fill_ring likewise
//! fill_ring = 4096            # sizing: see below
//! hugepages = "auto"          # UMEM on 2 MiB hugepages: auto (if available), on, off
//! cpus = [1]                  # cores for the queue workers (worker i on cpus[i % len]);
//!                             # default: not pinned
//! unmatched = "pass"          # packets no module wants: pass (to the kernel) or drop
//! netns = "capture"           # optional: the interface is in this network namespace
//!                             # (/run/netns/NAME); the daemon and its queries stay outside
//!
//! # more [[source]] of type "xdp" (a TAP's two ports, one per direction) feed the same
//! # modules, each with its own settings; not two on one interface of one namespace
//!
//! [trace]                     # the packet trace window (absent: off)
//! enabled = true              # default true when the section is present
//! path = "/var/lib/como/trace" # its folder; default: <db_path>/trace
//! window = "72h"              # age limit (packet time); default: none
//! max_bytes = "500GiB"        # size limit; default: none
//! min_free_percent = 10       # keep this much of the filesystem free; default: none
//! snaplen = 65535             # bytes kept per packet (0: whole packets); default 65535
//! segment_bytes = "1GiB"      # segment rotation by size; default 1GiB
//! segment_secs = "1h"         # segment rotation by packet time; default 1h
//! filter = "ip or ip6"        # what enters the window; default: every packet
//!
//! [[module]]
//! name = "traffic"            # unique; names the database and the URL (/traffic)
//! kind = "traffic"            # one of como_modules::KINDS
//! filter = "ip"               # tcpdump's pcap-filter syntax; default: every packet
//! interval = "1s"             # default 1s
//! streamsize = "256MiB"       # cap of the module's database; default: unlimited
//! retention = "72h"           # age cap of the module's database; default: unlimited
//! priority = 0                # kept for the resource manager (later issue)
//! [module.args]               # the module's own typed config
//! ```
//!
//! Sizing the rings of an `xdp` source: the RX ring holds what arrives while the queue's
//! worker is not running. At R packets per second, a worker kept off its core for T holds
//! R × T frames: the default 2048 entries cover 2 ms at 1 Mpps. Workers pinned (`cpus`) to
//! cores nothing else uses rarely stop that long; on a shared host, raise `rx_ring` and
//! `frames` (on the 2-vCPU test machine at normal priority, 64-byte frames at the sender's top
//! rate: 34.7 % lost with the defaults, 2.8 % with `frame_size = 2048`, `frames = 32768`,
//! `rx_ring = 16384`, `fill_ring = 32768`; benches/RESULTS.md). Keep `frames` at least twice
//! `rx_ring`: the frames not waiting in the RX ring are the kernel's free ones (fill ring).
//! Memory per queue: `frames × frame_size` (32768 × 2 KiB = 64 MiB); 2048-byte frames hold
//! frames up to the standard 1500-byte MTU in one frame; a jumbo frame takes several (count
//! them when sizing: at MTU 9000, 3 frames of 4096 bytes per packet).
//!
//! Every table refuses unknown fields. Durations are strings such as `"500ms"`, `"1s"`, `"5m"`,
//! `"72h"`, `"1h30m"`, or a bare number of seconds (parsed by [`como_module::parse_duration`],
//! the one duration parser of the project). Sizes are `"64MiB"`, `"1GB"`, `"512KiB"` or a bare
//! number of bytes ([`parse_size`]).
//!
//! Every error carries the line and column (1-based) of the offending key or value:
//! [`ConfigError`] displays as `FILE:LINE:COL: message`. Beyond the syntax, [`Config::parse`]
//! checks that module names are unique and usable as directory names, that each kind exists,
//! that each module's `args` are accepted by the module's typed config, and that each filter
//! compiles (for Ethernet; the column then points into the filter string).
//! [`Config::check_filters`] checks them again for another link type (a file source's).
//!
//! [`DEFAULT_CONFIG`] is the embedded configuration used when no file is given.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use como_module::AnyModule;
use serde::Deserialize;
use toml::Spanned;

/// The embedded default configuration: a few standard modules, no source (give trace files
/// with `como run -r FILE`).
pub const DEFAULT_CONFIG: &str = r#"# CoMo-rs default configuration (embedded in the binary).
[node]
name = "como"
db_path = "como-db"

[query]
listen = "127.0.0.1:44444"

[[module]]
name = "traffic"
kind = "traffic"
interval = "1s"
streamsize = "256MiB"

[[module]]
name = "protocol"
kind = "protocol"
interval = "1s"
streamsize = "256MiB"

[[module]]
name = "topaddr"
kind = "topaddr"
filter = "ip or ip6"
interval = "5s"
streamsize = "256MiB"
[module.args]
topn = 10

[[module]]
name = "tuple"
kind = "tuple"
interval = "5s"
streamsize = "1GiB"
retention = "72h"
"#;

/// Most modules one node runs (the runtime's classification mask has 64 bits).
pub const MAX_MODULES: usize = 64;

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file name as given (`<default>` for the embedded config).
    pub file: String,
    /// 1-based line (0 when the error has no position).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A size string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad size `{0}` (examples: 64MiB, 1GB, 512KiB, or a number of bytes)")]
pub struct SizeError(pub String);

/// Parses a size: a number of bytes, optionally with a unit: `B`, `KB`/`MB`/`GB`/`TB` (powers
/// of 1000), `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); `K`/`M`/`G`/`T` alone are binary.
/// Fractions are allowed with a unit (`1.5GiB`).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = || SizeError(input.to_owned());
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(err());
    }
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(err()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(scale).ok_or_else(err);
    }
    let f: f64 = num.parse().map_err(|_| err())?;
    let v = f * scale as f64;
    if !v.is_finite() || v < 0.0 || v >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(v.round() as u64)
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Node name (shown by `/status`).
    pub name: String,
    /// Free-text location.
    pub location: String,
    /// Directory holding one database per module.
    pub db_path: PathBuf,
}

/// `[query]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Address of the HTTP query server.
    pub listen: SocketAddr,
    /// Most queries (module queries, `/trace`, chained queries) running at once, streaming
    /// ones included while they stream; at least 1.
    pub max_queries: usize,
}

/// Default address of the query server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:44444";

/// Default of `[query] max_queries`.
pub const DEFAULT_MAX_QUERIES: usize = 32;

/// XDP attach mode of an `xdp` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode if the driver supports it, else generic (skb) mode.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// A three-way switch: `auto`, `on`, `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Use it when available, else go on without it (logged).
    #[default]
    Auto,
    /// Required: fail when not available.
    On,
    /// Never.
    Off,
}

/// Which RX queues an `xdp` source reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Queues {
    /// Every RX queue of the interface.
    #[default]
    All,
    /// These queues (distinct, sorted).
    List(Vec<u32>),
}

/// What happens to packets no module wants (in the XDP program).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// `XDP_PASS`: the kernel stack gets them.
    #[default]
    Pass,
    /// `XDP_DROP`.
    Drop,
}

/// An `xdp` source: the XDP program on `interface`, one AF_XDP socket and one worker per queue.
#[derive(Debug, Clone, PartialEq)]
pub struct XdpSource {
    /// Network interface name.
    pub interface: String,
    /// RX queues to read.
    pub queues: Queues,
    /// Attach mode.
    pub mode: XdpMode,
    /// Zero-copy bind.
    pub zero_copy: Switch,
    /// UMEM frame size in bytes (2048 or 4096).
    pub frame_size: u32,
    /// UMEM frames per queue (power of two).
    pub frames: u32,
    /// RX ring entries (power of two).
    pub rx_ring: u32,
    /// Fill ring entries (power of two).
    pub fill_ring: u32,
    /// UMEM on 2 MiB hugepages.
    pub hugepages: Switch,
    /// Cores for the workers (worker `i` on `cpus[i % len]`); empty: not pinned.
    pub cpus: Vec<usize>,
    /// Packets no module wants.
    pub unmatched: Unmatched,
    /// Network namespace of the interface (a name under `/run/netns`); `None`: the daemon's.
    pub netns: Option<String>,
}

impl XdpSource {
    /// Default UMEM frame size.
    pub const DEFAULT_FRAME_SIZE: u32 = 4096;
    /// Default UMEM frames per queue.
    pub const DEFAULT_FRAMES: u32 = 4096;
    /// Default RX ring entries.
    pub const DEFAULT_RX_RING: u32 = 2048;
    /// Default fill ring entries.
    pub const DEFAULT_FILL_RING: u32 = 4096;

    /// An `xdp` source on `interface` with every default.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            queues: Queues::All,
            mode: XdpMode::Auto,
            zero_copy: Switch::Auto,
            frame_size: Self::DEFAULT_FRAME_SIZE,
            frames: Self::DEFAULT_FRAMES,
            rx_ring: Self::DEFAULT_RX_RING,
            fill_ring: Self::DEFAULT_FILL_RING,
            hugepages: Switch::Auto,
            cpus: Vec::new(),
            unmatched: Unmatched::Pass,
            netns: None,
        }
    }

    /// The core of worker `i` (`None`: not pinned).
    pub fn cpu_of(&self, i: usize) -> Option<usize> {
        if self.cpus.is_empty() {
            None
        } else {
            self.cpus.get(i % self.cpus.len()).copied()
        }
    }
}

/// The kind of a `[[source]]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// A trace file (pcap, pcapng, ERF), read once.
    File {
        /// The file.
        path: PathBuf,
        /// Pacing: replay at this multiple of the trace's own time (`None`: as fast as possible).
        speed: Option<f64>,
    },
    /// A live capture through XDP and AF_XDP sockets.
    Xdp(XdpSource),
}

/// One `[[source]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// What to read.
    pub kind: SourceKind,
}

impl SourceConfig {
    /// A short name for status and metrics (`file:PATH`).
    pub fn name(&self) -> String {
        match &self.kind {
            SourceKind::File { path, .. } => format!("file:{}", path.display()),
            SourceKind::Xdp(x) => format!("xdp:{}", x.interface),
        }
    }

    /// The type name as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SourceKind::File { .. } => "file",
            SourceKind::Xdp(_) => "xdp",
        }
    }
}

/// One `[[module]]`.
#[derive(Clone)]
pub struct ModuleConfig {
    /// Instance name (unique; names the database and the URL).
    pub name: String,
    /// Module kind.
    pub kind: String,
    /// Filter expression (empty: every packet).
    pub filter: String,
    /// Interval length (positive).
    pub interval: Duration,
    /// Database size cap in bytes.
    pub streamsize: Option<u64>,
    /// Database age cap.
    pub retention: Option<Duration>,
    /// Priority (for the resource manager of a later issue; 0 = highest).
    pub priority: u32,
    /// The module's `args` table.
    pub args: Option<toml::Value>,
    /// The module, built (and so validated) from `kind` and `args`.
    pub module: Arc<dyn AnyModule>,
}

impl std::fmt::Debug for ModuleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("filter", &self.filter)
            .field("interval", &self.interval)
            .field("streamsize", &self.streamsize)
            .field("retention", &self.retention)
            .field("priority", &self.priority)
            .field("args", &self.args)
            .finish()
    }
}

impl ModuleConfig {
    /// A fresh instance of the module (own export state), e.g. to run it over stored records.
    pub fn build(&self) -> Result<Arc<dyn AnyModule>, como_module::ModuleError> {
        como_modules::build(&self.kind, self.args.as_ref())
    }
}

/// A whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[node]`.
    pub node: Node,
    /// `[query]`.
    pub query: Query,
    /// `[[source]]`s, in order.
    pub sources: Vec<SourceConfig>,
    /// `[[module]]`s, in order.
    pub modules: Vec<ModuleConfig>,
    /// `[trace]`: the packet trace window, when present and enabled.
    pub trace: Option<TraceConfig>,
}

/// `[trace]`: the packet trace window (see `como-window`).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// Folder of the segments.
    pub path: PathBuf,
    /// Age limit (packet time).
    pub window: Option<Duration>,
    /// Size limit in bytes.
    pub max_bytes: Option<u64>,
    /// Free space of the filesystem to keep, in percent.
    pub min_free_percent: Option<f64>,
    /// Bytes kept per packet (0: whole packets).
    pub snaplen: u32,
    /// Rotation by size.
    pub segment_bytes: u64,
    /// Rotation by packet time.
    pub segment_secs: Duration,
    /// What enters the window (pcap-filter; empty: every packet).
    pub filter: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    enabled: Option<bool>,
    path: Option<PathBuf>,
    window: Option<Spanned<Dur>>,
    max_bytes: Option<Spanned<Size>>,
    min_free_percent: Option<Spanned<f64>>,
    snaplen: Option<Spanned<i64>>,
    segment_bytes: Option<Spanned<Size>>,
    segment_secs: Option<Spanned<Dur>>,
    filter: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    query: RawQuery,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    module: Vec<Spanned<RawModule>>,
    trace: Option<RawTrace>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
    location: Option<String>,
    db_path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    listen: Option<Spanned<String>>,
    max_queries: Option<Spanned<i64>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawSourceType {
    File,
    Xdp,
}

/// `queues = "all"` or a list of queue numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawQueues {
    Word(String),
    List(Vec<i64>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: Spanned<RawSourceType>,
    path: Option<Spanned<PathBuf>>,
    speed: Option<Spanned<f64>>,
    interface: Option<Spanned<String>>,
    queues: Option<Spanned<RawQueues>>,
    mode: Option<Spanned<XdpMode>>,
    zero_copy: Option<Spanned<Switch>>,
    frame_size: Option<Spanned<i64>>,
    frames: Option<Spanned<i64>>,
    rx_ring: Option<Spanned<i64>>,
    fill_ring: Option<Spanned<i64>>,
    hugepages: Option<Spanned<Switch>>,
    cpus: Option<Spanned<Vec<i64>>>,
    unmatched: Option<Spanned<Unmatched>>,
    netns: Option<Spanned<String>>,
}

/// Most RX queues an `xdp` source reads (entries of the XDP program's socket map).
pub const MAX_QUEUES: u32 = 64;
/// Largest ring or UMEM size accepted (entries or frames).
pub const MAX_RING: u32 = 1 << 20;

/// A duration as a string or a number of seconds, through `como_module`'s parser.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        como_module::duration::deserialize(d).map(Dur)
    }
}

/// A size as a string with a unit or a number of bytes.
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Int(n) => Ok(Size(n)),
            Repr::Text(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    name: Spanned<String>,
    kind: Spanned<String>,
    filter: Option<Spanned<String>>,
    interval: Option<Spanned<Dur>>,
    streamsize: Option<Size>,
    retention: Option<Dur>,
    #[serde(default)]
    priority: u32,
    args: Option<Spanned<toml::Value>>,
}

/// Validates `[trace]`.
fn trace_config(cx: &Ctx<'_>, t: RawTrace, db_path: &Path) -> Result<TraceConfig, ConfigError> {
    let positive = |d: Option<Spanned<Dur>>, key: &str| -> Result<Option<Duration>, ConfigError> {
        match d {
            Some(d) if d.get_ref().0.is_zero() => {
                Err(cx.span(d.span(), format!("trace {key} must be positive")))
            }
            Some(d) => Ok(Some(d.into_inner().0)),
            None => Ok(None),
        }
    };
    let window = positive(t.window, "window")?;
    let segment_secs =
        positive(t.segment_secs, "segment_secs")?.unwrap_or(Duration::from_secs(3600));
    let max_bytes = t.max_bytes.map(|b| b.into_inner().0);
    let min_free_percent = match t.min_free_percent {
        Some(p) if !(0.0..100.0).contains(p.get_ref()) => {
            return Err(cx.span(p.span(), "trace min_free_percent must be in [0, 100)"));
        }
        p => p.map(Spanned::into_inner),
    };
    let snaplen = match t.snaplen {
        None => 65535,
        Some(s) => u32::try_from(*s.get_ref())
            .ok()
            .filter(|&n| n <= 262_144)
            .ok_or_else(|| cx.span(s.span(), "trace snaplen must be in 0..=262144"))?,
    };
    let segment_bytes = match t.segment_bytes {
        None => 1 << 30,
        Some(b) if b.get_ref().0 < (1 << 20) => {
            return Err(cx.span(b.span(), "trace segment_bytes must be at least 1MiB"));
        }
        Some(b) => b.into_inner().0,
    };
    let filter = match t.filter {
        None => String::new(),
        Some(f) => {
            check_filter(cx, &f, como_packet::LinkType::Ethernet, "trace", "")?;
            f.into_inner()
        }
    };
    Ok(TraceConfig {
        path: t.path.unwrap_or_else(|| db_path.join("trace")),
        window,
        max_bytes,
        min_free_percent,
        snaplen,
        segment_bytes,
        segment_secs,
        filter,
    })
}

/// Compiles filter `f` (a TOML string) for `link`; the error, `WHAT: bad filter[NOTE]: reason`,
/// points at the character of the filter the compiler names.
fn check_filter(
    cx: &Ctx<'_>,
    f: &Spanned<String>,
    link: como_packet::LinkType,
    what: &str,
    note: &str,
) -> Result<(), ConfigError> {
    let Err(e) = ebpf_filters::compile(f.get_ref(), link) else {
        return Ok(());
    };
    // The span starts at the opening quote; the filter's column is 1-based.
    let byte = f
        .get_ref()
        .char_indices()
        .nth(e.column.saturating_sub(1))
        .map_or(f.get_ref().len(), |(i, _)| i);
    Err(cx.at(
        f.span().start + 1 + byte,
        format!("{what}: bad filter{note}: {}", e.message),
    ))
}

/// Line and column (1-based, column in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    fn span(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        self.at(span.start, message)
    }
}

/// Whether `name` is usable as a module name (a directory and a URL path segment that is not one
/// of the query server's own routes; `trace` is allowed: such a module's `/trace` wins over the
/// packet window's).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(name, "status" | "modules" | "metrics" | "reload")
}

/// A power of two in `min..=MAX_RING` (ring and UMEM sizes), or the error at its span.
fn pow2(
    cx: &Ctx<'_>,
    v: Option<Spanned<i64>>,
    key: &str,
    min: u32,
    default: u32,
) -> Result<u32, ConfigError> {
    let Some(v) = v else {
        return Ok(default);
    };
    match u32::try_from(*v.get_ref()) {
        Ok(n) if n.is_power_of_two() && (min..=MAX_RING).contains(&n) => Ok(n),
        _ => Err(cx.span(
            v.span(),
            format!("{key} must be a power of two from {min} to {MAX_RING}"),
        )),
    }
}

/// Fields of one source type that another type's source does not take.
const FILE_ONLY: &[&str] = &["path", "speed"];

/// Validates one `[[source]]` table.
fn source_kind(cx: &Ctx<'_>, span: Range<usize>, s: RawSource) -> Result<SourceKind, ConfigError> {
    let kind = *s.kind.get_ref();
    let type_span = s.kind.span();
    match kind {
        RawSourceType::File => {
            let xdp_keys = [
                ("interface", s.interface.as_ref().map(Spanned::span)),
                ("queues", s.queues.as_ref().map(Spanned::span)),
                ("mode", s.mode.as_ref().map(Spanned::span)),
                ("zero_copy", s.zero_copy.as_ref().map(Spanned::span)),
                ("frame_size", s.frame_size.as_ref().map(Spanned::span)),
                ("frames", s.frames.as_ref().map(Spanned::span)),
                ("rx_ring", s.rx_ring.as_ref().map(Spanned::span)),
                ("fill_ring", s.fill_ring.as_ref().map(Spanned::span)),
                ("hugepages", s.hugepages.as_ref().map(Spanned::span)),
                ("cpus", s.cpus.as_ref().map(Spanned::span)),
                ("unmatched", s.unmatched.as_ref().map(Spanned::span)),
                ("netns", s.netns.as_ref().map(Spanned::span)),
            ];
            if let Some((key, Some(at))) = xdp_keys.into_iter().find(|(_, sp)| sp.is_some()) {
                return Err(cx.span(at, format!("`{key}` is for xdp sources, not file sources")));
            }
            let path = s
                .path
                .ok_or_else(|| cx.span(span.clone(), "a file source needs `path`"))?
                .into_inner();
            let speed = match s.speed {
                Some(sp) if !(sp.get_ref().is_finite() && *sp.get_ref() > 0.0) => {
                    return Err(cx.span(sp.span(), "speed must be a positive number"));
                }
                Some(sp) => Some(sp.into_inner()),
                None => None,
            };
            Ok(SourceKind::File { path, speed })
        }
        RawSourceType::Xdp => {
            let file_keys = [
                s.path.as_ref().map(Spanned::span),
                s.speed.as_ref().map(Spanned::span),
            ];
            if let Some((key, Some(at))) =
                FILE_ONLY.iter().zip(file_keys).find(|(_, sp)| sp.is_some())
            {
                return Err(cx.span(at, format!("`{key}` is for file sources, not xdp sources")));
            }
            let interface = s
                .interface
                .ok_or_else(|| cx.span(type_span.clone(), "an xdp source needs `interface`"))?;
            let name = interface.get_ref();
            // IFNAMSIZ is 16 with the terminating NUL.
            if name.is_empty()
                || name.len() > 15
                || name
                    .chars()
                    .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
            {
                return Err(cx.span(
                    interface.span(),
                    format!(
                        "bad interface name `{name}` (1 to 15 characters, no '/', ':' or space)"
                    ),
                ));
            }
            let mut x = XdpSource::new(interface.into_inner());
            if let Some(q) = s.queues {
                let qspan = q.span();
                x.queues = match q.into_inner() {
                    RawQueues::Word(w) if w == "all" => Queues::All,
                    RawQueues::Word(w) => {
                        return Err(cx.span(
                            qspan,
                            format!("queues must be \"all\" or a list of queue numbers, not `{w}`"),
                        ))
                    }
                    RawQueues::List(l) => {
                        if l.is_empty() {
                            return Err(cx.span(qspan, "queues: the list is empty"));
                        }
                        let mut v = Vec::with_capacity(l.len());
                        for n in l {
                            match u32::try_from(n) {
                                Ok(q) if q < MAX_QUEUES => v.push(q),
                                _ => {
                                    return Err(cx.span(
                                        qspan,
                                        format!("queue {n} out of range (0 to {})", MAX_QUEUES - 1),
                                    ))
                                }
                            }
                        }
                        v.sort_unstable();
                        if v.windows(2).any(|w| w.first() == w.get(1)) {
                            return Err(cx.span(qspan, "queues: a queue is listed twice"));
                        }
                        Queues::List(v)
                    }
                };
            }
            if let Some(m) = s.mode {
                x.mode = m.into_inner();
            }
            if let Some(z) = s.zero_copy {
                x.zero_copy = z.into_inner();
            }
            if let Some(h) = s.hugepages {
                x.hugepages = h.into_inner();
            }
            if let Some(u) = s.unmatched {
                x.unmatched = u.into_inner();
            }
            if let Some(ns) = s.netns {
                let name = ns.get_ref();
                if name.is_empty()
                    || name.len() > 255
                    || name == "."
                    || name == ".."
                    || name.contains('/')
                    || name.contains('\0')
                {
                    return Err(cx.span(
                        ns.span(),
                        format!("bad netns name `{name}` (a name under /run/netns)"),
                    ));
                }
                x.netns = Some(ns.into_inner());
            }
            if let Some(fs) = s.frame_size {
                x.frame_size = match *fs.get_ref() {
                    2048 => 2048,
                    4096 => 4096,
                    _ => return Err(cx.span(fs.span(), "frame_size must be 2048 or 4096")),
                };
            }
            x.frames = pow2(cx, s.frames, "frames", 64, XdpSource::DEFAULT_FRAMES)?;
            x.rx_ring = pow2(cx, s.rx_ring, "rx_ring", 64, XdpSource::DEFAULT_RX_RING)?;
            x.fill_ring = pow2(
                cx,
                s.fill_ring,
                "fill_ring",
                64,
                XdpSource::DEFAULT_FILL_RING,
            )?;
            if let Some(c) = s.cpus {
                let cspan = c.span();
                let mut v = Vec::new();
                for n in c.into_inner() {
                    match usize::try_from(n) {
                        Ok(cpu) if cpu < 4096 => v.push(cpu),
                        _ => return Err(cx.span(cspan, format!("bad cpu number {n}"))),
                    }
                }
                if v.is_empty() {
                    return Err(cx.span(cspan, "cpus: the list is empty (leave it out to not pin)"));
                }
                x.cpus = v;
            }
            Ok(SourceKind::Xdp(x))
        }
    }
}

impl Config {
    /// The embedded [`DEFAULT_CONFIG`].
    pub fn default_config() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_CONFIG, "<default>")
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (file, text) = Self::read_text(path)?;
        Self::parse(&text, &file)
    }

    /// The name of configuration file `path` as errors print it, and its text.
    pub fn read_text(path: &Path) -> Result<(String, String), ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((file, text)),
            Err(e) => Err(ConfigError {
                file,
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Checks the filters of configuration `text` (one [`Config::parse`] accepted: they compile
    /// for Ethernet) against `link`, the link type of a source that `source` names in the
    /// message (`source 1 (file:a.pcap)`): a file source's link type is known only once the
    /// file is read (`como validate` reads the first interface of each file). Every module's
    /// filter and the trace window's are checked; the error points into the filter, as
    /// [`Config::parse`]'s do.
    pub fn check_filters(
        text: &str,
        file: &str,
        link: como_packet::LinkType,
        source: &str,
    ) -> Result<(), ConfigError> {
        let cx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| cx.at(0, e.message().trim()))?;
        let note = format!(" for link type {} of {source}", link.name());
        for m in &raw.module {
            let m = m.get_ref();
            if let Some(f) = &m.filter {
                let what = format!("module `{}`", m.name.get_ref());
                check_filter(&cx, f, link, &what, &note)?;
            }
        }
        let window = raw.trace.as_ref().filter(|t| t.enabled != Some(false));
        if let Some(f) = window.and_then(|t| t.filter.as_ref()) {
            check_filter(&cx, f, link, "trace", &note)?;
        }
        Ok(())
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let cx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let mut message = e.message().trim().to_owned();
            if message.is_empty() {
                // toml gives no message for some lexing errors (a control character in a
                // comment); the position is right, so say what is there.
                message = match e
                    .span()
                    .and_then(|sp| text.get(sp.start..).and_then(|t| t.chars().next()))
                {
                    Some(c) => format!("invalid TOML: unexpected character {c:?}"),
                    None => "invalid TOML".to_owned(),
                };
            }
            match e.span() {
                Some(s) => cx.span(s, message),
                None => ConfigError {
                    file: file.to_owned(),
                    line: 0,
                    column: 0,
                    message,
                },
            }
        })?;
        let node = Node {
            name: raw.node.name.unwrap_or_else(|| "como".to_owned()),
            location: raw.node.location.unwrap_or_default(),
            db_path: raw.node.db_path.unwrap_or_else(|| PathBuf::from("como-db")),
        };
        let listen = match raw.query.listen {
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| cx.at(0, "bad default"))?,
            Some(l) => l.get_ref().parse().map_err(|e| {
                cx.span(
                    l.span(),
                    format!("bad listen address `{}`: {e}", l.get_ref()),
                )
            })?,
        };
        let max_queries = match raw.query.max_queries {
            None => DEFAULT_MAX_QUERIES,
            Some(n) => usize::try_from(*n.get_ref())
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| cx.span(n.span(), "max_queries must be at least 1"))?,
        };
        let mut sources = Vec::with_capacity(raw.source.len());
        for s in raw.source {
            let span = s.span();
            let kind = source_kind(&cx, span.clone(), s.into_inner())?;
            if let SourceKind::Xdp(x) = &kind {
                let twice = sources
                    .iter()
                    .any(|o: &SourceConfig| matches!(&o.kind, SourceKind::Xdp(y) if y.interface == x.interface && y.netns == x.netns));
                if twice {
                    let place = x
                        .netns
                        .as_ref()
                        .map(|ns| format!(" in network namespace `{ns}`"))
                        .unwrap_or_default();
                    return Err(cx.span(
                        span,
                        format!("two xdp sources on interface `{}`{place}", x.interface),
                    ));
                }
            }
            sources.push(SourceConfig { kind });
        }
        if raw.module.len() > MAX_MODULES {
            let span = raw.module.get(MAX_MODULES).map_or(0..0, Spanned::span);
            return Err(cx.span(span, format!("at most {MAX_MODULES} modules")));
        }
        // Where the 64th module is, for the error when the trace window needs its rule.
        let module_64 = raw.module.get(MAX_MODULES - 1).map_or(0..0, Spanned::span);
        let mut modules: Vec<ModuleConfig> = Vec::with_capacity(raw.module.len());
        for m in raw.module {
            let m = m.into_inner();
            let name = m.name.get_ref().clone();
            if !valid_name(&name) {
                return Err(cx.span(
                    m.name.span(),
                    format!(
                        "bad module name `{name}`: 1 to 64 of A-Z a-z 0-9 _ -, not status/modules/metrics/reload (the server's own routes)"
                    ),
                ));
            }
            if modules.iter().any(|o| o.name == name) {
                return Err(cx.span(m.name.span(), format!("module `{name}` defined twice")));
            }
            let interval = match m.interval {
                None => Duration::from_secs(1),
                Some(i) if i.get_ref().0.is_zero() => {
                    return Err(cx.span(i.span(), "interval must be positive"));
                }
                Some(i) => i.into_inner().0,
            };
            let kind = m.kind.get_ref().clone();
            if !como_modules::KINDS.contains(&kind.as_str()) {
                return Err(cx.span(
                    m.kind.span(),
                    format!(
                        "unknown module kind `{kind}` (known: {})",
                        como_modules::KINDS.join(", ")
                    ),
                ));
            }
            let (args, args_span) = match m.args {
                Some(a) => {
                    let span = a.span();
                    (Some(a.into_inner()), span)
                }
                None => (None, m.kind.span()),
            };
            let module = como_modules::build(&kind, args.as_ref())
                .map_err(|e| cx.span(args_span, e.to_string()))?;
            let filter = match m.filter {
                None => String::new(),
                Some(f) => {
                    let what = format!("module `{name}`");
                    check_filter(&cx, &f, como_packet::LinkType::Ethernet, &what, "")?;
                    f.into_inner()
                }
            };
            modules.push(ModuleConfig {
                name,
                kind,
                filter,
                interval,
                streamsize: m.streamsize.map(|s| s.0),
                retention: m.retention.map(|r| r.0),
                priority: m.priority,
                args,
                module,
            });
        }
        if modules.is_empty() {
            return Err(cx.at(text.len(), "no [[module]]: nothing to run"));
        }
        let trace = match raw.trace {
            Some(t) if t.enabled != Some(false) => Some(trace_config(&cx, t, &node.db_path)?),
            _ => None,
        };
        let live = sources.iter().any(|s| matches!(s.kind, SourceKind::Xdp(_)));
        if live && trace.is_some() && modules.len() >= MAX_MODULES {
            // On a live source the window's filter is one more rule of the kernel's 64.
            return Err(cx.span(
                module_64,
                format!(
                    "with an xdp source and the trace window on, at most {} modules (the window takes one of the kernel's {MAX_MODULES} rules)",
                    MAX_MODULES - 1
                ),
            ));
        }
        Ok(Self {
            node,
            query: Query {
                listen,
                max_queries,
            },
            sources,
            modules,
            trace,
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod trace_tests {
    use super::*;

    const MODULE: &str = "[[module]]\nname = \"t\"\nkind = \"traffic\"\n";

    fn parse(trace: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("[node]\ndb_path = \"/db\"\n{trace}\n{MODULE}"),
            "c.toml",
        )
    }

    #[test]
    fn trace_section_full_and_defaults() {
        let c = parse(
            "[trace]\npath = \"/w\"\nwindow = \"72h\"\nmax_bytes = \"2GiB\"\nmin_free_percent = 10\n\
             snaplen = 128\nsegment_bytes = \"64MiB\"\nsegment_secs = \"5m\"\nfilter = \"tcp\"",
        )
        .expect("valid");
        let t = c.trace.expect("trace on");
        assert_eq!(t.path, PathBuf::from("/w"));
        assert_eq!(t.window, Some(Duration::from_secs(72 * 3600)));
        assert_eq!(t.max_bytes, Some(2 << 30));
        assert_eq!(t.min_free_percent, Some(10.0));
        assert_eq!((t.snaplen, t.segment_bytes), (128, 64 << 20));
        assert_eq!(t.segment_secs, Duration::from_secs(300));
        assert_eq!(t.filter, "tcp");
        let d = parse("[trace]").expect("valid").trace.expect("on");
        assert_eq!(d.path, PathBuf::from("/db/trace"));
        assert_eq!((d.snaplen, d.window, d.filter.as_str()), (65535, None, ""));
        assert!(parse("[trace]\nenabled = false")
            .expect("valid")
            .trace
            .is_none());
        assert!(parse("").expect("valid").trace.is_none());
    }

    #[test]
    fn trace_section_errors_point_at_the_value() {
        let e = parse("[trace]\nfilter = \"tcp and\"").expect_err("bad filter");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("trace: bad filter"), "{e}");
        let e = parse("[trace]\nwindw = \"1h\"").expect_err("unknown key");
        assert_eq!(e.line, 4, "{e}");
        assert!(parse("[trace]\nsnaplen = -1").is_err());
        assert!(parse("[trace]\nmin_free_percent = 100").is_err());
        assert!(parse("[trace]\nwindow = \"0s\"").is_err());
        assert!(parse("[trace]\nsegment_bytes = 1000").is_err());
    }
}
