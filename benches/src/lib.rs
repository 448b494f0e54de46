//! CoMo-rs benchmarks: criterion micro-benchmarks in `benches/benches`, drivers in `scripts/`.
//!
//! The library holds what the benchmarks share: the deterministic synthetic trace generator
//! ([`synth`]), a small ERF writer ([`erf`]) for the generator's `--format erf`, and the filter
//! set of the filter benchmarks ([`BENCH_FILTERS`]).

pub mod erf;
pub mod synth;

/// The filters of the filter-evaluation benchmarks (`filter_eval`, and the first of those
/// `libpcap_agreement` checks against libpcap): what operators type, over every kind of test.
///
/// The IPv6 SYN filter is written `ip6 and ip6[6] = 6 and ip6[53] & 2 != 0` (next header TCP,
/// no extension header, flags byte at 40 + 13): libpcap 1.10's `tcp[]` reads IPv4 only, so
/// `ip6 and tcp[tcpflags] & tcp-syn != 0` matches nothing and `pcap_compile` rejects it
/// ("expression rejects all packets"), as tcpdump does.
pub const BENCH_FILTERS: &[&str] = &[
    "tcp port 80",
    "host 10.1.2.3",
    "net 10.0.0.0/8 and udp",
    "ip6 and ip6[6] = 6 and ip6[53] & 2 != 0",
    "tcp[tcpflags] & tcp-syn != 0",
    "vlan and ip",
    "port 53 or port 123",
    "not tcp",
];
