//! Queries on the stored window: the packets of a time range that match a filter, in segment
//! order (and, within a segment, in file order).
//!
//! Steps: segments whose time range (from the name) misses the query's are skipped; each
//! remaining closed segment is share-locked, its index loaded, and only the groups that
//! overlap the time range and hold a key of every clause of the filter's requirement
//! ([`crate::keys`]) are read (adjacent groups in one read); every packet read then passes the
//! time test and the exact filter ([`ebpf_filters::Filter::matches`], libpcap's semantics).
//! The open segment, and a closed one whose index is missing or unreadable (until the window
//! rebuilds it: [`crate::reindex`]), is scanned whole up to its last complete block.

use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::Path;

use como_packet::{LinkType, Packet};
use ebpf_filters::Filter;
use rustix::fs::Advice;

use crate::block::{Blocks, BT_IDB};
use crate::index::Index;
use crate::keys::{requirement, Requirement};

use crate::segment::{self, ReadLock};

/// Group reads asked of the kernel ahead of the one being read (`POSIX_FADV_WILLNEED`): enough
/// to keep a disk's queue full (64 reads of one 64 KiB group are 4 MiB in flight).
const READ_AHEAD: usize = 64;
/// Segment indexes asked of the kernel ahead of the segment being queried.
const INDEX_AHEAD: usize = 4;

/// A query.
#[derive(Debug, Clone)]
pub struct Query {
    /// pcap-filter expression (empty: every packet).
    pub filter: String,
    /// First nanosecond of the range (inclusive).
    pub start_ns: u64,
    /// Last nanosecond of the range (inclusive).
    pub end_ns: u64,
}

impl Query {
    /// Every packet matching `filter`, at any time.
    pub fn all(filter: impl Into<String>) -> Query {
        Query {
            filter: filter.into(),
            start_ns: 0,
            end_ns: u64::MAX,
        }
    }
}

/// What a query read and found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Segments in the folder.
    pub segments: u64,
    /// Segments opened.
    pub segments_read: u64,
    /// Groups in the opened segments' indexes.
    pub groups: u64,
    /// Groups read.
    pub groups_read: u64,
    /// Bytes read from segments.
    pub bytes_read: u64,
    /// Packets examined.
    pub packets_seen: u64,
    /// Packets returned.
    pub packets: u64,
}

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The filter does not compile.
    #[error("filter: {0}")]
    Filter(#[from] ebpf_filters::FilterError),
    /// Reading the window failed.
    #[error("trace window {path}: {source}")]
    Io {
        /// File or folder.
        path: std::path::PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The sink failed (e.g. the client went away).
    #[error("output: {0}")]
    Sink(io::Error),
}

/// Compiled filters per link type (None: the filter rejects every packet of that link type).
struct Filters {
    /// The expression.
    expr: String,
    /// Cache.
    by_link: Vec<(LinkType, Option<Filter>)>,
}

impl Filters {
    fn get(&mut self, link: LinkType) -> Option<&Filter> {
        let i = match self.by_link.iter().position(|(l, _)| *l == link) {
            Some(i) => i,
            None => {
                let f = ebpf_filters::compile(&self.expr, link).ok();
                self.by_link.push((link, f));
                self.by_link.len() - 1
            }
        };
        self.by_link.get(i).and_then(|(_, f)| f.as_ref())
    }

    /// The requirement for each indexed link type of `links` (packets of other link types
    /// are in groups marked incomplete, never pruned by key; a link type the filter rejects
    /// has no matching packet).
    fn requirements(&mut self, links: &[LinkType]) -> Vec<Requirement> {
        let mut out = Vec::new();
        for &l in links {
            if crate::keys::plain_net(l).is_none() {
                continue;
            }
            if let Some(r) = self.get(l).map(|f| requirement(f.ir())) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }
}

/// Runs `q` over the window in `dir`, handing every matching packet to `sink`.
pub fn query(
    dir: &Path,
    q: &Query,
    sink: &mut dyn FnMut(&Packet<'_>) -> io::Result<()>,
) -> Result<QueryStats, QueryError> {
    // Syntax errors are reported for any link type: check once on Ethernet.
    if let Err(e) = ebpf_filters::compile(&q.filter, LinkType::Ethernet) {
        if e.kind != ebpf_filters::ErrorKind::LinkType {
            return Err(e.into());
        }
    }
    let mut filters = Filters {
        expr: q.filter.clone(),
        by_link: Vec::new(),
    };
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QueryError::Io { path, source }
    };
    let segs = segment::list(dir).map_err(io_err(dir))?;
    let mut st = QueryStats {
        segments: segs.len() as u64,
        ..QueryStats::default()
    };
    let todo: Vec<&segment::Segment> = segs
        .iter()
        .filter(|s| {
            s.range
                .is_none_or(|(a, b)| b >= q.start_ns && a <= q.end_ns)
        })
        .collect();
    for (k, s) in todo.iter().enumerate() {
        // The indexes of the next INDEX_AHEAD segments are asked of the kernel now (read in
        // the background while this segment is queried).
        for next in entering(&todo, k, INDEX_AHEAD) {
            if let (false, Ok(f)) = (next.open, File::open(next.index_path())) {
                will_need(&f, 0, 0);
            }
        }
        let lock = match ReadLock::open(&s.path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // aged out meanwhile
            Err(e) => return Err(io_err(&s.path)(e)),
        };
        st.segments_read += 1;
        // An index that describes more bytes than the file holds, or packets outside the
        // segment's time range (a damaged or foreign `.idx`), is ignored: the segment is
        // scanned whole instead.
        let file_len = lock.file.metadata().map(|m| m.len()).unwrap_or(0);
        let idx = if s.open {
            None
        } else {
            Index::load(&s.index_path()).filter(|i| segment::index_fits(s, i, file_len))
        };
        match idx {
            Some(idx) => read_indexed(&lock.file, &idx, q, &mut filters, &mut st, sink)
                .map_err(|e| wrap(e, &s.path))?,
            None => {
                scan(&lock.file, q, &mut filters, &mut st, sink).map_err(|e| wrap(e, &s.path))?
            }
        }
    }
    Ok(st)
}

/// The items that enter a window of the `ahead` items from `i` on when the walk reaches item
/// `i`: the first `ahead` at 0, then one at a time.
fn entering<T>(items: &[T], i: usize, ahead: usize) -> &[T] {
    let from = if i == 0 { 0 } else { i + ahead - 1 };
    let to = (i + ahead).min(items.len());
    items.get(from..to).unwrap_or_default()
}

/// Asks the kernel to read `len` bytes at `off` of `file` into the page cache in the
/// background (`POSIX_FADV_WILLNEED`; `len` 0: to the end). Advice only: a failure costs speed,
/// never data.
fn will_need(file: &File, off: u64, len: u64) {
    let _ = rustix::fs::fadvise(file, off, NonZeroU64::new(len), Advice::WillNeed);
}

/// Sink errors stay sink errors; the rest names the segment.
fn wrap(e: Inner, path: &Path) -> QueryError {
    match e {
        Inner::Sink(e) => QueryError::Sink(e),
        Inner::Io(source) => QueryError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Error inside one segment.
enum Inner {
    /// Reading.
    Io(io::Error),
    /// Writing.
    Sink(io::Error),
}

/// Hands the matching EPBs of `bytes` to the sink.
fn emit(
    bytes: &[u8],
    links: &mut Vec<LinkType>,
    q: &Query,
    filters: &mut Filters,
    st: &mut QueryStats,
    sink: &mut dyn FnMut(&Packet<'_>) -> io::Result<()>,
) -> Result<usize, Inner> {
    let mut blocks = Blocks::new(bytes);
    for b in blocks.by_ref() {
        if b.btype == BT_IDB {
            if let Some(lt) = b.bytes.get(8..10).and_then(|s| s.try_into().ok()) {
                links.push(LinkType::from_linktype(u32::from(u16::from_le_bytes(lt))));
            }
            continue;
        }
        let Some(e) = b.epb() else {
            continue;
        };
        st.packets_seen += 1;
        if e.ts_ns < q.start_ns || e.ts_ns > q.end_ns {
            continue;
        }
        let Some(&link) = links.get(e.iface as usize) else {
            continue;
        };
        let p = Packet {
            ts_ns: e.ts_ns,
            wire_len: e.wire_len,
            data: e.data,
            link,
            interface: e.iface,
        };
        let Some(f) = filters.get(link) else {
            continue;
        };
        if f.matches(&p) {
            st.packets += 1;
            sink(&p).map_err(Inner::Sink)?;
        }
    }
    Ok(blocks.end())
}

/// Reads the candidate groups of an indexed segment.
fn read_indexed(
    file: &File,
    idx: &Index,
    q: &Query,
    filters: &mut Filters,
    st: &mut QueryStats,
    sink: &mut dyn FnMut(&Packet<'_>) -> io::Result<()>,
) -> Result<(), Inner> {
    st.groups += idx.groups.len() as u64;
    // A group may hold a matching packet of any of its link types: the union of the
    // candidates under each link type's requirement.
    let reqs = filters.requirements(&idx.links);
    let mut cand = if reqs.is_empty() {
        idx.candidates(q.start_ns, q.end_ns, &Some(Vec::new()))
    } else {
        let mut c = Vec::new();
        for r in &reqs {
            c.extend(idx.candidates(q.start_ns, q.end_ns, r));
        }
        c
    };
    cand.sort_unstable();
    cand.dedup();
    st.groups_read += cand.len() as u64;
    // Runs of adjacent groups (up to 8 MiB) are read at once.
    let mut reads: Vec<(u64, u64)> = Vec::new();
    for g in cand.iter().filter_map(|&g| idx.groups.get(g)) {
        let end = g.off + u64::from(g.len);
        match reads.last_mut() {
            Some((start, e)) if *e == g.off && *e - *start <= (8 << 20) => *e = end,
            _ => reads.push((g.off, end)),
        }
    }
    let mut links = idx.links.clone();
    let mut buf = Vec::new();
    for (i, &(start, end)) in reads.iter().enumerate() {
        // Keep the disk busy: the reads READ_AHEAD places ahead are asked for now (the
        // kernel reads them into the page cache in the background), so a cold window is read
        // with many requests in flight instead of one scattered read at a time.
        for &(a, b) in entering(&reads, i, READ_AHEAD) {
            will_need(file, a, b - a);
        }
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, start).map_err(Inner::Io)?;
        st.bytes_read += end - start;
        emit(&buf, &mut links, q, filters, st, sink)?;
    }
    Ok(())
}

/// Scans a whole segment (open, or without index) up to its last complete block.
fn scan(
    file: &File,
    q: &Query,
    filters: &mut Filters,
    st: &mut QueryStats,
    sink: &mut dyn FnMut(&Packet<'_>) -> io::Result<()>,
) -> Result<(), Inner> {
    let mut f = file;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 8 << 20];
    let mut have = 0;
    loop {
        let n = f
            .read(buf.get_mut(have..).unwrap_or(&mut []))
            .map_err(Inner::Io)?;
        st.bytes_read += n as u64;
        have += n;
        let end = emit(
            buf.get(..have).unwrap_or(&[]),
            &mut links,
            q,
            filters,
            st,
            sink,
        )?;
        buf.copy_within(end..have, 0);
        have -= end;
        if n == 0 {
            return Ok(());
        }
        if have == buf.len() {
            if buf.len() >= 64 << 20 {
                return Ok(());
            }
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// Output file format of [`write_query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// libpcap savefile, nanosecond timestamps (one link type: packets of other link types
    /// than the first are left out and counted).
    Pcap,
    /// pcapng, nanosecond timestamps, one interface per link type.
    PcapNg,
}

impl std::str::FromStr for OutFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pcap" => Ok(OutFormat::Pcap),
            "pcapng" => Ok(OutFormat::PcapNg),
            _ => Err(format!("unknown packet format `{s}` (pcap or pcapng)")),
        }
    }
}

/// The writer behind [`write_query`].
enum Out<W: io::Write> {
    /// Not started (the link type comes from the first packet).
    Pending(Option<W>),
    /// pcap.
    Pcap(como_tracefile::PcapWriter<W>),
    /// pcapng.
    PcapNg(como_tracefile::PcapNgWriter<W>),
}

/// Runs `q` and writes the matching packets to `out` as a pcap or pcapng file (with its
/// header even when nothing matches). Returns the statistics and the number of packets left
/// out of a pcap file because their link type differs from the first packet's.
pub fn write_query<W: io::Write>(
    dir: &Path,
    q: &Query,
    format: OutFormat,
    out: W,
) -> Result<(QueryStats, u64), QueryError> {
    let mut w: Out<W> = Out::Pending(Some(out));
    let mut skipped = 0u64;
    let mut sink = |p: &Packet<'_>| -> io::Result<()> {
        if let Out::Pending(o) = &mut w {
            let o = o.take().ok_or_else(|| io::Error::other("output lost"))?;
            w = match format {
                OutFormat::Pcap => Out::Pcap(como_tracefile::PcapWriter::new(o, p.link, 0, true)?),
                OutFormat::PcapNg => {
                    Out::PcapNg(como_tracefile::PcapNgWriter::new(o, p.link, 0, true)?)
                }
            };
        }
        match &mut w {
            Out::Pcap(pw) => match pw.write_packet(p) {
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    skipped += 1;
                    Ok(())
                }
                r => r,
            },
            Out::PcapNg(pw) => pw.write_packet(p),
            Out::Pending(_) => Ok(()),
        }
    };
    let st = query(dir, q, &mut sink)?;
    let finish = match w {
        Out::Pending(Some(o)) => match format {
            OutFormat::Pcap => como_tracefile::PcapWriter::new(o, LinkType::Ethernet, 0, true)
                .and_then(|x| x.into_inner())
                .map(drop),
            OutFormat::PcapNg => como_tracefile::PcapNgWriter::new(o, LinkType::Ethernet, 0, true)
                .and_then(|x| x.into_inner())
                .map(drop),
        },
        Out::Pending(None) => Ok(()),
        Out::Pcap(pw) => pw.into_inner().map(drop),
        Out::PcapNg(pw) => pw.into_inner().map(drop),
    };
    finish.map_err(QueryError::Sink)?;
    Ok((st, skipped))
}

#[cfg(test)]
mod tests {
    use super::entering;

    /// Every item is asked for exactly once, in order, and before the walk reaches it; never
    /// more than `ahead` items are asked for beyond the one being read.
    #[test]
    fn read_ahead_asks_for_every_item_once_before_it_is_read() {
        for len in 0..20usize {
            for ahead in 1..6usize {
                let items: Vec<usize> = (0..len).collect();
                let mut asked = Vec::new();
                for i in 0..len {
                    asked.extend_from_slice(entering(&items, i, ahead));
                    assert!(
                        asked.contains(&i),
                        "len {len} ahead {ahead}: {i} read unasked"
                    );
                    assert!(
                        asked.len() <= i + ahead,
                        "len {len} ahead {ahead}: too far at {i}"
                    );
                }
                assert_eq!(asked, items, "len {len} ahead {ahead}");
            }
        }
    }
}
