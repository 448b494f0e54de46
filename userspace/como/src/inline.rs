//! `como inline`: runs one module over a trace file and prints its records (CoMo's inline mode).
//!
//! `como inline -r FILE [--format F] [--workers N] MODULE[:k=v,...] [EXPR...]`
//!
//! - `MODULE` is a module kind (`traffic`, `topaddr` ...); the `k=v` pairs are its args, except
//!   `interval` (default 1s), a duration such as `500ms`, `1s`, `5m`, `72h` or a bare number of
//!   seconds. Values are read as TOML scalars (`5`, `1.5`, `true`, `"text"`); anything else is
//!   taken as a string. Arrays and tables (e.g. `application`'s class table) need a config file,
//!   the commas of `k=v,k=v` leaving no room for them.
//! - `EXPR` is the module's filter in tcpdump's syntax.
//! - Records go to stdout in the format (default `pretty`); nothing is stored.
//! - When stderr is a terminal, a progress bar there shows the bytes of the file consumed
//!   (updated every few ten thousand packets; cleared at the end).
//!
//! Exit status: 2 for a bad module spec, format or filter (before reading any packet); 1 for a
//! file that cannot be opened or is damaged (after printing the records of the packets before
//! the damage); 0 otherwise. A filter that compiles for the file's first link type but not for
//! one met later (pcapng) gives a warning on stderr: the module gets none of those packets.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use como_module::{parse_duration, Format};
use como_runtime::{
    check_filters, ModuleSpec, Options, PrintSink, RuntimeError, Source, TraceSource,
};

use crate::Failure;

/// Arguments of `como inline`.
#[derive(Debug, clap::Args)]
pub(crate) struct InlineArgs {
    /// Trace file to read: pcap, pcapng or ERF, detected by content.
    #[arg(short = 'r', value_name = "FILE")]
    file: PathBuf,
    /// Output format: json, csv, pretty, plain, gnuplot (pcap for `trace`).
    #[arg(long, default_value = "pretty")]
    format: String,
    /// Worker threads (default: cores - 1, at least 1). Results do not depend on it.
    #[arg(long)]
    workers: Option<usize>,
    /// The module and its args: KIND[:k=v,...], e.g. `topaddr:topn=5,interval=10s`. Kinds:
    /// traffic, protocol, application, topaddr, topports, tuple, ethtypes, flowcount, trace, ewma.
    #[arg(value_name = "MODULE")]
    module: String,
    /// Filter expression in tcpdump's pcap-filter syntax; the words are joined by spaces.
    #[arg(
        value_name = "EXPR",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    expr: Vec<String>,
}

/// A parsed `KIND[:k=v,...]`.
#[derive(Debug, PartialEq)]
pub(crate) struct ModuleArg {
    pub kind: String,
    pub interval: Duration,
    pub args: toml::Table,
}

/// Parses `KIND[:k=v,...]`.
pub(crate) fn parse_module_arg(s: &str) -> anyhow::Result<ModuleArg> {
    let (kind, rest) = match s.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (s, None),
    };
    if kind.is_empty() {
        return Err(anyhow!(
            "empty module kind in `{s}` (expected KIND[:k=v,...])"
        ));
    }
    let mut interval = Duration::from_secs(1);
    let mut args = toml::Table::new();
    let mut seen_interval = false;
    for pair in rest.into_iter().flat_map(|r| r.split(',')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("module argument `{pair}` is not k=v"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(anyhow!("module argument `{pair}` has no name"));
        }
        if args.contains_key(k) || (k == "interval" && seen_interval) {
            return Err(anyhow!("module argument `{k}` given twice"));
        }
        if k == "interval" {
            seen_interval = true;
            interval = parse_duration(v)?;
            if interval.is_zero() {
                return Err(anyhow!("interval must be positive"));
            }
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_owned()));
        args.insert(k.to_owned(), value);
    }
    Ok(ModuleArg {
        kind: kind.to_owned(),
        interval,
        args,
    })
}

/// Stdout that turns a closed pipe (`como inline ... | head`) into a quiet end of output.
struct QuietPipe<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> Write for QuietPipe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// A progress bar of bytes consumed on stderr when stderr is a terminal and the source knows
/// its size; a hidden one (every call a no-op) otherwise.
pub(crate) fn progress_bar(progress: Option<(u64, u64)>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    match progress {
        Some((_, total)) if total > 0 && io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        _ => indicatif::ProgressBar::hidden(),
    }
}

/// Runs `como inline`.
pub(crate) fn run(args: &InlineArgs) -> Result<(), Failure> {
    let usage = |e: anyhow::Error| Failure::Filter(e);
    let spec = parse_module_arg(&args.module).map_err(usage)?;
    let format: Format = args.format.parse().map_err(|e| usage(anyhow!("{e}")))?;
    let module = como_modules::build(&spec.kind, Some(&toml::Value::Table(spec.args)))
        .map_err(|e| usage(e.into()))?;
    if !module.formats().contains(&format) {
        return Err(usage(anyhow!(
            "module `{}` does not print format `{}`",
            spec.kind,
            format.name()
        )));
    }
    if args.workers == Some(0) {
        return Err(usage(anyhow!("--workers must be at least 1")));
    }
    let specs = vec![ModuleSpec {
        name: spec.kind.clone(),
        module,
        filter: args.expr.join(" "),
        interval: spec.interval,
    }];
    let mut source = TraceSource::open(&args.file).map_err(|e| Failure::File(e.into()))?;
    check_filters(&specs, source.link_type()).map_err(|e| Failure::Filter(e.into()))?;

    let out: Box<dyn Write + Send> = Box::new(QuietPipe {
        inner: BufWriter::with_capacity(1 << 16, io::stdout()),
        closed: false,
    });
    let printer = specs[0]
        .module
        .printer(format, out)
        .map_err(|e| usage(e.into()))?;
    let opts = Options {
        workers: args.workers.unwrap_or_else(como_runtime::default_workers),
        ..Options::default()
    };
    let bar = progress_bar(source.progress());
    let result = como_runtime::run_observed(
        specs,
        &opts,
        &mut source,
        PrintSink::new(vec![printer]),
        &mut |s: &dyn Source| {
            if let Some((done, _)) = s.progress() {
                bar.set_position(done);
            }
        },
    );
    bar.finish_and_clear();
    let (report, _) = result.map_err(|e| match e {
        RuntimeError::Filter { .. } => Failure::Filter(e.into()),
        other => Failure::File(other.into()),
    })?;
    for w in &report.warnings {
        eprintln!("como: warning: {w}");
    }
    match report.source_error {
        Some(e) => Err(Failure::File(anyhow!(e))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_args() {
        let m =
            parse_module_arg("topaddr:topn=5,use_dst=true,interval=500ms,mask=24").expect("parse");
        assert_eq!(m.kind, "topaddr");
        assert_eq!(m.interval, Duration::from_millis(500));
        assert_eq!(m.args.get("topn"), Some(&toml::Value::Integer(5)));
        assert_eq!(m.args.get("use_dst"), Some(&toml::Value::Boolean(true)));
        let m = parse_module_arg("traffic").expect("parse");
        assert_eq!((m.interval, m.args.len()), (Duration::from_secs(1), 0));
        let m = parse_module_arg("traffic:interval=2").expect("parse");
        assert_eq!(m.interval, Duration::from_secs(2));
        let m = parse_module_arg("x:name=abc").expect("parse");
        assert_eq!(m.args.get("name"), Some(&toml::Value::String("abc".into())));
        for bad in [
            ":topn=1",
            "topaddr:topn",
            "traffic:interval=5x",
            "traffic:interval=0",
            "t:a=1,a=2",
            "t:=3",
        ] {
            assert!(parse_module_arg(bad).is_err(), "{bad}");
        }
    }
}
