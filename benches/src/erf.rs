//! A minimal ERF (Endace Extensible Record Format) writer for synthetic Ethernet traces.
//!
//! como-tracefile reads ERF but does not write it, so the generator writes its records itself.
//! Each packet becomes one type-2 (`ERF_TYPE_ETH`) record without extension headers:
//!
//! | bytes | field | value written |
//! |-------|-------|---------------|
//! | 0-7   | timestamp, little-endian 32.32 fixed point (seconds . binary fraction) | from `ts_ns` |
//! | 8     | type | 2 (Ethernet), bit 7 clear: no extension header |
//! | 9     | flags | interface (bits 0-1) from `interface & 3`, bit 2 "varlen" set |
//! | 10-11 | rlen, big-endian: whole record length | 16 + 2 + captured length |
//! | 12-13 | lctr, big-endian: loss counter | 0 |
//! | 14-15 | wlen, big-endian: wire length | `wire_len + 4` (see below) |
//! | 16-17 | Ethernet offset and pad bytes | 0, 0 |
//! | 18-   | the captured frame | `data` |
//!
//! Records are not padded to 8 bytes (the varlen flag allows that), so the captured length is
//! exactly `rlen - 18`. **`wlen` counts the 4-byte Ethernet FCS**, as a DAG card does, while the
//! captured bytes (at most the snaplen) never include it: como-tracefile's ERF reader reports
//! `wire_len = wlen - 4`, so a packet written here reads back with the `wire_len` of its pcap
//! twin. The timestamp fraction is rounded up so that the reader's truncating conversion gives
//! back the same nanosecond.

use std::io::{self, Write};

use como_packet::{LinkType, Packet};

/// An error writing an ERF record.
#[derive(Debug, thiserror::Error)]
pub enum ErfError {
    /// The underlying writer failed.
    #[error("writing ERF: {0}")]
    Io(#[from] io::Error),
    /// The packet is not Ethernet: this writer only knows ERF type 2.
    #[error("ERF writer: link type {0:?} is not Ethernet")]
    LinkType(LinkType),
    /// The record or the wire length does not fit ERF's 16-bit fields.
    #[error("ERF writer: packet too long ({0} bytes) for a 16-bit length field")]
    TooLong(u64),
}

/// ERF record type for Ethernet.
pub const ERF_TYPE_ETH: u8 = 2;
/// Flags bit: variable-length record.
pub const ERF_FLAG_VARLEN: u8 = 0x04;

/// Writes Ethernet packets as ERF records to `W`.
#[derive(Debug)]
pub struct ErfWriter<W: Write> {
    out: W,
}

/// Converts nanoseconds since the epoch to ERF's 32.32 fixed-point timestamp.
pub fn erf_timestamp(ts_ns: u64) -> u64 {
    let secs = ts_ns / 1_000_000_000;
    let nanos = ts_ns % 1_000_000_000;
    // Round up to the next 2^-32 s, so a reader that converts back and truncates gets the
    // same nanosecond (one 2^-32 s step is 0.23 ns).
    let frac = (u128::from(nanos) << 32).div_ceil(1_000_000_000);
    (secs << 32) + frac as u64
}

impl<W: Write> ErfWriter<W> {
    /// A writer over `out` (ERF files have no file header).
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Appends one record for `pkt`.
    pub fn write_packet(&mut self, pkt: &Packet<'_>) -> Result<(), ErfError> {
        if pkt.link != LinkType::Ethernet {
            return Err(ErfError::LinkType(pkt.link));
        }
        let rlen = u16::try_from(18 + pkt.data.len())
            .map_err(|_| ErfError::TooLong(18 + pkt.data.len() as u64))?;
        let wlen = u16::try_from(u64::from(pkt.wire_len) + 4)
            .map_err(|_| ErfError::TooLong(u64::from(pkt.wire_len)))?;
        let mut hdr = [0u8; 18];
        hdr[0..8].copy_from_slice(&erf_timestamp(pkt.ts_ns).to_le_bytes());
        hdr[8] = ERF_TYPE_ETH;
        hdr[9] = ERF_FLAG_VARLEN | (pkt.interface & 3) as u8;
        hdr[10..12].copy_from_slice(&rlen.to_be_bytes());
        hdr[12..14].copy_from_slice(&0u16.to_be_bytes());
        hdr[14..16].copy_from_slice(&wlen.to_be_bytes());
        self.out.write_all(&hdr)?;
        self.out.write_all(pkt.data)?;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, ErfError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout() {
        let data = [0xaau8; 60];
        let pkt = Packet {
            ts_ns: 1_500_000_000,
            wire_len: 1514,
            data: &data,
            link: LinkType::Ethernet,
            interface: 1,
        };
        let mut w = ErfWriter::new(Vec::new());
        w.write_packet(&pkt).expect("write");
        let out = w.into_inner().expect("flush");
        assert_eq!(out.len(), 78);
        assert_eq!(
            u64::from_le_bytes(out[0..8].try_into().expect("8")),
            (1 << 32) | (1 << 31)
        );
        assert_eq!(out[8], 2);
        assert_eq!(out[9], 0x05);
        assert_eq!(u16::from_be_bytes([out[10], out[11]]), 78);
        assert_eq!(u16::from_be_bytes([out[14], out[15]]), 1518);
        assert_eq!(&out[18..], &data[..]);
    }

    #[test]
    fn timestamps_round_trip_to_the_nanosecond() {
        for ns in [
            0u64,
            1,
            999_999_999,
            1_767_225_600_123_456_789,
            1_767_225_600_000_000_001,
        ] {
            let t = erf_timestamp(ns);
            let back = (t >> 32) * 1_000_000_000 + (((t & 0xffff_ffff) * 1_000_000_000) >> 32);
            assert_eq!(back, ns);
        }
    }

    #[test]
    fn rejects_non_ethernet() {
        let pkt = Packet {
            ts_ns: 0,
            wire_len: 20,
            data: &[0x45; 20],
            link: LinkType::Raw,
            interface: 0,
        };
        let err = ErfWriter::new(Vec::new()).write_packet(&pkt);
        assert!(matches!(err, Err(ErfError::LinkType(LinkType::Raw))));
    }
}
