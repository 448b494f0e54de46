//! `como trace [-c CONFIG | --dir DIR] [--time A:B] [--format pcap|pcapng] -w OUT EXPR...`:
//! the packets of the stored trace window (`[trace]` of the configuration, or the folder given)
//! that match a filter, written as a pcap (default) or pcapng file (`-w -`: stdout).
//!
//! The window's index prunes segments by time and groups by address, port and protocol before
//! the exact filter runs (see `como-window`); `-v` prints how much was read. Exit status: 0 on
//! success, 1 when the window or the output cannot be read or written, 2 for a bad filter,
//! time, configuration or usage.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};

use crate::Failure;

/// Arguments of `como trace`.
#[derive(Debug, clap::Args)]
pub(crate) struct TraceArgs {
    /// Configuration file whose `[trace]` section locates the window.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "dir"
    )]
    config: Option<PathBuf>,
    /// The window's folder (instead of a configuration).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Time range A:B (each side 0, -1h30m, +50s, @unix or @yyyymmddhhmmss); default: all.
    #[arg(long, allow_hyphen_values = true)]
    time: Option<String>,
    /// Output format.
    #[arg(long, default_value = "pcap", value_parser = ["pcap", "pcapng"])]
    format: String,
    /// Output file (`-`: standard output).
    #[arg(short = 'w', value_name = "OUT")]
    out: PathBuf,
    /// Print what the query read (segments, index groups, bytes) on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Filter expression (tcpdump's pcap-filter syntax); default: every packet.
    #[arg(
        value_name = "EXPR",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    expr: Vec<String>,
}

/// The window settings of a `[trace]` section (for the daemon that writes the window).
pub(crate) fn window_config(t: &como_config::TraceConfig) -> como_window::WindowConfig {
    let mut c = como_window::WindowConfig::new(&t.path);
    c.snaplen = t.snaplen;
    c.segment_bytes = t.segment_bytes;
    c.segment_ns = u64::try_from(t.segment_secs.as_nanos()).ok();
    c.filter.clone_from(&t.filter);
    c.limits = como_window::Limits {
        window_ns: t.window.and_then(|w| u64::try_from(w.as_nanos()).ok()),
        max_bytes: t.max_bytes,
        min_free_percent: t.min_free_percent,
    };
    if t.snaplen == 0 || t.snaplen as usize + 64 > c.buffer_bytes {
        // One whole packet must fit in a staging buffer.
        c.buffer_bytes = (262_144 + 4096usize).next_multiple_of(4096);
    }
    c
}

/// Runs `como trace`.
pub(crate) fn run(args: &TraceArgs) -> Result<(), Failure> {
    let dir = match (&args.dir, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => {
            let cfg = como_config::Config::load(c).map_err(|e| {
                eprintln!("{e}");
                Failure::Reported(2)
            })?;
            cfg.trace
                .ok_or_else(|| {
                    Failure::Filter(anyhow!(
                        "{}: no [trace] section (or enabled = false)",
                        c.display()
                    ))
                })?
                .path
        }
        (None, None) => {
            return Err(Failure::Filter(anyhow!(
                "give the window: -c CONFIG or --dir DIR"
            )))
        }
    };
    if !dir.is_dir() {
        return Err(Failure::File(anyhow!(
            "{}: no trace window there",
            dir.display()
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let (start_ns, end_ns) = match &args.time {
        None => (0, u64::MAX),
        Some(t) => {
            let (a, b) = t
                .split_once(':')
                .ok_or_else(|| Failure::Filter(anyhow!("bad time `{t}` (expected A:B)")))?;
            let p = |s: &str| {
                como_server::params::parse_time_point(s, now)
                    .map_err(|e| Failure::Filter(anyhow!("{e}")))
            };
            let (a, b) = (p(a)?, p(b)?);
            if b < a {
                return Err(Failure::Filter(anyhow!(
                    "the end of the time range is before its start"
                )));
            }
            (a, b)
        }
    };
    let format: como_window::OutFormat = args
        .format
        .parse()
        .map_err(|e: String| Failure::Filter(anyhow!(e)))?;
    let q = como_window::Query {
        filter: args.expr.join(" "),
        start_ns,
        end_ns,
    };
    let result = if args.out.as_os_str() == "-" {
        let out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
        como_window::write_query(&dir, &q, format, out)
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("{}", args.out.display()))
            .map_err(Failure::File)?;
        como_window::write_query(&dir, &q, format, io::BufWriter::with_capacity(1 << 16, f))
    };
    let (st, skipped) = match result {
        Ok(r) => r,
        Err(como_window::QueryError::Filter(e)) => {
            return Err(Failure::Filter(anyhow!("bad filter: {e}")))
        }
        Err(como_window::QueryError::Sink(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(())
        }
        Err(e) => return Err(Failure::File(e.into())),
    };
    if skipped > 0 {
        eprintln!(
            "como trace: {skipped} packets of other link types left out (pcap holds one; use --format pcapng)"
        );
    }
    if args.verbose {
        let mut err = io::stderr().lock();
        let _ = writeln!(
            err,
            "{} packets; read {} of {} segments, {} of {} index groups, {} bytes; examined {} packets",
            st.packets,
            st.segments_read,
            st.segments,
            st.groups_read,
            st.groups,
            st.bytes_read,
            st.packets_seen
        );
    }
    Ok(())
}
