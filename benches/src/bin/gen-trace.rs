//! `gen-trace`: writes the deterministic synthetic trace of `como_benches::synth` to a file.
//!
//! ```text
//! gen-trace -o /tmp/synth.pcap                      # 4M packets, 200k flows, pcap (µs)
//! gen-trace -o /tmp/synth.pcapng --format pcapng
//! gen-trace -o /tmp/synth.erf --format erf -n 1000000
//! ```
//! The same options give the same bytes on every run; the pcap, pcapng and ERF outputs of the
//! same options hold the same packets. A summary of the mix goes to stderr.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use como_benches::erf::{ErfError, ErfWriter};
use como_benches::synth::{FlowClass, Generator, SynthConfig};
use como_packet::LinkType;
use como_tracefile::{PcapNgWriter, PcapWriter};

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// libpcap savefile (microseconds, or nanoseconds with --nanos).
    Pcap,
    /// pcapng, one section, one Ethernet interface.
    Pcapng,
    /// Endace ERF, type-2 (Ethernet) records; wlen counts the 4-byte FCS.
    Erf,
}

/// Generates a large deterministic synthetic trace (Zipf flows, realistic protocol mix).
#[derive(Debug, Parser)]
#[command(name = "gen-trace", version)]
struct Args {
    /// Output file ("-" for stdout).
    #[arg(short, long)]
    output: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Pcap)]
    format: Format,
    /// Number of packets.
    #[arg(short = 'n', long, default_value_t = 4_000_000)]
    packets: u64,
    /// Number of flows.
    #[arg(long, default_value_t = 200_000)]
    flows: u32,
    /// Zipf exponent of flow popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Snapshot length: captured bytes are min(snaplen, wire length).
    #[arg(short, long, default_value_t = 96)]
    snaplen: u32,
    /// Seed of the pseudo-random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of flows that are VLAN-tagged (0 to 1).
    #[arg(long, default_value_t = 0.10)]
    vlan_share: f64,
    /// Nanosecond timestamps (pcap: magic a1b23c4d; pcapng: if_tsresol 9).
    #[arg(long)]
    nanos: bool,
    /// Do not print the summary on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
enum GenError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Erf {
        path: String,
        #[source]
        source: ErfError,
    },
    #[error("invalid option: {0}")]
    Usage(String),
}

/// One of the three writers.
enum Sink<W: Write> {
    Pcap(PcapWriter<W>),
    PcapNg(PcapNgWriter<W>),
    Erf(ErfWriter<W>),
}

fn run(args: &Args) -> Result<(), GenError> {
    if !(0.0..=1.0).contains(&args.vlan_share) {
        return Err(GenError::Usage(format!(
            "--vlan-share {} is not between 0 and 1",
            args.vlan_share
        )));
    }
    if args.flows == 0 || !args.zipf.is_finite() || args.zipf < 0.0 {
        return Err(GenError::Usage(
            "--flows must be positive and --zipf a non-negative number".into(),
        ));
    }
    let path = args.output.display().to_string();
    let io_err = |source: io::Error| GenError::Io {
        path: path.clone(),
        source,
    };
    let out: Box<dyn Write> = if path == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(&args.output).map_err(io_err)?)
    };
    let out = BufWriter::with_capacity(1 << 20, out);
    let mut sink = match args.format {
        Format::Pcap => Sink::Pcap(
            PcapWriter::new(out, LinkType::Ethernet, args.snaplen, args.nanos).map_err(io_err)?,
        ),
        Format::Pcapng => Sink::PcapNg(
            PcapNgWriter::new(out, LinkType::Ethernet, args.snaplen, args.nanos).map_err(io_err)?,
        ),
        Format::Erf => Sink::Erf(ErfWriter::new(out)),
    };
    let mut gen = Generator::new(SynthConfig {
        packets: args.packets,
        flows: args.flows,
        zipf_s: args.zipf,
        snaplen: args.snaplen,
        seed: args.seed,
        vlan_share: args.vlan_share,
        ..SynthConfig::default()
    });
    while let Some(p) = gen.next_packet() {
        match &mut sink {
            Sink::Pcap(w) => w.write_packet(&p).map_err(io_err)?,
            Sink::PcapNg(w) => w.write_packet(&p).map_err(io_err)?,
            Sink::Erf(w) => w.write_packet(&p).map_err(|source| GenError::Erf {
                path: path.clone(),
                source,
            })?,
        }
    }
    let mut out = match sink {
        Sink::Pcap(w) => w.into_inner().map_err(io_err)?,
        Sink::PcapNg(w) => w.into_inner().map_err(io_err)?,
        Sink::Erf(w) => w.into_inner().map_err(|source| GenError::Erf {
            path: path.clone(),
            source,
        })?,
    };
    out.flush().map_err(io_err)?;

    if !args.quiet {
        let s = gen.stats();
        let pct = |n: u64| 100.0 * n as f64 / s.packets.max(1) as f64;
        let mut mix = String::new();
        for (class, n) in FlowClass::ALL.iter().zip(s.per_class) {
            mix.push_str(&format!(" {} {:.1}%", class.name(), pct(n)));
        }
        eprintln!(
            "gen-trace: {path}: {} packets, {} flows ({} seen), {} wire bytes, {} captured bytes; mix:{mix}; \
             VLAN {:.1}%; <=100 B {:.1}%, >=1400 B {:.1}%",
            s.packets,
            args.flows,
            s.distinct_flows,
            s.wire_bytes,
            s.captured_bytes,
            pct(s.vlan_tagged),
            pct(s.small),
            pct(s.large),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-trace: {e}");
            ExitCode::FAILURE
        }
    }
}
