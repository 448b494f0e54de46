//! Prometheus metrics of the node, rendered by `/metrics` in the text format.
//!
//! | metric | type | labels | updated |
//! |--------|------|--------|---------|
//! | `como_source_packets_total` | counter | `source` | per batch of packets read |
//! | `como_source_bytes_total` | counter | `source` | per batch (bytes on the wire) |
//! | `como_module_packets_total` | counter | `module` | per batch (packets that matched its filter) |
//! | `como_module_records_total` | counter | `module` | per interval (records stored) |
//! | `como_module_cpu_seconds_total` | counter | `module` | estimated time in the module's code: sampled `update`s (one packet in 64 per worker, scaled) plus every interval's export (`como_runtime::ModuleCpu`) |
//! | `como_module_stored_bytes` | gauge | `module` | read from the database at each scrape |
//! | `como_uptime_seconds` | gauge | | at each scrape |
//!
//! Counters are never updated per packet: the packet path adds batch totals.

use std::sync::{Mutex, PoisonError};

use prometheus::{
    Counter, CounterVec, Gauge, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::NodeState;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    source_packets: Vec<IntCounter>,
    source_bytes: Vec<IntCounter>,
    module_packets: Vec<IntCounter>,
    module_records: Vec<IntCounter>,
    stored_bytes: IntGaugeVec,
    uptime: Gauge,
    module_cpu: Vec<Counter>,
    /// Nanoseconds of CPU already added to `module_cpu`.
    cpu_seen: Mutex<Vec<u64>>,
}

fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[String],
) -> Result<Vec<IntCounter>, prometheus::Error> {
    let vec = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(vec.clone()))?;
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
        let module_packets = counters(
            &registry,
            "como_module_packets_total",
            "Packets that matched the module's filter",
            "module",
            modules,
        )?;
        let module_records = counters(
            &registry,
            "como_module_records_total",
            "Records the module stored",
            "module",
            modules,
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
        let module_cpu = modules
            .iter()
            .map(|m| cpu.with_label_values(&[m.as_str()]))
            .collect();
        Ok(Self {
            registry,
            source_packets,
            source_bytes,
            module_packets,
            module_records,
            stored_bytes,
            uptime,
            module_cpu,
            cpu_seen: Mutex::new(vec![0; modules.len()]),
        })
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
        if let Some(c) = self.module_packets.get(i) {
            c.inc_by(packets);
        }
    }

    /// Adds records stored by module `i`.
    pub fn add_module_records(&self, i: usize, records: u64) {
        if let Some(c) = self.module_records.get(i) {
            c.inc_by(records);
        }
    }

    /// The text exposition (refreshing the gauges from `node`).
    pub fn render(&self, node: &NodeState) -> Result<String, prometheus::Error> {
        for m in &node.modules {
            self.stored_bytes
                .with_label_values(&[m.config.name.as_str()])
                .set(i64::try_from(m.read.stored_bytes()).unwrap_or(i64::MAX));
        }
        self.uptime.set(node.started.elapsed().as_secs_f64());
        if let Some(cpu) = node.module_cpu() {
            let mut seen = self.cpu_seen.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, (c, old)) in self.module_cpu.iter().zip(seen.iter_mut()).enumerate() {
                let now = cpu.nanos(i);
                c.inc_by(now.saturating_sub(*old) as f64 / 1e9);
                *old = now;
            }
        }
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
