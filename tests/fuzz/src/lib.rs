//! Shared helpers of the CoMo-rs fuzz targets (`fuzz_targets/`, run by `scripts/fuzz.sh`).
//!
//! Every target feeds hostile bytes to one parser and walks everything it returns; what is
//! checked is that nothing panics, overflows or reads out of bounds (libFuzzer and the address
//! sanitizer report those), that the parser's fast paths agree with its general walk, and for
//! trace files that the packet-by-packet and the batch readers agree. The differential targets add their own checks, with the
//! helpers of [`kgen`] (byte-driven filter and frame generators) and [`keymodel`] (a model of
//! the kernel field extraction).

pub mod keymodel;
pub mod kgen;

use como_packet::{Layers, Packet, Summary};
use como_tracefile::TraceReader;

/// Parses every layer of `pkt` and formats its summary line, touching every accessor; checks
/// that the fast parse, `Layers::ip_addr_of` and `Layers::ip_proto_of` give what the general
/// walk gives.
pub fn exercise_packet(pkt: &Packet<'_>) {
    let layers = Layers::parse(pkt);
    std::hint::black_box(&layers);
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
    // The fast paths give what the general walk gives.
    assert_eq!(layers, Layers::parse_walk(pkt), "fast parse vs walk");
    assert_eq!(
        Layers::ip_addr_of(pkt, false),
        parsed.src_ip(),
        "ip_addr_of src"
    );
    assert_eq!(
        Layers::ip_addr_of(pkt, true),
        parsed.dst_ip(),
        "ip_addr_of dst"
    );
    assert_eq!(
        Layers::ip_proto_of(pkt),
        layers.ip_version().and(layers.l4_proto),
        "ip_proto_of"
    );
    let line = Summary::new(pkt).to_string();
    std::hint::black_box(line);
}

/// Reads `data` as a trace file and exercises every packet until the end or the first error.
/// Then reads it again by batches (`for_each_batch`, the path the runtime takes, with its own
/// pcap loop) and checks that both readings give the same packets and the same error.
///
/// Returns the number of packets read (for the targets' sanity, not checked).
pub fn drain_trace(name: &str, data: &[u8]) -> u64 {
    let Ok(mut reader) = TraceReader::from_bytes(name, data.to_vec()) else {
        return 0;
    };
    std::hint::black_box((reader.format(), reader.link_type()));
    let mut seen = Vec::new();
    let mut error = None;
    while let Some(next) = reader.next_packet() {
        match next {
            Ok(pkt) => {
                exercise_packet(&pkt);
                seen.push((pkt.ts_ns, pkt.wire_len, pkt.data.to_vec()));
            }
            Err(e) => {
                // The error message must format (it names the file and the offset).
                error = Some(e.to_string());
                break;
            }
        }
    }
    let (by_batch, batch_error) = drain_by_batches(name, data);
    assert!(by_batch == seen, "{name}: batches read other packets");
    assert_eq!(batch_error, error, "{name}: batches stopped otherwise");
    seen.len() as u64
}

/// (time, wire length, bytes) of every packet of `data` read by batches, and the error.
fn drain_by_batches(name: &str, data: &[u8]) -> (Vec<(u64, u32, Vec<u8>)>, Option<String>) {
    let mut out = Vec::new();
    let Ok(mut reader) = TraceReader::from_bytes(name, data.to_vec()) else {
        return (out, None);
    };
    loop {
        let (n, err) = reader.for_each_batch(3, &mut |pkts| {
            out.extend(pkts.iter().map(|p| (p.ts_ns, p.wire_len, p.data.to_vec())));
        });
        if let Some(e) = err {
            return (out, Some(e.to_string()));
        }
        if n < 3 * como_tracefile::BATCH {
            return (out, None);
        }
    }
}
