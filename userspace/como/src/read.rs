//! `como read`: packets of a trace file through a filter, printed one line each or counted.
//!
//! The filter is compiled for the link type of the file's first interface before any packet is
//! read (so a bad expression fails fast with exit 2), and again for any other link type a pcapng
//! file brings, once per link type.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use como_packet::{LinkType, Packet, Summary};
use como_tracefile::TraceReader;
use ebpf_filters::{Filter, FilterError};

use crate::Failure;

/// Arguments of `como read`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReadArgs {
    /// Trace file to read: pcap, pcapng or ERF, detected by content.
    #[arg(short = 'r', value_name = "FILE")]
    file: PathBuf,
    /// Print only the number of matching packets.
    #[arg(short = 'c', long = "count")]
    count: bool,
    /// Filter expression in tcpdump's pcap-filter syntax; the words are joined by spaces.
    #[arg(
        value_name = "EXPR",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    expr: Vec<String>,
}

/// The filter compiled for each link type met so far (one or two in practice).
struct Filters {
    expr: String,
    compiled: Vec<(LinkType, Filter)>,
}

impl Filters {
    fn new(expr: String) -> Self {
        Self {
            expr,
            compiled: Vec::new(),
        }
    }

    fn for_link(&mut self, link: LinkType) -> Result<&Filter, FilterError> {
        let at = match self.compiled.iter().position(|(l, _)| *l == link) {
            Some(at) => at,
            None => {
                self.compiled
                    .push((link, ebpf_filters::compile(&self.expr, link)?));
                self.compiled.len() - 1
            }
        };
        Ok(&self.compiled[at].1)
    }
}

/// Runs `como read`.
pub(crate) fn run(args: &ReadArgs) -> Result<(), Failure> {
    let expr = args.expr.join(" ");
    let mut reader = TraceReader::open(&args.file).map_err(|e| Failure::File(e.into()))?;
    let mut filters = Filters::new(expr);
    let filter_error = |e: FilterError, link: LinkType| {
        Failure::Filter(anyhow::Error::new(e).context(format!(
            "invalid filter expression for link type {}",
            link.name()
        )))
    };
    let first_link = reader.link_type();
    filters
        .for_link(first_link)
        .map_err(|e| filter_error(e, first_link))?;

    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut matched: u64 = 0;
    let mut failure = None;
    while let Some(item) = reader.next_packet() {
        let pkt = match item {
            Ok(pkt) => pkt,
            Err(e) => {
                failure = Some(Failure::File(e.into()));
                break;
            }
        };
        let filter = filters
            .for_link(pkt.link)
            .map_err(|e| filter_error(e, pkt.link))?;
        if !filter.matches(&pkt) {
            continue;
        }
        matched += 1;
        if !args.count {
            if let Err(e) = write_line(&mut out, &pkt) {
                return stdout_closed(e);
            }
        }
    }
    if args.count {
        if let Err(e) = writeln!(out, "{matched}") {
            return stdout_closed(e);
        }
    }
    if let Err(e) = out.flush() {
        return stdout_closed(e);
    }
    failure.map_or(Ok(()), Err)
}

fn write_line(out: &mut impl Write, pkt: &Packet<'_>) -> io::Result<()> {
    writeln!(out, "{}", Summary::new(pkt))
}

/// A reader that closed our stdout (`como read ... | head`) ends the run quietly, as tcpdump does.
fn stdout_closed(e: io::Error) -> Result<(), Failure> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::File(
            anyhow::Error::new(e).context("writing to stdout"),
        ))
    }
}
