//! Encoding and decoding of the on-disk structures: segment header, record frame, index sidecar
//! (the layouts are documented in the crate docs), and the sequential segment scan used at open.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::crc32c::{crc32c, Crc32c};

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"COMOSEG\0";
/// Magic number at the start of every index sidecar.
pub const INDEX_MAGIC: [u8; 8] = *b"COMOIDX\0";
/// On-disk format version written in segment headers and sidecars; other versions are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the segment header; the first record frame starts at this offset.
pub const SEGMENT_HEADER_LEN: u64 = 32;
/// Length of a record frame header (length, timestamp, checksum).
pub const FRAME_HEADER_LEN: u64 = 16;
/// Largest payload accepted by [`crate::Database::append`] (1 GiB); a frame announcing more is
/// treated as corrupt.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// One sparse-index entry: the record at byte `offset` of its segment has timestamp `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) ts: u64,
    pub(crate) offset: u64,
}

/// The segment header for segment `seq` whose first record has timestamp `first_ts`.
pub(crate) fn encode_segment_header(seq: u64, first_ts: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h[20..28].copy_from_slice(&first_ts.to_le_bytes());
    let crc = crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header into `(seq, first_ts)`, or says what is wrong with it.
pub(crate) fn decode_segment_header(
    h: &[u8; SEGMENT_HEADER_LEN as usize],
) -> Result<(u64, u64), &'static str> {
    if h[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic");
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc != crc32c(&h[0..28]) {
        return Err("segment header checksum mismatch");
    }
    if version != FORMAT_VERSION {
        return Err("unsupported segment format version");
    }
    let seq = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    let first_ts = u64::from_le_bytes([h[20], h[21], h[22], h[23], h[24], h[25], h[26], h[27]]);
    Ok((seq, first_ts))
}

/// The checksum of a frame: CRC-32C over the length and timestamp fields, then the payload.
fn frame_crc(len: u32, ts: u64, payload: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(&len.to_le_bytes());
    c.update(&ts.to_le_bytes());
    c.update(payload);
    c.finish()
}

/// Appends the frame of one record (header then payload) to `out`.
/// The caller has checked `payload.len() <= MAX_RECORD_BYTES`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, ts: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&frame_crc(len, ts, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading one frame at some offset found.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A valid frame: its timestamp and total length (header + payload); the payload was read.
    Ok { ts: u64, frame_len: u64 },
    /// The offset is exactly the end of the readable region.
    End,
    /// The bytes there are not a valid frame, for this reason.
    Bad(&'static str),
}

/// Reads the frame at `offset` from `r` (positioned at `offset`), where the readable region ends
/// at `limit`; the payload goes into `payload` (resized).
pub(crate) fn read_frame<R: Read>(
    r: &mut R,
    offset: u64,
    limit: u64,
    payload: &mut Vec<u8>,
) -> io::Result<Frame> {
    let remaining = limit.saturating_sub(offset);
    if remaining == 0 {
        return Ok(Frame::End);
    }
    if remaining < FRAME_HEADER_LEN {
        return Ok(Frame::Bad("truncated frame header"));
    }
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    if let Err(e) = r.read_exact(&mut h) {
        return eof_as_bad(e);
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let ts = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
    let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let Ok(len_usize) = usize::try_from(len) else {
        return Ok(Frame::Bad("record length exceeds the maximum"));
    };
    if len_usize > MAX_RECORD_BYTES {
        return Ok(Frame::Bad("record length exceeds the maximum"));
    }
    if u64::from(len) > remaining - FRAME_HEADER_LEN {
        return Ok(Frame::Bad("record extends past the end of the segment"));
    }
    payload.clear();
    payload.resize(len_usize, 0);
    if let Err(e) = r.read_exact(payload) {
        return eof_as_bad(e);
    }
    if frame_crc(len, ts, payload) != crc {
        return Ok(Frame::Bad("record checksum mismatch"));
    }
    Ok(Frame::Ok {
        ts,
        frame_len: FRAME_HEADER_LEN + u64::from(len),
    })
}

fn eof_as_bad(e: io::Error) -> io::Result<Frame> {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Ok(Frame::Bad("unexpected end of file"))
    } else {
        Err(e)
    }
}

/// The first problem a scan met.
#[derive(Debug)]
pub(crate) struct Problem {
    /// Offset of the first bad frame.
    pub(crate) offset: u64,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
    /// A complete, valid frame follows the bad one (so this is corruption inside the data, not
    /// a torn tail).
    pub(crate) followed_by_valid: bool,
}

/// The result of scanning a segment from its first frame.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Valid records before the first problem.
    pub(crate) records: u64,
    /// Timestamp of the last valid record (the header's `first_ts` when there is none).
    pub(crate) last_ts: u64,
    /// Sparse index of the valid prefix.
    pub(crate) index: Vec<IndexEntry>,
    /// End of the valid prefix.
    pub(crate) end: u64,
    /// The first bad frame, if any.
    pub(crate) problem: Option<Problem>,
}

/// Scans every frame of a segment (`file_len` bytes) after its header, building the sparse index
/// (an entry for the first record and then for the first record at least `index_every` bytes
/// after the previous entry), and stops at the first bad frame.
pub(crate) fn scan_segment(
    file: &File,
    file_len: u64,
    first_ts: u64,
    index_every: u64,
) -> io::Result<Scan> {
    let mut r = BufReader::with_capacity(256 * 1024, file);
    r.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))?;
    let mut payload = Vec::new();
    let mut scan = Scan {
        records: 0,
        last_ts: first_ts,
        index: Vec::new(),
        end: SEGMENT_HEADER_LEN,
        problem: None,
    };
    let mut last_indexed = 0u64;
    loop {
        let off = scan.end;
        let reason = match read_frame(&mut r, off, file_len, &mut payload)? {
            Frame::End => return Ok(scan),
            Frame::Bad(reason) => reason,
            Frame::Ok { ts, frame_len } => {
                let ordered = if scan.records == 0 {
                    ts == first_ts
                } else {
                    ts >= scan.last_ts
                };
                if ordered {
                    if scan.records == 0 || off - last_indexed >= index_every {
                        scan.index.push(IndexEntry { ts, offset: off });
                        last_indexed = off;
                    }
                    scan.records += 1;
                    scan.last_ts = ts;
                    scan.end = off + frame_len;
                    continue;
                }
                if scan.records == 0 {
                    "first record's timestamp differs from the segment header"
                } else {
                    "record timestamp older than the previous record"
                }
            }
        };
        let followed_by_valid = valid_frame_follows(file, off, file_len, scan.last_ts)?;
        scan.problem = Some(Problem {
            offset: off,
            reason,
            followed_by_valid,
        });
        return Ok(scan);
    }
}

/// Whether the bad frame at `off` has a plausible length and a valid frame (timestamp at least
/// `prev_ts`) right after it.
fn valid_frame_follows(file: &File, off: u64, file_len: u64, prev_ts: u64) -> io::Result<bool> {
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    if off + FRAME_HEADER_LEN > file_len {
        return Ok(false);
    }
    file.read_exact_at(&mut h, off)?;
    let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    let next = off + FRAME_HEADER_LEN + len;
    if next >= file_len {
        return Ok(false);
    }
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(next))?;
    let mut payload = Vec::new();
    Ok(matches!(
        read_frame(&mut r, next, file_len, &mut payload)?,
        Frame::Ok { ts, .. } if ts >= prev_ts
    ))
}

/// Contents of an index sidecar.
#[derive(Debug)]
pub(crate) struct Sidecar {
    pub(crate) seq: u64,
    pub(crate) first_ts: u64,
    pub(crate) seg_len: u64,
    pub(crate) last_ts: u64,
    pub(crate) records: u64,
    pub(crate) index: Vec<IndexEntry>,
}

const SIDECAR_FIXED: usize = 8 + 4 + 4 + 8 * 6;

/// Encodes a sidecar (layout in the crate docs).
pub(crate) fn encode_sidecar(s: &Sidecar) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIDECAR_FIXED + 16 * s.index.len() + 4);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [s.seq, s.first_ts, s.seg_len, s.last_ts, s.records] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(s.index.len() as u64).to_le_bytes());
    for e in &s.index {
        out.extend_from_slice(&e.ts.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
    }
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// Decodes a sidecar; `None` when it is malformed in any way (the caller then rescans).
pub(crate) fn decode_sidecar(b: &[u8]) -> Option<Sidecar> {
    let body_len = b.len().checked_sub(4)?;
    let crc = u32_at(b, body_len)?;
    let body = b.get(..body_len)?;
    if crc32c(body) != crc || body.get(0..8)? != INDEX_MAGIC || u32_at(body, 8)? != FORMAT_VERSION {
        return None;
    }
    let count = usize::try_from(u64_at(body, 56)?).ok()?;
    if body_len != SIDECAR_FIXED.checked_add(count.checked_mul(16)?)? {
        return None;
    }
    let index = (0..count)
        .map(|i| {
            let at = SIDECAR_FIXED + 16 * i;
            Some(IndexEntry {
                ts: u64_at(body, at)?,
                offset: u64_at(body, at + 8)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Sidecar {
        seq: u64_at(body, 16)?,
        first_ts: u64_at(body, 24)?,
        seg_len: u64_at(body, 32)?,
        last_ts: u64_at(body, 40)?,
        records: u64_at(body, 48)?,
        index,
    })
}

/// The sidecar path of a segment: the same name with `.idx` instead of `.seg`.
pub(crate) fn sidecar_path(segment: &Path) -> std::path::PathBuf {
    segment.with_extension("idx")
}

/// The file name of segment `seq` whose first record has timestamp `first_ts`.
pub(crate) fn segment_file_name(first_ts: u64, seq: u64) -> String {
    format!("{first_ts:020}-{seq:010}.seg")
}

/// Parses a segment file name into `(first_ts, seq)`.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".seg")?;
    let (ts, seq) = stem.split_once('-')?;
    if ts.is_empty() || seq.is_empty() || !ts.bytes().chain(seq.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some((ts.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_segment_header(7, 1_234_567);
        assert_eq!(decode_segment_header(&h), Ok((7, 1_234_567)));
        for i in 0..h.len() {
            let mut d = h;
            d[i] ^= 0x10;
            assert!(
                decode_segment_header(&d).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn frame_round_trip_and_every_truncation() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 42, b"hello world");
        let mut p = Vec::new();
        let f = read_frame(&mut &buf[..], 0, buf.len() as u64, &mut p).expect("read");
        assert!(
            matches!(
                f,
                Frame::Ok {
                    ts: 42,
                    frame_len: 27
                }
            ),
            "{f:?}"
        );
        assert_eq!(p, b"hello world");
        for cut in 1..buf.len() {
            let f = read_frame(&mut &buf[..cut], 0, cut as u64, &mut p).expect("read");
            assert!(matches!(f, Frame::Bad(_)), "cut {cut}: {f:?}");
        }
        for i in 0..buf.len() {
            let mut d = buf.clone();
            d[i] ^= 1;
            let f = read_frame(&mut &d[..], 0, d.len() as u64, &mut p).expect("read");
            assert!(matches!(f, Frame::Bad(_)), "flip at {i}: {f:?}");
        }
    }

    #[test]
    fn sidecar_round_trip_and_damage() {
        let s = Sidecar {
            seq: 3,
            first_ts: 10,
            seg_len: 1000,
            last_ts: 99,
            records: 5,
            index: vec![
                IndexEntry { ts: 10, offset: 32 },
                IndexEntry {
                    ts: 50,
                    offset: 500,
                },
            ],
        };
        let b = encode_sidecar(&s);
        let d = decode_sidecar(&b).expect("decodes");
        assert_eq!(
            (d.seq, d.first_ts, d.seg_len, d.last_ts, d.records),
            (3, 10, 1000, 99, 5)
        );
        assert_eq!(d.index, s.index);
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 4;
            assert!(decode_sidecar(&x).is_none(), "flip at {i} accepted");
        }
        for cut in 0..b.len() {
            assert!(decode_sidecar(&b[..cut]).is_none());
        }
    }

    #[test]
    fn file_names() {
        let n = segment_file_name(1_700_000_000_000_000_000, 12);
        assert_eq!(n, "01700000000000000000-0000000012.seg");
        assert_eq!(
            parse_segment_file_name(&n),
            Some((1_700_000_000_000_000_000, 12))
        );
        assert_eq!(parse_segment_file_name("x-1.seg"), None);
        assert_eq!(parse_segment_file_name("1-1.idx"), None);
        assert_eq!(parse_segment_file_name("-1.seg"), None);
        assert_eq!(parse_segment_file_name("1-+1.seg"), None);
    }
}
