//! Shared by the modules' integration tests: test data paths, module specs, running one module
//! over a real trace, interval binning.

use std::path::PathBuf;
use std::time::Duration;

use como_module::{decode, Module};
use como_runtime::{run, CollectSink, ModuleSpec, Options, TraceSource};

/// A file of the repository's test data (`tests/data/<rel>`).
pub fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(rel)
}

/// A module of `kind` with TOML `args`, a filter and an interval.
pub fn spec(kind: &str, args: &str, filter: &str, interval: Duration) -> ModuleSpec {
    let args: toml::Value = toml::from_str(args).expect("args");
    ModuleSpec {
        name: kind.to_owned(),
        module: como_modules::build(kind, Some(&args)).expect("build"),
        filter: filter.to_owned(),
        interval,
    }
}

/// Runs one module over a trace (2 workers): the source's error, if it ended on one, and the
/// module's decoded records.
pub fn run_module<M: Module>(trace: &str, spec: ModuleSpec) -> (Option<String>, Vec<M::Record>) {
    let mut src = TraceSource::open(data(&format!("traces/{trace}"))).expect("open");
    let opts = Options {
        workers: 2,
        ..Options::default()
    };
    let (report, sink) = run(vec![spec], &opts, &mut src, CollectSink::default()).expect("run");
    let records = sink
        .intervals
        .iter()
        .flat_map(|(_, _, recs)| recs.iter())
        .map(|r| decode::<M>(&r.bytes).expect("decode"))
        .collect();
    (report.source_error, records)
}

/// Start of the interval of length `len` that holds `ts` (epoch-aligned).
pub fn bin(ts: u64, len: Duration) -> u64 {
    let len = len.as_nanos() as u64;
    ts - ts % len
}
