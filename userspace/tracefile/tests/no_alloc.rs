//! Reading packets allocates nothing once the reader is open, in every format (pcapng files
//! whose IDBs come after the first packets included).

use std::path::Path;

use como_tests::alloc::{allocations_during, CountingAlloc};
use como_tracefile::TraceReader;

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn reading_allocates_nothing_per_packet() {
    for (file, want) in [
        ("nDPI/teams.pcap", 1540),
        ("pcap-parser/modified-format.pcap", 1),
        ("pcap-parser/wireshark_samples-test.pcapng", 5898),
        (
            "pcapng-test-generator/output_be/difficult/test202.pcapng",
            8,
        ),
        ("zeek/pcapng-multi-interface.pcapng", 6),
        ("libtrace/fragtest.erf", 10000),
        ("libtrace/provenance.erf", 0),
    ] {
        let mut r = TraceReader::open(Path::new(TRACES).join(file)).expect("open");
        let ((n, bytes), allocations) = allocations_during(|| {
            let (mut n, mut bytes) = (0, 0u64);
            while let Some(Ok(p)) = r.next_packet() {
                n += 1;
                bytes += p.data.len() as u64;
            }
            (n, bytes)
        });
        std::hint::black_box(bytes);
        assert_eq!(n, want, "{file}");
        assert_eq!(
            allocations, 0,
            "{file}: allocations while reading {n} packets"
        );
    }
}
