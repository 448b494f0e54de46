//! Shared pieces of the CoMo-rs integration and differential tests: where the test data is,
//! loading a trace into memory, and the tcpdump tables of `tests/data/filters`.
//!
//! The tests are in `tests/tests/`, their data in `tests/data/` (provenance in
//! `tests/data/traces/SOURCES.md` and in the header of each table).

pub mod alloc;
pub mod exprgen;
pub mod netns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use como_packet::{LinkType, Packet};
use como_tracefile::{Format, TraceReader};

/// The folder of the test data (`tests/data`).
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The folder of the third-party traces (`tests/data/traces`).
pub fn traces_dir() -> PathBuf {
    data_dir().join("traces")
}

/// One packet of a [`Trace`], owned.
#[derive(Debug, Clone)]
pub struct OwnedPacket {
    /// Capture time in ns.
    pub ts_ns: u64,
    /// Wire length.
    pub wire_len: u32,
    /// Link type.
    pub link: LinkType,
    /// Interface.
    pub interface: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

impl OwnedPacket {
    /// The borrowed view the libraries take.
    pub fn view(&self) -> Packet<'_> {
        Packet {
            ts_ns: self.ts_ns,
            wire_len: self.wire_len,
            data: &self.data,
            link: self.link,
            interface: self.interface,
        }
    }
}

/// Every trace file under `tests/data/traces` (sorted; the provenance tables and notes left
/// out), whatever its format or link type.
pub fn trace_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if !matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("md" | "tsv" | "txt")
            ) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&traces_dir(), &mut out);
    out
}

/// The Ethernet packets of every readable trace (the packets before any damage; per packet,
/// so a pcapng file with several link types gives its Ethernet interfaces' packets), with
/// the trace's path relative to `tests/data/traces`. Traces without any are left out.
pub fn ethernet_traces() -> Vec<(String, Vec<OwnedPacket>)> {
    let mut out = Vec::new();
    for f in trace_files() {
        let Ok(t) = load_trace(&f) else { continue };
        let packets: Vec<OwnedPacket> = t
            .packets
            .into_iter()
            .filter(|p| p.link == LinkType::Ethernet)
            .collect();
        if packets.is_empty() {
            continue;
        }
        let name = f
            .strip_prefix(traces_dir())
            .unwrap_or(&f)
            .display()
            .to_string();
        out.push((name, packets));
    }
    out
}

/// A whole trace file in memory: its packets up to the first error, and that error.
#[derive(Debug)]
pub struct Trace {
    /// The file's format.
    pub format: Format,
    /// The first interface's link type.
    pub link: LinkType,
    /// Every packet read before the end or the damage.
    pub packets: Vec<OwnedPacket>,
    /// The error that stopped reading, if any (rendered).
    pub error: Option<String>,
}

/// Reads every packet of `path` (relative to `tests/data/traces` unless absolute).
pub fn load_trace(path: impl AsRef<Path>) -> Result<Trace, String> {
    let path = traces_dir().join(path);
    let mut reader = TraceReader::open(&path).map_err(|e| e.to_string())?;
    let link = reader.link_type();
    let format = reader.format();
    let mut packets = Vec::new();
    let mut error = None;
    while let Some(item) = reader.next_packet() {
        match item {
            Ok(p) => packets.push(OwnedPacket {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                link: p.link,
                interface: p.interface,
                data: p.data.to_vec(),
            }),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(Trace {
        format,
        link,
        packets,
        error,
    })
}

/// A table of tcpdump match counts: one row per expression, one column per trace.
///
/// The format of `tests/data/filters/counts.tsv` and of the generated `tcpdump-counts.tsv`:
/// `#` comment lines, a header `expr<TAB>trace...`, a `TOTAL` row, then one row per expression.
/// A cell is a count, or `E` when tcpdump refused the expression for that trace's link type.
#[derive(Debug)]
pub struct CountTable {
    /// The column names (trace paths, possibly prefixed as in `tracestats:`).
    pub columns: Vec<String>,
    /// The unfiltered count of each column.
    pub totals: Vec<Option<u64>>,
    /// (expression, one cell per column: `None` for `E`).
    pub rows: Vec<(String, Vec<Option<u64>>)>,
}

impl CountTable {
    /// Loads a table from `tests/data/filters/<name>`.
    pub fn load(name: &str) -> Result<Self, String> {
        let path = data_dir().join("filters").join(name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut lines = text.lines().filter(|l| !l.starts_with('#'));
        let header = lines.next().ok_or("empty table")?;
        let columns: Vec<String> = header.split('\t').skip(1).map(str::to_owned).collect();
        let cells = |line: &str| -> Result<(String, Vec<Option<u64>>), String> {
            let mut it = line.split('\t');
            let expr = it.next().unwrap_or_default().to_owned();
            let cells: Vec<Option<u64>> = it.map(|c| c.parse().ok()).collect();
            if cells.len() != columns.len() {
                return Err(format!(
                    "{name}: row {expr:?} has {} cells, header {}",
                    cells.len(),
                    columns.len()
                ));
            }
            Ok((expr, cells))
        };
        let (total_name, totals) = cells(lines.next().ok_or("no TOTAL row")?)?;
        if total_name != "TOTAL" {
            return Err(format!("{name}: second row is {total_name:?}, not TOTAL"));
        }
        let rows = lines.map(cells).collect::<Result<_, _>>()?;
        Ok(Self {
            columns,
            totals,
            rows,
        })
    }
}

/// The expressions the project treats as outside its supported filter set, with the construct
/// the error message must name (`tests/data/filters/unsupported.tsv`).
pub fn unsupported_expressions() -> HashMap<String, String> {
    let path = data_dir().join("filters").join("unsupported.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(e, c)| (e.to_owned(), c.to_owned()))
        .collect()
}

/// The expressions of one section (`valid` or `invalid`) of `tests/data/filters/corpus.txt`.
pub fn corpus_section(section: &str) -> Vec<String> {
    let path = data_dir().join("filters").join("corpus.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut current = "";
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#@section ") {
            current = rest.trim();
        } else if !line.is_empty() && !line.starts_with('#') && current == section {
            out.push(line.to_owned());
        }
    }
    out
}
