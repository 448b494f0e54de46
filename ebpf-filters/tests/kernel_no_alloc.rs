//! `PacketKey::extract` and `Tables::classify` allocate nothing per packet, whatever the
//! packet (every captured length of the hand-built zoo: present, absent and not applicable
//! fields, uncertain classifications).

mod common;

use common::*;
use como_packet::LinkType;
use como_tests::alloc::{allocations_during, CountingAlloc};
use ebpf_filters::compile;
use ebpf_filters::kernel::{PacketKey, Tables};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn classification_allocates_nothing() {
    let exprs = [
        "tcp port 80 or udp port 53",
        "host 10.0.0.1 or 192.168.1.2",
        "net 10.0.0.0/8 and not host 10.1.2.3",
        "vlan 100 and ip6",
        "tcp[tcpflags] & tcp-syn != 0",
        "icmp[icmptype] = icmp-echo",
        "mpls and udp",
        "ether host 00:11:22:33:44:55 or broadcast",
        "len > 100",
    ];
    let filters: Vec<_> = exprs
        .iter()
        .map(|e| compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let rules: Vec<_> = filters.iter().map(Some).collect();
    let tables = Tables::compile(&rules).unwrap_or_else(|e| panic!("{e}"));
    let zoo = ethernet_zoo();
    let (matched, allocations) = allocations_during(|| {
        let mut matched = 0u64;
        for d in &zoo {
            for cap in 0..=d.len() {
                let key = PacketKey::extract(&d[..cap], d.len() as u32);
                matched += u64::from(tables.classify(&key).rules.count_ones());
            }
        }
        matched
    });
    assert!(matched > 0);
    assert_eq!(allocations, 0, "allocations while classifying");
}
