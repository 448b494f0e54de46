//! The `como` command: CoMo-rs's one binary, with tcpdump's habits (`-r FILE`, `-c`, the filter
//! expression as trailing words).
//!
//! Commands: `read`, `inline` (one module over a file), `run` (the daemon), `validate` (a
//! configuration file), `query` (ask a running node over HTTP), `send` (replay a trace's frames
//! out of an interface), `demo` (a live capture on a veth pair in network namespaces).
//!
//! Exit status: 0 on success, 1 when a file cannot be read or is corrupt (after the packets
//! before the damage were processed), a daemon cannot store or listen, or a query fails (HTTP
//! error or unreachable node); 2 for an invalid or unsupported filter, a bad configuration or
//! bad usage.

mod demo;
mod inline;
mod live;
mod query;
mod read;
mod reload;
mod run;
mod send;
mod trace;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the per-interval state churn of the modules (hash maps, batches) is allocation-heavy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an unreadable or corrupt input file.
const EXIT_FILE: u8 = 1;
/// Exit status for an invalid or unsupported filter expression (and usage errors, as clap does).
const EXIT_FILTER: u8 = 2;

/// CoMo-rs: a passive network monitoring appliance.
#[derive(Debug, Parser)]
#[command(name = "como", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a trace file (pcap, pcapng or ERF) and print the packets that match a filter.
    Read(read::ReadArgs),
    /// Run one module over a trace file and print its records (CoMo's inline mode).
    Inline(inline::InlineArgs),
    /// Run the daemon: sources, modules, storage and the HTTP query server (`-c FILE`).
    Run(run::RunArgs),
    /// Check a configuration file; prints `ok` or `FILE:LINE:COL: message` (exit 2).
    Validate(validate::ValidateArgs),
    /// Ask a running node for a module's records over HTTP.
    Query(query::QueryArgs),
    /// Ask a running live node to reload its configuration (as SIGHUP); prints what it did.
    Reload(reload::ReloadArgs),
    /// Write the stored trace window's packets that match a filter to a pcap/pcapng file.
    Trace(trace::TraceArgs),
    /// Send the frames of a trace file out of an interface (AF_PACKET), paced or at top speed.
    Send(send::SendArgs),
    /// Live capture demo (root): veth pair in network namespaces, XDP, replayed traffic, queries.
    Demo(demo::DemoArgs),
}

/// A failure, with the exit status it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The filter expression does not compile.
    Filter(anyhow::Error),
    /// The input could not be read (or the output written).
    File(anyhow::Error),
    /// Already reported on stderr (in a format of its own): only the exit status.
    Reported(u8),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs its life (start, sources consumed, signals) by default; the one-shot
    // commands only warnings. The filter compiler's code generator (cranelift) logs every
    // function it defines at `info`: only its warnings. `COMO_LOG` overrides all of it.
    let default_level = match cli.command {
        Command::Run(_) | Command::Demo(_) => "info,cranelift_jit=warn,cranelift_codegen=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COMO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Read(args) => read::run(&args),
        Command::Inline(args) => inline::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Reload(args) => reload::run(&args),
        Command::Trace(args) => trace::run(&args),
        Command::Send(args) => send::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Filter(e)) => {
            eprintln!("como: {e:#}");
            ExitCode::from(EXIT_FILTER)
        }
        Err(Failure::File(e)) => {
            eprintln!("como: {e:#}");
            ExitCode::from(EXIT_FILE)
        }
        Err(Failure::Reported(code)) => ExitCode::from(code),
    }
}
