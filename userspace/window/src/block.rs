//! pcapng blocks as the window writes and reads them.
//!
//! The window writes only four block types, all little-endian:
//! * the section header block (SHB) and interface description blocks (IDB), produced by
//!   [`como_tracefile::PcapNgWriter`] (nanosecond resolution, `if_tsresol = 9`);
//! * enhanced packet blocks (EPB, 32 bytes + data padded to 4), encoded here straight into a
//!   staging buffer;
//! * padding blocks: block type [`BT_PAD`] = `0x8000_0BAD`, a *local use* block type (high bit
//!   set, pcapng §11.1). Readers skip block types they do not know: tshark, Wireshark, tcpdump
//!   and libpcap read such a file without a message and without an extra record (checked with
//!   tshark 4.0; pcapng *custom* blocks, in contrast, show up in tshark as extra frames). A
//!   padding block is 12 bytes minimum (type, length, trailing length) and carries zeros.

use como_packet::{LinkType, Packet};
use como_tracefile::PcapNgWriter;

/// Block type of padding blocks (local use, skipped by every reader).
pub const BT_PAD: u32 = 0x8000_0BAD;
/// Section header block type.
pub const BT_SHB: u32 = 0x0a0d_0d0a;
/// Interface description block type.
pub const BT_IDB: u32 = 1;
/// Enhanced packet block type.
pub const BT_EPB: u32 = 6;
/// Smallest block (type, length, trailing length).
pub const MIN_BLOCK: usize = 12;
/// Bytes of an EPB besides its data and padding.
pub const EPB_OVERHEAD: usize = 32;

/// Size of the EPB for a packet of `caplen` captured bytes.
#[inline]
pub fn epb_len(caplen: usize) -> usize {
    EPB_OVERHEAD + caplen.next_multiple_of(4)
}

/// Writes an EPB for `p` (data cut to `cut` bytes) on interface `iface` at the start of `out`;
/// returns its length, or `None` when `out` is too short.
#[inline]
pub fn put_epb(out: &mut [u8], p: &Packet<'_>, cut: usize, iface: u32) -> Option<usize> {
    let data = p.data.get(..cut).unwrap_or(p.data);
    let total = epb_len(data.len());
    let b = out.get_mut(..total)?;
    let caplen = data.len() as u32;
    let (h, rest) = b.split_at_mut(28);
    h[0..4].copy_from_slice(&BT_EPB.to_le_bytes());
    h[4..8].copy_from_slice(&(total as u32).to_le_bytes());
    h[8..12].copy_from_slice(&iface.to_le_bytes());
    h[12..16].copy_from_slice(&((p.ts_ns >> 32) as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(p.ts_ns as u32).to_le_bytes());
    h[20..24].copy_from_slice(&caplen.to_le_bytes());
    h[24..28].copy_from_slice(&p.wire_len.max(caplen).to_le_bytes());
    let (d, tail) = rest.split_at_mut(total - 28 - 4);
    let (dd, pad) = d.split_at_mut(data.len());
    dd.copy_from_slice(data);
    pad.fill(0);
    tail.copy_from_slice(&(total as u32).to_le_bytes());
    Some(total)
}

/// Fills `out` (length a multiple of 4, at least [`MIN_BLOCK`], or empty) with one padding
/// block. Returns false when the length cannot hold one.
pub fn put_pad(out: &mut [u8]) -> bool {
    let n = out.len();
    if n == 0 {
        return true;
    }
    if n < MIN_BLOCK || !n.is_multiple_of(4) || u32::try_from(n).is_err() {
        return false;
    }
    out.fill(0);
    out[0..4].copy_from_slice(&BT_PAD.to_le_bytes());
    out[4..8].copy_from_slice(&(n as u32).to_le_bytes());
    out[n - 4..].copy_from_slice(&(n as u32).to_le_bytes());
    true
}

/// The section header and one IDB per link type (interface id = position), as
/// [`PcapNgWriter`] writes them (nanosecond timestamps, snaplen `snaplen`).
pub fn header_bytes(links: &[LinkType], snaplen: u32) -> std::io::Result<Vec<u8>> {
    let first = links.first().copied().unwrap_or(LinkType::Ethernet);
    let mut out = PcapNgWriter::new(Vec::new(), first, snaplen, true)?.into_inner()?;
    for &l in links.iter().skip(1) {
        out.extend_from_slice(&idb_bytes(l, snaplen)?);
    }
    Ok(out)
}

/// One IDB for `link` (the writer's IDB, without its section header).
pub fn idb_bytes(link: LinkType, snaplen: u32) -> std::io::Result<Vec<u8>> {
    let v = PcapNgWriter::new(Vec::new(), link, snaplen, true)?.into_inner()?;
    let shb_len = v
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(28) as usize;
    Ok(v.get(shb_len..).unwrap_or(&[]).to_vec())
}

/// `header` followed by one padding block up to a multiple of `align` (the first O_DIRECT
/// chunk of a segment).
pub fn aligned_chunk(mut bytes: Vec<u8>, align: usize) -> Vec<u8> {
    let mut n = bytes.len().next_multiple_of(align);
    if n - bytes.len() < MIN_BLOCK && n != bytes.len() {
        n += align;
    }
    let start = bytes.len();
    bytes.resize(n, 0);
    let ok = put_pad(&mut bytes[start..]);
    debug_assert!(ok);
    bytes
}

/// A block seen by [`Blocks`].
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// Offset of the block in the walked slice.
    pub off: usize,
    /// Block type.
    pub btype: u32,
    /// Whole block (header to trailing length).
    pub bytes: &'a [u8],
}

/// A decoded EPB.
#[derive(Debug, Clone, Copy)]
pub struct Epb<'a> {
    /// Interface id.
    pub iface: u32,
    /// Timestamp in ns (the window always writes `if_tsresol = 9`).
    pub ts_ns: u64,
    /// Original length.
    pub wire_len: u32,
    /// Captured bytes.
    pub data: &'a [u8],
}

impl<'a> Block<'a> {
    /// The EPB inside, if this is a well-formed EPB.
    pub fn epb(&self) -> Option<Epb<'a>> {
        if self.btype != BT_EPB {
            return None;
        }
        let b = self.bytes;
        let u = |i: usize| {
            b.get(i..i + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let caplen = u(20)? as usize;
        let data = b.get(28..28usize.checked_add(caplen)?)?;
        if 28 + caplen.next_multiple_of(4) + 4 > b.len() {
            return None;
        }
        Some(Epb {
            iface: u(8)?,
            ts_ns: (u64::from(u(12)?) << 32) | u64::from(u(16)?),
            wire_len: u(24)?,
            data,
        })
    }
}

/// Walks complete blocks of a little-endian pcapng byte range; stops at the first block that
/// is incomplete or malformed ([`Blocks::end`] then tells where the valid part ends).
#[derive(Debug)]
pub struct Blocks<'a> {
    /// Bytes.
    buf: &'a [u8],
    /// Next offset.
    pos: usize,
}

impl<'a> Blocks<'a> {
    /// Walks `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Blocks { buf, pos: 0 }
    }

    /// End of the last complete block returned so far.
    pub fn end(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Block<'a>;

    fn next(&mut self) -> Option<Block<'a>> {
        let rest = self.buf.get(self.pos..)?;
        let btype = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
        let len = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
        if len < MIN_BLOCK || !len.is_multiple_of(4) {
            return None;
        }
        let bytes = rest.get(..len)?;
        let trailer = u32::from_le_bytes(bytes.get(len - 4..)?.try_into().ok()?) as usize;
        if trailer != len {
            return None;
        }
        if btype == BT_EPB && bytes.len() >= 28 {
            // A torn EPB whose caplen overruns its block is not complete.
            let caplen = u32::from_le_bytes(bytes.get(20..24)?.try_into().ok()?) as usize;
            if 28 + caplen.next_multiple_of(4) + 4 != len {
                return None;
            }
        }
        let off = self.pos;
        self.pos += len;
        Some(Block { off, btype, bytes })
    }
}

/// Link types of the IDBs in a section's header bytes, in interface-id order.
pub fn idb_links(header: &[u8]) -> Vec<LinkType> {
    Blocks::new(header)
        .filter(|b| b.btype == BT_IDB)
        .filter_map(|b| {
            b.bytes
                .get(8..10)
                .and_then(|s| s.try_into().ok())
                .map(|s| LinkType::from_linktype(u32::from(u16::from_le_bytes(s))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epb_round_trip_and_padding() {
        let data: Vec<u8> = (0..61u8).collect();
        let p = Packet {
            ts_ns: 0x1_2345_6789,
            wire_len: 100,
            data: &data,
            link: LinkType::Ethernet,
            interface: 0,
        };
        let mut buf = vec![0u8; 256];
        let n = put_epb(&mut buf, &p, 1000, 3).expect("fits");
        assert_eq!(n, epb_len(61));
        assert!(put_pad(&mut buf[n..]));
        let blocks: Vec<_> = Blocks::new(&buf).collect();
        assert_eq!(blocks.len(), 2);
        let e = blocks[0].epb().expect("epb");
        assert_eq!(
            (e.iface, e.ts_ns, e.wire_len, e.data),
            (3, 0x1_2345_6789, 100, &data[..])
        );
        assert_eq!(blocks[1].btype, BT_PAD);
        assert!(put_epb(&mut buf[..50], &p, 1000, 0).is_none());
        // Cut to a snaplen.
        let n = put_epb(&mut buf, &p, 10, 0).expect("fits");
        assert_eq!(
            Blocks::new(&buf[..n])
                .next()
                .and_then(|b| b.epb())
                .map(|e| e.data.len()),
            Some(10)
        );
    }

    #[test]
    fn header_is_aligned_and_lists_links() {
        let h = header_bytes(&[LinkType::Ethernet, LinkType::Raw], 65535).expect("header");
        let c = aligned_chunk(h, 4096);
        assert_eq!(c.len(), 4096);
        assert_eq!(idb_links(&c), vec![LinkType::Ethernet, LinkType::Raw]);
        assert_eq!(Blocks::new(&c).last().map(|b| b.btype), Some(BT_PAD));
    }

    #[test]
    fn torn_block_stops_the_walk() {
        let h = aligned_chunk(header_bytes(&[LinkType::Ethernet], 0).expect("h"), 4096);
        let mut b = Blocks::new(&h[..4000]);
        while b.next().is_some() {}
        assert_eq!(b.end(), 60);
    }
}
