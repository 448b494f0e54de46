//! Endace ERF: a sequence of records, each with a 16-byte header, no file header.
//!
//! Record header: 64-bit little-endian timestamp (32.32 fixed point seconds since the epoch),
//! type (low 7 bits; bit 7 = extension headers follow), flags (bits 0-1 = capture port),
//! rlen (record length, big-endian, header included), lctr (loss counter), wlen (wire length).
//! Extension headers are 8 bytes each, chained by bit 7 of their first byte.
//!
//! What a record becomes:
//! - ETH types (2, and the colored/DSM variants 11, 16, 20): 2 bytes of padding, then the
//!   Ethernet frame; [`LinkType::Ethernet`]. **wlen counts the Ethernet FCS** (4 bytes), which
//!   pcap and pcapng lengths do not: we report `wire_len = wlen - 4` and cut the captured bytes
//!   to that length (so the FCS, when captured, is not in `data`). With this, the libtrace twins
//!   `100_packets.erf` and `100_packets.pcapng` give the same `wire_len` and `data`.
//! - HDLC/PoS types (1, 10, 15, 19; multichannel 5 and 17 after their 4-byte channel header):
//!   [`LinkType::Ppp`] when the frame starts with the PPP address/control bytes ff 03, otherwise
//!   [`LinkType::CHdlc`]; `wire_len = wlen` (it may include the PoS CRC, which ERF does not say).
//! - IPV4 (22) and IPV6 (23): [`LinkType::Ipv4`] / [`LinkType::Ipv6`], `wire_len = wlen`.
//! - META (27) and PAD (48) records are not packets: skipped.
//! - Other known types (ATM, AAL5, InfiniBand, ...): the whole record, header included, as
//!   `LinkType::Other(197)` (LINKTYPE_ERF).
//! - A type outside the ERF registry means the reader lost its footing: an error.
//!
//! Captured length = min(rlen - 16 - extension headers - padding, wire length).
//! Timestamps: `seconds * 1e9 + (fraction * 1e9 + 2^31) >> 32` (rounded to the nearest ns, so a
//! µs or ns timestamp converted to ERF and back is unchanged).
//! `Packet::interface` is the capture port (flags & 3).
//!
//! **Detection heuristic** (ERF has no magic number; it is tried after the pcap and pcapng
//! magics): the first record header must be plausible — a type from the ERF registry (1-29 or
//! 48), rlen at least the 16-byte header plus its extension headers (plus the 2 bytes of padding
//! for ETH types, 4 for multichannel HDLC), the extension-header chain inside the record, and a
//! non-zero wlen for packet types. Later records are checked as they are read, so a file whose
//! second record is damaged reads as ERF: one packet, then the error. A file whose first record
//! is cut by the end of the file is still detected when its header is plausible.

use como_packet::{LinkType, Packet};

use crate::bytes::{prefetch_ahead, u16_at, u64_at};
use crate::error::{ErrorKind, Fail};

/// Size of the ERF record header.
const HEADER_LEN: usize = 16;
/// LINKTYPE_ERF, for records kept whole.
const LINKTYPE_ERF: u32 = 197;

/// How the payload of a record type is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Ethernet after 2 bytes of padding.
    Eth,
    /// HDLC/PoS after `n` bytes of channel header.
    Hdlc(usize),
    /// Raw IPv4.
    Ipv4,
    /// Raw IPv6.
    Ipv6,
    /// Not a packet (META, PAD).
    Skip,
    /// Another registered type: the whole record as LINKTYPE_ERF.
    Whole,
}

/// The kind of ERF record type `t` (extension bit removed), `None` outside the registry.
fn kind(t: u8) -> Option<Kind> {
    Some(match t {
        2 | 11 | 16 | 20 => Kind::Eth,
        1 | 10 | 15 | 19 => Kind::Hdlc(0),
        5 | 17 => Kind::Hdlc(4),
        22 => Kind::Ipv4,
        23 => Kind::Ipv6,
        27 | 48 => Kind::Skip,
        3..=29 => Kind::Whole,
        _ => return None,
    })
}

/// A record header, checked for internal consistency (not for fitting in the file).
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Timestamp, 32.32 fixed point.
    ts: u64,
    /// Kind of record.
    kind: Kind,
    /// Flags byte.
    flags: u8,
    /// Record length.
    rlen: usize,
    /// Wire length.
    wlen: u16,
    /// Offset of the payload from the record start (header + extension headers).
    payload: usize,
}

/// Parses the record header at `start`; `d` must hold at least 16 bytes there.
fn header(d: &[u8], start: usize) -> Result<Header, Fail> {
    let remaining = d.len().saturating_sub(start);
    let short = || {
        Fail::at(
            start,
            ErrorKind::TruncatedRecordHeader {
                needed: HEADER_LEN as u64,
                got: remaining as u64,
            },
        )
    };
    let ts = u64_at(d, start, false).ok_or_else(short)?;
    let ty = *d.get(start + 8).ok_or_else(short)?;
    let flags = *d.get(start + 9).ok_or_else(short)?;
    let rlen_raw = u16_at(d, start + 10, true).ok_or_else(short)?;
    let wlen = u16_at(d, start + 14, true).ok_or_else(short)?;
    let kind = kind(ty & 0x7f).ok_or(Fail::at(start + 8, ErrorKind::ErfUnknownType(ty & 0x7f)))?;
    let rlen = usize::from(rlen_raw);
    let too_short = |needed: usize| {
        Fail::at(
            start + 10,
            ErrorKind::ErfRecordTooShort {
                rlen: rlen_raw,
                needed: needed as u64,
            },
        )
    };
    let mut payload = HEADER_LEN;
    if rlen < payload {
        return Err(too_short(payload));
    }
    if ty & 0x80 != 0 {
        loop {
            if payload + 8 > rlen {
                return Err(too_short(payload + 8));
            }
            // The extension header's first byte: bit 7 says another one follows. When the
            // record is cut by the end of the file, the chain is checked by `next`.
            let Some(&ext) = d.get(start + payload) else {
                break;
            };
            payload += 8;
            if ext & 0x80 == 0 {
                break;
            }
        }
    }
    let needed = payload
        + match kind {
            Kind::Eth => 2,
            Kind::Hdlc(n) => n,
            _ => 0,
        };
    if rlen < needed {
        return Err(too_short(needed));
    }
    Ok(Header {
        ts,
        kind,
        flags,
        rlen,
        wlen,
        payload,
    })
}

/// Whether `d` looks like an ERF file (see the module documentation for the heuristic).
pub(crate) fn is_erf(d: &[u8]) -> bool {
    if d.len() < HEADER_LEN {
        return false;
    }
    match header(d, 0) {
        Ok(h) => h.wlen > 0 || matches!(h.kind, Kind::Skip | Kind::Whole),
        Err(_) => false,
    }
}

/// The link type of the first packet record (Ethernet when there is none).
pub(crate) fn first_link(d: &[u8]) -> LinkType {
    let mut state = ErfState::new();
    let mut pos = 0;
    match state.next(d, &mut pos) {
        Ok(Some(p)) => p.link,
        _ => LinkType::Ethernet,
    }
}

/// ERF reading state (ERF records are independent: nothing to remember).
#[derive(Debug, Default)]
pub(crate) struct ErfState;

impl ErfState {
    /// A new reader state.
    pub(crate) fn new() -> Self {
        Self
    }

    /// The next packet record at or after `*pos`, advancing past it; `None` at the end.
    #[inline]
    pub(crate) fn next<'a>(
        &mut self,
        d: &'a [u8],
        pos: &mut usize,
    ) -> Result<Option<Packet<'a>>, Fail> {
        loop {
            let start = *pos;
            let remaining = d.len().saturating_sub(start);
            if remaining == 0 {
                return Ok(None);
            }
            if remaining < HEADER_LEN {
                return Err(Fail::at(
                    start,
                    ErrorKind::TruncatedRecordHeader {
                        needed: HEADER_LEN as u64,
                        got: remaining as u64,
                    },
                ));
            }
            let h = header(d, start)?;
            if h.rlen > remaining {
                return Err(Fail::at(
                    start,
                    ErrorKind::TruncatedRecord {
                        len: h.rlen as u64,
                        remaining: remaining as u64,
                    },
                ));
            }
            let record = d.get(start..start + h.rlen).unwrap_or(&[]);
            *pos = start + h.rlen;
            prefetch_ahead(d, *pos);
            let wlen = u32::from(h.wlen);
            let body = |skip: usize| record.get(h.payload + skip..).unwrap_or(&[]);
            let cap = |bytes: &'a [u8], wire: u32| bytes.get(..wire as usize).unwrap_or(bytes);
            let (link, wire_len, data) = match h.kind {
                Kind::Skip => continue,
                Kind::Eth => {
                    let wire = wlen.saturating_sub(4);
                    (LinkType::Ethernet, wire, cap(body(2), wire))
                }
                Kind::Hdlc(n) => {
                    let frame = cap(body(n), wlen);
                    let link = if frame.starts_with(&[0xff, 0x03]) {
                        LinkType::Ppp
                    } else {
                        LinkType::CHdlc
                    };
                    (link, wlen, frame)
                }
                Kind::Ipv4 => (LinkType::Ipv4, wlen, cap(body(0), wlen)),
                Kind::Ipv6 => (LinkType::Ipv6, wlen, cap(body(0), wlen)),
                Kind::Whole => (LinkType::Other(LINKTYPE_ERF), wlen, record),
            };
            let secs = h.ts >> 32;
            let frac = ((h.ts & 0xffff_ffff) * 1_000_000_000 + (1 << 31)) >> 32;
            return Ok(Some(Packet {
                ts_ns: secs * 1_000_000_000 + frac,
                wire_len,
                data,
                link,
                interface: u32::from(h.flags & 3),
            }));
        }
    }
}
