//! The CoMo-rs storage manager (CoMo's "bytestream"): one append-only, time-indexed database per
//! module, capped by size and by age, safe across a crash, read by many threads while one writer
//! appends.
//!
//! Records are opaque byte strings (the module layer serializes and versions them) each with a
//! timestamp in nanoseconds; timestamps never go down (an older one is refused with
//! [`Error::OutOfOrder`], never reordered). Equal timestamps are allowed.
//!
//! ```no_run
//! # fn main() -> Result<(), como_storage::Error> {
//! use como_storage::{Database, Options};
//! let mut db = Database::open("/var/lib/como/traffic", Options::default())?;
//! db.append(1_700_000_000_000_000_000, b"record")?;
//! db.sync()?; // acknowledged: durable and visible to readers
//! let readers = db.read_handle(); // Clone + Send + Sync: give it to the query threads
//! for rec in readers.reader(1_700_000_000_000_000_000..) {
//!     let rec = rec?;
//!     println!("{} {} bytes", rec.ts, rec.payload.len());
//! }
//! # Ok(()) }
//! ```
//!
//! # Durability: written, acknowledged
//! - [`Database::append`] returns once the whole frame was handed to the kernel in one `write(2)`
//!   (**written**): it survives the crash of the process (it is in the page cache) but not a power
//!   loss, and readers do not see it yet.
//! - [`Database::sync`] `fdatasync`s the segment being written (and `fsync`s the directory when a
//!   segment file was created) and then publishes everything written so far: those records are
//!   **acknowledged**. An acknowledged record survives a crash of the process or of the machine
//!   and is visible to every reader created (or refreshed) afterwards. Rolling to a new segment
//!   also syncs the segment it closes, so every closed segment is durable and complete.
//! - At open, the last segment is scanned and a torn tail (short frame header, record extending
//!   past the end of the file, checksum mismatch, timestamp going backwards) is cut off (the file
//!   is truncated to the error-free prefix and synced; [`OpenReport`] says what was cut). A last
//!   segment with no complete record (e.g. a crash between creating it and writing its first
//!   record) is removed. Whatever survives the open counts as acknowledged.
//! - A bad frame in a **closed** segment, or a bad frame in the last segment that is followed by
//!   a valid frame (so it is damage, not a torn write), is reported as [`Error::Corrupt`] with the
//!   file and the offset of the frame, never skipped silently: by `open` when it scans the segment,
//!   by a [`Reader`] (then it stops) when it reaches it, and by [`ReadHandle::verify`].
//!   Limitation: damage to the length field of a record in the last segment makes it look like a
//!   torn tail, and the records after it are cut.
//!
//! # On-disk format (version 1, all integers little-endian)
//! A database is a directory. Each **segment** is a file `<first_ts>-<seq>.seg` (20 and 10
//! decimal digits, zero padded: `first_ts` is the timestamp of its first record, `seq` its
//! sequence number, increasing from segment to segment). Other files are ignored.
//!
//! Segment header, 32 bytes:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `COMOSEG\0` |
//! | 8  | 4 | format version (1) |
//! | 12 | 8 | `seq` (must match the file name) |
//! | 20 | 8 | `first_ts` (must match the file name and the first record) |
//! | 28 | 4 | CRC-32C of bytes 0..28 |
//!
//! Then record frames, back to back from offset 32 to the end of the file:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4 | payload length `n` (at most [`MAX_RECORD_BYTES`]) |
//! | 4  | 8 | timestamp (ns) |
//! | 12 | 4 | CRC-32C of the 12 bytes above followed by the payload |
//! | 16 | n | payload |
//!
//! A segment holds at least one record. The writer rolls to a new segment when the next frame
//! would take the current one past [`Options::segment_bytes`] (a record larger than that gets a
//! segment of its own).
//!
//! **Time index.** In memory, each segment has a sparse index: `(ts, offset)` of its first record
//! and of the first record at least [`Options::index_every`] bytes after the previous entry. When
//! a segment is closed the index is written to a **sidecar** `<same name>.idx`:
//! magic `COMOIDX\0`, version u32, reserved u32, then u64 `seq`, `first_ts`, segment length,
//! last record's timestamp, record count, entry count `k`, then `k` × (u64 ts, u64 offset), then
//! a CRC-32C of everything before. At open a closed segment's sidecar is used when it is valid and
//! matches the segment (seq, first timestamp, length); otherwise the segment is scanned (which
//! verifies every checksum) and the sidecar rewritten. The last segment is always scanned.
//! A query for records from `t` binary-searches the segments by first timestamp, then that
//! segment's index, and starts reading at the last index entry before `t`: O(log n) to find the
//! place, then at most about `index_every` bytes of older records skipped.
//!
//! `examples/storage_speed.rs` measures append, full-read and seek speed.
//!
//! # Caps
//! [`Options::max_bytes`] (CoMo's `streamsize`, counting whole segment files) and
//! [`Options::retention_ns`] (a segment expires when its newest record is older than the newest
//! record of the database minus the retention). They are enforced after every append, at open and
//! by [`Database::enforce_caps`]: the oldest segment is dropped while a cap is exceeded, one whole
//! segment at a time and never more than needed; the segment being written is never dropped (so
//! `max_bytes` smaller than a segment keeps that one segment).
//!
//! # Concurrency
//! One [`Database`] (the writer, `&mut self`) per directory and process: nothing locks the
//! directory against a second writer, the caller must not open one twice. Any number of
//! [`Reader`]s in any threads, made from a [`ReadHandle`]. A snapshot reader ([`ReadHandle::reader`])
//! sees exactly the records acknowledged when it was created; a following reader
//! ([`ReadHandle::follow`]) also picks up records acknowledged later (its iterator returns `None`
//! when it has caught up and can be polled again; [`Reader::wait`] blocks until something new is
//! acknowledged). A segment dropped by the caps is deleted from disk only when the last reader
//! holding it lets go (the reader holds it through a reference count; deletion is deferred, not
//! done under the reader): until then it no longer counts in [`Database::stored_bytes`] but still
//! occupies the disk. If the process dies before, the file is found again at the next open and the
//! caps drop it again.

mod crc32c;
mod db;
mod format;
mod reader;

use std::io;
use std::path::PathBuf;

pub use crate::crc32c::{crc32c, Crc32c};
pub use crate::db::{Database, OpenReport, ReadHandle, SegmentInfo};
pub use crate::format::{FORMAT_VERSION, FRAME_HEADER_LEN, MAX_RECORD_BYTES, SEGMENT_HEADER_LEN};
pub use crate::reader::Reader;

/// Errors of the storage manager; each names the file (and the offset when there is one).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (e.g. "write", "fdatasync").
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A frame or header that cannot be trusted, where it cannot be a torn tail.
    #[error("corrupt data in {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment (or sidecar) file.
        path: PathBuf,
        /// Byte offset of the bad frame (0 for a bad segment header).
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The segments of the directory do not form one time-ordered sequence.
    #[error("inconsistent database at {}: {reason}", path.display())]
    Inconsistent {
        /// The segment where the inconsistency shows.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// `append` with a timestamp older than the newest record.
    #[error("record timestamp {ts} is older than the newest stored record ({last_ts})")]
    OutOfOrder {
        /// The refused timestamp.
        ts: u64,
        /// The newest timestamp in the database.
        last_ts: u64,
    },
    /// `append` with a payload larger than [`MAX_RECORD_BYTES`].
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Options that cannot work.
    #[error("invalid storage options: {0}")]
    InvalidOptions(&'static str),
    /// A failed write could not be undone (truncating the partial frame failed): the writer
    /// refuses further appends; reopening the database recovers.
    #[error("database {} is unusable after a failed write; reopen it", dir.display())]
    Poisoned {
        /// The database directory.
        dir: PathBuf,
    },
}

/// Configuration of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Size at which a segment is closed and a new one started (bytes, including the header).
    /// Default 64 MiB. At least `SEGMENT_HEADER_LEN + FRAME_HEADER_LEN`.
    pub segment_bytes: u64,
    /// Cap on the total size of the segment files (CoMo's `streamsize`); `None`: unlimited.
    pub max_bytes: Option<u64>,
    /// Cap on age relative to the newest record, in ns (CoMo's `retention`); `None`: unlimited.
    pub retention_ns: Option<u64>,
    /// Distance in bytes between sparse-index entries. Default 64 KiB. At least 1.
    pub index_every: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_bytes: None,
            retention_ns: None,
            index_every: 64 << 10,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        if self.segment_bytes < SEGMENT_HEADER_LEN + FRAME_HEADER_LEN {
            return Err(Error::InvalidOptions(
                "segment_bytes must hold a segment header and a frame header (48 bytes)",
            ));
        }
        if self.index_every == 0 {
            return Err(Error::InvalidOptions("index_every must be at least 1"));
        }
        Ok(())
    }
}

/// Where a record is stored: its segment's sequence number and the byte offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// Sequence number of the segment.
    pub segment: u64,
    /// Offset of the frame in the segment file.
    pub offset: u64,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its timestamp (ns).
    pub ts: u64,
    /// Where it is stored.
    pub id: RecordId,
    /// Its payload, as appended.
    pub payload: Vec<u8>,
}
