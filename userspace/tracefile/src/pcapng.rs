//! pcapng: sections in either byte order, several interfaces per section, EPB/SPB/OPB.
//!
//! - A section header block (SHB) sets the byte order of its section and resets the interface
//!   list; versions 1.0 and 1.2 are accepted (as libpcap does), any other version is an error,
//!   also in a later section (gopacket's test901 has a 1.0 section with one packet, then a 2.0
//!   section: one packet, then the error, as tshark and tcpdump report it).
//! - Every block's total length must be >= 12, a multiple of 4, fit in the file, and equal the
//!   copy in the block's trailer.
//! - Interface description blocks (IDB) give the link type, snaplen, `if_tsresol` (power of 10,
//!   or of 2 when bit 7 is set) and `if_tsoffset` (seconds added to every timestamp).
//! - Enhanced packet blocks (EPB), obsolete packet blocks (OPB, type 2) and simple packet blocks
//!   (SPB: interface 0, no timestamp, caplen = min(wire length, snaplen, block room)) are packets;
//!   `Packet::interface` is the interface id within the section. Every other block type is
//!   skipped.
//! - A caplen above libpcap's maximum for the link type (262144 for most) is an error.

use como_packet::{LinkType, Packet};

use crate::bytes::{prefetch_ahead, u16_at, u32_at};
use crate::error::{ErrorKind, Fail};

/// Section header block type (the same in both byte orders).
pub(crate) const BT_SHB: u32 = 0x0a0d_0d0a;
/// Interface description block.
pub(crate) const BT_IDB: u32 = 1;
/// Obsolete packet block.
const BT_OPB: u32 = 2;
/// Simple packet block.
const BT_SPB: u32 = 3;
/// Enhanced packet block.
pub(crate) const BT_EPB: u32 = 6;
/// The byte-order magic as read in the section's own byte order.
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// Timestamp resolution of an interface.
#[derive(Debug, Clone, Copy)]
enum TsResol {
    /// Units of 10^-k s.
    Dec(u8),
    /// Units of 2^-k s.
    Bin(u8),
}

/// One interface of the current section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    /// Link type.
    link: LinkType,
    /// Snapshot length (0: none).
    snaplen: u32,
    /// Timestamp unit.
    resol: TsResol,
    /// Seconds added to every timestamp.
    offset_s: i64,
}

impl Interface {
    /// The timestamp `t` (in this interface's units) in ns since the epoch, clamped to u64.
    #[inline]
    fn ts_ns(&self, t: u64) -> u64 {
        let t = u128::from(t);
        let ns: u128 = match self.resol {
            TsResol::Dec(6) => t * 1000,
            TsResol::Dec(9) => t,
            TsResol::Dec(k) if k <= 9 => t * 10u128.pow(u32::from(9 - k)),
            TsResol::Dec(k) => t / 10u128.pow(u32::from(k - 9)),
            TsResol::Bin(k) => (t * 1_000_000_000) >> k,
        };
        let total = ns as i128 + i128::from(self.offset_s) * 1_000_000_000;
        total.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// pcapng reading state: the current section's byte order and interfaces.
#[derive(Debug)]
pub(crate) struct PcapNgState {
    /// Current section is big-endian.
    be: bool,
    /// Interfaces of the current section (allocated per IDB, never per packet).
    interfaces: Vec<Interface>,
}

/// Whether `d` starts with a section header block type.
pub(crate) fn is_pcapng(d: &[u8]) -> bool {
    d.starts_with(&BT_SHB.to_be_bytes())
}

/// What one block turned out to be.
enum Block<'a> {
    /// A packet.
    Packet(Packet<'a>),
    /// Anything else (read and skipped or recorded).
    Other,
}

/// libpcap's maximum caplen for a link type.
fn max_caplen(link: LinkType) -> u32 {
    match link.to_linktype() {
        231 => 128 * 1024 * 1024,
        279 => 8 * 1024 * 1024,
        249 => 1024 * 1024,
        _ => crate::pcap::MAXIMUM_SNAPLEN,
    }
}

impl PcapNgState {
    /// Reads the first section header; returns the state and the offset of the next block.
    pub(crate) fn open(d: &[u8]) -> Result<(Self, usize), Fail> {
        // Room for 16 interfaces up front, so the IDBs read in the packet loop do not allocate.
        let mut s = Self {
            be: false,
            interfaces: Vec::with_capacity(16),
        };
        let mut pos = 0;
        s.block(d, &mut pos)?;
        Ok((s, pos))
    }

    /// The link type of the first interface of the file (Ethernet when there is none).
    pub(crate) fn first_link(&self, d: &[u8], pos: usize) -> LinkType {
        let mut probe = Self {
            be: self.be,
            interfaces: Vec::new(),
        };
        let mut p = pos;
        for _ in 0..1024 {
            if let Some(i) = probe.interfaces.first() {
                return i.link;
            }
            match probe.block(d, &mut p) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        probe
            .interfaces
            .first()
            .map_or(LinkType::Ethernet, |i| i.link)
    }

    /// The next packet; skips non-packet blocks.
    #[inline]
    pub(crate) fn next<'a>(
        &mut self,
        d: &'a [u8],
        pos: &mut usize,
    ) -> Result<Option<Packet<'a>>, Fail> {
        loop {
            match self.block(d, pos)? {
                None => return Ok(None),
                Some(Block::Packet(p)) => return Ok(Some(p)),
                Some(Block::Other) => {}
            }
        }
    }

    /// Reads the block at `*pos` and advances past it; `None` at the end of the file.
    fn block<'a>(&mut self, d: &'a [u8], pos: &mut usize) -> Result<Option<Block<'a>>, Fail> {
        let start = *pos;
        let remaining = d.len().saturating_sub(start);
        if remaining == 0 {
            return Ok(None);
        }
        let truncated_header = |needed: usize| {
            Fail::at(
                start,
                ErrorKind::TruncatedRecordHeader {
                    needed: needed as u64,
                    got: remaining as u64,
                },
            )
        };
        if remaining < 8 {
            return Err(truncated_header(8));
        }
        let mut be = self.be;
        let btype_be = u32_at(d, start, true).ok_or_else(|| truncated_header(8))?;
        if btype_be == BT_SHB {
            if remaining < 12 {
                return Err(truncated_header(12));
            }
            let bom = u32_at(d, start + 8, true).ok_or_else(|| truncated_header(12))?;
            be = match bom {
                BYTE_ORDER_MAGIC => true,
                0x4d3c_2b1a => false,
                other => return Err(Fail::at(start + 8, ErrorKind::BadByteOrderMagic(other))),
            };
        }
        let btype = u32_at(d, start, be).ok_or_else(|| truncated_header(8))?;
        let total = u32_at(d, start + 4, be).ok_or_else(|| truncated_header(8))?;
        if total < 12 || total % 4 != 0 {
            return Err(Fail::at(start, ErrorKind::BadBlockLength { len: total }));
        }
        let total_us = total as usize;
        if total_us > remaining {
            return Err(Fail::at(
                start,
                ErrorKind::TruncatedRecord {
                    len: u64::from(total),
                    remaining: remaining as u64,
                },
            ));
        }
        let trailer = u32_at(d, start + total_us - 4, be).unwrap_or(0);
        if trailer != total {
            return Err(Fail::at(
                start,
                ErrorKind::BlockLengthMismatch {
                    header: total,
                    trailer,
                },
            ));
        }
        let body = d.get(start + 8..start + total_us - 4).unwrap_or(&[]);
        let too_short = |needed: u32| {
            Fail::at(
                start,
                ErrorKind::BlockTooShort {
                    block_type: btype,
                    len: total,
                    needed,
                },
            )
        };
        let at = |off: usize| u32_at(body, off, be);
        let block = match btype {
            BT_SHB => {
                if body.len() < 16 {
                    return Err(too_short(28));
                }
                let major = u16_at(body, 4, be).unwrap_or(0);
                let minor = u16_at(body, 6, be).unwrap_or(0);
                if !(major == 1 && (minor == 0 || minor == 2)) {
                    return Err(Fail::at(
                        start + 12,
                        ErrorKind::BadPcapNgVersion { major, minor },
                    ));
                }
                let opts = body.get(16..).unwrap_or(&[]);
                walk_options(opts, be, start + 24, |_, _| Ok(()))?;
                self.be = be;
                self.interfaces.clear();
                Block::Other
            }
            BT_IDB => {
                if body.len() < 8 {
                    return Err(too_short(20));
                }
                let link = LinkType::from_linktype(u32::from(u16_at(body, 0, be).unwrap_or(0)));
                let snaplen = at(4).unwrap_or(0);
                let mut iface = Interface {
                    link,
                    snaplen,
                    resol: TsResol::Dec(6),
                    offset_s: 0,
                };
                let opts = body.get(8..).unwrap_or(&[]);
                walk_options(opts, be, start + 16, |code, value| {
                    match (code, value) {
                        (9, [r]) => {
                            let r = *r;
                            iface.resol = if r & 0x80 != 0 {
                                TsResol::Bin(r & 0x7f)
                            } else {
                                TsResol::Dec(r)
                            };
                            // libpcap's limits: 2^-63 and 10^-19.
                            let ok = match iface.resol {
                                TsResol::Bin(k) => k <= 63,
                                TsResol::Dec(k) => k <= 19,
                            };
                            if !ok {
                                return Err(ErrorKind::BadTsresol(r));
                            }
                        }
                        (14, v) => {
                            if let Ok(b) = <[u8; 8]>::try_from(v) {
                                iface.offset_s = if be {
                                    i64::from_be_bytes(b)
                                } else {
                                    i64::from_le_bytes(b)
                                };
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
                self.interfaces.push(iface);
                Block::Other
            }
            BT_EPB | BT_OPB => {
                if body.len() < 20 {
                    return Err(too_short(32));
                }
                let id = if btype == BT_EPB {
                    at(0).unwrap_or(0)
                } else {
                    u32::from(u16_at(body, 0, be).unwrap_or(0))
                };
                let ts = (u64::from(at(4).unwrap_or(0)) << 32) | u64::from(at(8).unwrap_or(0));
                let caplen = at(12).unwrap_or(0);
                let wire_len = at(16).unwrap_or(0);
                let iface = self.interface(id, start)?;
                let max = max_caplen(iface.link);
                if caplen > max {
                    return Err(Fail::at(start, ErrorKind::CaplenTooLarge { caplen, max }));
                }
                let room = body.len() - 20;
                if caplen as usize > room {
                    return Err(Fail::at(
                        start,
                        ErrorKind::CaplenExceedsBlock {
                            caplen,
                            available: room as u32,
                        },
                    ));
                }
                let data = body.get(20..20 + caplen as usize).unwrap_or(&[]);
                Block::Packet(Packet {
                    ts_ns: iface.ts_ns(ts),
                    wire_len,
                    data,
                    link: iface.link,
                    interface: id,
                })
            }
            BT_SPB => {
                if body.len() < 4 {
                    return Err(too_short(16));
                }
                let wire_len = at(0).unwrap_or(0);
                let iface = self.interface(0, start)?;
                let room = body.len() - 4;
                let mut caplen = wire_len as usize;
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                caplen = caplen.min(room);
                let data = body.get(4..4 + caplen).unwrap_or(&[]);
                Block::Packet(Packet {
                    ts_ns: 0,
                    wire_len,
                    data,
                    link: iface.link,
                    interface: 0,
                })
            }
            _ => Block::Other,
        };
        *pos = start + total_us;
        prefetch_ahead(d, *pos);
        Ok(Some(block))
    }

    /// Interface `id` of the current section.
    #[inline]
    fn interface(&self, id: u32, start: usize) -> Result<Interface, Fail> {
        self.interfaces.get(id as usize).copied().ok_or(Fail::at(
            start,
            ErrorKind::UnknownInterface {
                id,
                count: self.interfaces.len(),
            },
        ))
    }
}

/// Calls `f(code, value)` for each option in `opts` (which starts at file offset `base`) until
/// the end-of-options option or the end of the bytes. An option running past the end is an error.
fn walk_options(
    opts: &[u8],
    be: bool,
    base: usize,
    mut f: impl FnMut(u16, &[u8]) -> Result<(), ErrorKind>,
) -> Result<(), Fail> {
    let mut off = 0usize;
    while off + 4 <= opts.len() {
        let code = u16_at(opts, off, be).unwrap_or(0);
        let len = u16_at(opts, off + 2, be).unwrap_or(0);
        if code == 0 {
            break;
        }
        let value_start = off + 4;
        let value_end = value_start + usize::from(len);
        let value = opts
            .get(value_start..value_end)
            .ok_or(Fail::at(base + off, ErrorKind::BadOption { code, len }))?;
        f(code, value).map_err(|kind| Fail::at(base + off, kind))?;
        off = value_end.next_multiple_of(4);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(resol: TsResol, offset_s: i64) -> Interface {
        Interface {
            link: LinkType::Ethernet,
            snaplen: 0,
            resol,
            offset_s,
        }
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(iface(TsResol::Dec(6), 0).ts_ns(1_500_000), 1_500_000_000);
        assert_eq!(iface(TsResol::Dec(9), 0).ts_ns(123), 123);
        assert_eq!(iface(TsResol::Dec(0), 0).ts_ns(7), 7_000_000_000);
        assert_eq!(iface(TsResol::Dec(2), 0).ts_ns(150), 1_500_000_000);
        assert_eq!(iface(TsResol::Dec(12), 0).ts_ns(1_234_567), 1_234);
        assert_eq!(iface(TsResol::Dec(19), 0).ts_ns(u64::MAX), 1_844_674_407);
        assert_eq!(iface(TsResol::Bin(0), 0).ts_ns(3), 3_000_000_000);
        assert_eq!(iface(TsResol::Bin(20), 0).ts_ns(3 << 19), 1_500_000_000);
        assert_eq!(iface(TsResol::Bin(63), 0).ts_ns(1 << 62), 500_000_000);
        assert_eq!(iface(TsResol::Dec(6), 10).ts_ns(1), 10_000_001_000);
        assert_eq!(
            iface(TsResol::Dec(6), -10).ts_ns(1),
            0,
            "clamped at the epoch"
        );
        assert_eq!(
            iface(TsResol::Dec(0), 0).ts_ns(u64::MAX),
            u64::MAX,
            "clamped"
        );
    }
}
