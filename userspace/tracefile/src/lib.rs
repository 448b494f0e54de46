//! Trace files for CoMo-rs: pcap, pcapng and ERF, detected by content, read without copying.
//!
//! [`TraceReader`] maps the file (or holds it in one buffer when mapping fails), detects the
//! format from the first bytes (never from the file name) and hands out [`Packet`]s that borrow
//! their bytes from the mapping: no allocation per packet. A damaged file yields every packet
//! before the damage, then one [`Error`] naming the file, the byte offset and what is wrong.
//!
//! Detection order: pcap magic (4 values, both byte orders), pcapng section header block
//! (0a0d0d0a followed by a valid byte-order magic), then ERF, which has no file header and is
//! recognised by plausible record headers (see [`erf`] for the heuristic).
//!
//! [`PcapWriter`] and [`PcapNgWriter`] write files that tcpdump, Wireshark and this reader read.
//!
//! Decisions worth knowing (details in each module):
//! - pcap follows libpcap 1.10 (the project's oracle): versions 2.0-2.4 and 543.0 only, caplen
//!   above 262144 (more for a few link types) is an error, caplen above the file's snaplen is
//!   cut to the snaplen, link type = low 16 bits of the header field (FCS bits ignored,
//!   reserved bits 0x03ff0000 refused).
//! - pcapng accepts section versions 1.0 and 1.2 (as libpcap), any number of sections and
//!   interfaces with different link types and snaplens (as Wireshark; libpcap refuses those).
//! - ERF reports `wire_len = wlen - 4` for Ethernet records (ERF's wlen counts the FCS), so an
//!   ERF file and the pcap of the same frames captured by a NIC agree; META and PAD records are
//!   not packets.
//! - Timestamps are nanoseconds since the epoch in every format (µs pcap × 1000, pcapng scaled
//!   by `if_tsresol` plus `if_tsoffset`, ERF 32.32 fixed point rounded to the nearest ns).
//! - The reader prefetches a few KiB ahead of the next record: on files larger than the CPU
//!   cache, the chain of record headers is otherwise one cache miss per packet.
//! - A mapped file of 32 MiB or more gets a pager thread (`src/pager.rs`) that maps its pages
//!   ahead of the reader, so that the reader takes no page faults, and reads the lines just
//!   ahead of it into the caches, on a core nothing else wants (`SCHED_IDLE`).

mod bytes;
pub mod erf;
mod error;
mod pager;
mod pcap;
mod pcapng;
mod write;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use como_packet::{LinkType, Packet};
pub use error::{Error, ErrorKind};
pub use write::{PcapNgWriter, PcapWriter};

use error::Fail;
use pager::Pager;

/// The format of a trace file, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// libpcap savefile.
    Pcap {
        /// Timestamps in nanoseconds (magic a1b23c4d) rather than microseconds.
        nanos: bool,
        /// Big-endian file.
        big_endian: bool,
        /// Kuznetzov's modified format (magic a1b2cd34, 24-byte record headers).
        modified: bool,
    },
    /// pcapng.
    PcapNg,
    /// Endace ERF.
    Erf,
}

/// The file's bytes: a read-only mapping, or a buffer when the file cannot be mapped.
enum Storage {
    /// Memory-mapped file (shared with the pager thread).
    Mapped(Arc<memmap2::Mmap>),
    /// Whole file read into memory (pipes, empty files, `from_bytes`).
    Owned(Vec<u8>),
}

impl Storage {
    /// The bytes.
    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// Per-format reading state.
enum State {
    /// pcap.
    Pcap(pcap::PcapState),
    /// pcapng.
    PcapNg(pcapng::PcapNgState),
    /// ERF.
    Erf(erf::ErfState),
}

/// Reads packets from a trace file without allocating per packet.
pub struct TraceReader {
    /// File name, for errors.
    path: PathBuf,
    /// The bytes.
    data: Storage,
    /// Offset of the next record.
    pos: usize,
    /// Format state.
    state: State,
    /// Detected format.
    format: Format,
    /// Link type of the file (first interface for pcapng).
    link: LinkType,
    /// An error or the end was reported: nothing more.
    done: bool,
    /// Maps the pages ahead of `pos` (large mapped files only).
    pager: Option<Pager>,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("link", &self.link)
            .field("pos", &self.pos)
            .field("len", &self.data.as_slice().len())
            .finish()
    }
}

impl TraceReader {
    /// Opens `path` and detects its format from its content.
    ///
    /// The file is memory-mapped; if that fails (a pipe, an empty file, a file system without
    /// mmap) it is read into one buffer instead.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let io_err = |e: std::io::Error| Error {
            path: path.clone(),
            offset: 0,
            kind: ErrorKind::Io(e),
        };
        let mut file = File::open(&path).map_err(io_err)?;
        let is_regular = file
            .metadata()
            .map(|m| m.is_file() && m.len() > 0)
            .unwrap_or(false);
        // SAFETY: the mapping is read-only and private to this reader. If another process
        // truncates the file while it is mapped, reads past the new end fault (SIGBUS); that
        // is the documented risk of reading a trace file in place, as every mmap reader has.
        let mapped = if is_regular {
            unsafe { memmap2::Mmap::map(&file) }.ok()
        } else {
            None
        };
        let data = match mapped {
            Some(m) => Storage::Mapped(Arc::new(m)),
            None => {
                let mut v = Vec::new();
                file.read_to_end(&mut v).map_err(io_err)?;
                Storage::Owned(v)
            }
        };
        Self::with_storage(path, data)
    }

    /// A reader over bytes already in memory (tests, fuzz targets); `name` is used in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, Error> {
        Self::with_storage(name.into(), Storage::Owned(bytes))
    }

    /// Detects the format and reads the file header.
    fn with_storage(path: PathBuf, data: Storage) -> Result<Self, Error> {
        let d = data.as_slice();
        let detected = detect(d);
        let (state, pos, format, link) = detected.map_err(|f| Error::at(&path, f))?;
        let pager = match &data {
            Storage::Mapped(m) => Pager::start(m),
            Storage::Owned(_) => None,
        };
        Ok(Self {
            path,
            data,
            pos,
            state,
            format,
            link,
            done: false,
            pager,
        })
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file's link type: the header's for pcap, the first interface's for pcapng (Ethernet
    /// when the file has none), the first packet record's for ERF.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The file name given at opening.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// The next packet, `None` at the end, or the error that stopped reading (then `None`).
    #[inline]
    pub fn next_packet(&mut self) -> Option<Result<Packet<'_>, Error>> {
        if self.done {
            return None;
        }
        if let Some(p) = &self.pager {
            p.advance(self.pos);
        }
        match self.state.next(self.data.as_slice(), &mut self.pos) {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(f) => {
                self.done = true;
                Some(Err(Error::at(&self.path, f)))
            }
        }
    }

    /// Reads up to `out.len()` packets into `out` at once: how many were read, and the error
    /// that stopped reading, if one did (the packets before it are in `out`). Fewer than
    /// `out.len()` packets and no error: the end of the file.
    ///
    /// The batch form of [`TraceReader::next_packet`]: a consumer that copies each packet right
    /// after the reader wrote it stalls on store forwarding; here the packets of a batch are all
    /// written before the first is read.
    pub fn next_batch<'s>(&'s mut self, out: &mut [Packet<'s>]) -> (usize, Option<Error>) {
        let (d, mut cursor) = self.split();
        cursor.fill(d, out)
    }

    /// The bytes, borrowed apart from what moves while reading them.
    fn split(&mut self) -> (&[u8], Cursor<'_>) {
        let Self {
            path,
            data,
            pos,
            state,
            done,
            pager,
            ..
        } = self;
        let cursor = Cursor {
            path,
            pos,
            state,
            done,
            pager: pager.as_ref(),
        };
        (data.as_slice(), cursor)
    }

    /// Reads up to `batches` batches of up to [`BATCH`] packets, handing each to `f` as soon as
    /// it is read: how many packets were read, and the error that stopped reading, if one did
    /// (the packets before it were handed over). Fewer than `batches * BATCH` packets and no
    /// error: the end of the file.
    ///
    /// [`TraceReader::next_batch`] for a consumer that takes slices: one batch array serves
    /// every batch of the call (a caller of `next_batch` initialises one per call, as many
    /// bytes as the packets it then holds).
    pub fn for_each_batch(
        &mut self,
        batches: usize,
        f: &mut dyn FnMut(&[Packet<'_>]),
    ) -> (usize, Option<Error>) {
        let (d, mut cursor) = self.split();
        let mut buf = [Packet::EMPTY; BATCH];
        let mut total = 0;
        for _ in 0..batches {
            let (n, err) = cursor.fill(d, &mut buf);
            if let Some(read) = buf.get(..n).filter(|b| !b.is_empty()) {
                f(read);
            }
            total += n;
            if err.is_some() || n < BATCH {
                return (total, err);
            }
        }
        (total, None)
    }
}

/// Packets per batch of [`TraceReader::for_each_batch`].
pub const BATCH: usize = 64;

/// What moves while a reader reads its bytes: borrowed apart from the bytes, so that packets
/// borrowing the bytes can be held while the position moves on.
struct Cursor<'r> {
    /// File name, for errors.
    path: &'r Path,
    /// Offset of the next record.
    pos: &'r mut usize,
    /// Format state.
    state: &'r mut State,
    /// An error or the end was reported.
    done: &'r mut bool,
    /// Woken as the position moves on.
    pager: Option<&'r Pager>,
}

impl Cursor<'_> {
    /// [`TraceReader::next_batch`] over the bytes `d`.
    #[inline]
    fn fill<'d>(&mut self, d: &'d [u8], out: &mut [Packet<'d>]) -> (usize, Option<Error>) {
        if *self.done {
            return (0, None);
        }
        if let Some(p) = self.pager {
            p.advance(*self.pos);
        }
        // The position in a local while the loop runs (kept in a register, not stored per
        // record through the reader), written back once after it.
        let mut at = *self.pos;
        let pos = &mut at;
        // One loop per format, so that the format is matched once per batch, not per record.
        let (n, end) = match &mut *self.state {
            State::Pcap(s) => match (s.big_endian, s.plain()) {
                (false, true) => fill_pcap::<false, true>(s, d, pos, out),
                (true, true) => fill_pcap::<true, true>(s, d, pos, out),
                (false, false) => fill_pcap::<false, false>(s, d, pos, out),
                (true, false) => fill_pcap::<true, false>(s, d, pos, out),
            },
            State::PcapNg(s) => fill(out, |out| s.next(d, pos).map(|p| p.map(|p| *out = p))),
            State::Erf(s) => fill(out, |out| s.next(d, pos).map(|p| p.map(|p| *out = p))),
        };
        *self.pos = at;
        match end {
            Ok(more) => {
                *self.done = !more;
                (n, None)
            }
            Err(f) => {
                *self.done = true;
                (n, Some(Error::at(self.path, f)))
            }
        }
    }
}

/// [`fill`] with pcap records of one byte order and layout ([`pcap::PcapState::read_in`]).
#[inline(always)]
fn fill_pcap<'d, const BE: bool, const PLAIN: bool>(
    s: &pcap::PcapState,
    d: &'d [u8],
    pos: &mut usize,
    out: &mut [Packet<'d>],
) -> (usize, Result<bool, Fail>) {
    fill(out, |out| {
        s.read_in::<BE, PLAIN>(d, pos, out)
            .map(|more| more.then_some(()))
    })
}

/// Fills `out` with `next` (which writes a record into its slot, `Ok(None)` at the end): how
/// many were written, and `Ok(true)` when the input goes on, `Ok(false)` at its end, or the
/// failure that stopped it.
#[inline(always)]
fn fill<'d>(
    out: &mut [Packet<'d>],
    mut next: impl FnMut(&mut Packet<'d>) -> Result<Option<()>, Fail>,
) -> (usize, Result<bool, Fail>) {
    for (n, slot) in out.iter_mut().enumerate() {
        match next(slot) {
            Ok(Some(())) => {}
            Ok(None) => return (n, Ok(false)),
            Err(f) => return (n, Err(f)),
        }
    }
    (out.len(), Ok(true))
}

impl State {
    /// The next record of `d` at `*pos` in this format.
    #[inline(always)]
    fn next<'d>(&mut self, d: &'d [u8], pos: &mut usize) -> Result<Option<Packet<'d>>, Fail> {
        match self {
            State::Pcap(s) => s.next(d, pos),
            State::PcapNg(s) => s.next(d, pos),
            State::Erf(s) => s.next(d, pos),
        }
    }
}

/// Detection result: state, first record offset, format, link type.
type Detected = (State, usize, Format, LinkType);

/// Detects the format of `d` and parses its header.
fn detect(d: &[u8]) -> Result<Detected, Fail> {
    if d.is_empty() {
        return Err(Fail::at(0, ErrorKind::Empty));
    }
    if pcap::is_pcap(d) {
        let (s, pos) = pcap::PcapState::open(d)?;
        let format = Format::Pcap {
            nanos: s.nanos,
            big_endian: s.big_endian,
            modified: s.modified,
        };
        let link = s.link;
        return Ok((State::Pcap(s), pos, format, link));
    }
    if pcapng::is_pcapng(d) {
        let (s, pos) = pcapng::PcapNgState::open(d)?;
        let link = s.first_link(d, pos);
        return Ok((State::PcapNg(s), pos, Format::PcapNg, link));
    }
    if erf::is_erf(d) {
        let s = erf::ErfState::new();
        let link = erf::first_link(d);
        return Ok((State::Erf(s), 0, Format::Erf, link));
    }
    Err(Fail::at(0, ErrorKind::UnknownFormat))
}
