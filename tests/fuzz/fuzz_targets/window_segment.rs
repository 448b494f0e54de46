//! Fuzz target `window_segment`: segment files of the packet trace window (`como-window`) as a
//! crash or a damaged disk leaves them, through the window's own recovery and readers:
//! `segment::list`, `segment::recover` (what `Window::open` does with a `.part` segment),
//! `segment::index_file`, `index::Index::load`/`decode` and `query::query` (what `GET /trace`
//! and `como trace` run), in a scratch folder of the process (under `$COMO_FUZZ_SCRATCH`,
//! else /dev/shm or the temporary folder; emptied before each input, left at exit).
//!
//! Byte 0 picks the case:
//! * **torn** (0..=127): the window's own layout (section header and IDBs padded to 4096,
//!   then 4096-aligned chunks of EPBs each closed by a padding block; packets built by
//!   [`como_fuzz::kgen::frame`], on one or two interfaces, timestamps drawn) cut at a drawn
//!   byte, sometimes followed by zeros to the next 4096 boundary: a kill -9 in the middle of a
//!   write. Recovery must keep exactly the EPBs that end before the cut (none: the file is
//!   removed), cut the file at the end of the last complete block, write an index that
//!   `index_file` reproduces from the kept file, name the segment after its first and last
//!   packet times, and leave a file `como_tracefile` reads to its end with the same packet
//!   count. Then a query (filter and time range drawn) returns the same packets with the index,
//!   without it (full scan), and as computed here with `Filter::matches`.
//! * **raw** (128..=191): the rest of the input is the `.part` file. Recovery must not panic;
//!   what it keeps must satisfy the same structural checks (length = index `data_end`, index
//!   reproducible), and a query over it must not panic.
//! * **bad index** (192..=255): a closed segment written as in *torn* (not cut) with its index
//!   damaged (bytes of the input overwrite drawn positions, or the input replaces it). A query
//!   must not panic or allocate without bound; it may fail with an error naming the segment;
//!   when the damaged index still decodes to the true one, the answer is the true one. Then
//!   what `Window::open` does: an index `reindex::check` finds unusable is rebuilt, byte for
//!   byte the true one, and the query gives the true answer.
//!
//! The window's reader APIs report no content errors (a damaged tail is cut, an unreadable
//! index is ignored and the segment scanned), so there is no error message to check here; a
//! failing file-system call would be an `io::Error` naming the path.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use como_fuzz::kgen::{self, Src};
use como_packet::{LinkType, Packet};
use como_tracefile::TraceReader;
use como_window::block::{self, aligned_chunk, put_epb};
use como_window::index::Index;
use como_window::{reindex, segment};
use como_window::Query;
use libfuzzer_sys::fuzz_target;

const ALIGN: usize = 4096;

/// The scratch folder of this process (emptied before each input).
fn scratch() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        // scripts/fuzz.sh gives a folder it removes at the end.
        let base = match std::env::var_os("COMO_FUZZ_SCRATCH") {
            Some(d) => PathBuf::from(d),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        base.join(format!("como-fuzz-window-{}", std::process::id()))
    })
}

fn fresh_dir() -> &'static Path {
    let d = scratch();
    let _ = std::fs::remove_dir_all(d);
    if let Err(e) = std::fs::create_dir_all(d) {
        panic!("scratch folder {}: {e}", d.display());
    }
    d
}

/// One packet written into the segment.
#[derive(Debug, Clone)]
struct Pkt {
    ts_ns: u64,
    wire_len: u32,
    iface: u32,
    data: Vec<u8>,
    /// End offset of its EPB in the file.
    end: usize,
}

/// A segment built in the window's layout.
struct Built {
    bytes: Vec<u8>,
    links: Vec<LinkType>,
    packets: Vec<Pkt>,
    /// End offsets of every block, in order.
    block_ends: Vec<usize>,
}

fn build(s: &mut Src<'_>) -> Option<Built> {
    let links = if s.below(4) == 0 {
        vec![LinkType::Ethernet, LinkType::Raw]
    } else {
        vec![LinkType::Ethernet]
    };
    let snaplen = if s.below(4) == 0 { 64 } else { 65535 };
    let header = aligned_chunk(block::header_bytes(&links, snaplen).ok()?, ALIGN);
    let mut block_ends = Vec::new();
    for b in block::Blocks::new(&header) {
        block_ends.push(b.off + b.bytes.len());
    }
    let mut bytes = header;
    let mut packets = Vec::new();
    let chunks = 1 + s.below(3);
    let mut ts: u64 = 1_700_000_000_000_000_000 + u64::from(s.u16()) * 1_000_000;
    for _ in 0..chunks {
        let n = 1 + s.below(12);
        let mut chunk: Vec<u8> = Vec::new();
        let base = bytes.len();
        for _ in 0..n {
            let (frame, wire) = kgen::frame(s);
            let iface = if links.len() > 1 && s.below(3) == 0 {
                1
            } else {
                0
            };
            let data = if iface == 1 {
                frame.get(14..).unwrap_or_default().to_vec()
            } else {
                frame
            };
            let data: Vec<u8> = data.into_iter().take(snaplen as usize).collect();
            ts = match s.below(4) {
                0 => ts.saturating_sub(u64::from(s.byte()) * 1_000_000),
                _ => ts.saturating_add(u64::from(s.u16()) * 1_000),
            };
            let wire = wire.max(u32::try_from(data.len()).unwrap_or(0));
            let p = Packet {
                ts_ns: ts,
                wire_len: wire,
                data: &data,
                link: links
                    .get(iface as usize)
                    .copied()
                    .unwrap_or(LinkType::Ethernet),
                interface: iface,
            };
            let at = chunk.len();
            chunk.resize(at + block::epb_len(data.len()), 0);
            let len = put_epb(chunk.get_mut(at..)?, &p, data.len(), iface)?;
            let end = base + at + len;
            block_ends.push(end);
            packets.push(Pkt {
                ts_ns: ts,
                wire_len: wire,
                iface,
                data,
                end,
            });
        }
        let epbs = chunk.len();
        let chunk = aligned_chunk(chunk, ALIGN);
        if chunk.len() > epbs {
            block_ends.push(base + chunk.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    Some(Built {
        bytes,
        links,
        packets,
        block_ends,
    })
}

const FILTERS: [&str; 8] = [
    "",
    "tcp",
    "udp port 53",
    "host 10.0.0.1",
    "ip6",
    "port 80 or port 443",
    "not ip",
    "net 192.168.0.0/16",
];

/// (ts, iface, data) of every packet a query returns.
type Answer = Vec<(u64, u32, Vec<u8>)>;

fn try_query(dir: &Path, q: &Query) -> Result<Answer, como_window::QueryError> {
    let mut out = Vec::new();
    como_window::query(dir, q, &mut |p: &Packet<'_>| {
        out.push((p.ts_ns, p.interface, p.data.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

fn run_query(dir: &Path, q: &Query) -> Answer {
    match try_query(dir, q) {
        Ok(a) => a,
        Err(e) => panic!("query {q:?} failed: {e}"),
    }
}

/// Structural checks on a recovered (closed) segment; returns its index.
fn check_closed(path: &Path) -> Index {
    let idx = match Index::load(&segment::index_path(path)) {
        Some(i) => i,
        None => panic!("recovered {} without a readable index", path.display()),
    };
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    assert_eq!(len, idx.data_end, "recovered file length vs index data_end");
    assert!(
        idx.packets > 0,
        "a recovered segment without packets was kept"
    );
    let again = std::fs::File::open(path)
        .and_then(|mut f| segment::index_file(&mut f))
        .unwrap_or_else(|e| panic!("re-index {}: {e}", path.display()));
    assert_eq!(
        again, idx,
        "index of the kept file differs from the stored one"
    );
    assert_eq!(
        Index::decode(&idx.encode()).as_ref(),
        Some(&idx),
        "index round trip"
    );
    let listed = segment::list(path.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|e| panic!("list: {e}"));
    let me: Vec<_> = listed.iter().filter(|s| s.path == path).collect();
    assert_eq!(me.len(), 1, "recovered segment not listed: {listed:?}");
    if let Some(s) = me.first() {
        assert!(!s.open);
        assert_eq!(
            s.range,
            Some((idx.ts_min, idx.ts_max)),
            "name vs index time range"
        );
    }
    idx
}

fn recover_only(dir: &Path) -> Option<PathBuf> {
    let segs = segment::list(dir).unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = segs.first()?;
    assert!(seg.open);
    match segment::recover(seg) {
        Ok(p) => p,
        Err(e) => panic!("recover: {e}"),
    }
}

fn torn(s: &mut Src<'_>) {
    let Some(b) = build(s) else { return };
    let total = b.bytes.len();
    let cut = if s.below(4) == 0 {
        total
    } else {
        s.below(total + 1)
    };
    let mut file = b.bytes.get(..cut).unwrap_or_default().to_vec();
    if s.below(2) == 0 {
        file.resize(cut.next_multiple_of(ALIGN), 0);
    }
    let dir = fresh_dir();
    let part = dir.join(segment::part_name(1));
    if let Err(e) = std::fs::write(&part, &file) {
        panic!("write {}: {e}", part.display());
    }
    // The zeros after the cut may be the very bytes that were cut (the high bytes of a
    // block's trailing length): what the file holds of the original reaches that far.
    let cut = file
        .iter()
        .zip(&b.bytes)
        .take_while(|(f, o)| f == o)
        .count()
        .max(cut);
    let kept: Vec<&Pkt> = b.packets.iter().filter(|p| p.end <= cut).collect();
    let data_end = b
        .block_ends
        .iter()
        .copied()
        .filter(|&e| e <= cut)
        .max()
        .unwrap_or(0);
    let recovered = recover_only(dir);
    let Some(path) = recovered else {
        assert!(
            kept.is_empty(),
            "{} packets lost: segment removed",
            kept.len()
        );
        assert!(!part.exists(), "an empty segment was left");
        return;
    };
    let idx = check_closed(&path);
    assert_eq!(
        idx.packets,
        kept.len() as u64,
        "packets kept (cut at {cut} of {total})"
    );
    assert_eq!(
        idx.data_end, data_end as u64,
        "data_end (cut at {cut} of {total})"
    );
    assert_eq!(
        (idx.ts_min, idx.ts_max),
        (
            kept.iter().map(|p| p.ts_ns).min().unwrap_or(0),
            kept.iter().map(|p| p.ts_ns).max().unwrap_or(0)
        ),
        "time range"
    );
    // The file reads to its end as a pcapng (what tshark is asked to do).
    let mut n = 0u64;
    match TraceReader::open(&path) {
        Ok(mut r) => {
            while let Some(next) = r.next_packet() {
                match next {
                    Ok(_) => n += 1,
                    Err(e) => panic!("recovered segment unreadable after {n} packets: {e}"),
                }
            }
        }
        Err(e) => panic!("recovered segment unreadable: {e}"),
    }
    assert_eq!(n, idx.packets, "packets read back");

    // Query with the index, without it, and by hand.
    let expr = s.pick(&FILTERS).unwrap_or("");
    let (t0, t1) = match s.below(3) {
        0 => (0, u64::MAX),
        _ => {
            let a = kept.get(s.below(kept.len())).map_or(0, |p| p.ts_ns);
            let c = kept.get(s.below(kept.len())).map_or(0, |p| p.ts_ns);
            (a.min(c), a.max(c))
        }
    };
    let q = Query {
        filter: expr.to_owned(),
        start_ns: t0,
        end_ns: t1,
    };
    let with_index = run_query(dir, &q);
    let mut want: Answer = Vec::new();
    for p in &kept {
        let link = b
            .links
            .get(p.iface as usize)
            .copied()
            .unwrap_or(LinkType::Ethernet);
        let Ok(f) = ebpf_filters::compile(expr, link) else {
            continue;
        };
        let pkt = Packet {
            ts_ns: p.ts_ns,
            wire_len: p.wire_len,
            data: &p.data,
            link,
            interface: p.iface,
        };
        if p.ts_ns >= t0 && p.ts_ns <= t1 && f.matches(&pkt) {
            want.push((p.ts_ns, p.iface, p.data.clone()));
        }
    }
    assert_eq!(with_index, want, "indexed query {q:?}");
    let _ = std::fs::remove_file(segment::index_path(&path));
    let scanned = run_query(dir, &q);
    assert_eq!(scanned, want, "scanned query {q:?}");
}

fn raw(rest: &[u8]) {
    let dir = fresh_dir();
    let part = dir.join(segment::part_name(7));
    if let Err(e) = std::fs::write(&part, rest) {
        panic!("write {}: {e}", part.display());
    }
    if let Some(path) = recover_only(dir) {
        check_closed(&path);
    }
    let _ = run_query(dir, &Query::all("tcp or udp"));
}

fn bad_index(s: &mut Src<'_>, rest: &[u8]) {
    // The damage is drawn first (so the fuzzer reaches it from the front of the input):
    // the input replaces the index, or 1 to 4 overwrites of 1, 2, 4 or 8 bytes (a count, an
    // offset, a length ...) at drawn positions.
    let replace = s.below(4) == 0;
    let mut edits: Vec<(u16, Vec<u8>)> = Vec::new();
    if !replace {
        for _ in 0..1 + s.below(4) {
            let at = s.u16();
            let width = s.pick(&[1usize, 2, 4, 8]).unwrap_or(1);
            edits.push((at, (0..width).map(|_| s.byte()).collect()));
        }
    }
    let Some(b) = build(s) else { return };
    let dir = fresh_dir();
    let part = dir.join(segment::part_name(3));
    if let Err(e) = std::fs::write(&part, &b.bytes) {
        panic!("write {}: {e}", part.display());
    }
    let Some(path) = recover_only(dir) else {
        return;
    };
    let idx_path = segment::index_path(&path);
    let good = std::fs::read(&idx_path).unwrap_or_default();
    let bad = if replace {
        rest.to_vec()
    } else {
        let mut v = good.clone();
        for (at, bytes) in &edits {
            let at = usize::from(*at) % v.len().max(1);
            for (k, &byte) in bytes.iter().enumerate() {
                if let Some(x) = v.get_mut(at + k) {
                    *x = byte;
                }
            }
        }
        v
    };
    let q = Query::all(s.pick(&FILTERS).unwrap_or(""));
    let truth = run_query(dir, &q);
    if let Err(e) = std::fs::write(&idx_path, &bad) {
        panic!("write {}: {e}", idx_path.display());
    }
    match try_query(dir, &q) {
        Ok(got) => {
            if Index::decode(&bad) == Index::decode(&good) {
                assert_eq!(
                    got, truth,
                    "an index equal to the true one gave another answer"
                );
            }
        }
        // A damaged index that still decodes may point past the end of the segment: the
        // query then fails with a read error, which must name the segment.
        Err(e) => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            assert!(
                e.to_string().contains(name),
                "error does not name the segment: {e}"
            );
        }
    }
    // What `Window::open` does with the segment: an index judged unusable is rebuilt, byte for
    // byte the one recovery wrote, and the query then gives the true answer.
    let seg = match segment::list(dir) {
        Ok(l) => l.into_iter().find(|x| x.path == path),
        Err(e) => panic!("list {}: {e}", dir.display()),
    };
    let Some(seg) = seg else {
        panic!("segment {} not listed", path.display());
    };
    if reindex::check(&seg).is_some() {
        match reindex::rebuild(&seg) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("rebuild found the segment gone or changed"),
            Err(e) => panic!("rebuild {}: {e}", path.display()),
        }
        let rebuilt = std::fs::read(&idx_path).unwrap_or_default();
        assert!(rebuilt == good, "the rebuilt index differs from recovery's");
        assert_eq!(reindex::check(&seg), None, "a rebuilt index judged unusable");
        assert_eq!(run_query(dir, &q), truth, "another answer after the rebuild");
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut s = Src::new(rest);
    match mode {
        0..=127 => torn(&mut s),
        128..=191 => raw(rest),
        _ => bad_index(&mut s, rest),
    }
});
