//! Printing records: one row model ([`Cell`]s under named columns) rendered in every table
//! [`Format`] by [`TablePrinter`].
//!
//! - `csv`: a header row, then one line per row; `ts`-like cells are Unix seconds with up to 9
//!   decimals (trailing zeros dropped), strings are quoted when they hold a comma or a quote.
//! - `json`: JSON Lines, one object per row, keys = column names; timestamps are numbers.
//! - `pretty`: a header and columns aligned to the widest cell. Rows are buffered and written
//!   as one aligned block at [`TablePrinter::finish`], at [`TablePrinter::flush`] (a streaming
//!   query shows each completed interval) and every [`PRETTY_BLOCK`] rows (memory stays
//!   bounded). A block is aligned to the widest cell seen so far; when a later block needs
//!   wider columns, the header is written again above it, aligned to the new widths.
//! - `plain`: cells separated by one space, no header.
//! - `gnuplot`: a `# ` commented header, then space-separated cells (strings without spaces).
//! - `pcap`: not a table: modules that support it produce packets through `replay`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::str::FromStr;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON Lines.
    Json,
    /// Comma-separated values with a header.
    Csv,
    /// Aligned columns for people.
    Pretty,
    /// Space-separated values, no header.
    Plain,
    /// gnuplot data file.
    Gnuplot,
    /// libpcap savefile (only modules that replay packets).
    Pcap,
}

impl Format {
    /// The table formats (every module supports them).
    pub const TABLES: &'static [Format] = &[
        Format::Json,
        Format::Csv,
        Format::Pretty,
        Format::Plain,
        Format::Gnuplot,
    ];

    /// The format's name, as given on the command line and in queries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Pretty => "pretty",
            Self::Plain => "plain",
            Self::Gnuplot => "gnuplot",
            Self::Pcap => "pcap",
        }
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}` (json, csv, pretty, plain, gnuplot, pcap)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        Ok(match s {
            "json" => Self::Json,
            "csv" => Self::Csv,
            "pretty" => Self::Pretty,
            "plain" => Self::Plain,
            "gnuplot" => Self::Gnuplot,
            "pcap" => Self::Pcap,
            _ => return Err(UnknownFormat(s.to_owned())),
        })
    }
}

/// One cell of a printed row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// A timestamp in nanoseconds since the epoch, printed as seconds with up to 9 decimals.
    Ts(u64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// An IP address.
    Ip(IpAddr),
    /// Text.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
}

/// Appends the decimal digits of `n` (no formatting machinery: this runs once per printed
/// number, and flow tables print millions of them).
#[inline]
pub fn write_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends `a` in dotted-quad (IPv4) or RFC 5952 (IPv6, through `Display`) form.
#[inline]
pub fn write_ip(out: &mut String, a: IpAddr) {
    match a {
        IpAddr::V4(v) => {
            for (i, o) in v.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                write_u64(out, u64::from(o));
            }
        }
        IpAddr::V6(v) => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Writes `ns` as Unix seconds with up to 9 decimals, trailing zeros dropped.
pub fn write_ts(out: &mut String, ns: u64) {
    write_u64(out, ns / 1_000_000_000);
    let frac = ns % 1_000_000_000;
    if frac != 0 {
        // `1frac` has the fraction's 9 digits, leading zeros included, after its first digit.
        let mut digits = itoa::Buffer::new();
        let all = digits.format(1_000_000_000 + frac);
        out.push('.');
        out.push_str(all.get(1..).unwrap_or_default().trim_end_matches('0'));
    }
}

impl Cell<'_> {
    /// Appends the cell's text (unquoted) to `out`.
    pub fn write_text(&self, out: &mut String) {
        match *self {
            Cell::Ts(ns) => write_ts(out, ns),
            Cell::U64(n) => write_u64(out, n),
            Cell::F64(x) => {
                let _ = write!(out, "{x}");
            }
            Cell::Ip(a) => write_ip(out, a),
            Cell::Str(s) => out.push_str(s),
            Cell::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Cell::Ts(_) | Cell::U64(_) | Cell::F64(_))
    }
}

/// Most `pretty` rows buffered before they are written as a block.
pub const PRETTY_BLOCK: usize = 4096;

/// Renders rows of cells in one table format.
pub struct TablePrinter<W: Write> {
    out: W,
    format: Format,
    columns: &'static [&'static str],
    started: bool,
    /// `pretty` rows not written yet: texts, right-aligned or not.
    pretty: Vec<(Vec<String>, Vec<bool>)>,
    /// `pretty` column widths of the last header written (empty: none yet).
    widths: Vec<usize>,
    line: String,
}

impl<W: Write> TablePrinter<W> {
    /// A printer for `columns` in `format` (which must be a table format).
    pub fn new(out: W, format: Format, columns: &'static [&'static str]) -> Self {
        Self {
            out,
            format,
            columns,
            started: false,
            pretty: Vec::new(),
            widths: Vec::new(),
            line: String::new(),
        }
    }

    /// Writes the header if it was not written yet (called by [`Self::row`] and
    /// [`Self::finish`], so an empty result still has its CSV header).
    pub fn header(&mut self) -> io::Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        match self.format {
            Format::Csv => writeln!(self.out, "{}", self.columns.join(",")),
            Format::Gnuplot => writeln!(self.out, "# {}", self.columns.join(" ")),
            _ => Ok(()),
        }
    }

    /// Prints one row.
    pub fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.header()?;
        self.line.clear();
        match self.format {
            Format::Csv => {
                for (i, c) in cells.iter().enumerate() {
                    if i > 0 {
                        self.line.push(',');
                    }
                    match c {
                        Cell::Str(t) if t.contains([',', '"', '\n']) => {
                            self.line.push('"');
                            self.line.push_str(&t.replace('"', "\"\""));
                            self.line.push('"');
                        }
                        _ => c.write_text(&mut self.line),
                    }
                }
            }
            Format::Plain | Format::Gnuplot | Format::Pcap => {
                for (i, c) in cells.iter().enumerate() {
                    if i > 0 {
                        self.line.push(' ');
                    }
                    match c {
                        Cell::Str(t) if self.format == Format::Gnuplot && t.contains(' ') => {
                            self.line.push_str(&t.replace(' ', "_"));
                        }
                        _ => c.write_text(&mut self.line),
                    }
                }
            }
            Format::Json => {
                self.line.push('{');
                for (i, c) in cells.iter().enumerate() {
                    if i > 0 {
                        self.line.push(',');
                    }
                    let key = self.columns.get(i).copied().unwrap_or("?");
                    self.line.push_str(&json_string(key));
                    self.line.push(':');
                    match c {
                        Cell::F64(x) if !x.is_finite() => self.line.push_str("null"),
                        Cell::Ip(_) | Cell::Str(_) => {
                            let mut t = String::new();
                            c.write_text(&mut t);
                            self.line.push_str(&json_string(&t));
                        }
                        _ => c.write_text(&mut self.line),
                    }
                }
                self.line.push('}');
            }
            Format::Pretty => {
                let mut texts = Vec::with_capacity(cells.len());
                let mut right = Vec::with_capacity(cells.len());
                for c in cells {
                    let mut t = String::new();
                    c.write_text(&mut t);
                    texts.push(t);
                    right.push(c.is_numeric());
                }
                self.pretty.push((texts, right));
                if self.pretty.len() >= PRETTY_BLOCK {
                    self.write_pretty()?;
                }
                return Ok(());
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    /// Writes what is buffered (`pretty` rows as an aligned block) and flushes the writer: the
    /// reader sees every row printed so far.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.format == Format::Pretty {
            self.write_pretty()?;
        }
        self.out.flush()
    }

    /// Ends the output (writes buffered `pretty` rows; the header of a table without rows),
    /// flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header()?;
        if self.format == Format::Pretty {
            self.write_pretty()?;
            if self.widths.is_empty() {
                let header: Vec<String> = self.columns.iter().map(|c| (*c).to_owned()).collect();
                let widths = header.iter().map(|c| c.chars().count()).collect();
                self.widths = widths;
                self.write_pretty_line(&header, &[])?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes the buffered `pretty` rows aligned to the widest cell so far, under a header
    /// when none was written yet or the columns became wider.
    fn write_pretty(&mut self) -> io::Result<()> {
        if self.pretty.is_empty() {
            return Ok(());
        }
        let mut width: Vec<usize> = if self.widths.is_empty() {
            self.columns.iter().map(|c| c.chars().count()).collect()
        } else {
            self.widths.clone()
        };
        for (texts, _) in &self.pretty {
            for (i, t) in texts.iter().enumerate() {
                let n = t.chars().count();
                match width.get_mut(i) {
                    Some(w) => *w = (*w).max(n),
                    None => width.push(n),
                }
            }
        }
        if width != self.widths {
            if !self.widths.is_empty() {
                // A wider block: a blank line, then the header aligned to the new widths.
                writeln!(self.out)?;
            }
            self.widths = width;
            let header: Vec<String> = self.columns.iter().map(|c| (*c).to_owned()).collect();
            self.write_pretty_line(&header, &[])?;
        }
        let rows = std::mem::take(&mut self.pretty);
        for (texts, right) in &rows {
            self.write_pretty_line(texts, right)?;
        }
        Ok(())
    }

    /// One `pretty` line: cells padded to the current widths (numbers to the right, the last
    /// left-aligned cell not padded).
    fn write_pretty_line(&mut self, texts: &[String], right: &[bool]) -> io::Result<()> {
        self.line.clear();
        for (i, t) in texts.iter().enumerate() {
            if i > 0 {
                self.line.push_str("  ");
            }
            let w = self.widths.get(i).copied().unwrap_or(0);
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(self.line, "{t:>w$}");
            } else if i + 1 == texts.len() {
                self.line.push_str(t);
            } else {
                let _ = write!(self.line, "{t:<w$}");
            }
        }
        let end = self.line.trim_end().len();
        self.line.truncate(end);
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format) -> String {
        let mut p = TablePrinter::new(Vec::new(), format, &["ts", "addr", "pkts"]);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        p.row(&[
            Cell::Ts(1_700_000_000_500_000_000),
            Cell::Ip(a),
            Cell::U64(3),
        ])
        .expect("row");
        p.row(&[
            Cell::Ts(1_700_000_001_000_000_000),
            Cell::Str("a,b"),
            Cell::U64(12345),
        ])
        .expect("row");
        String::from_utf8(p.finish().expect("finish")).expect("utf8")
    }

    #[test]
    fn formats() {
        assert_eq!(
            render(Format::Csv),
            "ts,addr,pkts\n1700000000.5,10.0.0.1,3\n1700000001,\"a,b\",12345\n"
        );
        assert_eq!(
            render(Format::Json).lines().next(),
            Some(r#"{"ts":1700000000.5,"addr":"10.0.0.1","pkts":3}"#)
        );
        assert_eq!(
            render(Format::Plain),
            "1700000000.5 10.0.0.1 3\n1700000001 a,b 12345\n"
        );
        assert!(render(Format::Gnuplot).starts_with("# ts addr pkts\n"));
        assert_eq!(
            render(Format::Pretty),
            "ts            addr      pkts\n1700000000.5  10.0.0.1      3\n  1700000001  a,b       12345\n"
        );
        let empty = TablePrinter::new(Vec::new(), Format::Csv, &["ts", "pkts"])
            .finish()
            .expect("finish");
        assert_eq!(empty, b"ts,pkts\n");
        let mut t = String::new();
        write_ts(&mut t, 1_000_000_001);
        assert_eq!(t, "1.000000001");
    }

    #[test]
    fn pretty_blocks_stream_and_reprint_the_header_when_wider() {
        let mut p = TablePrinter::new(Vec::new(), Format::Pretty, &["ts", "pkts"]);
        p.row(&[Cell::Ts(1_000_000_000), Cell::U64(7)])
            .expect("row");
        p.flush().expect("flush");
        // The first block is out at the flush, before the end.
        assert_eq!(p.out, b"ts  pkts\n 1     7\n");
        p.row(&[Cell::Ts(2_000_000_000), Cell::U64(8)])
            .expect("row");
        p.flush().expect("flush");
        p.row(&[Cell::Ts(3_000_000_000), Cell::U64(123_456)])
            .expect("row");
        let out = String::from_utf8(p.finish().expect("finish")).expect("utf8");
        assert_eq!(
            out,
            "ts  pkts\n 1     7\n 2     8\n\nts  pkts\n 3  123456\n"
        );
        // Without flushes, one block aligned on every row, as before.
        let mut p = TablePrinter::new(Vec::new(), Format::Pretty, &["ts", "pkts"]);
        for (t, n) in [(1, 7), (2, 8), (3, 123_456)] {
            p.row(&[Cell::Ts(t * 1_000_000_000), Cell::U64(n)])
                .expect("row");
        }
        let out = String::from_utf8(p.finish().expect("finish")).expect("utf8");
        assert_eq!(out, "ts  pkts\n 1       7\n 2       8\n 3  123456\n");
        // A long output is written in blocks of PRETTY_BLOCK rows, not held to the end.
        let mut p = TablePrinter::new(Vec::new(), Format::Pretty, &["ts", "pkts"]);
        for i in 0..PRETTY_BLOCK as u64 {
            p.row(&[Cell::Ts(1), Cell::U64(i)]).expect("row");
        }
        assert_eq!(
            p.out.iter().filter(|&&b| b == b'\n').count(),
            PRETTY_BLOCK + 1
        );
        assert!(p.pretty.is_empty());
    }

    #[test]
    fn numbers_and_addresses_match_display() {
        let mut t = String::new();
        for n in [0, 1, 9, 10, 99, 100, 65535, 1 << 32, u64::MAX - 1, u64::MAX] {
            t.clear();
            write_u64(&mut t, n);
            assert_eq!(t, n.to_string());
        }
        for (ns, want) in [
            (0, "0"),
            (5, "0.000000005"),
            (1_700_000_000_120_000_000, "1700000000.12"),
            (1_700_000_000_000_000_100, "1700000000.0000001"),
            (1_700_000_000_999_999_999, "1700000000.999999999"),
            (u64::MAX, "18446744073.709551615"),
        ] {
            t.clear();
            write_ts(&mut t, ns);
            assert_eq!(t, want, "{ns}");
        }
        for a in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = a.parse().expect("addr");
            t.clear();
            write_ip(&mut t, ip);
            assert_eq!(t, ip.to_string());
        }
    }
}
