//! Segment files: names, listing, crash recovery, reader locks and retention.
//!
//! In the window's folder:
//! * `seg-<seq>.pcapng.part` — the segment being written (at most one; a reader may scan it
//!   up to its last complete block);
//! * `seg-<seq>-<start>-<end>.pcapng` — a closed segment, fsynced and renamed atomically from
//!   its `.part` name; `<start>` and `<end>` are the timestamps of its first and last packet in
//!   UTC, `YYYYMMDDTHHMMSS.nnnnnnnnnZ`; `<seq>` is 10 digits, increasing;
//! * `seg-….pcapng.idx` — its index ([`crate::index`]), written (and fsynced) before the
//!   rename, so a closed segment without an index only comes from outside interference (it is
//!   scanned whole until the window, at its next start, rebuilds the index: [`crate::reindex`]).
//!
//! Readers hold a shared `flock` on a segment while they read it; retention takes an exclusive
//! non-blocking lock before deleting and leaves a segment that is being read alone: it skips
//! it, goes on with the next-oldest, and deletes the skipped one at a later pass (the writer
//! runs one every half second), once its reader is gone. A slow or stuck query therefore keeps
//! only the segments it holds, not the disk filling behind them. Nothing else than these names
//! is ever deleted, and only inside the window's folder.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::index::{Index, IndexBuilder};

/// A segment in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number.
    pub seq: u64,
    /// Path of the pcapng file.
    pub path: PathBuf,
    /// Still being written (`.part`).
    pub open: bool,
    /// First and last packet time (ns) from the name (closed segments only).
    pub range: Option<(u64, u64)>,
    /// File size in bytes.
    pub bytes: u64,
}

impl Segment {
    /// Path of its index file.
    pub fn index_path(&self) -> PathBuf {
        index_path(&self.path)
    }
}

/// Whether `idx` can serve as the index of the closed segment `seg`, whose file holds
/// `file_len` bytes: it covers no more than the file, and its packets lie in the time range
/// the segment's name carries (an index copied from another segment does not; one rebuilt up
/// to a damage covers part of that range).
pub fn index_fits(seg: &Segment, idx: &Index, file_len: u64) -> bool {
    let in_range = match seg.range {
        Some((a, b)) => idx.packets == 0 || (a <= idx.ts_min && idx.ts_max <= b),
        None => true,
    };
    idx.data_end <= file_len && in_range
}

/// Index path of a segment path.
pub fn index_path(seg: &Path) -> PathBuf {
    let mut s = seg.as_os_str().to_owned();
    s.push(".idx");
    PathBuf::from(s)
}

/// File name of the open segment `seq`.
pub fn part_name(seq: u64) -> String {
    format!("seg-{seq:010}.pcapng.part")
}

/// File name of the closed segment `seq` covering `[t0, t1]`.
pub fn closed_name(seq: u64, t0: u64, t1: u64) -> String {
    format!("seg-{seq:010}-{}-{}.pcapng", fmt_utc(t0), fmt_utc(t1))
}

/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ` for a time in ns since the epoch.
pub fn fmt_utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses [`fmt_utc`]'s output.
pub fn parse_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 26
        || b.get(8) != Some(&b'T')
        || b.get(15) != Some(&b'.')
        || b.get(25) != Some(&b'Z')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let frac = num(16..25)?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y as i64, m as u32, d as u32)).ok()?;
    // Checked: a year past 2554 does not fit in u64 nanoseconds (a foreign file name in the
    // window's folder must not panic a debug build or wrap in release).
    days.checked_mul(86_400)?
        .checked_add(hh * 3600 + mm * 60 + ss)?
        .checked_mul(1_000_000_000)?
        .checked_add(frac)
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's civil-from-days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What a segment file name says: sequence number, open, time range.
type NameInfo = (u64, bool, Option<(u64, u64)>);

/// Parses a segment file name.
fn parse_name(name: &str) -> Option<NameInfo> {
    let rest = name.strip_prefix("seg-")?;
    if let Some(seq) = rest.strip_suffix(".pcapng.part") {
        return Some((seq.parse().ok().filter(|_| seq.len() == 10)?, true, None));
    }
    let body = rest.strip_suffix(".pcapng")?;
    let mut it = body.split('-');
    let (seq, a, b) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || seq.len() != 10 {
        return None;
    }
    Some((
        seq.parse().ok()?,
        false,
        Some((parse_utc(a)?, parse_utc(b)?)),
    ))
}

/// Segments of `dir`, oldest (lowest sequence) first.
pub fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some((seq, open, range)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let Ok(md) = e.metadata() else {
            continue; // deleted meanwhile
        };
        if !md.is_file() {
            continue;
        }
        out.push(Segment {
            seq,
            path: e.path(),
            open,
            range,
            bytes: md.len(),
        });
    }
    out.sort_by_key(|s| (s.seq, s.open));
    Ok(out)
}

/// A segment opened for reading, with a shared lock that keeps retention away.
#[derive(Debug)]
pub struct ReadLock {
    /// The open file.
    pub file: File,
}

impl ReadLock {
    /// Opens and share-locks `path` (blocks only while retention holds its brief exclusive
    /// lock).
    pub fn open(path: &Path) -> io::Result<ReadLock> {
        let file = File::open(path)?;
        flock(&file, FlockOperation::LockShared)?;
        Ok(ReadLock { file })
    }
}

/// Reads `file` from its start and indexes it up to its last complete block. Returns the
/// index (its `data_end` = that block's end).
pub fn index_file(file: &mut File) -> io::Result<Index> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut b = IndexBuilder::new(Vec::new());
    let mut buf = vec![0u8; 8 << 20];
    let mut have = 0usize;
    let mut off = 0u64;
    loop {
        let n = file.read(buf.get_mut(have..).unwrap_or(&mut []))?;
        let eof = n == 0;
        have += n;
        let end = b.add_chunk(buf.get(..have).unwrap_or(&[]), off);
        off += end as u64;
        buf.copy_within(end..have, 0);
        have -= end;
        if eof {
            break;
        }
        if have == buf.len() {
            // One block larger than the buffer: grow (blocks are at most ~256 KiB + header
            // for a writer's EPB; a corrupt length stops the walk instead).
            if buf.len() >= 64 << 20 {
                break;
            }
            buf.resize(buf.len() * 2, 0);
        }
    }
    Ok(b.finish())
}

/// Recovers an open segment left by a crash: cut at its last complete block, indexed, fsynced,
/// renamed to its closed name. A segment without packets is removed. Returns the closed path.
pub fn recover(seg: &Segment) -> io::Result<Option<PathBuf>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg.path)?;
    let idx = index_file(&mut f)?;
    if idx.packets == 0 {
        drop(f);
        std::fs::remove_file(&seg.path)?;
        return Ok(None);
    }
    if f.metadata()?.len() != idx.data_end {
        tracing::warn!(
            "trace window: {} cut at its last complete block ({} -> {} bytes)",
            seg.path.display(),
            f.metadata()?.len(),
            idx.data_end
        );
        f.set_len(idx.data_end)?;
    }
    f.sync_all()?;
    finish(&seg.path, seg.seq, &idx).map(Some)
}

/// Writes the index of a closed (synced) segment and renames it to its closed name; returns
/// the new path.
pub fn finish(part: &Path, seq: u64, idx: &Index) -> io::Result<PathBuf> {
    let dir = part.parent().unwrap_or(Path::new("."));
    let closed = dir.join(closed_name(seq, idx.ts_min, idx.ts_max));
    idx.store(&index_path(&closed))?;
    std::fs::rename(part, &closed)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(closed)
}

/// Removes leftovers of interrupted index writes and indexes without a segment.
pub fn clean_orphans(dir: &Path) -> io::Result<()> {
    let segs: std::collections::HashSet<PathBuf> = list(dir)?.into_iter().map(|s| s.path).collect();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with("seg-") {
            continue;
        }
        let orphan = if let Some(seg) = name.strip_suffix(".idx") {
            !segs.contains(&dir.join(seg))
        } else {
            name.ends_with(".idx.tmp")
        };
        if orphan {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}

/// Deletes one closed segment and its index unless a reader holds it. Returns the bytes
/// freed, or `None` when it is being read.
pub fn delete(seg: &Segment) -> io::Result<Option<u64>> {
    let f = match File::open(&seg.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(0)),
        Err(e) => return Err(e),
    };
    if flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(None);
    }
    let n = f.metadata()?.len();
    std::fs::remove_file(&seg.path)?;
    let _ = std::fs::remove_file(seg.index_path());
    Ok(Some(n))
}

/// Limits of the window's size.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Oldest data kept, relative to the newest packet written (ns).
    pub window_ns: Option<u64>,
    /// Total bytes of segments.
    pub max_bytes: Option<u64>,
    /// Free space of the filesystem to keep, in percent.
    pub min_free_percent: Option<f64>,
}

/// Free space of the filesystem holding `dir`, in percent.
pub fn free_percent(dir: &Path) -> Option<f64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    (s.f_blocks > 0).then(|| s.f_bavail as f64 * 100.0 / s.f_blocks as f64)
}

/// What [`enforce`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deleted {
    /// Segments removed.
    pub segments: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Segments that were to go but are being read: kept (skipped) for a later pass.
    pub blocked: u64,
}

/// Deletes closed segments, oldest first, one at a time, while a limit is exceeded: age
/// (a segment whose last packet is older than `newest - window`), total bytes (closed and
/// open), free-disk percentage. A segment being read is skipped (kept, counted in
/// [`Deleted::blocked`]) and the next-oldest is considered in its place, for every limit.
///
/// `floor` is retention's memory from one pass to the next (start at 0 and pass the same
/// variable every time): one more than the highest sequence number deleted so far. A closed
/// segment below it is older than one already deleted — it was skipped because it was being
/// read — so it is outside the window whatever the limits say, and goes at the first pass
/// that finds it without a reader.
pub fn enforce(
    dir: &Path,
    limits: &Limits,
    newest_ns: u64,
    floor: &mut u64,
) -> io::Result<Deleted> {
    let mut segs = list(dir)?;
    let mut total: u64 = segs.iter().map(|s| s.bytes).sum();
    let mut out = Deleted::default();
    segs.retain(|s| !s.open);
    for s in &segs {
        let behind = s.seq < *floor;
        let too_old = match (limits.window_ns, s.range) {
            (Some(w), Some((_, end))) => end < newest_ns.saturating_sub(w),
            _ => false,
        };
        let too_big = limits.max_bytes.is_some_and(|m| total > m);
        let too_full = limits
            .min_free_percent
            .is_some_and(|p| free_percent(dir).is_some_and(|f| f < p));
        if !(behind || too_old || too_big || too_full) {
            break;
        }
        match delete(s)? {
            Some(n) => {
                total = total.saturating_sub(s.bytes);
                out.segments += 1;
                out.bytes += n;
                *floor = (*floor).max(s.seq.saturating_add(1));
            }
            None => out.blocked += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_names_past_u64_nanoseconds_are_refused() {
        assert_eq!(parse_utc("99991231T235959.000000000Z"), None);
        assert!(parse_utc("25001231T235959.000000000Z").is_some());
    }

    #[test]
    fn utc_names_round_trip() {
        for ns in [0u64, 1_764_185_194_123_456_789, 951_782_400_000_000_001] {
            assert_eq!(parse_utc(&fmt_utc(ns)), Some(ns), "{}", fmt_utc(ns));
        }
        assert_eq!(
            fmt_utc(1_764_185_194_123_456_789),
            "20251126T192634.123456789Z"
        );
        let n = closed_name(7, 1, 2);
        assert_eq!(parse_name(&n), Some((7, false, Some((1, 2)))));
        assert_eq!(parse_name(&part_name(3)), Some((3, true, None)));
        assert_eq!(parse_name("seg-1-x-y.pcapng"), None);
        assert_eq!(parse_name("other.pcapng"), None);
    }
}
