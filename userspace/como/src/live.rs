//! Live capture in `como run`: an `xdp` source of the configuration becomes the XDP program
//! attached to the interface, one AF_XDP socket per RX queue in its XSK map, the modules'
//! filters compiled into the program's tables, and one pinned worker per queue
//! (`como_runtime::LivePipeline`).
//!
//! **Several `xdp` sources** (a network TAP delivers each direction of a link on its own port):
//! one [`Capture`] per source, each its own loaded program (own maps, XSK map, counters)
//! attached to its interface with its own settings; the queues of every source go to one
//! pipeline (one worker each, labelled by device) feeding the same modules. The tables are
//! compiled once and installed into every program; the pipeline trusts one generation, so the
//! programs start equal and flip together, which is checked before every start of the workers
//! (a disagreement stops the node with an error). When an install fails half-way (at a
//! reload), the programs already switched are switched back to the running tables and the
//! reload fails (500) with the running set going on; if switching back fails too, the node
//! stops. Workers of two sources pinned to a common core are warned about. Every program is
//! detached at exit and on every error path (when the captures drop). Metrics and `/status`
//! are per device (`NETNS/INTERFACE` when two sources share an interface name).
//!
//! Life of the daemon with a live source:
//! 1. per source: load the program, attach it (`mode`; a program left attached by a crashed
//!    run is replaced), set the unmatched policy, create a socket per queue and put it in the
//!    XSK map; compile the module filters into tables and install them into every program
//!    (generation switch);
//! 2. open the databases, start the query server (`listening on ADDR` on stdout), start the
//!    workers;
//! 3. SIGHUP or `POST /reload` (handed over a channel by the query server, answered when
//!    done; see `como_server`): re-read the configuration file, compile the new module set
//!    and, when it is valid, stop the workers (frames wait in the rings; the databases of the
//!    running set are closed), open the new set's databases, install the new tables (the
//!    program is not reloaded), give the new set to the query server
//!    (`NodeState::replace_modules`: the server runs on, streaming queries of kept modules go
//!    on) and start the workers on the same sockets. Frames classified under the old tables
//!    are classified again in userspace (their metadata carries the old generation). A
//!    configuration that does not validate is logged (and answered 400) and the running set
//!    is kept; so is the running set when the new one cannot be applied (answered 500). A
//!    change of the sources, of `[trace]`, of `[node]` or of `[query] listen` needs a restart
//!    (logged; the running ones are kept); `[query] max_queries` applies at once. Without a configuration file (the
//!    embedded one, as `como demo` runs) `POST /reload` answers 409;
//! 4. SIGTERM / SIGINT: stop the workers, flush and store the open intervals, detach, exit 0.
//!
//! **The packet trace window** (`[trace]`, see `como-window`): its filter is one more rule of
//! the kernel tables, in the last bit ([`WINDOW_BIT`]), so the packets it wants are redirected
//! to the workers even when no module wants them; each worker writes the frames whose window
//! bit is set (re-checked with the exact filter when the kernel flags the rule) into its own
//! `WindowWriter` (never blocking: drops counted as `disk_slow`), and hands its partial buffer
//! to the disk when idle, at once if it holds a 4 KiB block of packets, else once it is
//! [`WINDOW_IDLE_FLUSH`] old (`WindowWriter::idle`). The window stays open across reloads (a change of `[trace]`
//! needs a restart) and its open segment is closed at exit, SIGTERM included.
//!
//! Storage: live traffic is always new, so unlike a file source re-read after a crash, nothing
//! is skipped as already stored. A reload hands the open interval and the export state of
//! every module it leaves unchanged (same name, kind, filter, interval, args) to the new
//! module set, so that interval is stored once; a changed or removed module is flushed at the
//! reload, and the interval open at a restart is stored as two records (one per run), which
//! queries return side by side.
//!
//! With `netns` in a source, the interface is looked up, the program attached and the
//! sockets created from a thread inside that network namespace; the query server and
//! everything else stay in the daemon's own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use af_xdp::{HugePages, SocketConfig, Umem, UmemConfig, XskSocket, ZeroCopy};
use anyhow::{anyhow, bail, Context};
use como_config::{Config, Queues, SourceKind, Switch, Unmatched, XdpMode, XdpSource};
use como_packet::Packet;
use como_runtime::{
    Carried, Frame, LiveOptions, LivePipeline, LiveQueue, ModuleSpec, QueueStats, SourceError,
    WorkerCounters,
};
use como_server::metrics::{CaptureProbe, CaptureSample, DropReason, QueueSample, XdpSample};
use como_server::{
    ReloadError, ReloadReport, ReloadRequest, SourceState, SourceStatus, TraceWindow,
};
use como_window::Window;
use como_xdp::XdpProgram;
use ebpf_filters::kernel::Tables;

use crate::run::{module_specs, open_storage, served_modules, start_node, Resume, ResumeSink};
use crate::Failure;

/// One AF_XDP socket as a runtime queue.
struct XskQueue {
    sock: XskSocket,
    device: String,
}

impl LiveQueue for XskQueue {
    fn device(&self) -> String {
        self.device.clone()
    }

    fn queue(&self) -> u32 {
        self.sock.queue()
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(Frame<'_>)) -> Result<usize, SourceError> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        match self.sock.rx_batch(max, |fr| {
            f(Frame {
                meta: fr.meta,
                data: fr.data,
            })
        }) {
            Ok(n) => Ok(n as usize),
            Err(e) => Err(SourceError {
                source_name: format!("xdp:{}:{}", self.device, self.sock.queue()),
                message: e.to_string(),
            }),
        }
    }

    fn stats(&mut self) -> QueueStats {
        let s = self.sock.statistics().unwrap_or_default();
        QueueStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            fill_ring_empty: s.rx_fill_ring_empty_descs,
            rx_invalid_descs: s.rx_invalid_descs.saturating_add(self.sock.invalid_descs()),
        }
    }
}

/// The attached program and the sockets of one `xdp` source.
pub(crate) struct Capture {
    prog: Arc<Mutex<XdpProgram>>,
    /// The source's configuration.
    pub(crate) source: XdpSource,
    /// The device label of its queues in the metrics and `/status` ([`device_label`]).
    device: String,
    /// The sockets (moved into the pipeline while it runs).
    queues: Vec<Box<dyn LiveQueue>>,
}

/// The device label of source `i` of `sources`: its interface, or `NETNS/INTERFACE` when
/// another source has an interface of the same name (in another namespace).
fn device_label(sources: &[XdpSource], i: usize) -> String {
    let Some(x) = sources.get(i) else {
        return String::new();
    };
    let shared = sources
        .iter()
        .enumerate()
        .any(|(j, y)| j != i && y.interface == x.interface);
    match (&x.netns, shared) {
        (Some(ns), true) => format!("{ns}/{}", x.interface),
        _ => x.interface.clone(),
    }
}

/// Runs `f` on a thread inside network namespace `netns` (`/run/netns/NAME`), or on this
/// thread when `None`.
pub(crate) fn in_netns<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let Some(name) = netns else {
        return f();
    };
    let path = Path::new("/run/netns").join(name);
    std::thread::scope(|s| {
        let h = s.spawn(|| -> anyhow::Result<T> {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("network namespace {}", path.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {name}"))?;
            f()
        });
        h.join()
            .map_err(|_| anyhow!("the thread in network namespace {name} panicked"))?
    })
}

/// Number of RX queues in use on `iface` in the calling thread's namespace: the current RX
/// (or combined) channels of `ethtool -l`; 1 when the driver does not say (queue 0 always
/// exists).
fn rx_queues(iface: &str) -> u32 {
    let out = match std::process::Command::new("ethtool")
        .args(["-l", iface])
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            tracing::info!(
                "{iface}: `ethtool -l` failed ({}); reading queue 0 only",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return 1;
        }
        Err(e) => {
            tracing::info!("{iface}: cannot run ethtool ({e}); reading queue 0 only");
            return 1;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let current = text
        .split("Current hardware settings:")
        .nth(1)
        .unwrap_or_default();
    let value = |key: &str| -> u32 {
        current
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    value("RX:")
        .max(value("Combined:"))
        .clamp(1, ebpf_filters_common::MAX_QUEUES)
}

impl Capture {
    /// Loads and attaches the program and creates the sockets of `x` (see the module docs);
    /// its queues are labelled `device`.
    pub(crate) fn open(x: &XdpSource, device: &str) -> anyhow::Result<Self> {
        let x = x.clone();
        let xs = x.clone();
        let label = device.to_owned();
        let (prog, mode, queues) = in_netns(x.netns.as_deref(), move || {
            let x = xs;
            let mut prog = XdpProgram::load().context("loading the XDP program (root?)")?;
            let mode = match x.mode {
                XdpMode::Auto => como_xdp::XdpMode::Auto,
                XdpMode::Native => como_xdp::XdpMode::Native,
                XdpMode::Skb => como_xdp::XdpMode::Skb,
            };
            let mode = prog
                .attach(&x.interface, mode)
                .with_context(|| format!("attaching XDP to {}", x.interface))?;
            prog.set_drop_unmatched(x.unmatched == Unmatched::Drop)?;
            let ifindex = nix::net::if_::if_nametoindex(x.interface.as_str())
                .with_context(|| format!("interface {}", x.interface))?;
            let qs: Vec<u32> = match &x.queues {
                Queues::All => (0..rx_queues(&x.interface)).collect(),
                Queues::List(l) => l.clone(),
            };
            let mut queues: Vec<Box<dyn LiveQueue>> = Vec::with_capacity(qs.len());
            for q in qs {
                let umem = Umem::new(&UmemConfig {
                    frame_size: x.frame_size,
                    frame_count: x.frames,
                    headroom: 0,
                    hugepages: match x.hugepages {
                        Switch::Auto => HugePages::Auto,
                        Switch::On => HugePages::On,
                        Switch::Off => HugePages::Off,
                    },
                })
                .with_context(|| format!("UMEM of queue {q}"))?;
                let cfg = SocketConfig {
                    rx_size: x.rx_ring,
                    fill_size: x.fill_ring,
                    comp_size: 64,
                    tx_size: 64,
                    zero_copy: match x.zero_copy {
                        Switch::Auto => ZeroCopy::Auto,
                        Switch::On => ZeroCopy::On,
                        Switch::Off => ZeroCopy::Off,
                    },
                    ..SocketConfig::default()
                };
                let sock = XskSocket::new(umem, ifindex, q, &cfg)
                    .with_context(|| format!("AF_XDP socket on {} queue {q}", x.interface))?;
                prog.set_socket(q, sock.fd())?;
                if queues.is_empty() && !sock.multi_buffer() {
                    warn_long_frames(&x);
                }
                tracing::info!(
                    "{} queue {q}: AF_XDP socket in {} mode{}, UMEM on {}",
                    x.interface,
                    sock.mode(),
                    if sock.multi_buffer() {
                        ", multi-buffer (jumbo frames)"
                    } else {
                        ", no multi-buffer"
                    },
                    if sock.hugepages() {
                        "2 MiB hugepages"
                    } else {
                        "4 KiB pages"
                    }
                );
                queues.push(Box::new(XskQueue {
                    sock,
                    device: label.clone(),
                }));
            }
            Ok((prog, mode, queues))
        })?;
        tracing::info!("XDP program attached to {} in {mode:?} mode", x.interface);
        Ok(Self {
            prog: Arc::new(Mutex::new(prog)),
            source: x,
            device: device.to_owned(),
            queues,
        })
    }

    /// Installs `tables` into the program; the new generation.
    fn install(&self, tables: &Tables) -> anyhow::Result<u32> {
        let prog = self.prog.lock().unwrap_or_else(PoisonError::into_inner);
        prog.install(tables).with_context(|| {
            format!(
                "installing the tables into the XDP program on {}",
                self.device
            )
        })
    }

    /// The generation in force in the program.
    fn generation(&self) -> u32 {
        self.prog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .generation()
    }

    /// Detaches the program (also done when dropped).
    pub(crate) fn detach(&self) -> anyhow::Result<()> {
        let netns = self.source.netns.clone();
        let prog = Arc::clone(&self.prog);
        in_netns(netns.as_deref(), move || {
            let mut p = prog.lock().unwrap_or_else(PoisonError::into_inner);
            p.detach()?;
            Ok(())
        })
    }
}

/// The captures of every `xdp` source of the node (a TAP's two ports, say): one program per
/// interface, each with its own maps, sockets and counters, all holding the same tables in the
/// same generation (the one the pipeline trusts). Detached when dropped (error paths).
struct Captures {
    all: Vec<Capture>,
    /// The tables installed in every program (what a failed install rolls back to).
    tables: Option<Tables>,
}

impl Captures {
    /// Opens every source in order; the ones already open are detached when one fails.
    fn open(sources: &[XdpSource]) -> anyhow::Result<Self> {
        let mut c = Self {
            all: Vec::with_capacity(sources.len()),
            tables: None,
        };
        for (i, x) in sources.iter().enumerate() {
            // On error, `c` drops: what is attached is detached.
            c.all.push(Capture::open(x, &device_label(sources, i))?);
        }
        let used: Vec<(String, Vec<usize>)> = c
            .all
            .iter()
            .map(|x| {
                let cores = (0..x.queues.len()).filter_map(|i| x.source.cpu_of(i));
                (x.device.clone(), cores.collect())
            })
            .collect();
        for (a, b, cores) in shared_cores(&used) {
            tracing::warn!(
                "the workers of {a} and {b} are both pinned to cores {cores:?}: they take turns on them (give each source its own `cpus`)"
            );
        }
        Ok(c)
    }

    /// The generation in force, when every program has the same (they start equal, at 0, and
    /// flip together).
    fn generation(&self) -> Option<u32> {
        let mut gens = self.all.iter().map(Capture::generation);
        let first = gens.next()?;
        gens.all(|g| g == first).then_some(first)
    }

    /// Compiles `specs`' filters (and the trace window's, in [`WINDOW_BIT`]) into tables once
    /// and installs them into every program; the new generation, the same in all.
    ///
    /// When an install fails, the programs already switched are switched back to the running
    /// tables (so every program stays on the running generation, and the running set goes
    /// on); when even that fails, [`Captures::generation`] no longer agrees with the running
    /// generation, which the caller treats as fatal.
    fn install(&mut self, specs: &[ModuleSpec], window: Option<&str>) -> anyhow::Result<u32> {
        let tables = compile_tables(specs, window)?;
        let before = self
            .generation()
            .ok_or_else(|| anyhow!("the XDP programs are on different tables generations"))?;
        let failed = self.all.iter().find_map(|c| c.install(&tables).err());
        if let Some(e) = failed {
            self.roll_back(before);
            return Err(e);
        }
        let g = self.generation().ok_or_else(|| {
            anyhow!("the XDP programs ended on different tables generations after an install")
        })?;
        self.tables = Some(tables);
        Ok(g)
    }

    /// Switches every program not on generation `before` back to the running tables.
    fn roll_back(&self, before: u32) {
        for c in self.all.iter().filter(|c| c.generation() != before) {
            let Some(t) = &self.tables else {
                // Nothing ran yet (the start fails and detaches everything).
                continue;
            };
            match c.install(t) {
                Ok(g) if g == before => {
                    tracing::warn!("{}: switched back to the running tables", c.device);
                }
                Ok(g) => tracing::error!(
                    "{}: switching back to the running tables gave generation {g}, not {before}",
                    c.device
                ),
                Err(e) => {
                    tracing::error!("{}: switching back to the running tables: {e:#}", c.device)
                }
            }
        }
    }

    /// Takes every capture's sockets, in source order (the pipeline's queues).
    fn take_queues(&mut self) -> Vec<Box<dyn LiveQueue>> {
        self.all
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.queues))
            .collect()
    }

    /// Gives the sockets back to their captures (by device label).
    fn give_queues(&mut self, queues: Vec<Box<dyn LiveQueue>>) {
        for q in queues {
            let device = q.device();
            if let Some(c) = self.all.iter_mut().find(|c| c.device == device) {
                c.queues.push(q);
            }
        }
    }

    /// The core of each worker, in [`Captures::take_queues`]' order.
    fn cpus(&self) -> Vec<Option<usize>> {
        self.all
            .iter()
            .flat_map(|c| (0..c.queues.len()).map(|i| c.source.cpu_of(i)))
            .collect()
    }

    /// Detaches every program (also done when dropped); the first error.
    fn detach(&self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for c in &self.all {
            if let Err(e) = c.detach() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl Drop for Captures {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!("detaching XDP: {e:#}");
        }
    }
}

/// The cores two sources' workers share: (device, device, cores) for each pair of `used`
/// (device, the cores its workers are pinned to) with cores in common.
fn shared_cores(used: &[(String, Vec<usize>)]) -> Vec<(String, String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, (a, ca)) in used.iter().enumerate() {
        for (b, cb) in used.iter().skip(i + 1) {
            let mut shared: Vec<usize> = ca.iter().filter(|c| cb.contains(c)).copied().collect();
            shared.sort_unstable();
            shared.dedup();
            if !shared.is_empty() {
                out.push((a.clone(), b.clone(), shared));
            }
        }
    }
    out
}

/// Warns when the interface's MTU lets through frames longer than a UMEM frame can hold and
/// the sockets could not be bound with multi-buffer (a kernel before 6.6, or a zero-copy driver
/// without it): the kernel drops those (counted as `rx_dropped`), so a module never sees them.
fn warn_long_frames(x: &XdpSource) {
    let Ok(mtu) = como_xdp::mtu(&x.interface) else {
        return;
    };
    // Ethernet header and two VLAN tags on top of the MTU; the kernel's headroom in the frame.
    let longest = u64::from(mtu) + 14 + 8;
    let room = u64::from(x.frame_size).saturating_sub(u64::from(af_xdp::XDP_PACKET_HEADROOM));
    if longest > room {
        let fix = if x.frame_size < 4096 && longest <= 4096 - u64::from(af_xdp::XDP_PACKET_HEADROOM)
        {
            "raise frame_size to 4096".to_owned()
        } else {
            format!(
                "lower the MTU to {} or less (jumbo frames need multi-buffer AF_XDP: Linux 6.6)",
                4096 - u64::from(af_xdp::XDP_PACKET_HEADROOM) - 22
            )
        };
        tracing::warn!(
            "{}: MTU {mtu} allows frames of up to {longest} bytes, but a {}-byte UMEM frame holds {room}: longer frames are dropped (como_capture_drops_total reason=\"rx_dropped\"); {fix}",
            x.interface,
            x.frame_size
        );
    }
}

/// The kernel rule bit of the packet trace window: the last one (modules take `0..n`).
pub(crate) const WINDOW_BIT: u32 = ebpf_filters_common::MAX_RULES as u32 - 1;

/// The kernel tables of a module set (rule `i` = module `i`; no filter = every packet) and of
/// the trace window's filter `window` (rule [`WINDOW_BIT`]; `None`: no window, no rule).
pub(crate) fn compile_tables(specs: &[ModuleSpec], window: Option<&str>) -> anyhow::Result<Tables> {
    if window.is_some() && specs.len() > WINDOW_BIT as usize {
        bail!(
            "with the trace window on, a live node runs at most {WINDOW_BIT} modules (the window takes a rule of the kernel's {}), not {}",
            ebpf_filters_common::MAX_RULES,
            specs.len()
        );
    }
    let mut filters = Vec::with_capacity(specs.len());
    for s in specs {
        // An empty expression is tcpdump's "every packet".
        let f = ebpf_filters::compile(s.filter.trim(), como_packet::LinkType::Ethernet)
            .with_context(|| format!("module {}: filter", s.name))?;
        filters.push(f);
    }
    let window_filter = window
        .map(|w| {
            ebpf_filters::compile(w.trim(), como_packet::LinkType::Ethernet)
                .context("trace window: filter")
        })
        .transpose()?;
    let mut refs: Vec<Option<&ebpf_filters::Filter>> = filters.iter().map(Some).collect();
    if let Some(w) = &window_filter {
        refs.resize(WINDOW_BIT as usize, None);
        refs.push(Some(w));
    }
    let tables = Tables::compile(&refs).context("compiling the kernel tables")?;
    if let (Some(r), Some(expr)) = (tables.rule_report(WINDOW_BIT as usize), window) {
        if !r.exact {
            tracing::info!(
                "trace window: the kernel over-approximates its filter `{expr}` ({}); its packets are re-checked in userspace",
                r.reasons.join("; ")
            );
        }
    }
    for (i, s) in specs.iter().enumerate() {
        if let Some(r) = tables.rule_report(i) {
            if !r.exact {
                tracing::info!(
                    "module {}: the kernel over-approximates `{}` ({}); its packets are re-checked in userspace",
                    s.name,
                    s.filter,
                    r.reasons.join("; ")
                );
            }
        }
    }
    Ok(tables)
}

/// The metrics' view of one XDP program.
struct ProgramProbe {
    prog: Arc<Mutex<XdpProgram>>,
    device: String,
    drop_unmatched: bool,
}

/// The metrics' view of one live pipeline: its workers and every source's program (their
/// counters labelled by device).
struct Probe {
    programs: Vec<ProgramProbe>,
    counters: Vec<Arc<WorkerCounters>>,
}

impl Probe {
    /// The probe of `captures` and the pipeline's `counters`.
    fn new(captures: &Captures, counters: Vec<Arc<WorkerCounters>>) -> Self {
        Self {
            programs: captures
                .all
                .iter()
                .map(|c| ProgramProbe {
                    prog: Arc::clone(&c.prog),
                    device: c.device.clone(),
                    drop_unmatched: c.source.unmatched == Unmatched::Drop,
                })
                .collect(),
            counters,
        }
    }
}

impl CaptureProbe for Probe {
    fn sample(&self) -> CaptureSample {
        let mut s = CaptureSample::default();
        for (w, c) in self.counters.iter().enumerate() {
            let q = c.queue_stats();
            s.queues.push(QueueSample {
                device: c.device.clone(),
                queue: c.queue.to_string(),
                packets: c.packets.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                drops: vec![
                    (DropReason::RxDropped, q.rx_dropped),
                    (DropReason::RxRingFull, q.rx_ring_full),
                    (DropReason::FillRingEmpty, q.fill_ring_empty),
                    (DropReason::InvalidDescs, q.rx_invalid_descs),
                ],
            });
            s.workers.push((w.to_string(), c.busy_ratio()));
            for (i, m) in c.module_packets.iter().enumerate() {
                if s.module_packets.len() <= i {
                    s.module_packets.resize(i + 1, 0);
                }
                if let Some(t) = s.module_packets.get_mut(i) {
                    *t += m.load(Ordering::Relaxed);
                }
            }
        }
        for p in &self.programs {
            let stats = p
                .prog
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stats();
            let Ok(x) = stats else {
                continue;
            };
            let mut drops = vec![
                (DropReason::RedirectFailed, x.redirect_failed),
                (DropReason::ParseError, x.parse_errors),
            ];
            if p.drop_unmatched {
                drops.push((DropReason::Unmatched, x.dropped));
            }
            s.queues.push(QueueSample {
                device: p.device.clone(),
                queue: "all".into(),
                packets: 0,
                bytes: 0,
                drops,
            });
            s.xdp.push(XdpSample {
                device: p.device.clone(),
                seen: x.seen,
                matched: x.matched,
                redirected: x.redirected,
                passed: x.passed,
            });
        }
        s
    }
}

/// What `como run` needs to run a live source.
pub(crate) struct LiveRun<'a> {
    /// The configuration file (re-read on SIGHUP); `None`: the embedded default.
    pub(crate) config_path: Option<&'a Path>,
    /// The validated configuration.
    pub(crate) config: Config,
    /// Set by SIGTERM/SIGINT (or by the caller, e.g. the demo) to stop.
    pub(crate) stop: Arc<AtomicBool>,
    /// Set by SIGHUP to reload.
    pub(crate) reload: Arc<AtomicBool>,
}

/// The `xdp` sources of a configuration (at least one, no two on one interface of one
/// namespace, and no file source: not mixed yet).
pub(crate) fn the_xdp_sources(config: &Config) -> anyhow::Result<Vec<XdpSource>> {
    let mut xdp = Vec::new();
    let mut files = 0;
    for s in &config.sources {
        match &s.kind {
            SourceKind::Xdp(x) => xdp.push(x.clone()),
            SourceKind::File { .. } => files += 1,
        }
    }
    if files > 0 {
        bail!("file and xdp sources in one node are not supported yet: run them in two nodes");
    }
    if xdp.is_empty() {
        bail!("no xdp source in the configuration");
    }
    for (i, x) in xdp.iter().enumerate() {
        if xdp
            .iter()
            .skip(i + 1)
            .any(|y| y.interface == x.interface && y.netns == x.netns)
        {
            bail!("two xdp sources on interface {}", x.interface);
        }
    }
    Ok(xdp)
}

/// Reads the configuration again for a reload.
fn reload_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let c = match path {
        Some(p) => Config::load(p),
        None => Config::default_config(),
    };
    c.map_err(|e| anyhow!("{e}"))
}

/// Runs the daemon on a live source until stopped (see the module docs).
pub(crate) fn run(r: LiveRun<'_>) -> Result<(), Failure> {
    let file = |e: anyhow::Error| Failure::File(e);
    let sources = the_xdp_sources(&r.config).map_err(Failure::Filter)?;
    let mut config = r.config;
    let mut specs = module_specs(&config);
    // The trace window: its filter is applied by the kernel rule and the workers, not again
    // by the writer.
    let trace = config.trace.clone();
    let window_filter = trace.as_ref().map(|t| t.filter.clone());
    let wfilter = window_filter.as_deref();
    if trace.is_some() && specs.len() > WINDOW_BIT as usize {
        return Err(Failure::Filter(anyhow!(
            "with the trace window on, a live node runs at most {WINDOW_BIT} modules, not {}",
            specs.len()
        )));
    }
    let window = match &trace {
        Some(t) => {
            let mut wc = crate::trace::window_config(t);
            wc.filter.clear();
            let w = Window::open(wc)
                .with_context(|| format!("trace window {}", t.path.display()))
                .map_err(file)?;
            tracing::info!(
                "trace window in {} (filter `{}`, engine {:?}, staging buffers on {})",
                t.path.display(),
                t.filter,
                w.engine(),
                if w.hugepages() {
                    "hugepages"
                } else {
                    "normal pages"
                }
            );
            Some(w)
        }
        None => None,
    };
    // Every source attached (detached again if one fails), the same tables in every program.
    let mut captures = Captures::open(&sources).map_err(file)?;
    let mut generation = captures.install(&specs, wfilter).map_err(file)?;
    let cpus = captures.cpus();
    let mut counters: Option<Vec<Arc<WorkerCounters>>> = None;
    // Outside the loop: the capture counters go on across reloads.
    let mut publish = Publish::new(&captures);
    // One query server for the daemon's life: a reload replaces the module set it serves.
    let (storage, reads, _) = open_storage(&config)?;
    let (node, server) = start_node(&config, reads, publish.statuses())?;
    if let Some(w) = &window {
        node.set_trace(TraceWindow {
            dir: w.dir().to_path_buf(),
            stats: Some(w.stats_shared()),
        });
    }
    let (reload_tx, requests) = std::sync::mpsc::channel::<ReloadRequest>();
    match r.config_path {
        Some(_) => node.set_reloader(reload_tx),
        None => node.set_reload_unavailable(
            "this node cannot reload: it runs the embedded configuration, there is no configuration file to re-read (start it with -c FILE)",
        ),
    }
    let mut next_storage = Some(storage);
    // The `POST /reload` being applied, and its answer once the new set runs.
    let mut pending: Option<ReloadRequest> = None;
    let mut answer: Option<(ReloadRequest, Result<ReloadReport, ReloadError>)> = None;
    // When the workers were stopped for a reload (logged once they run again).
    let mut paused_at: Option<std::time::Instant> = None;
    let mut result = Ok(());
    // What a reload hands from one module set to the next.
    let mut carried = Carried::default();
    loop {
        // The databases of the running set: opened above, or at the last reload.
        let Some(storage) = next_storage.take() else {
            break;
        };
        // Live traffic is always new: no record is skipped as stored by a previous run (the
        // interval open at a restart may then have two records, one per run).
        let resume = specs.iter().map(|_| Resume::nothing_stored()).collect();
        let sink = ResumeSink {
            inner: storage,
            resume,
            node: Arc::clone(&node),
            kept: Vec::new(),
        };
        // The pipeline trusts one generation: every program must be on it.
        if captures.generation() != Some(generation) {
            result = Err(file(anyhow!(
                "the XDP programs are not all on tables generation {generation}: stopping"
            )));
            break;
        }
        let queues = captures.take_queues();
        let opts = LiveOptions {
            cpus: cpus.clone(),
            generation: Some(generation),
            counters: counters.take(),
        };
        let taps = window.as_ref().map(|w| {
            let taps = (0..queues.len()).map(|_| window_tap(w)).collect();
            (WINDOW_BIT, wfilter.unwrap_or_default(), taps)
        });
        let pipe = LivePipeline::start_carrying(
            specs.clone(),
            queues,
            &opts,
            sink,
            taps,
            std::mem::take(&mut carried),
        )
        .map_err(|e| file(e.into()))?;
        node.set_module_cpu(pipe.module_cpu());
        node.metrics
            .set_capture_probe(Arc::new(Probe::new(&captures, pipe.counters().to_vec())));
        publish.set_state(&SourceState::Running);
        tracing::info!(
            "capturing on {} ({} queues, generation {generation}), {} modules{}",
            publish.devices(),
            pipe.counters().len(),
            specs.len(),
            paused_at
                .take()
                .map(|t| format!(
                    "; the reload stopped the workers for {:.1} ms",
                    t.elapsed().as_secs_f64() * 1e3
                ))
                .unwrap_or_default()
        );
        if let Some((req, outcome)) = answer.take() {
            // The reload asked over HTTP is done once the new set runs.
            req.answer(outcome);
        }
        let mut next: Option<(Config, Vec<ModuleSpec>)> = None;
        loop {
            publish.update(pipe.counters());
            if r.stop.load(Ordering::Relaxed) {
                tracing::info!("signal received: flushing");
                break;
            }
            if pipe.is_broken() {
                tracing::error!("a capture worker stopped");
                break;
            }
            // SIGHUP, or `POST /reload` (answered when done).
            let asked = if r.reload.swap(false, Ordering::SeqCst) {
                Some(None)
            } else {
                requests.try_recv().ok().map(Some)
            };
            if let Some(req) = asked {
                match prepare_reload(r.config_path, &sources, trace.as_ref()) {
                    Ok(n) => {
                        next = Some(n);
                        pending = req;
                        break;
                    }
                    Err(e) => {
                        tracing::error!("reload refused, keeping the running modules: {e:#}");
                        if let Some(req) = req {
                            req.answer(Err(ReloadError::Invalid(format!("{e:#}"))));
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A reload keeps the open interval and export state of the modules it leaves
        // unchanged (stored once, as without the reload); the others are flushed.
        let keep = next
            .as_ref()
            .map(|(c, _)| kept_modules(&config, c))
            .unwrap_or_default();
        paused_at = next.as_ref().map(|_| std::time::Instant::now());
        let end = pipe
            .stop_keeping(&keep)
            .map(|(end, c)| {
                carried = c;
                end
            })
            .map_err(|e| file(e.into()));
        let end = match end {
            Ok(end) => end,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if let Some(e) = end.error {
            publish.set_state(&SourceState::Failed(e.message.clone()));
            result = Err(file(anyhow!("{e}")));
            break;
        }
        // The running set's databases are closed (all they stored is acknowledged) before
        // they are opened again for the next set.
        drop(end.sink);
        publish.update(&end.counters);
        captures.give_queues(end.queues);
        counters = Some(end.counters);
        let Some((mut new_config, new_specs)) = next else {
            publish.set_state(&SourceState::Done);
            break;
        };
        // The databases' folder and the server's address stay those the node started with.
        if new_config.node != config.node {
            tracing::warn!(
                "reload: changes of [node] (db_path, name, location) need a restart; keeping the running ones"
            );
            new_config.node = config.node.clone();
        }
        if new_config.query.listen != config.query.listen {
            tracing::warn!(
                "reload: a change of [query] listen needs a restart; the query server stays on {}",
                config.query.listen
            );
            new_config.query.listen = config.query.listen;
        }
        // The workers are stopped: frames wait in the rings. Open the new set's databases and
        // install the new tables (the frames classified under the old generation are
        // re-classified in userspace).
        let applied = open_storage(&new_config)
            .map_err(|e| match e {
                Failure::Filter(e) | Failure::File(e) => e,
                Failure::Reported(c) => anyhow!("opening the databases failed ({c})"),
            })
            .and_then(|(st, reads, _)| {
                let g = captures.install(&new_specs, wfilter)?;
                Ok((st, reads, g))
            });
        if applied.is_err() && captures.generation() != Some(generation) {
            // An install failed and switching the programs back failed too: they no longer
            // agree with the running set.
            let e = applied.err().map(|e| format!("{e:#}")).unwrap_or_default();
            tracing::error!("reload failed and the XDP programs could not all be switched back to the running tables: stopping ({e})");
            if let Some(req) = pending.take() {
                req.answer(Err(ReloadError::Failed(format!(
                    "{e}; the XDP programs could not all be switched back: the node stops"
                ))));
            }
            result = Err(file(anyhow!(
                "reload left the XDP programs on different tables: {e}"
            )));
            break;
        }
        let outcome = match applied {
            Ok((st, reads, g)) => {
                let report = reload_report(&config, &new_config, &keep, g);
                generation = g;
                config = new_config;
                specs = new_specs;
                next_storage = Some(st);
                node.replace_modules(served_modules(&config, reads));
                node.set_max_queries(config.query.max_queries);
                tracing::info!(
                    "reloaded: {} modules ({} kept, {} added, {} removed, {} changed), tables generation {generation}",
                    specs.len(),
                    report.kept.len(),
                    report.added.len(),
                    report.removed.len(),
                    report.changed.len()
                );
                Ok(report)
            }
            Err(e) => {
                tracing::error!("reload failed, keeping the running modules: {e:#}");
                // The kept modules' states were handed over under their index in the new
                // set: back to their index in the running one.
                carried.remap(|new| keep.iter().find(|k| k.1 == new).map(|k| k.0));
                let (st, reads, _) = open_storage(&config)?;
                next_storage = Some(st);
                node.replace_modules(served_modules(&config, reads));
                Err(ReloadError::Failed(format!("{e:#}")))
            }
        };
        answer = pending.take().map(|req| (req, outcome));
    }
    node.set_finished();
    if let Err(e) = server.stop() {
        tracing::warn!("query server: {e}");
    }
    drop(node);
    if let Err(e) = captures.detach() {
        tracing::warn!("detaching XDP: {e:#}");
    }
    if let Some(w) = window {
        // The workers have stopped (their writers flushed): close the open segment.
        let s = w.finish();
        tracing::info!(
            "trace window: {} packets written, dropped {} (disk slow), {} (disk full), {} (too big)",
            s.packets,
            s.drops_disk_slow,
            s.drops_disk_full,
            s.drops_too_big
        );
    }
    result
}

/// What a live worker calls with each packet of the trace window (`None`: idle or stop).
type Tap = como_runtime::WindowTap;

/// How long an idle worker keeps a partial buffer of less than one 4 KiB block of packets
/// before it hands it to the disk: every hand-over is a write of whole 4 KiB blocks, so
/// flushing a trickle at each idle moment would spend 4 KiB of segment per packet; this bounds
/// that to a few writes per second per worker. A buffer holding a block or more goes at the
/// first idle moment (a burst is queryable at once).
const WINDOW_IDLE_FLUSH: Duration = Duration::from_millis(250);

/// A worker's tap into the trace window: its own writer; `None` (the worker is idle) hands the
/// partial buffer to the disk as [`WINDOW_IDLE_FLUSH`] says (at stop, dropping the writer
/// hands over the rest).
fn window_tap(w: &Window) -> Tap {
    let mut writer = w.writer();
    Box::new(move |p: Option<&Packet<'_>>| match p {
        Some(p) => {
            writer.write(p);
        }
        None => {
            writer.idle(WINDOW_IDLE_FLUSH);
        }
    })
}

/// The modules a reload from `old` to `new` leaves unchanged, as (index in `old`, index in
/// `new`): same name, kind, filter, interval and arguments (storage caps and priority may
/// change). Their open interval and export state go on in the new set.
fn kept_modules(old: &Config, new: &Config) -> Vec<(usize, usize)> {
    old.modules
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let j = new.modules.iter().position(|n| {
                n.name == m.name
                    && n.kind == m.kind
                    && n.filter == m.filter
                    && n.interval == m.interval
                    && n.args == m.args
            })?;
            Some((i, j))
        })
        .collect()
}

/// What a reload from `old` to `new` did, `keep` being [`kept_modules`] of the two and
/// `generation` that of the tables installed.
fn reload_report(
    old: &Config,
    new: &Config,
    keep: &[(usize, usize)],
    generation: u32,
) -> ReloadReport {
    let names = |c: &Config| -> Vec<String> { c.modules.iter().map(|m| m.name.clone()).collect() };
    let (was, now) = (names(old), names(new));
    let kept: Vec<String> = keep
        .iter()
        .filter_map(|&(_, j)| now.get(j).cloned())
        .collect();
    ReloadReport {
        added: now.iter().filter(|n| !was.contains(n)).cloned().collect(),
        removed: was.iter().filter(|n| !now.contains(n)).cloned().collect(),
        changed: now
            .iter()
            .filter(|n| was.contains(n) && !kept.contains(n))
            .cloned()
            .collect(),
        kept,
        modules: now,
        tables_generation: generation,
    }
}

/// Reads, validates and compiles a new configuration; the module set must be compilable for
/// the kernel (a change of the sources needs a restart: logged).
fn prepare_reload(
    path: Option<&Path>,
    sources: &[XdpSource],
    trace: Option<&como_config::TraceConfig>,
) -> anyhow::Result<(Config, Vec<ModuleSpec>)> {
    let c = reload_config(path)?;
    let new_sources = the_xdp_sources(&c)?;
    if new_sources != sources {
        tracing::warn!(
            "reload: changes of the xdp sources need a restart; applying the modules only"
        );
    }
    if c.trace.as_ref() != trace {
        tracing::warn!(
            "reload: changes of [trace] need a restart; the running window is kept as it is"
        );
    }
    let specs = module_specs(&c);
    compile_tables(&specs, trace.map(|t| t.filter.as_str()))?;
    Ok((c, specs))
}

/// The `/status` entries of the sources, one per capture.
struct Publish {
    sources: Vec<(String, Arc<SourceStatus>, PublishStatus)>,
}

impl Publish {
    /// One `/status` source per capture, named `xdp:DEVICE`.
    fn new(captures: &Captures) -> Self {
        Self {
            sources: captures
                .all
                .iter()
                .map(|c| {
                    let status = SourceStatus::new(format!("xdp:{}", c.device), "xdp");
                    (c.device.clone(), Arc::new(status), PublishStatus::default())
                })
                .collect(),
        }
    }

    /// The statuses, for the query server.
    fn statuses(&self) -> Vec<Arc<SourceStatus>> {
        self.sources.iter().map(|s| Arc::clone(&s.1)).collect()
    }

    /// The devices, for the log.
    fn devices(&self) -> String {
        let names: Vec<&str> = self.sources.iter().map(|s| s.0.as_str()).collect();
        names.join(" and ")
    }

    /// Sets every source's state.
    fn set_state(&self, state: &SourceState) {
        for s in &self.sources {
            s.1.set_state(state.clone());
        }
    }

    /// Publishes the workers' totals, each to its device's source.
    fn update(&mut self, counters: &[Arc<WorkerCounters>]) {
        for (device, status, p) in &mut self.sources {
            let mine: Vec<Arc<WorkerCounters>> = counters
                .iter()
                .filter(|c| c.device == *device)
                .cloned()
                .collect();
            p.update(status, &mine);
        }
    }
}

/// Publishes the packet totals of a source's workers to `/status` (the source's counters).
#[derive(Default)]
struct PublishStatus {
    packets: u64,
    bytes: u64,
}

impl PublishStatus {
    fn update(&mut self, status: &SourceStatus, counters: &[Arc<WorkerCounters>]) {
        if counters.is_empty() {
            return;
        }
        let p: u64 = counters
            .iter()
            .map(|c| c.packets.load(Ordering::Relaxed))
            .sum();
        let b: u64 = counters
            .iter()
            .map(|c| c.bytes.load(Ordering::Relaxed))
            .sum();
        status
            .packets
            .fetch_add(p.saturating_sub(self.packets), Ordering::Relaxed);
        status
            .bytes
            .fetch_add(b.saturating_sub(self.bytes), Ordering::Relaxed);
        self.packets = p;
        self.bytes = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use como_config::SourceConfig;

    fn config(sources: Vec<SourceKind>) -> Config {
        let mut c = Config::default_config().expect("embedded configuration");
        c.sources = sources
            .into_iter()
            .map(|kind| SourceConfig { kind })
            .collect();
        c
    }

    fn in_ns(iface: &str, ns: &str) -> XdpSource {
        let mut x = XdpSource::new(iface);
        x.netns = Some(ns.to_owned());
        x
    }

    #[test]
    fn every_xdp_source_of_a_node_is_captured_but_not_mixed_with_files() {
        let two = config(vec![
            SourceKind::Xdp(XdpSource::new("tap0")),
            SourceKind::Xdp(XdpSource::new("tap1")),
        ]);
        let got = the_xdp_sources(&two).expect("two ports");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].interface.as_str(), got[1].interface.as_str()),
            ("tap0", "tap1")
        );

        let mixed = config(vec![
            SourceKind::Xdp(XdpSource::new("tap0")),
            SourceKind::File {
                path: "t.pcap".into(),
                speed: None,
            },
        ]);
        let e = the_xdp_sources(&mixed).expect_err("mixed").to_string();
        assert!(e.contains("file and xdp sources"), "{e}");

        let twice = config(vec![
            SourceKind::Xdp(in_ns("eth0", "a")),
            SourceKind::Xdp(in_ns("eth0", "a")),
        ]);
        let e = the_xdp_sources(&twice)
            .expect_err("one interface twice")
            .to_string();
        assert!(e.contains("two xdp sources on interface eth0"), "{e}");
        assert!(the_xdp_sources(&config(vec![])).is_err());
    }

    #[test]
    fn devices_are_named_by_interface_and_by_namespace_when_names_clash() {
        let s = [
            in_ns("eth0", "a"),
            in_ns("eth0", "b"),
            XdpSource::new("tap1"),
        ];
        let labels: Vec<String> = (0..s.len()).map(|i| device_label(&s, i)).collect();
        assert_eq!(labels, ["a/eth0", "b/eth0", "tap1"]);
    }

    #[test]
    fn workers_of_two_sources_on_one_core_are_found() {
        let used = vec![
            ("tap0".to_owned(), vec![0, 1]),
            ("tap1".to_owned(), vec![1, 1]),
            ("tap2".to_owned(), vec![2]),
        ];
        assert_eq!(
            shared_cores(&used),
            [("tap0".to_owned(), "tap1".to_owned(), vec![1])]
        );
        // Workers of one source wrapping over its own list are not reported.
        assert!(shared_cores(&[("tap0".to_owned(), vec![0, 0])]).is_empty());
    }
}
