//! Errors of trace-file reading: every error names the file, the byte offset and what is wrong.

use std::path::PathBuf;

/// An error reading a trace file: names the file, the byte offset and what is wrong.
///
/// Displays as `<file>: at byte <offset>: <what is wrong>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: at byte {offset}: {kind}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// Byte offset in the file where the problem is (start of the damaged header or record).
    pub offset: u64,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a trace file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file cannot be opened or read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The file has no bytes at all.
    #[error("empty file")]
    Empty,
    /// The first bytes are not those of a known format (pcap, pcapng, ERF).
    #[error("unknown file format (not pcap, pcapng or ERF)")]
    UnknownFormat,
    /// The file header is cut short.
    #[error("truncated file header: {needed} bytes needed, {got} present")]
    TruncatedFileHeader {
        /// Bytes the header needs.
        needed: u64,
        /// Bytes present in the file.
        got: u64,
    },
    /// A pcap file header with a version libpcap refuses (only 2.0-2.4 and 543.0 are valid).
    #[error("unsupported pcap version {major}.{minor}")]
    BadPcapVersion {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A pcapng section header with a version other than 1.0.
    #[error("unsupported pcapng section version {major}.{minor}")]
    BadPcapNgVersion {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// The pcap link-type field has bits set in its reserved part (mask 0x03ff0000).
    #[error("link type field {0:#010x} has reserved bits set")]
    ReservedLinkTypeBits(u32),
    /// A record (or block) header is cut short by the end of the file.
    #[error("truncated record header: {needed} bytes needed, {got} present")]
    TruncatedRecordHeader {
        /// Bytes the header needs.
        needed: u64,
        /// Bytes present before the end of the file.
        got: u64,
    },
    /// A record's length runs past the end of the file.
    #[error("record length {len} exceeds the {remaining} remaining bytes")]
    TruncatedRecord {
        /// Length the record announces (header excluded for pcap, included for pcapng/ERF).
        len: u64,
        /// Bytes left in the file.
        remaining: u64,
    },
    /// A captured length larger than any sane snapshot length (libpcap: 262144 for most types).
    #[error("captured length {caplen} is larger than the maximum {max}")]
    CaplenTooLarge {
        /// The captured length of the record.
        caplen: u32,
        /// The largest accepted.
        max: u32,
    },
    /// A pcapng block total length that is not a multiple of 4 or below the 12-byte minimum.
    #[error("bad block total length {len} (must be >= 12 and a multiple of 4)")]
    BadBlockLength {
        /// The announced block total length.
        len: u32,
    },
    /// A pcapng block whose trailing length differs from its leading one.
    #[error("block total length {header} in header and {trailer} in trailer differ")]
    BlockLengthMismatch {
        /// Length in the block header.
        header: u32,
        /// Length in the block trailer.
        trailer: u32,
    },
    /// A pcapng block too short for its fixed fields.
    #[error("block type {block_type:#x} of {len} bytes is too short (needs {needed})")]
    BlockTooShort {
        /// The block type.
        block_type: u32,
        /// Its total length.
        len: u32,
        /// The minimum for that block type.
        needed: u32,
    },
    /// The pcapng section header's byte-order magic is neither 1a2b3c4d nor 4d3c2b1a.
    #[error("bad byte-order magic {0:#010x} in section header")]
    BadByteOrderMagic(u32),
    /// A pcapng packet's captured length runs past the block holding it.
    #[error("captured length {caplen} exceeds the {available} bytes of its block")]
    CaplenExceedsBlock {
        /// The captured length.
        caplen: u32,
        /// The bytes the block has for packet data.
        available: u32,
    },
    /// A pcapng packet refers to an interface no IDB of the section described.
    #[error("packet on interface {id} but the section has {count} interfaces")]
    UnknownInterface {
        /// The interface id in the packet block.
        id: u32,
        /// The number of interfaces described so far in the section.
        count: usize,
    },
    /// A pcapng option runs past the end of its block.
    #[error("option {code} of length {len} runs past the end of its block")]
    BadOption {
        /// The option code.
        code: u16,
        /// Its announced length.
        len: u16,
    },
    /// An interface's `if_tsresol` beyond what libpcap accepts (2^-63, 10^-19).
    #[error("interface timestamp resolution option {0:#04x} is too fine")]
    BadTsresol(u8),
    /// A pcapng packet block before any section header (after a damaged one).
    #[error("block before any section header")]
    NoSection,
    /// An ERF record whose rlen cannot hold its header, extension headers and padding.
    #[error("ERF record length {rlen} is too short for its headers ({needed} bytes)")]
    ErfRecordTooShort {
        /// The record length.
        rlen: u16,
        /// Bytes of header it needs.
        needed: u64,
    },
    /// An ERF record of a type this reader does not know (the stream cannot be trusted).
    #[error("unknown ERF record type {0}")]
    ErfUnknownType(u8),
}

/// An error without the file name; [`crate::TraceReader`] adds it.
#[derive(Debug)]
pub(crate) struct Fail {
    /// Byte offset in the file.
    pub(crate) offset: u64,
    /// What is wrong.
    pub(crate) kind: ErrorKind,
}

impl Error {
    /// `f` in the file `path`.
    pub(crate) fn at(path: &std::path::Path, f: Fail) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: f.offset,
            kind: f.kind,
        }
    }
}

impl Fail {
    /// A failure at `offset` (a `usize` position in the mapped file).
    pub(crate) fn at(offset: usize, kind: ErrorKind) -> Self {
        Self {
            offset: offset as u64,
            kind,
        }
    }
}
