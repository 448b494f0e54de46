//! `Filter::matches` allocates nothing, on the fast path and on the second pass taken by
//! truncated packets. A counting global allocator counts this thread's allocations while the
//! packet loop runs.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use como_packet::{LinkType, Packet};
use ebpf_filters::compile;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the thread-local
// counters are const-initialised `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as this function's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as this function's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn matching_allocates_nothing() {
    let exprs = [
        "tcp port 80 or udp port 53",
        "host 10.0.0.1 or 192.168.1.2",
        "net 10.0.0.0/8 and not host 10.1.2.3",
        "vlan and ip6 and ip6[6] = 6",
        "tcp[tcpflags] & tcp-syn != 0 or ip[2:2] > 576",
        "mpls and udp",
        "pppoes and tcp",
        "geneve and tcp",
        "ip6 protochain 17",
        "ether host 00:11:22:33:44:55 or broadcast",
        "ip[2:2] / (ip[0] & 0xf) > 1",
    ];
    let zoo = ethernet_zoo();
    let filters: Vec<_> = exprs
        .iter()
        .map(|e| compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let mut matched = 0u64;
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    for d in &zoo {
        for cap in 0..=d.len() {
            let p = Packet {
                ts_ns: 0,
                wire_len: d.len() as u32,
                data: &d[..cap],
                link: LinkType::Ethernet,
                interface: 0,
            };
            for f in &filters {
                matched += u64::from(f.matches(&p));
            }
        }
    }
    COUNTING.with(|c| c.set(false));
    std::hint::black_box(matched);
    assert!(matched > 100);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations while matching");
}
