//! Prometheus metrics of the node, rendered by `/metrics` in the text format.
//!
//! | metric | type | labels | updated |
//! |--------|------|--------|---------|
//! | `como_source_packets_total` | counter | `source` | per batch of packets read |
//! | `como_source_bytes_total` | counter | `source` | per batch (bytes on the wire) |
//! | `como_module_packets_total` | counter | `module` | per batch (packets that matched its filter) |
//! | `como_module_records_total` | counter | `module` | per interval (records stored) |
//! | `como_module_cpu_seconds_total` | counter | `module` | estimated time in the module's code: sampled `update`s (one packet in 256 per worker, scaled) plus every interval's export (`como_runtime::ModuleCpu`) |
//! | `como_module_stored_bytes` | gauge | `module` | read from the database at each scrape |
//! | `como_uptime_seconds` | gauge | | at each scrape |
//! | `como_capture_packets_total` | counter | `device`, `queue` | live capture: frames the queue's worker received (from a [`CaptureProbe`] at each scrape) |
//! | `como_capture_bytes_total` | counter | `device`, `queue` | their bytes |
//! | `como_capture_drops_total` | counter | `device`, `queue`, `reason` | live capture: packets lost, one reason per XDP program counter (`queue="all"`: the program's counters are per CPU, not per queue) and per AF_XDP socket statistic (see [`DropReason`]) |
//! | `como_xdp_packets_total` | counter | `device`, `action` | the XDP program's verdicts: `seen`, `matched`, `redirected`, `passed` |
//! | `como_worker_busy_ratio` | gauge | `worker` | fraction of the time a live worker spent on polls that returned packets |
//! | `como_queries_running` | gauge | | queries running now (module queries, `/trace`, chained; streaming ones while they stream), at each scrape |
//! | `como_query_rejected_total` | counter | | queries refused with 503 because `[query] max_queries` were running |
//!
//! The `module` series follow the module set served now: a reload drops the series of the
//! modules it removes (as Prometheus drops a target's vanished series, rather than showing a
//! last value forever) and the series of the modules that stay go on (the same counters).
//!
//! Counters are never updated per packet: the packet path adds batch totals, and the live
//! capture's counters are atomics of the workers read by a [`CaptureProbe`] at scrape time.

use std::sync::{Mutex, PoisonError};

use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::NodeState;

/// Why a live capture lost packets (the `reason` label of `como_capture_drops_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// XDP program: a matched packet's redirect to the queue's socket failed (no socket, or
    /// the socket's ring was full in the kernel's redirect path).
    RedirectFailed,
    /// XDP program: a field the rules use lay past the packet end (the packet went to every
    /// module to be re-checked; counted here as the program could not classify it).
    ParseError,
    /// XDP program: no module wanted the packet and `unmatched = "drop"`.
    Unmatched,
    /// AF_XDP socket: dropped by the kernel (no free frame in copy mode, or other causes).
    RxDropped,
    /// AF_XDP socket: the RX ring was full (the worker did not keep up).
    RxRingFull,
    /// AF_XDP socket: the kernel found the fill ring empty (in copy mode each such loss is
    /// also counted as [`DropReason::RxDropped`]: do not add the two).
    FillRingEmpty,
    /// AF_XDP socket: invalid descriptors.
    InvalidDescs,
}

impl DropReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::RedirectFailed => "redirect_failed",
            Self::ParseError => "parse_error",
            Self::Unmatched => "unmatched_dropped",
            Self::RxDropped => "rx_dropped",
            Self::RxRingFull => "rx_ring_full",
            Self::FillRingEmpty => "fill_ring_empty",
            Self::InvalidDescs => "invalid_descs",
        }
    }
}

/// One capture queue's cumulative counters, as a [`CaptureProbe`] reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSample {
    /// Device name.
    pub device: String,
    /// Queue label (`"0"`, `"1"` ..., or `"all"` for the device-wide XDP counters).
    pub queue: String,
    /// Frames received by the worker.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Cumulative drops by reason.
    pub drops: Vec<(DropReason, u64)>,
}

/// The XDP program's verdict counters of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdpSample {
    /// Device name.
    pub device: String,
    /// Packets the program saw.
    pub seen: u64,
    /// Packets some rule matched.
    pub matched: u64,
    /// Packets redirected to a socket.
    pub redirected: u64,
    /// Packets passed to the kernel stack.
    pub passed: u64,
}

/// Everything a probe reports at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaptureSample {
    /// Per queue (and per device with `queue = "all"`).
    pub queues: Vec<QueueSample>,
    /// Per device.
    pub xdp: Vec<XdpSample>,
    /// Busy ratio per worker (label, ratio 0..1).
    pub workers: Vec<(String, f64)>,
    /// Cumulative packets per module (index in the module list), counted by the live workers.
    pub module_packets: Vec<u64>,
}

/// The live capture's counters, read at scrape time (the workers keep atomics; nothing is
/// pushed to the registry from the packet path).
pub trait CaptureProbe: Send + Sync {
    /// The cumulative counters now.
    fn sample(&self) -> CaptureSample;
}

/// Adds to a counter of a vector the growth of a cumulative value since the last scrape.
#[derive(Default)]
struct Deltas {
    seen: std::collections::HashMap<Vec<String>, u64>,
}

impl Deltas {
    /// `metric` names the counter vector (the key of the last values is metric + labels).
    fn add(&mut self, metric: &str, vec: &IntCounterVec, labels: &[&str], now: u64) {
        let mut key: Vec<String> = Vec::with_capacity(labels.len() + 1);
        key.push(metric.to_owned());
        key.extend(labels.iter().map(|s| (*s).to_owned()));
        let old = self.seen.entry(key).or_insert(0);
        // The series exists from the first scrape on, also at 0 (a drop reason that never
        // happened shows as 0, not as missing).
        let c = vec.with_label_values(labels);
        if now > *old {
            c.inc_by(now - *old);
        }
        // A source whose count restarted (a new probe) is followed from its new value.
        *old = now;
    }
}

/// The per-module series of the module set served now (index = module index in the set).
struct PerModule {
    names: Vec<String>,
    packets: Vec<IntCounter>,
    records: Vec<IntCounter>,
    cpu: Vec<Counter>,
    /// Nanoseconds of the runtime's CPU accounting already added to `cpu`.
    cpu_seen: Vec<u64>,
    /// Module packets of the capture probe already added to `packets`.
    probe_seen: Vec<u64>,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    source_packets: Vec<IntCounter>,
    source_bytes: Vec<IntCounter>,
    module_packets: IntCounterVec,
    module_records: IntCounterVec,
    module_cpu: CounterVec,
    modules: Mutex<PerModule>,
    stored_bytes: IntGaugeVec,
    uptime: Gauge,
    capture_packets: IntCounterVec,
    capture_bytes: IntCounterVec,
    capture_drops: IntCounterVec,
    xdp_packets: IntCounterVec,
    busy: GaugeVec,
    probe: Mutex<Option<std::sync::Arc<dyn CaptureProbe>>>,
    deltas: Mutex<Deltas>,
    queries_running: IntGauge,
    query_rejected: IntCounter,
}

impl PerModule {
    /// The series of `names` (existing series go on).
    fn of(
        names: &[String],
        packets: &IntCounterVec,
        records: &IntCounterVec,
        cpu: &CounterVec,
    ) -> Self {
        Self {
            names: names.to_vec(),
            packets: names
                .iter()
                .map(|n| packets.with_label_values(&[n.as_str()]))
                .collect(),
            records: names
                .iter()
                .map(|n| records.with_label_values(&[n.as_str()]))
                .collect(),
            cpu: names
                .iter()
                .map(|n| cpu.with_label_values(&[n.as_str()]))
                .collect(),
            cpu_seen: vec![0; names.len()],
            probe_seen: vec![0; names.len()],
        }
    }

    fn add_packets(&self, i: usize, packets: u64) {
        if let Some(c) = self.packets.get(i) {
            c.inc_by(packets);
        }
    }
}

fn new_counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntCounterVec, prometheus::Error> {
    let vec = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[String],
) -> Result<Vec<IntCounter>, prometheus::Error> {
    let vec = new_counter_vec(registry, name, help, label)?;
    Ok(values
        .iter()
        .map(|v| vec.with_label_values(&[v.as_str()]))
        .collect())
}

impl Metrics {
    /// Metrics for these sources and modules (by name, in order).
    pub fn new(sources: &[String], modules: &[String]) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let source_packets = counters(
            &registry,
            "como_source_packets_total",
            "Packets read from the source",
            "source",
            sources,
        )?;
        let source_bytes = counters(
            &registry,
            "como_source_bytes_total",
            "Bytes on the wire read from the source",
            "source",
            sources,
        )?;
        let module_packets = new_counter_vec(
            &registry,
            "como_module_packets_total",
            "Packets that matched the module's filter",
            "module",
        )?;
        let module_records = new_counter_vec(
            &registry,
            "como_module_records_total",
            "Records the module stored",
            "module",
        )?;
        let stored_bytes = IntGaugeVec::new(
            Opts::new(
                "como_module_stored_bytes",
                "Bytes of the module's database segments",
            ),
            &["module"],
        )?;
        registry.register(Box::new(stored_bytes.clone()))?;
        let uptime = Gauge::new("como_uptime_seconds", "Seconds since the node started")?;
        registry.register(Box::new(uptime.clone()))?;
        let cpu = CounterVec::new(
            Opts::new(
                "como_module_cpu_seconds_total",
                "Estimated seconds spent in the module's code (sampled updates + export)",
            ),
            &["module"],
        )?;
        registry.register(Box::new(cpu.clone()))?;
        let per_module = PerModule::of(modules, &module_packets, &module_records, &cpu);
        let capture_packets = IntCounterVec::new(
            Opts::new(
                "como_capture_packets_total",
                "Frames a live capture queue's worker received",
            ),
            &["device", "queue"],
        )?;
        registry.register(Box::new(capture_packets.clone()))?;
        let capture_bytes = IntCounterVec::new(
            Opts::new(
                "como_capture_bytes_total",
                "Bytes of the frames a live capture queue's worker received",
            ),
            &["device", "queue"],
        )?;
        registry.register(Box::new(capture_bytes.clone()))?;
        let capture_drops = IntCounterVec::new(
            Opts::new(
                "como_capture_drops_total",
                "Packets a live capture lost, by reason (XDP program and AF_XDP socket counters)",
            ),
            &["device", "queue", "reason"],
        )?;
        registry.register(Box::new(capture_drops.clone()))?;
        let xdp_packets = IntCounterVec::new(
            Opts::new(
                "como_xdp_packets_total",
                "The XDP program's verdicts (seen, matched, redirected, passed)",
            ),
            &["device", "action"],
        )?;
        registry.register(Box::new(xdp_packets.clone()))?;
        let busy = GaugeVec::new(
            Opts::new(
                "como_worker_busy_ratio",
                "Fraction of the time a live worker spent on polls that returned packets",
            ),
            &["worker"],
        )?;
        registry.register(Box::new(busy.clone()))?;
        let queries_running = IntGauge::new(
            "como_queries_running",
            "Queries running now (streaming ones while they stream)",
        )?;
        registry.register(Box::new(queries_running.clone()))?;
        let query_rejected = IntCounter::new(
            "como_query_rejected_total",
            "Queries refused (503) because [query] max_queries were running",
        )?;
        registry.register(Box::new(query_rejected.clone()))?;
        Ok(Self {
            queries_running,
            query_rejected,
            capture_packets,
            capture_bytes,
            capture_drops,
            xdp_packets,
            busy,
            probe: Mutex::new(None),
            deltas: Mutex::new(Deltas::default()),
            registry,
            source_packets,
            source_bytes,
            module_packets,
            module_records,
            module_cpu: cpu,
            modules: Mutex::new(per_module),
            stored_bytes,
            uptime,
        })
    }

    fn per_module(&self) -> std::sync::MutexGuard<'_, PerModule> {
        self.modules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows module set `names` from now on (a reload; module indices are the new set's):
    /// the series of a module that stays go on, those of a module that left are dropped, a
    /// new module's start at 0. The capture probe is dropped (its module counters are
    /// indexed as the old set): give the new runtime's with [`Metrics::set_capture_probe`].
    ///
    /// `also` runs while the module series are locked (no scrape in between).
    pub(crate) fn set_modules(&self, names: &[String], also: impl FnOnce()) {
        // Lock order: the module series, then the probe (as a scrape takes them).
        let mut m = self.per_module();
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner) = None;
        also();
        for gone in m.names.iter().filter(|n| !names.contains(n)) {
            let l = [gone.as_str()];
            let _ = self.module_packets.remove_label_values(&l);
            let _ = self.module_records.remove_label_values(&l);
            let _ = self.module_cpu.remove_label_values(&l);
            let _ = self.stored_bytes.remove_label_values(&l);
        }
        *m = PerModule::of(
            names,
            &self.module_packets,
            &self.module_records,
            &self.module_cpu,
        );
    }

    /// Adds a batch of packets and bytes read from source `i`.
    pub fn add_source(&self, i: usize, packets: u64, bytes: u64) {
        if let (Some(p), Some(b)) = (self.source_packets.get(i), self.source_bytes.get(i)) {
            p.inc_by(packets);
            b.inc_by(bytes);
        }
    }

    /// Adds packets matched by module `i`.
    pub fn add_module_packets(&self, i: usize, packets: u64) {
        self.per_module().add_packets(i, packets);
    }

    /// Adds records stored by module `i`.
    pub fn add_module_records(&self, i: usize, records: u64) {
        if let Some(c) = self.per_module().records.get(i) {
            c.inc_by(records);
        }
    }

    /// Counts a query refused because `[query] max_queries` were running.
    pub fn add_query_rejected(&self) {
        self.query_rejected.inc();
    }

    /// Reads the live capture's counters from `probe` at every scrape (replaces a previous
    /// probe; the counters go on from the new probe's values).
    pub fn set_capture_probe(&self, probe: std::sync::Arc<dyn CaptureProbe>) {
        let mut m = self.per_module();
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner) = Some(probe);
        // A new probe's module counters start from zero.
        for v in &mut m.probe_seen {
            *v = 0;
        }
    }

    /// Adds what the capture probe counted since the last scrape.
    fn scrape_capture(&self) {
        // Held from the probe's sample to its module counters: a module set replaced in
        // between would take them under other indices.
        let mut m = self.per_module();
        let probe = self
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(probe) = probe else {
            return;
        };
        let s = probe.sample();
        let mut d = self.deltas.lock().unwrap_or_else(PoisonError::into_inner);
        for q in &s.queues {
            let (dev, queue) = (q.device.as_str(), q.queue.as_str());
            if queue != "all" {
                d.add("packets", &self.capture_packets, &[dev, queue], q.packets);
                d.add("bytes", &self.capture_bytes, &[dev, queue], q.bytes);
            }
            for &(reason, n) in &q.drops {
                d.add(
                    "drops",
                    &self.capture_drops,
                    &[dev, queue, reason.label()],
                    n,
                );
            }
        }
        for x in &s.xdp {
            for (action, n) in [
                ("seen", x.seen),
                ("matched", x.matched),
                ("redirected", x.redirected),
                ("passed", x.passed),
            ] {
                d.add("xdp", &self.xdp_packets, &[x.device.as_str(), action], n);
            }
        }
        drop(d);
        for (w, r) in &s.workers {
            self.busy.with_label_values(&[w.as_str()]).set(*r);
        }
        let PerModule {
            packets,
            probe_seen,
            ..
        } = &mut *m;
        for ((&now, old), c) in s.module_packets.iter().zip(probe_seen).zip(&*packets) {
            if now > *old {
                c.inc_by(now - *old);
            }
            *old = now;
        }
    }

    /// The text exposition (refreshing the gauges from `node`).
    pub fn render(&self, node: &NodeState) -> Result<String, prometheus::Error> {
        self.scrape_capture();
        // The module series, the module set and the CPU accounting are read under the series'
        // lock: a reload replaces them together ([`NodeState::replace_modules`]).
        let mut m = self.per_module();
        for sm in &node.modules().modules {
            self.stored_bytes
                .with_label_values(&[sm.config.name.as_str()])
                .set(i64::try_from(sm.read.stored_bytes()).unwrap_or(i64::MAX));
        }
        if let Some(cpu) = node.module_cpu() {
            let PerModule {
                cpu: c, cpu_seen, ..
            } = &mut *m;
            for (i, (c, old)) in c.iter().zip(cpu_seen).enumerate() {
                let now = cpu.nanos(i);
                c.inc_by(now.saturating_sub(*old) as f64 / 1e9);
                *old = now;
            }
        }
        drop(m);
        self.uptime.set(node.started.elapsed().as_secs_f64());
        self.queries_running
            .set(i64::try_from(node.queries_running()).unwrap_or(i64::MAX));
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Fake(Mutex<CaptureSample>);

    impl CaptureProbe for Fake {
        fn sample(&self) -> CaptureSample {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    fn text(m: &Metrics) -> String {
        m.scrape_capture();
        TextEncoder::new()
            .encode_to_string(&m.registry.gather())
            .expect("encode")
    }

    fn sample(packets: u64, ring_full: u64) -> CaptureSample {
        CaptureSample {
            queues: vec![
                QueueSample {
                    device: "veth0".into(),
                    queue: "0".into(),
                    packets,
                    bytes: packets * 60,
                    drops: vec![
                        (DropReason::RxRingFull, ring_full),
                        (DropReason::RxDropped, 0),
                    ],
                },
                QueueSample {
                    device: "veth0".into(),
                    queue: "all".into(),
                    packets: 0,
                    bytes: 0,
                    drops: vec![(DropReason::RedirectFailed, 2)],
                },
            ],
            xdp: vec![XdpSample {
                device: "veth0".into(),
                seen: packets + ring_full + 2,
                matched: packets + ring_full + 2,
                redirected: packets + ring_full,
                passed: 0,
            }],
            workers: vec![("0".into(), 0.25)],
            module_packets: vec![packets, 1],
        }
    }

    #[test]
    fn capture_probe_is_read_at_scrape_time_with_node_exporter_names() {
        let m = Metrics::new(&[], &["a".into(), "b".into()]).expect("metrics");
        let probe = Arc::new(Fake(Mutex::new(sample(10, 3))));
        m.set_capture_probe(Arc::clone(&probe) as Arc<dyn CaptureProbe>);
        let t = text(&m);
        for line in [
            "como_capture_packets_total{device=\"veth0\",queue=\"0\"} 10",
            "como_capture_bytes_total{device=\"veth0\",queue=\"0\"} 600",
            "como_capture_drops_total{device=\"veth0\",queue=\"0\",reason=\"rx_ring_full\"} 3",
            "como_capture_drops_total{device=\"veth0\",queue=\"0\",reason=\"rx_dropped\"} 0",
            "como_capture_drops_total{device=\"veth0\",queue=\"all\",reason=\"redirect_failed\"} 2",
            "como_xdp_packets_total{action=\"seen\",device=\"veth0\"} 15",
            "como_worker_busy_ratio{worker=\"0\"} 0.25",
            "como_module_packets_total{module=\"a\"} 10",
            "como_module_packets_total{module=\"b\"} 1",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
        // The counters grow with the probe's values, not by re-adding them.
        *probe.0.lock().expect("lock") = sample(25, 3);
        let t = text(&m);
        assert!(
            t.contains("como_capture_packets_total{device=\"veth0\",queue=\"0\"} 25"),
            "{t}"
        );
        assert!(
            t.contains("como_module_packets_total{module=\"a\"} 25"),
            "{t}"
        );
        let t = text(&m);
        assert!(
            t.contains("como_module_packets_total{module=\"a\"} 25"),
            "{t}"
        );
    }
}
