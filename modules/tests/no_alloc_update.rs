//! The capture side allocates nothing per packet in the common case: once a module's state has
//! seen a set of packets (its hash tables hold their keys), updating it again with the same
//! packets allocates nothing. Measured with a counting global allocator, per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use como_module::{from_args, Interval, Module, Pkt};
use como_modules::{
    application, ethtypes, ewma, flowcount, protocol, topaddr, topports, traffic, tuple,
};
use como_tracefile::{LinkType, Packet, TraceReader};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `System` with `l`.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// (ts, wire_len, link, bytes) of every packet of a few real traces.
fn packets() -> Vec<(u64, u32, LinkType, Vec<u8>)> {
    let mut out = Vec::new();
    for f in [
        "nDPI/teams.pcap",
        "pcap-parser/wireshark_samples-test.pcapng",
        "nDPI/6in4tunnel.pcap",
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/traces")
            .join(f);
        let mut r = TraceReader::open(path).expect("open");
        while let Some(p) = r.next_packet() {
            let p = p.expect("packet");
            out.push((p.ts_ns, p.wire_len, p.link, p.data.to_vec()));
        }
    }
    out
}

/// Allocations made by the second pass of updates over the same packets.
fn second_pass_allocs<M: Module>(pkts: &[(u64, u32, LinkType, Vec<u8>)], args: &str) -> u64 {
    let args: toml::Value = toml::from_str(args).expect("args");
    let m: M = from_args(Some(&args)).expect("module");
    let mut state = m.new_state(Interval::containing(0, 1 << 62));
    let pass = |state: &mut M::State| {
        for (seq, (ts, len, link, data)) in pkts.iter().enumerate() {
            let packet = Packet {
                ts_ns: *ts,
                wire_len: *len,
                data,
                link: *link,
                interface: 0,
            };
            let pkt = Pkt {
                parsed: packet.parse(),
                seq: seq as u64,
            };
            m.update(state, &pkt);
        }
    };
    pass(&mut state);
    let before = allocs();
    pass(&mut state);
    allocs() - before
}

#[test]
fn updates_do_not_allocate_once_warm() {
    let pkts = packets();
    assert!(pkts.len() > 7000);
    let results = [
        ("traffic", second_pass_allocs::<traffic::Traffic>(&pkts, "")),
        (
            "protocol",
            second_pass_allocs::<protocol::Protocol>(&pkts, ""),
        ),
        (
            "application",
            second_pass_allocs::<application::Application>(&pkts, ""),
        ),
        (
            "topaddr",
            second_pass_allocs::<topaddr::TopAddr>(&pkts, "mask = 24"),
        ),
        (
            "topports",
            second_pass_allocs::<topports::TopPorts>(&pkts, ""),
        ),
        ("tuple", second_pass_allocs::<tuple::Tuple>(&pkts, "")),
        (
            "ethtypes",
            second_pass_allocs::<ethtypes::EthTypes>(&pkts, ""),
        ),
        (
            "flowcount",
            second_pass_allocs::<flowcount::FlowCount>(&pkts, ""),
        ),
        ("ewma", second_pass_allocs::<ewma::Ewma>(&pkts, "")),
    ];
    for (name, n) in results {
        assert_eq!(
            n,
            0,
            "{name}: {n} allocations in {} warm updates",
            pkts.len()
        );
    }
    // The counter counts.
    let before = allocs();
    let v: Vec<u8> = Vec::with_capacity(16);
    assert!(allocs() > before);
    drop(v);
}
