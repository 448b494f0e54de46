//! [`Reader`]: an iterator over the records of a time range, seeking by time through the segment
//! list and the sparse index, and reading only acknowledged bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::{lock, Segment, Shared};
use crate::format::{read_frame, Frame, SEGMENT_HEADER_LEN};
use crate::{Error, Record, RecordId};

/// The segment being read.
#[derive(Debug)]
struct Cursor {
    seg: Arc<Segment>,
    file: BufReader<File>,
    pos: u64,
    limit: u64,
    prev_ts: u64,
}

/// An iterator over stored records (`Result<Record, Error>`), oldest first, made by
/// [`crate::ReadHandle::reader`] (a snapshot) or [`crate::ReadHandle::follow`] (also newer
/// records). It holds the segments it has still to read, so the caps do not delete them under it.
/// After an error it returns `None`.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    from: u64,
    to: Option<u64>,
    follow: bool,
    /// Segments still to read with, for a snapshot, the acknowledged length at creation.
    pending: VecDeque<(Arc<Segment>, u64)>,
    cur: Option<Cursor>,
    /// Highest segment sequence number taken so far.
    last_seq: Option<u64>,
    /// Acknowledgement generation seen at the last refresh.
    gen: u64,
    done: bool,
}

impl Reader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        bounds: Option<(u64, Option<u64>)>,
        follow: bool,
    ) -> Self {
        let (from, to) = bounds.unwrap_or((0, None));
        let mut r = Self {
            shared,
            from,
            to,
            follow,
            pending: VecDeque::new(),
            cur: None,
            last_seq: None,
            gen: 0,
            done: bounds.is_none(),
        };
        if !r.done {
            r.take_new_segments();
        }
        r
    }

    /// Queues the live segments after `last_seq` (the first time: from the one that may hold
    /// `from`, found by binary search) that may hold records up to `to`; notes the generation.
    fn take_new_segments(&mut self) {
        let st = lock(&self.shared.state);
        self.gen = st.ack_gen;
        let start = match self.last_seq {
            Some(seq) => st.segments.partition_point(|s| s.seq <= seq),
            // Segments before the last one starting before `from` hold only older records
            // (segment i ends at or before the first timestamp of segment i + 1).
            None => st
                .segments
                .partition_point(|s| s.first_ts < self.from)
                .saturating_sub(1),
        };
        for s in st.segments.iter().skip(start) {
            if self.to.is_some_and(|t| s.first_ts > t) {
                break;
            }
            let limit = lock(&s.inner).acked_len;
            self.pending.push_back((Arc::clone(s), limit));
            self.last_seq = Some(s.seq);
        }
    }

    /// Opens the next pending segment at the last index entry before `from`.
    fn open_next(&mut self) -> Option<Result<(), Error>> {
        let (seg, snapshot_limit) = self.pending.pop_front()?;
        let (start, prev_ts, limit) = {
            let inner = lock(&seg.inner);
            let i = inner.index.partition_point(|e| e.ts < self.from);
            let (start, prev_ts) = match i.checked_sub(1).and_then(|j| inner.index.get(j)) {
                Some(e) => (e.offset, e.ts),
                None => (SEGMENT_HEADER_LEN, seg.first_ts),
            };
            let limit = if self.follow {
                inner.acked_len
            } else {
                snapshot_limit
            };
            (start, prev_ts, limit)
        };
        let opened = File::open(&seg.path).and_then(|f| {
            let mut f = BufReader::with_capacity(64 * 1024, f);
            f.seek(SeekFrom::Start(start))?;
            Ok(f)
        });
        match opened {
            Ok(file) => {
                self.cur = Some(Cursor {
                    seg,
                    file,
                    pos: start,
                    limit,
                    prev_ts,
                });
                Some(Ok(()))
            }
            Err(source) => Some(Err(Error::Io {
                op: "open segment",
                path: seg.path.clone(),
                source,
            })),
        }
    }

    /// Follow mode, current segment exhausted: `true` when there is more to read now (the
    /// segment grew, or it is closed and newer segments exist).
    fn refresh(&mut self) -> Result<bool, Error> {
        self.take_new_segments();
        let Some(c) = self.cur.as_mut() else {
            return Ok(!self.pending.is_empty());
        };
        let acked = lock(&c.seg.inner).acked_len;
        if acked > c.limit {
            c.limit = acked;
            // Drop buffered bytes that were read past the old limit.
            c.file
                .seek(SeekFrom::Start(c.pos))
                .map_err(|source| Error::Io {
                    op: "seek",
                    path: c.seg.path.clone(),
                    source,
                })?;
            return Ok(true);
        }
        if self.pending.is_empty() {
            return Ok(false);
        }
        self.cur = None;
        Ok(true)
    }

    /// Follow mode: blocks until records newer than what this reader has seen are acknowledged,
    /// or `timeout` passes. Returns whether something new was acknowledged (then call `next`).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        while st.ack_gen == self.gen {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match self.shared.acked.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    fn fail(&mut self, e: Error) -> Option<Result<Record, Error>> {
        self.done = true;
        self.cur = None;
        self.pending.clear();
        Some(Err(e))
    }

    fn corrupt(path: PathBuf, offset: u64, reason: &'static str) -> Error {
        Error::Corrupt {
            path,
            offset,
            reason,
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let Some(c) = self.cur.as_mut() else {
                match self.open_next() {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => return self.fail(e),
                    None if self.follow => match self.refresh() {
                        Ok(true) => continue,
                        Ok(false) => return None,
                        Err(e) => return self.fail(e),
                    },
                    None => {
                        self.done = true;
                        return None;
                    }
                }
            };
            let mut payload = Vec::new();
            let offset = c.pos;
            match read_frame(&mut c.file, offset, c.limit, &mut payload) {
                Err(source) => {
                    let e = Error::Io {
                        op: "read",
                        path: c.seg.path.clone(),
                        source,
                    };
                    return self.fail(e);
                }
                Ok(Frame::Bad(reason)) => {
                    let e = Self::corrupt(c.seg.path.clone(), offset, reason);
                    return self.fail(e);
                }
                Ok(Frame::End) => {
                    if self.follow {
                        match self.refresh() {
                            Ok(true) => continue,
                            Ok(false) => return None,
                            Err(e) => return self.fail(e),
                        }
                    }
                    self.cur = None;
                }
                Ok(Frame::Ok { ts, frame_len }) => {
                    if ts < c.prev_ts {
                        let e = Self::corrupt(
                            c.seg.path.clone(),
                            offset,
                            "record timestamp older than the previous record",
                        );
                        return self.fail(e);
                    }
                    c.prev_ts = ts;
                    c.pos += frame_len;
                    if ts < self.from {
                        continue;
                    }
                    if self.to.is_some_and(|t| ts > t) {
                        self.done = true;
                        self.cur = None;
                        self.pending.clear();
                        return None;
                    }
                    let id = RecordId {
                        segment: c.seg.seq,
                        offset,
                    };
                    return Some(Ok(Record { ts, id, payload }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Database, Options, FRAME_HEADER_LEN};

    /// The sparse index places the reader at most `index_every` bytes (plus one frame) before the
    /// first record in range, however deep in a large segment it is: no scan from the start.
    #[test]
    fn seek_lands_within_one_index_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            segment_bytes: 8 << 20,
            index_every: 512,
            ..Options::default()
        };
        let mut db = Database::open(dir.path(), opts).expect("open");
        let mut offsets = Vec::new();
        for i in 0..50_000u64 {
            let payload = vec![0u8; (i % 40) as usize];
            offsets.push((i / 2, db.append(i / 2, &payload).expect("append").offset));
        }
        db.sync().expect("sync");
        assert_eq!(db.segments().len(), 1);
        let max_frame = FRAME_HEADER_LEN + 40;
        let mut x = 12_345u64;
        for _ in 0..2000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let from = (x >> 33) % 25_000;
            let mut r = db.reader(from..);
            assert!(matches!(r.open_next(), Some(Ok(()))));
            let pos = r.cur.as_ref().expect("cursor").pos;
            let target = offsets
                .iter()
                .find(|(t, _)| *t >= from)
                .map(|&(_, o)| o)
                .expect("a record");
            assert!(
                pos <= target,
                "from {from}: started at {pos} after the record at {target}"
            );
            assert!(
                target - pos <= 512 + max_frame,
                "from {from}: started {} bytes early",
                target - pos
            );
        }
    }
}
