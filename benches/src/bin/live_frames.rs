//! `live_frames`: writes a pcap of fixed-size IPv4/UDP Ethernet frames for the live-capture
//! benchmark (`scripts/bench-live.sh`), deterministic for the same options.
//!
//! ```text
//! live_frames -o f64.pcap --size 64 -n 20000     # 20 000 frames of 64 bytes
//! live_frames -o f1514.pcap --size 1514 -n 5000  # full-size frames
//! ```
//! Each frame: destination 02:00:00:00:00:02, source 02:00:00:00:00:01 (locally administered),
//! EtherType IPv4, a 20-byte IPv4 header (TTL 64, correct checksum) from 198.18.0.1 to
//! 198.18.x.y (RFC 2544's benchmarking range) where x.y cycles over 256 hosts, UDP from port
//! 1024 + i % 4096 to port 9 (discard) with checksum 0, then a payload of the frame's sequence
//! number (8 bytes, big endian) and zeros up to `--size`. `--size` counts the bytes handed to
//! the interface (no FCS: veth carries none), 60 to 1514.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use como_packet::{LinkType, Packet};
use como_tracefile::PcapWriter;

/// Writes a pcap of fixed-size IPv4/UDP Ethernet frames (the live-capture benchmark's traffic).
#[derive(Debug, Parser)]
#[command(name = "live_frames", version)]
struct Args {
    /// Output pcap file.
    #[arg(short, long)]
    output: PathBuf,
    /// Frame size in bytes, without FCS (60 to 1514).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(60..=1514))]
    size: u16,
    /// Number of frames.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    frames: u64,
}

/// Length of the Ethernet + IPv4 + UDP headers.
const HEADERS: usize = 14 + 20 + 8;

/// Frame `seq` of `size` bytes (`size` >= 60 >= HEADERS + 8).
fn frame(seq: u64, size: usize) -> Vec<u8> {
    let mut f = vec![0u8; size];
    let ip_len = u16::try_from(size - 14).unwrap_or(u16::MAX);
    let udp_len = ip_len.saturating_sub(20);
    let host = (seq % 256) as u8;
    let sport = 1024 + (seq % 4096) as u16;
    let mut h = Vec::with_capacity(HEADERS + 8);
    h.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 1, host,
    ];
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&((seq & 0xffff) as u16).to_be_bytes());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(&ip);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&9u16.to_be_bytes());
    h.extend_from_slice(&udp_len.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&seq.to_be_bytes());
    let n = h.len().min(f.len());
    f[..n].copy_from_slice(&h[..n]);
    f
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn run(args: &Args) -> std::io::Result<()> {
    let out = BufWriter::new(File::create(&args.output)?);
    let mut w = PcapWriter::new(out, LinkType::Ethernet, 65535, false)?;
    let size = usize::from(args.size);
    for seq in 0..args.frames {
        let data = frame(seq, size);
        w.write_packet(&Packet {
            ts_ns: 1_700_000_000_000_000_000 + seq * 1000,
            wire_len: u32::from(args.size),
            data: &data,
            link: LinkType::Ethernet,
            interface: 0,
        })?;
    }
    w.into_inner()?.flush()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("live_frames: {}: {e}", args.output.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_size_and_a_valid_ipv4_header() {
        for size in [60usize, 64, 1514] {
            let f = frame(300, size);
            assert_eq!(f.len(), size);
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            // A header with its checksum sums to 0xffff, i.e. checksum() of it is 0.
            assert_eq!(checksum(&f[14..34]), 0);
            assert_eq!(
                usize::from(u16::from_be_bytes([f[16], f[17]])),
                size - 14,
                "IPv4 total length"
            );
            assert_eq!(&f[33], &44, "destination 198.18.1.(300 % 256)");
            assert_eq!(u64::from_be_bytes(f[42..50].try_into().unwrap()), 300);
        }
    }
}
