//! The writer ([`Database`]): open and recovery, append, sync, segment roll, caps; and the shared
//! state that readers ([`ReadHandle`]) see.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::format::{
    decode_segment_header, decode_sidecar, encode_frame, encode_segment_header, encode_sidecar,
    parse_segment_file_name, scan_segment, segment_file_name, sidecar_path, IndexEntry, Sidecar,
    FRAME_HEADER_LEN, MAX_RECORD_BYTES, SEGMENT_HEADER_LEN,
};
use crate::reader::Reader;
use crate::{Error, Options, RecordId};

/// Locks a mutex, ignoring poisoning (the protected data stays consistent: every critical section
/// only assigns plain values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Mutable description of one segment.
#[derive(Debug)]
pub(crate) struct SegInner {
    /// Sparse index (grows while the segment is written).
    pub(crate) index: Vec<IndexEntry>,
    /// Bytes written (header included).
    pub(crate) len: u64,
    /// Timestamp of the newest record written (the first timestamp while there is none).
    pub(crate) last_ts: u64,
    /// Records written.
    pub(crate) records: u64,
    /// Bytes acknowledged: readers never read past this.
    pub(crate) acked_len: u64,
}

/// One segment file, shared by the writer and readers. When it was dropped by the caps
/// (`doomed`), the file is deleted when the last holder lets go.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) seq: u64,
    pub(crate) first_ts: u64,
    pub(crate) doomed: AtomicBool,
    pub(crate) inner: Mutex<SegInner>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.doomed.load(Ordering::Acquire) {
            // Best effort: a file left behind is found and capped again at the next open.
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(sidecar_path(&self.path));
        }
    }
}

/// The segment list and the acknowledgement generation.
#[derive(Debug)]
pub(crate) struct State {
    /// Live segments, oldest first (increasing `seq`, non-decreasing `first_ts`).
    pub(crate) segments: Vec<Arc<Segment>>,
    /// Incremented at every publication of newly acknowledged data.
    pub(crate) ack_gen: u64,
    /// Timestamp of the newest acknowledged record.
    pub(crate) acked_last_ts: Option<u64>,
}

/// State shared by the writer and the readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<State>,
    pub(crate) acked: Condvar,
    pub(crate) stored_bytes: AtomicU64,
}

/// Description of one live segment ([`ReadHandle::segments`]), for monitoring and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// Its sequence number.
    pub seq: u64,
    /// Timestamp of its first record.
    pub first_ts: u64,
    /// Timestamp of its newest written record.
    pub last_ts: u64,
    /// Its size in bytes (header included).
    pub bytes: u64,
    /// Its number of records.
    pub records: u64,
}

/// What `open` had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The last segment, when a torn tail was cut from it.
    pub truncated_file: Option<PathBuf>,
    /// Offset at which it was cut (its new length).
    pub truncated_at: u64,
    /// Bytes cut.
    pub truncated_bytes: u64,
    /// Last segments removed because they held no complete record.
    pub removed_segments: Vec<PathBuf>,
    /// Closed segments whose sidecar was missing or stale and that were scanned.
    pub rescanned_segments: usize,
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    seg: Arc<Segment>,
    file: File,
    len: u64,
    records: u64,
    last_indexed: u64,
}

/// One append-only database (the writer). See the crate docs for the format and the guarantees.
/// Dropping it does not sync: records written since the last [`Database::sync`] stay in the page
/// cache (kept across a process exit, lost on power loss); [`Database::close`] syncs.
#[derive(Debug)]
pub struct Database {
    shared: Arc<Shared>,
    opts: Options,
    active: Option<Active>,
    last_ts: Option<u64>,
    next_seq: u64,
    total_bytes: u64,
    frame: Vec<u8>,
    dirty: bool,
    dir_dirty: bool,
    poisoned: bool,
    report: OpenReport,
}

/// A cheap, cloneable, thread-safe handle for reading a database while its writer appends.
#[derive(Debug, Clone)]
pub struct ReadHandle {
    shared: Arc<Shared>,
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn read_header(file: &File, path: &Path) -> Result<[u8; SEGMENT_HEADER_LEN as usize], Error> {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0)
        .map_err(io_err("read segment header", path))?;
    Ok(h)
}

fn check_header(
    h: &[u8; SEGMENT_HEADER_LEN as usize],
    path: &Path,
    seq: u64,
    first_ts: u64,
) -> Result<(), Error> {
    let corrupt = |reason| Error::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    let (hseq, hts) = decode_segment_header(h).map_err(corrupt)?;
    if (hseq, hts) != (seq, first_ts) {
        return Err(corrupt("segment header does not match the file name"));
    }
    Ok(())
}

fn new_segment(path: PathBuf, seq: u64, first_ts: u64, inner: SegInner) -> Arc<Segment> {
    Arc::new(Segment {
        path,
        seq,
        first_ts,
        doomed: AtomicBool::new(false),
        inner: Mutex::new(inner),
    })
}

/// Best-effort sidecar write (a missing or bad sidecar only costs a scan at the next open).
fn write_sidecar(seg: &Segment, inner: &SegInner) {
    let bytes = encode_sidecar(&Sidecar {
        seq: seg.seq,
        first_ts: seg.first_ts,
        seg_len: inner.len,
        last_ts: inner.last_ts,
        records: inner.records,
        index: inner.index.clone(),
    });
    let _ = fs::write(sidecar_path(&seg.path), bytes);
}

impl Database {
    /// Opens (creating the directory if needed) the database in `dir`, recovering from a crash:
    /// see the crate docs. Caps are enforced before returning.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self, Error> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let mut found: Vec<(u64, u64, PathBuf)> = Vec::new();
        let mut sidecars = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list directory", &dir))? {
            let entry = entry.map_err(io_err("list directory", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((ts, seq)) = parse_segment_file_name(name) {
                found.push((seq, ts, entry.path()));
            } else if name.ends_with(".idx") {
                sidecars.push(entry.path());
            }
        }
        found.sort_unstable_by_key(|f| f.0);
        for pair in found.windows(2) {
            if let [a, b] = pair {
                if a.0 == b.0 {
                    return Err(Error::Inconsistent {
                        path: b.2.clone(),
                        reason: "two segments with the same sequence number",
                    });
                }
            }
        }
        let next_seq = found.last().map_or(0, |f| f.0 + 1);
        let live: HashSet<PathBuf> = found.iter().map(|f| sidecar_path(&f.2)).collect();
        for s in sidecars {
            if !live.contains(&s) {
                let _ = fs::remove_file(&s);
            }
        }

        let mut report = OpenReport::default();
        let mut dir_changed = false;
        let mut active = None;
        while let Some((seq, first_ts, path)) = found.pop() {
            if let Some(a) = recover_last(&path, seq, first_ts, &opts, &mut report)? {
                active = Some(a);
                break;
            }
            fs::remove_file(&path).map_err(io_err("remove empty segment", &path))?;
            let _ = fs::remove_file(sidecar_path(&path));
            report.removed_segments.push(path);
            dir_changed = true;
        }
        let mut segments = Vec::with_capacity(found.len() + 1);
        for (seq, first_ts, path) in found {
            segments.push(load_closed(path, seq, first_ts, &opts, &mut report)?);
        }
        if let Some(a) = &active {
            segments.push(Arc::clone(&a.seg));
        }
        let mut prev_last: Option<u64> = None;
        for s in &segments {
            if prev_last.is_some_and(|p| s.first_ts < p) {
                return Err(Error::Inconsistent {
                    path: s.path.clone(),
                    reason: "segment starts before the end of the previous segment",
                });
            }
            prev_last = Some(lock(&s.inner).last_ts);
        }
        if dir_changed || report.truncated_file.is_some() {
            sync_dir(&dir)?;
        }
        let total_bytes = segments.iter().map(|s| lock(&s.inner).len).sum();
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(State {
                segments,
                ack_gen: 0,
                acked_last_ts: prev_last,
            }),
            acked: Condvar::new(),
            stored_bytes: AtomicU64::new(total_bytes),
        });
        let mut db = Self {
            shared,
            opts,
            active,
            last_ts: prev_last,
            next_seq,
            total_bytes,
            frame: Vec::new(),
            dirty: false,
            dir_dirty: false,
            poisoned: false,
            report,
        };
        db.enforce_caps();
        Ok(db)
    }

    /// What the last `open` repaired.
    #[must_use]
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The database directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A handle for readers in other threads.
    #[must_use]
    pub fn read_handle(&self) -> ReadHandle {
        ReadHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Appends one record. Returns once the frame is written to the kernel (see the crate docs:
    /// it is acknowledged, durable and visible, only after [`Database::sync`]).
    ///
    /// # Errors
    /// [`Error::OutOfOrder`] when `ts` is older than the newest record, [`Error::RecordTooLarge`],
    /// [`Error::Io`] when the write fails (the partial frame is removed; if that fails too the
    /// writer becomes [`Error::Poisoned`]).
    pub fn append(&mut self, ts: u64, payload: &[u8]) -> Result<RecordId, Error> {
        if self.poisoned {
            return Err(Error::Poisoned {
                dir: self.shared.dir.clone(),
            });
        }
        if let Some(last_ts) = self.last_ts {
            if ts < last_ts {
                return Err(Error::OutOfOrder { ts, last_ts });
            }
        }
        if payload.len() > MAX_RECORD_BYTES {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let frame_len = FRAME_HEADER_LEN + payload.len() as u64;
        let roll = match &self.active {
            None => true,
            Some(a) => a.records > 0 && a.len + frame_len > self.opts.segment_bytes,
        };
        if roll {
            self.roll(ts)?;
        }
        let Some(a) = self.active.as_mut() else {
            return Err(Error::Poisoned {
                dir: self.shared.dir.clone(),
            });
        };
        self.frame.clear();
        encode_frame(&mut self.frame, ts, payload);
        if let Err(e) = a.file.write_all(&self.frame) {
            if a.file.set_len(a.len).is_err() {
                self.poisoned = true;
            }
            return Err(Error::Io {
                op: "write",
                path: a.seg.path.clone(),
                source: e,
            });
        }
        let offset = a.len;
        a.len += frame_len;
        a.records += 1;
        {
            let mut inner = lock(&a.seg.inner);
            if a.records == 1 || offset - a.last_indexed >= self.opts.index_every {
                inner.index.push(IndexEntry { ts, offset });
                a.last_indexed = offset;
            }
            inner.len = a.len;
            inner.last_ts = ts;
            inner.records = a.records;
        }
        let id = RecordId {
            segment: a.seg.seq,
            offset,
        };
        self.total_bytes += frame_len;
        self.shared
            .stored_bytes
            .store(self.total_bytes, Ordering::Release);
        self.last_ts = Some(ts);
        self.dirty = true;
        self.enforce_caps();
        Ok(id)
    }

    /// Closes the current segment (syncing it and writing its sidecar) and starts segment
    /// `next_seq` whose first record will have timestamp `ts`.
    fn roll(&mut self, ts: u64) -> Result<(), Error> {
        if let Some(a) = self.active.take() {
            if let Err(e) = a.file.sync_data() {
                let path = a.seg.path.clone();
                self.active = Some(a);
                return Err(Error::Io {
                    op: "fdatasync",
                    path,
                    source: e,
                });
            }
            self.dirty = false;
            let last_ts = {
                let mut inner = lock(&a.seg.inner);
                inner.acked_len = inner.len;
                write_sidecar(&a.seg, &inner);
                inner.last_ts
            };
            self.publish(Some(last_ts));
        }
        if self.dir_dirty {
            sync_dir(&self.shared.dir)?;
            self.dir_dirty = false;
        }
        let seq = self.next_seq;
        let path = self.shared.dir.join(segment_file_name(ts, seq));
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        self.next_seq += 1;
        self.dir_dirty = true;
        if let Err(e) = file.write_all(&encode_segment_header(seq, ts)) {
            let _ = fs::remove_file(&path);
            return Err(Error::Io {
                op: "write segment header",
                path,
                source: e,
            });
        }
        let seg = new_segment(
            path,
            seq,
            ts,
            SegInner {
                index: Vec::new(),
                len: SEGMENT_HEADER_LEN,
                last_ts: ts,
                records: 0,
                acked_len: SEGMENT_HEADER_LEN,
            },
        );
        lock(&self.shared.state).segments.push(Arc::clone(&seg));
        self.total_bytes += SEGMENT_HEADER_LEN;
        self.shared
            .stored_bytes
            .store(self.total_bytes, Ordering::Release);
        self.active = Some(Active {
            seg,
            file,
            len: SEGMENT_HEADER_LEN,
            records: 0,
            last_indexed: SEGMENT_HEADER_LEN,
        });
        Ok(())
    }

    /// Makes every written record durable (`fdatasync`, and `fsync` of the directory after a new
    /// segment was created) and then visible to readers: acknowledged.
    pub fn sync(&mut self) -> Result<(), Error> {
        let Some(a) = &self.active else { return Ok(()) };
        if self.dirty {
            a.file
                .sync_data()
                .map_err(io_err("fdatasync", &a.seg.path))?;
            self.dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.shared.dir)?;
            self.dir_dirty = false;
        }
        {
            let mut inner = lock(&a.seg.inner);
            inner.acked_len = inner.len;
        }
        self.publish(self.last_ts);
        Ok(())
    }

    /// Announces newly acknowledged data to readers.
    fn publish(&self, last_ts: Option<u64>) {
        let mut st = lock(&self.shared.state);
        st.ack_gen += 1;
        if last_ts.is_some() {
            st.acked_last_ts = last_ts;
        }
        drop(st);
        self.shared.acked.notify_all();
    }

    /// Syncs and closes the database.
    pub fn close(mut self) -> Result<(), Error> {
        self.sync()
    }

    /// Drops the oldest segments while a cap is exceeded (never the segment being written).
    /// Returns how many were dropped. Also run after every append and at open.
    pub fn enforce_caps(&mut self) -> usize {
        let mut dropped = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            while st.segments.len() > 1 {
                let Some(oldest) = st.segments.first() else {
                    break;
                };
                let (len, last) = {
                    let inner = lock(&oldest.inner);
                    (inner.len, inner.last_ts)
                };
                let by_bytes = self.opts.max_bytes.is_some_and(|m| self.total_bytes > m);
                let by_age = match (self.opts.retention_ns, self.last_ts) {
                    (Some(r), Some(newest)) => last < newest.saturating_sub(r),
                    _ => false,
                };
                if !(by_bytes || by_age) {
                    break;
                }
                let seg = st.segments.remove(0);
                seg.doomed.store(true, Ordering::Release);
                self.total_bytes -= len;
                dropped.push(seg);
            }
        }
        self.shared
            .stored_bytes
            .store(self.total_bytes, Ordering::Release);
        // Files are deleted here unless a reader still holds them.
        dropped.len()
    }

    /// Timestamp of the oldest stored record.
    #[must_use]
    pub fn first_ts(&self) -> Option<u64> {
        self.read_handle().first_ts()
    }

    /// Timestamp of the newest written (not necessarily acknowledged) record.
    #[must_use]
    pub fn last_ts(&self) -> Option<u64> {
        self.last_ts
    }

    /// Total size of the live segment files (headers included).
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Snapshot reader over the acknowledged records with timestamps in `range`; see
    /// [`ReadHandle::reader`].
    #[must_use]
    pub fn reader(&self, range: impl RangeBounds<u64>) -> Reader {
        self.read_handle().reader(range)
    }

    /// The live segments, oldest first.
    #[must_use]
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.read_handle().segments()
    }
}

/// Recovers the last segment: validates its header, cuts a torn tail, reopens it for appending.
/// `None` when it holds no complete record (the caller removes it).
fn recover_last(
    path: &Path,
    seq: u64,
    first_ts: u64,
    opts: &Options,
    report: &mut OpenReport,
) -> Result<Option<Active>, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open segment", path))?;
    let len = file.metadata().map_err(io_err("stat segment", path))?.len();
    if len < SEGMENT_HEADER_LEN {
        return Ok(None);
    }
    let h = read_header(&file, path)?;
    if h.iter().all(|&b| b == 0) {
        // Never-synced header (the file system extended the file but lost the data).
        return Ok(None);
    }
    check_header(&h, path, seq, first_ts)?;
    let scan =
        scan_segment(&file, len, first_ts, opts.index_every).map_err(io_err("read", path))?;
    if let Some(p) = &scan.problem {
        if p.followed_by_valid {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: p.offset,
                reason: p.reason,
            });
        }
        file.set_len(scan.end)
            .map_err(io_err("truncate torn tail", path))?;
        report.truncated_file = Some(path.to_path_buf());
        report.truncated_at = scan.end;
        report.truncated_bytes = len - scan.end;
    }
    if scan.records == 0 {
        return Ok(None);
    }
    // What a previous process wrote may still be only in the page cache: make it durable, since
    // it counts as acknowledged from now on.
    file.sync_data().map_err(io_err("fdatasync", path))?;
    let _ = fs::remove_file(sidecar_path(path));
    drop(file);
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("open segment for append", path))?;
    let last_indexed = scan.index.last().map_or(SEGMENT_HEADER_LEN, |e| e.offset);
    let seg = new_segment(
        path.to_path_buf(),
        seq,
        first_ts,
        SegInner {
            index: scan.index,
            len: scan.end,
            last_ts: scan.last_ts,
            records: scan.records,
            acked_len: scan.end,
        },
    );
    Ok(Some(Active {
        seg,
        file,
        len: scan.end,
        records: scan.records,
        last_indexed,
    }))
}

/// Loads a closed segment from its sidecar, or by a full scan (which must find no problem).
fn load_closed(
    path: PathBuf,
    seq: u64,
    first_ts: u64,
    opts: &Options,
    report: &mut OpenReport,
) -> Result<Arc<Segment>, Error> {
    let file = File::open(&path).map_err(io_err("open segment", &path))?;
    let len = file
        .metadata()
        .map_err(io_err("stat segment", &path))?
        .len();
    if len < SEGMENT_HEADER_LEN {
        return Err(Error::Corrupt {
            path,
            offset: 0,
            reason: "closed segment shorter than its header",
        });
    }
    check_header(&read_header(&file, &path)?, &path, seq, first_ts)?;
    if let Some(sc) = fs::read(sidecar_path(&path))
        .ok()
        .and_then(|b| decode_sidecar(&b))
    {
        if sc.seq == seq && sc.first_ts == first_ts && sc.seg_len == len && sc.records > 0 {
            return Ok(new_segment(
                path,
                seq,
                first_ts,
                SegInner {
                    index: sc.index,
                    len,
                    last_ts: sc.last_ts,
                    records: sc.records,
                    acked_len: len,
                },
            ));
        }
    }
    let scan =
        scan_segment(&file, len, first_ts, opts.index_every).map_err(io_err("read", &path))?;
    if let Some(p) = scan.problem {
        return Err(Error::Corrupt {
            path,
            offset: p.offset,
            reason: p.reason,
        });
    }
    if scan.records == 0 {
        return Err(Error::Corrupt {
            path,
            offset: SEGMENT_HEADER_LEN,
            reason: "closed segment holds no record",
        });
    }
    report.rescanned_segments += 1;
    let seg = new_segment(
        path,
        seq,
        first_ts,
        SegInner {
            index: scan.index,
            len,
            last_ts: scan.last_ts,
            records: scan.records,
            acked_len: len,
        },
    );
    write_sidecar(&seg, &lock(&seg.inner));
    Ok(seg)
}

/// Converts a range of timestamps to inclusive bounds; `None` when it is empty.
pub(crate) fn bounds(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    use std::ops::Bound;
    let from = match range.start_bound() {
        Bound::Included(&x) => x,
        Bound::Excluded(&x) => x.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&x) => Some(x),
        Bound::Excluded(&x) => Some(x.checked_sub(1)?),
        Bound::Unbounded => None,
    };
    if to.is_some_and(|t| t < from) {
        return None;
    }
    Some((from, to))
}

impl ReadHandle {
    /// A reader of the records acknowledged now whose timestamps are in `range` (any Rust range
    /// of `u64`: `a..b`, `a..=b`, `a..`, `..`), in append order. It seeks by time in O(log n).
    #[must_use]
    pub fn reader(&self, range: impl RangeBounds<u64>) -> Reader {
        Reader::new(Arc::clone(&self.shared), bounds(&range), false)
    }

    /// Like [`ReadHandle::reader`], but the reader also returns records acknowledged after its
    /// creation: when it has caught up, `next()` returns `None` and can be called again later
    /// (see [`Reader::wait`]). It ends for good after a record past the end of `range`.
    /// Records in segments dropped by the caps before the reader reached them are skipped.
    #[must_use]
    pub fn follow(&self, range: impl RangeBounds<u64>) -> Reader {
        Reader::new(Arc::clone(&self.shared), bounds(&range), true)
    }

    /// Timestamp of the oldest stored record.
    #[must_use]
    pub fn first_ts(&self) -> Option<u64> {
        let st = lock(&self.shared.state);
        let first = st.segments.first()?;
        let has_records = lock(&first.inner).records > 0;
        has_records.then_some(first.first_ts)
    }

    /// Timestamp of the newest acknowledged record.
    #[must_use]
    pub fn last_ts(&self) -> Option<u64> {
        lock(&self.shared.state).acked_last_ts
    }

    /// Total size of the live segment files (headers included).
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.shared.stored_bytes.load(Ordering::Acquire)
    }

    /// The live segments, oldest first.
    #[must_use]
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = lock(&self.shared.state);
        st.segments
            .iter()
            .map(|s| {
                let inner = lock(&s.inner);
                SegmentInfo {
                    path: s.path.clone(),
                    seq: s.seq,
                    first_ts: s.first_ts,
                    last_ts: inner.last_ts,
                    bytes: inner.len,
                    records: inner.records,
                }
            })
            .collect()
    }

    /// Reads every acknowledged record, checking every checksum; returns how many there are, or
    /// the first problem (with file and offset).
    pub fn verify(&self) -> Result<u64, Error> {
        let mut n = 0;
        for r in self.reader(..) {
            r?;
            n += 1;
        }
        Ok(n)
    }
}
