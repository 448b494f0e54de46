//! Rebuilding lost indexes: a closed segment whose `.idx` is missing, does not decode, or
//! describes more bytes than the segment holds would be scanned whole by every query, forever.
//! When the window opens, a background thread ([`run`]) looks at the closed segments, newest
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
    /// The `.idx` describes this many bytes, more than the segment holds.
    TooLong(u64),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Missing => write!(f, "index missing"),
            Why::Unreadable => write!(f, "index unreadable"),
            Why::TooLong(n) => write!(f, "index describes {n} bytes, more than the file holds"),
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
        Some(i) if i.data_end > seg.bytes => Some(Why::TooLong(i.data_end)),
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
