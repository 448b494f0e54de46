//! libpcap savefiles: µs (a1b2c3d4) and ns (a1b23c4d) magic, both byte orders, and Kuznetzov's
//! modified format (a1b2cd34, 24-byte record headers).
//!
//! Semantics follow libpcap 1.10 (`sf-pcap.c`), the project's oracle:
//! - versions 2.0 to 2.4 and 543.0 are accepted, anything else is an error;
//! - caplen and len are swapped in versions < 2.3 and 543.0, and in 2.3 when caplen > len;
//! - the link-type field keeps its low 16 bits as the LINKTYPE_ value; the FCS-length bits
//!   (mask 0xfc000000) are ignored; the reserved bits (mask 0x03ff0000) make the file invalid;
//! - a file snaplen of 0 or above `i32::MAX` means "the maximum for the link type";
//! - a caplen above the maximum for the link type (262144 for most) is an error; a caplen above
//!   the file's snaplen but below that maximum is cut to the snaplen (the record keeps its size);
//! - a Kuznetzov Ethernet file gets 14 bytes more snaplen, as libpcap does.

use como_packet::{LinkType, Packet};

use crate::bytes::{prefetch_ahead, u16_at, u32_at};
use crate::error::{ErrorKind, Fail};

/// Size of a pcap file header.
pub(crate) const FILE_HEADER_LEN: usize = 24;
/// libpcap's MAXIMUM_SNAPLEN.
pub(crate) const MAXIMUM_SNAPLEN: u32 = 262_144;

/// The magic numbers, as read in the file's own byte order.
const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const MAGIC_KUZNETZOV: u32 = 0xa1b2_cd34;

/// How the caplen and len fields of a record are ordered (old libpcap versions swapped them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthsSwapped {
    /// Normal order.
    No,
    /// Always swapped.
    Yes,
    /// Swapped when caplen > len.
    Maybe,
}

/// Parsed pcap file header: what reading the records needs.
#[derive(Debug, Clone)]
pub(crate) struct PcapState {
    /// File written big-endian.
    pub(crate) big_endian: bool,
    /// Timestamps' fraction is in nanoseconds.
    pub(crate) nanos: bool,
    /// Kuznetzov format (24-byte record headers).
    pub(crate) modified: bool,
    /// Record header size.
    record_header_len: usize,
    /// Caplen/len order.
    swapped: LengthsSwapped,
    /// Effective snapshot length (records are cut to it).
    snapshot: u32,
    /// Largest caplen accepted.
    max_caplen: u32,
    /// The smaller of `snapshot` and `max_caplen`: a record's caplen up to it is read as it
    /// is (the common case, one comparison); above it, the record is cut or refused.
    plain_caplen: u32,
    /// What the timestamp's fraction is multiplied by to give nanoseconds (1 or 1000).
    frac_ns: u64,
    /// The file's link type.
    pub(crate) link: LinkType,
}

/// Whether `d` starts with a pcap magic number in either byte order.
pub(crate) fn is_pcap(d: &[u8]) -> bool {
    magic(d).is_some()
}

/// The magic (normalised) and whether the file is big-endian.
fn magic(d: &[u8]) -> Option<(u32, bool)> {
    for be in [false, true] {
        let m = u32_at(d, 0, be)?;
        if matches!(m, MAGIC_US | MAGIC_NS | MAGIC_KUZNETZOV) {
            return Some((m, be));
        }
    }
    None
}

/// libpcap's `max_snaplen_for_dlt`.
fn max_snaplen_for(link: u32) -> u32 {
    match link {
        231 => 128 * 1024 * 1024, // DBUS
        279 => 8 * 1024 * 1024,   // EBHSCR
        249 => 1024 * 1024,       // USBPCAP
        _ => MAXIMUM_SNAPLEN,
    }
}

impl PcapState {
    /// Parses the file header at the start of `d`; returns the state and the first record's offset.
    pub(crate) fn open(d: &[u8]) -> Result<(Self, usize), Fail> {
        let (m, be) = magic(d).ok_or(Fail::at(0, ErrorKind::UnknownFormat))?;
        if d.len() < FILE_HEADER_LEN {
            return Err(Fail::at(
                0,
                ErrorKind::TruncatedFileHeader {
                    needed: FILE_HEADER_LEN as u64,
                    got: d.len() as u64,
                },
            ));
        }
        let field = |at| u32_at(d, at, be).unwrap_or(0);
        let major = u16_at(d, 4, be).unwrap_or(0);
        let minor = u16_at(d, 6, be).unwrap_or(0);
        let valid = (major == 2 && minor <= 4) || (major == 543 && minor == 0);
        if !valid {
            return Err(Fail::at(4, ErrorKind::BadPcapVersion { major, minor }));
        }
        let raw_link = field(20);
        if raw_link & 0x03ff_0000 != 0 {
            return Err(Fail::at(20, ErrorKind::ReservedLinkTypeBits(raw_link)));
        }
        let link_number = raw_link & 0xffff;
        let max_caplen = max_snaplen_for(link_number);
        let mut snapshot = field(16);
        if snapshot == 0 || snapshot > i32::MAX as u32 {
            snapshot = max_caplen;
        }
        let modified = m == MAGIC_KUZNETZOV;
        if modified && link_number == 1 {
            snapshot = snapshot.saturating_add(14).min(i32::MAX as u32);
        }
        let swapped = match (major, minor) {
            (2, 0..=2) | (543, _) => LengthsSwapped::Yes,
            (2, 3) => LengthsSwapped::Maybe,
            _ => LengthsSwapped::No,
        };
        let state = Self {
            plain_caplen: snapshot.min(max_caplen),
            frac_ns: if m == MAGIC_NS { 1 } else { 1000 },
            big_endian: be,
            nanos: m == MAGIC_NS,
            modified,
            record_header_len: if modified { 24 } else { 16 },
            swapped,
            snapshot,
            max_caplen,
            link: LinkType::from_linktype(link_number),
        };
        Ok((state, FILE_HEADER_LEN))
    }

    /// The record at `*pos`, advancing `*pos` past it; `Ok(None)` at the end of the file.
    ///
    /// The hot loop of every file reader: the 16 bytes of the header are read as one array
    /// (constant indexes, no further bounds checks) and every error is built out of line.
    #[inline(always)]
    pub(crate) fn next<'a>(
        &self,
        d: &'a [u8],
        pos: &mut usize,
    ) -> Result<Option<Packet<'a>>, Fail> {
        let mut p = Packet::EMPTY;
        let more = if self.big_endian {
            self.read_in::<true, false>(d, pos, &mut p)?
        } else {
            self.read_in::<false, false>(d, pos, &mut p)?
        };
        Ok(more.then_some(p))
    }

    /// Whether the records have 16-byte headers with caplen before len: every file written
    /// by a libpcap of this century (then [`PcapState::read_in`] can take `PLAIN`).
    pub(crate) fn plain(&self) -> bool {
        !self.modified && self.swapped == LengthsSwapped::No
    }

    /// [`PcapState::next`] for a file of one byte order (`BE`: big-endian) and, with `PLAIN`,
    /// of the common record layout ([`PcapState::plain`]), so that the reading loop of a batch
    /// has no branch on either, written into `out` (a batch's slot, with no copy in between):
    /// `Ok(false)` at the end of the file.
    #[inline(always)]
    pub(crate) fn read_in<'a, const BE: bool, const PLAIN: bool>(
        &self,
        d: &'a [u8],
        pos: &mut usize,
        out: &mut Packet<'a>,
    ) -> Result<bool, Fail> {
        let start = *pos;
        let rest = d.get(start..).unwrap_or_default();
        let hl = if PLAIN { 16 } else { self.record_header_len };
        let Some(h) = rest
            .first_chunk::<16>()
            .filter(|_| PLAIN || rest.len() >= hl)
        else {
            return self.short_header(start, rest.len());
        };
        let field = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if BE {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (sec, frac) = (field(0), field(4));
        let (mut caplen, mut len) = (field(8), field(12));
        if !PLAIN
            && (self.swapped == LengthsSwapped::Yes
                || (self.swapped == LengthsSwapped::Maybe && caplen > len))
        {
            std::mem::swap(&mut caplen, &mut len);
        }
        let body = rest.get(hl..).unwrap_or_default();
        let data = match body.get(..caplen as usize) {
            Some(data) if caplen <= self.plain_caplen => data,
            _ => self.cut_or_refuse(start, caplen, body)?,
        };
        *pos = start + hl + caplen as usize;
        prefetch_ahead(d, *pos);
        *out = Packet {
            ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(frac) * self.frac_ns,
            wire_len: len,
            data,
            link: self.link,
            interface: 0,
        };
        Ok(true)
    }

    /// Fewer than a record header's bytes are left at `start`: the end, or a truncated header.
    #[cold]
    fn short_header(&self, start: usize, left: usize) -> Result<bool, Fail> {
        if left == 0 {
            return Ok(false);
        }
        Err(Fail::at(
            start,
            ErrorKind::TruncatedRecordHeader {
                needed: self.record_header_len as u64,
                got: left as u64,
            },
        ))
    }

    /// The bytes of a record whose caplen is above the snapshot length (cut to it, as libpcap
    /// does), or the failure of one whose caplen is above the maximum or past the end of the
    /// file.
    #[cold]
    fn cut_or_refuse<'a>(
        &self,
        start: usize,
        caplen: u32,
        body: &'a [u8],
    ) -> Result<&'a [u8], Fail> {
        if caplen > self.max_caplen || caplen as usize > body.len() {
            return Err(self.bad_caplen(start, caplen, body.len()));
        }
        body.get(..caplen.min(self.snapshot) as usize)
            .ok_or(Fail::at(start, ErrorKind::UnknownFormat))
    }

    /// The record at `start` has a caplen above the maximum or past the end of the file.
    fn bad_caplen(&self, start: usize, caplen: u32, body_remaining: usize) -> Fail {
        if caplen > self.max_caplen {
            return Fail::at(
                start,
                ErrorKind::CaplenTooLarge {
                    caplen,
                    max: self.max_caplen,
                },
            );
        }
        Fail::at(
            start,
            ErrorKind::TruncatedRecord {
                len: u64::from(caplen),
                remaining: body_remaining as u64,
            },
        )
    }
}
