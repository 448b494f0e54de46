//! `Filter::matches` allocates nothing, on the fast path and on the second pass taken by
//! truncated packets. `como_tests::alloc` counts this thread's allocations while the packet
//! loop runs.

mod common;

use common::*;
use como_packet::{LinkType, Packet};
use como_tests::alloc::{allocations_during, CountingAlloc};
use ebpf_filters::compile;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

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
    let (matched, allocations) = allocations_during(|| {
        let mut matched = 0u64;
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
        matched
    });
    assert!(matched > 100);
    assert_eq!(allocations, 0, "allocations while matching");
}
