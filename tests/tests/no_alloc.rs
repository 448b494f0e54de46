//! The per-packet path allocates nothing: reading a trace (pcap, pcapng, ERF), parsing each
//! packet's layers and evaluating filters, once the reader is open and the filters compiled.
//!
//! A counting global allocator counts the allocations made by this test's own thread while the
//! packet loop runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use como_packet::Layers;
use como_tests::traces_dir;
use como_tracefile::TraceReader;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the thread-local counters
// are `const`-initialised `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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
        let (mut packets, mut matched) = (0u64, 0u64);
        COUNT.with(|c| c.set(0));
        COUNTING.with(|c| c.set(true));
        while let Some(Ok(pkt)) = reader.next_packet() {
            packets += 1;
            let layers = Layers::parse(&pkt);
            std::hint::black_box(layers);
            matched += filters.iter().filter(|f| f.matches(&pkt)).count() as u64;
        }
        COUNTING.with(|c| c.set(false));
        let allocations = COUNT.with(Cell::get);
        assert!(packets > 1000, "{file}: {packets} packets");
        std::hint::black_box(matched);
        assert_eq!(
            allocations, 0,
            "{file}: {allocations} allocations over {packets} packets"
        );
    }
}
