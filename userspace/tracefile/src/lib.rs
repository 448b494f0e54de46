//! Trace files for CoMo-rs: pcap, pcapng and ERF, detected by content.
//!
//! (Skeleton: being written.)

use std::path::{Path, PathBuf};

use como_packet::Packet;

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

/// An error reading a trace file: names the file, the byte offset and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: at byte {offset}: {kind}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// Byte offset in the file where the problem is.
    pub offset: u64,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a trace file.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The file cannot be opened or read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The first bytes are not those of a known format.
    #[error("unknown file format")]
    UnknownFormat,
}

/// Reads packets from a trace file without allocating per packet.
pub struct TraceReader {
    path: PathBuf,
}

impl TraceReader {
    /// Opens `path` and detects its format from its content.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        Err(Error { path, offset: 0, kind: ErrorKind::UnknownFormat })
    }

    /// The next packet, `None` at the end, or the error that stopped reading (then `None`).
    pub fn next_packet(&mut self) -> Option<Result<Packet<'_>, Error>> {
        let _ = &self.path;
        None
    }
}
