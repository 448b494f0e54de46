//! Rebuilding lost indexes: a closed segment whose `.idx` is missing, does not decode, or does
//! not fit the segment (describes more bytes than it holds, or packets outside the time range
//! of its name: [`segment::index_fits`]) would be scanned whole by every query, forever.
//! When the window opens, a background thread looks at the closed segments, newest
//! first (queries hit recent data most), and re-indexes those.
//!
//! A rebuild reads the segment under a reader's lock ([`ReadLock`]: retention leaves it alone
//! meanwhile), indexes it with [`segment::index_file`] (the [`crate::index::IndexBuilder`] the
//! writer uses, fed from the file: the result equals the writer's index byte for byte), and
//! stores it with [`Index::store`] (temporary file, fsync, atomic rename, as the writer does),
//! only if the segment is still there and unchanged (same file, same size). Until then a query
//! scans the segment whole and stays correct.
//!
//! A segment damaged in the middle (a torn or garbage block) is indexed up to the damage, whose
//! offset is logged; the rest of the file is unreadable for every reader (the query's scan,
//! tcpdump and tshark stop there too). Such an index covers fewer bytes than the file, which is
//! not a reason for another rebuild: the next start leaves it alone.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::index::Index;
use crate::segment::{self, ReadLock, Segment};
use crate::Stats;

/// Why a closed segment's index is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No `.idx` file.
    Missing,
    /// The `.idx` cannot be read or does not decode (torn, garbage, foreign).
    Unreadable,
    /// The `.idx` describes more bytes than the segment holds, or packets outside its time
    /// range (an index of another segment).
    Foreign,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Missing => write!(f, "index missing"),
            Why::Unreadable => write!(f, "index unreadable"),
            Why::Foreign => write!(f, "index does not fit the segment (size or time range)"),
        }
    }
}

/// Whether the index of the closed segment `seg` must be rebuilt, and why (`None`: it is
/// usable as it is).
pub fn check(seg: &Segment) -> Option<Why> {
    let bytes = match std::fs::read(seg.index_path()) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(Why::Missing),
        Err(_) => return Some(Why::Unreadable),
    };
    match Index::decode(&bytes) {
        None => Some(Why::Unreadable),
        Some(i) if !segment::index_fits(seg, &i, seg.bytes) => Some(Why::Foreign),
        Some(_) => None,
    }
}

/// A rebuilt index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The index written.
    pub index: Index,
    /// Size of the segment file it describes; more than `index.data_end` when the segment is
    /// damaged at `index.data_end`.
    pub file_bytes: u64,
}

/// Re-indexes the closed segment `seg` from its file and stores the index next to it. Returns
/// `None` (nothing written) when the segment was deleted, replaced or changed size meanwhile.
pub fn rebuild(seg: &Segment) -> io::Result<Option<Rebuilt>> {
    let mut lock = match ReadLock::open(&seg.path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let before = lock.file.metadata()?;
    let index = segment::index_file(&mut lock.file)?;
    let now = match std::fs::metadata(&seg.path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let after = lock.file.metadata()?;
    let same_file = now.dev() == before.dev() && now.ino() == before.ino();
    if !same_file || now.len() != before.len() || after.len() != before.len() {
        return Ok(None);
    }
    index.store(&seg.index_path())?;
    Ok(Some(Rebuilt {
        index,
        file_bytes: before.len(),
    }))
}

/// Checks the closed segments `segs` (oldest first, as [`segment::list`] gives them) newest
/// first and rebuilds the indexes that need it, logging each and counting it in
/// [`Stats::reindexed_segments`]. Returns early when `stop` is set (checked between segments).
pub(crate) fn run(segs: &[Segment], stats: &Stats, stop: &AtomicBool) {
    for s in segs.iter().rev().filter(|s| !s.open) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(why) = check(s) else {
            continue;
        };
        tracing::info!(
            "trace window: {}: {why}; rebuilding it (queries scan the segment whole meanwhile)",
            s.path.display()
        );
        match rebuild(s) {
            Ok(Some(r)) => {
                if r.index.data_end < r.file_bytes {
                    tracing::warn!(
                        "trace window: {} is damaged at offset {}: indexed up to there, the {} bytes after it are unreadable",
                        s.path.display(),
                        r.index.data_end,
                        r.file_bytes - r.index.data_end
                    );
                }
                tracing::info!(
                    "trace window: index of {} rebuilt ({} packets, {} groups)",
                    s.path.display(),
                    r.index.packets,
                    r.index.groups.len()
                );
                stats.reindexed_segments.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => tracing::info!(
                "trace window: {} was deleted or changed while being indexed; index not written",
                s.path.display()
            ),
            Err(e) => tracing::warn!(
                "trace window: cannot rebuild the index of {}: {e}",
                s.path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Window, WindowConfig};
    use como_packet::{LinkType, Packet};

    /// A window of a few closed segments of small UDP packets.
    fn window(dir: &std::path::Path) -> Vec<Segment> {
        let mut cfg = WindowConfig::new(dir);
        cfg.buffer_bytes = 16 * 1024;
        cfg.buffers = 4;
        cfg.segment_bytes = 64 * 1024;
        cfg.snaplen = 1500;
        cfg.direct = false;
        let w = Window::open(cfg).expect("window");
        {
            let mut h = w.writer();
            for i in 0..3000u32 {
                let mut d = vec![0u8; 120];
                d[12] = 8;
                d[14] = 0x45;
                d[23] = 17;
                d[26..30].copy_from_slice(&i.to_be_bytes());
                let p = Packet {
                    ts_ns: 1_700_000_000_000_000_000 + u64::from(i) * 1000,
                    wire_len: 120,
                    data: &d,
                    link: LinkType::Ethernet,
                    interface: 0,
                };
                assert!(h.write_wait(&p));
            }
        }
        w.finish();
        let segs = segment::list(dir).expect("list");
        assert!(segs.len() >= 4, "{segs:?}");
        segs
    }

    #[test]
    fn check_tells_why_and_rebuild_leaves_a_vanished_segment_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let segs = window(tmp.path());
        let (a, b, c) = (&segs[0], &segs[1], &segs[2]);
        assert_eq!(check(a), None);
        let written = std::fs::read(a.index_path()).expect("index");
        std::fs::remove_file(a.index_path()).expect("rm");
        assert_eq!(check(a), Some(Why::Missing));
        std::fs::write(a.index_path(), &written[..written.len() - 1]).expect("torn");
        assert_eq!(check(a), Some(Why::Unreadable));
        let mut long = Index::decode(&written).expect("decodes");
        long.data_end = a.bytes + 1;
        std::fs::write(a.index_path(), long.encode()).expect("long");
        assert_eq!(check(a), Some(Why::Foreign));
        // An index of another segment (its packets outside this one's time range).
        let last = segs.last().expect("segments");
        std::fs::copy(last.index_path(), a.index_path()).expect("copy");
        let other = Index::load(&a.index_path()).expect("decodes");
        assert!(other.data_end <= a.bytes, "pick a smaller donor");
        assert_eq!(check(a), Some(Why::Foreign));
        let r = rebuild(a).expect("rebuild").expect("written");
        assert_eq!(r.file_bytes, a.bytes);
        assert_eq!(std::fs::read(a.index_path()).expect("index"), written);
        assert_eq!(check(a), None);
        // A segment deleted before (or while) it is indexed gets no index.
        std::fs::remove_file(b.index_path()).expect("rm");
        std::fs::remove_file(&b.path).expect("rm");
        assert_eq!(rebuild(b).expect("rebuild"), None);
        assert!(!b.index_path().exists());
        // A file that is all garbage is indexed as holding nothing, without error.
        std::fs::write(&c.path, vec![0xFFu8; c.bytes as usize]).expect("garbage");
        std::fs::remove_file(c.index_path()).expect("rm");
        let r = rebuild(c).expect("rebuild").expect("written");
        assert_eq!((r.index.packets, r.index.data_end), (0, 0));
        assert_eq!(check(c), None);
        assert!(std::fs::read_dir(tmp.path()).expect("dir").all(|e| !e
            .expect("entry")
            .path()
            .to_string_lossy()
            .ends_with(".tmp")));
    }
}
