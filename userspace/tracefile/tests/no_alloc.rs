//! Reading packets allocates nothing once the reader is open, in every format (pcapng files
//! whose IDBs come after the first packets included).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use como_tracefile::TraceReader;

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

/// Counts the allocations of the current thread while enabled.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes to the system allocator unchanged; the counters are const-initialised
// thread-local `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
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
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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
        let mut bytes = 0u64;
        let mut n = 0;
        COUNT.with(|c| c.set(0));
        ON.with(|c| c.set(true));
        while let Some(Ok(p)) = r.next_packet() {
            n += 1;
            bytes += p.data.len() as u64;
        }
        ON.with(|c| c.set(false));
        std::hint::black_box(bytes);
        assert_eq!(n, want, "{file}");
        assert_eq!(
            COUNT.with(Cell::get),
            0,
            "{file}: allocations while reading {n} packets"
        );
    }
}
