//! Shared helpers of the CoMo-rs fuzz targets (`fuzz_targets/`, run by `scripts/fuzz.sh`).
//!
//! Every target feeds hostile bytes to one parser and walks everything it returns; the only
//! thing checked is that nothing panics, overflows or reads out of bounds (libFuzzer and the
//! address sanitizer report those). The differential targets add their own checks, with the
//! helpers of [`kgen`] (byte-driven filter and frame generators) and [`keymodel`] (a model of
//! the kernel field extraction).

pub mod keymodel;
pub mod kgen;

use como_packet::{Layers, Packet, Summary};
use como_tracefile::TraceReader;

/// Parses every layer of `pkt` and formats its summary line, touching every accessor.
pub fn exercise_packet(pkt: &Packet<'_>) {
    let layers = Layers::parse(pkt);
    std::hint::black_box(layers);
    let parsed = pkt.parse();
    std::hint::black_box((
        parsed.src_ip(),
        parsed.dst_ip(),
        parsed.src_port(),
        parsed.dst_port(),
        parsed.tcp_flags(),
        parsed.icmp_type_code(),
        parsed.gre_protocol(),
        parsed.ttl(),
        parsed.ether_addrs(),
        parsed.payload(),
    ));
    let line = Summary::new(pkt).to_string();
    std::hint::black_box(line);
}

/// Reads `data` as a trace file and exercises every packet until the end or the first error.
///
/// Returns the number of packets read (for the targets' sanity, not checked).
pub fn drain_trace(name: &str, data: &[u8]) -> u64 {
    let Ok(mut reader) = TraceReader::from_bytes(name, data.to_vec()) else {
        return 0;
    };
    std::hint::black_box((reader.format(), reader.link_type()));
    let mut n = 0;
    while let Some(next) = reader.next_packet() {
        match next {
            Ok(pkt) => {
                exercise_packet(&pkt);
                n += 1;
            }
            Err(e) => {
                // The error message must format (it names the file and the offset).
                std::hint::black_box(e.to_string());
                break;
            }
        }
    }
    n
}
