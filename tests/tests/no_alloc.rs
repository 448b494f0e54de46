//! The per-packet path allocates nothing: reading a trace (pcap, pcapng, ERF), parsing each
//! packet's layers and evaluating filters, once the reader is open and the filters compiled.
//!
//! `como_tests::alloc` counts the allocations made by this test's own thread while the packet
//! loop runs.

use como_packet::Layers;
use como_tests::alloc::{allocations_during, CountingAlloc};
use como_tests::traces_dir;
use como_tracefile::TraceReader;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn reading_parsing_and_filtering_allocate_nothing_per_packet() {
    let exprs = [
        "tcp port 80 or udp port 53",
        "net 10.0.0.0/8 and not host 10.1.2.3",
        "vlan and tcp[tcpflags] & tcp-syn != 0 or ip6 and ip6[6] = 6",
        "ip[2:2] > 576 or greater 1000",
    ];
    for file in [
        "nDPI/teams.pcap",
        "pcap-parser/wireshark_samples-test.pcapng",
        "libtrace/fragtest.erf",
    ] {
        let mut reader = TraceReader::open(traces_dir().join(file)).expect("open");
        let filters: Vec<_> = exprs
            .iter()
            .map(|e| ebpf_filters::compile(e, reader.link_type()).expect("compile"))
            .collect();
        let ((packets, matched), allocations) = allocations_during(|| {
            let (mut packets, mut matched) = (0u64, 0u64);
            while let Some(Ok(pkt)) = reader.next_packet() {
                packets += 1;
                let layers = Layers::parse(&pkt);
                std::hint::black_box(layers);
                matched += filters.iter().filter(|f| f.matches(&pkt)).count() as u64;
            }
            (packets, matched)
        });
        assert!(packets > 1000, "{file}: {packets} packets");
        std::hint::black_box(matched);
        assert_eq!(
            allocations, 0,
            "{file}: {allocations} allocations over {packets} packets"
        );
    }
}
