//! Writers: pcap (µs or ns) and pcapng (one section, one interface per link type seen).
//!
//! Both write little-endian files. Packets longer than the snaplen are cut to it (the wire
//! length is kept); a snaplen of 0 means "no limit" for cutting and is written as 262144.
//! Wrap the output in a `BufWriter`: the writers issue small writes per packet.

use std::io::{self, Write};

use como_packet::{LinkType, Packet};

use crate::pcap::MAXIMUM_SNAPLEN;
use crate::pcapng::{BT_EPB, BT_IDB, BT_SHB, BYTE_ORDER_MAGIC};

/// The snaplen written in headers and the cut applied to packets.
fn effective_snaplen(snaplen: u32) -> (u32, usize) {
    if snaplen == 0 {
        (MAXIMUM_SNAPLEN, usize::MAX)
    } else {
        (snaplen, snaplen as usize)
    }
}

/// Writes a libpcap savefile.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    /// Output.
    w: W,
    /// File link type.
    link: LinkType,
    /// Packets are cut to this many bytes.
    cut: usize,
    /// Nanosecond timestamps.
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header: link type `link`, snapshot length `snaplen`, nanosecond
    /// timestamps (magic a1b23c4d) when `nanos`, else microseconds (a1b2c3d4).
    pub fn new(mut w: W, link: LinkType, snaplen: u32, nanos: bool) -> io::Result<Self> {
        let (header_snaplen, cut) = effective_snaplen(snaplen);
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&header_snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&link.to_linktype().to_le_bytes());
        w.write_all(&h)?;
        Ok(Self {
            w,
            link,
            cut,
            nanos,
        })
    }

    /// Appends one packet. Its link type must be the file's; its timestamp must fit pcap's
    /// 32-bit seconds (until 2106).
    pub fn write_packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        if p.link != self.link {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "packet link type {:?} differs from the file's {:?}",
                    p.link, self.link
                ),
            ));
        }
        let secs = u32::try_from(p.ts_ns / 1_000_000_000).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "timestamp beyond pcap's 32-bit seconds",
            )
        })?;
        let ns = (p.ts_ns % 1_000_000_000) as u32;
        let frac = if self.nanos { ns } else { ns / 1000 };
        let data = p.data.get(..self.cut).unwrap_or(p.data);
        let caplen = data.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&caplen.to_le_bytes());
        h[12..16].copy_from_slice(&p.wire_len.max(caplen).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    /// The output, after flushing it.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Writes a pcapng file: one section, one interface per link type (in order of first use),
/// enhanced packet blocks.
#[derive(Debug)]
pub struct PcapNgWriter<W: Write> {
    /// Output.
    w: W,
    /// Link type of each interface written so far (index = interface id).
    interfaces: Vec<LinkType>,
    /// Snaplen written in IDBs.
    header_snaplen: u32,
    /// Packets are cut to this many bytes.
    cut: usize,
    /// Nanosecond timestamps (if_tsresol = 9) rather than microseconds.
    nanos: bool,
}

/// Zero bytes for padding to 4.
const PAD: [u8; 4] = [0; 4];

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header and a first interface of link type `link`.
    pub fn new(mut w: W, link: LinkType, snaplen: u32, nanos: bool) -> io::Result<Self> {
        let mut shb = [0u8; 28];
        shb[0..4].copy_from_slice(&BT_SHB.to_le_bytes());
        shb[4..8].copy_from_slice(&28u32.to_le_bytes());
        shb[8..12].copy_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        shb[12..14].copy_from_slice(&1u16.to_le_bytes());
        shb[14..16].copy_from_slice(&0u16.to_le_bytes());
        shb[16..24].copy_from_slice(&(-1i64).to_le_bytes());
        shb[24..28].copy_from_slice(&28u32.to_le_bytes());
        w.write_all(&shb)?;
        let (header_snaplen, cut) = effective_snaplen(snaplen);
        let mut s = Self {
            w,
            interfaces: Vec::new(),
            header_snaplen,
            cut,
            nanos,
        };
        s.add_interface(link)?;
        Ok(s)
    }

    /// Writes an IDB for `link`; returns its id.
    fn add_interface(&mut self, link: LinkType) -> io::Result<u32> {
        // 20 bytes fixed; with nanos: if_tsresol option (4 + 1 + 3 pad) and opt_endofopt (4).
        let total: u32 = if self.nanos { 32 } else { 20 };
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&BT_IDB.to_le_bytes());
        b[4..8].copy_from_slice(&total.to_le_bytes());
        let lt = u16::try_from(link.to_linktype()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "link type does not fit pcapng's 16 bits",
            )
        })?;
        b[8..10].copy_from_slice(&lt.to_le_bytes());
        b[12..16].copy_from_slice(&self.header_snaplen.to_le_bytes());
        if self.nanos {
            b[16..18].copy_from_slice(&9u16.to_le_bytes());
            b[18..20].copy_from_slice(&1u16.to_le_bytes());
            b[20] = 9;
            // b[24..28]: opt_endofopt, zero.
        }
        let end = total as usize;
        b[end - 4..end].copy_from_slice(&total.to_le_bytes());
        self.w.write_all(&b[..end])?;
        self.interfaces.push(link);
        Ok((self.interfaces.len() - 1) as u32)
    }

    /// Appends one packet as an EPB on the interface of its link type (adding one if needed).
    pub fn write_packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        let id = match self.interfaces.iter().position(|&l| l == p.link) {
            Some(i) => i as u32,
            None => self.add_interface(p.link)?,
        };
        let data = p.data.get(..self.cut).unwrap_or(p.data);
        let caplen = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
        let padded = data.len().next_multiple_of(4);
        let pad = padded - data.len();
        let total = u32::try_from(32 + padded)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
        let ts = if self.nanos { p.ts_ns } else { p.ts_ns / 1000 };
        let mut h = [0u8; 28];
        h[0..4].copy_from_slice(&BT_EPB.to_le_bytes());
        h[4..8].copy_from_slice(&total.to_le_bytes());
        h[8..12].copy_from_slice(&id.to_le_bytes());
        h[12..16].copy_from_slice(&((ts >> 32) as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(ts as u32).to_le_bytes());
        h[20..24].copy_from_slice(&caplen.to_le_bytes());
        h[24..28].copy_from_slice(&p.wire_len.max(caplen).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)?;
        self.w.write_all(PAD.get(..pad).unwrap_or(&[]))?;
        self.w.write_all(&total.to_le_bytes())
    }

    /// The output, after flushing it.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}
