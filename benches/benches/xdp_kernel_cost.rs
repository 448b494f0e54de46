//! Kernel cost per packet of the XDP program with 1, 8 and 64 rules (modules), measured by
//! the kernel itself: `BPF_PROG_TEST_RUN` with `repeat` (aya's `TestRun`) reports the mean
//! time of one run of the program on one packet, without the syscall.
//!
//! Goal (issue 4): 64 rules within 10 % of 1 rule. The rules are module-like filters (ports,
//! hosts, nets, protocols, TCP flags, VLAN, IPv6; see [`rule`]); the packets are real frames of
//! the test traces (TCP/IPv4, UDP/IPv4 DNS, IPv6, ARP, 802.1Q). Rule `i` of the 64 is the
//! same filter in every set that has it, so 1 ⊂ 8 ⊂ 64. A second table ("all match") shows
//! the one cost that does grow with the rules: one per-CPU counter increment per rule that
//! matched (64 rules all matching every packet).
//!
//! Run as root: `cargo bench -p como-benches --bench xdp_kernel_cost` (env
//! `COMO_XDP_REPEAT`, default 200000 runs per measurement, `COMO_XDP_ROUNDS`, default 7;
//! each figure is the median of the rounds, rule sets interleaved within a round).

use std::path::PathBuf;

use como_packet::LinkType;
use como_tracefile::TraceReader;
use como_xdp::XdpProgram;
use ebpf_filters::kernel::Tables;
use ebpf_filters::{compile, Filter};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Rule `i` of the benchmark's rule sets: a mix of what modules filter on.
fn rule(i: usize) -> String {
    let n = i / 8;
    match i % 8 {
        0 => format!("tcp port {}", 80 + n),
        1 => format!("udp port {}", 53 + n),
        2 => format!("host 10.{n}.0.1"),
        3 => format!("net 192.168.{n}.0/24"),
        4 => format!("tcp[tcpflags] & tcp-syn != 0 and dst port {}", 443 + n),
        5 => format!("ip6 and tcp port {}", 22 + n),
        6 => format!("vlan {} and ip", 100 + n),
        _ => format!("icmp or arp host 10.{n}.0.254"),
    }
}

/// The first frame of `trace` (in tests/data/traces) that `select` accepts.
fn frame(trace: &str, select: &str) -> (String, Vec<u8>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/traces")
        .join(trace);
    let f = compile(select, LinkType::Ethernet).unwrap_or_else(|e| panic!("{select}: {e}"));
    let mut r = TraceReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{trace}: {e}"));
        if p.link == LinkType::Ethernet && p.data.len() >= 14 && f.matches(&p) {
            return (format!("{select} ({} B)", p.data.len()), p.data.to_vec());
        }
    }
    panic!("no frame of {trace} matches {select}");
}

fn tables(filters: &[Filter]) -> Tables {
    Tables::compile(&filters.iter().map(Some).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("compile: {e}"))
}

/// Prints the size of each rule set's tables.
fn describe(sets: &[(&str, Tables)]) {
    for (name, t) in sets {
        let g = t.gen_config();
        println!(
            "- {name}: {} terms, {} LPM entries, fields used {:#06x}, flagged {:#x}",
            g.nterms,
            t.lpm_entries().len(),
            g.used,
            g.flagged
        );
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What [`measure`] gives for each (rule set, packet).
struct Cell {
    /// Median ns per run.
    ns: f64,
    /// Rules the packet matches (the program's metadata).
    matched: u32,
}

/// Median ns per run of each (rule set, packet), rule sets interleaved within each round, and
/// the number of rules each packet matches.
fn measure(
    prog: &XdpProgram,
    sets: &[(&str, Tables)],
    packets: &[(String, Vec<u8>)],
    repeat: u32,
    rounds: u32,
) -> Vec<Vec<Cell>> {
    let mut samples = vec![vec![Vec::new(); packets.len()]; sets.len()];
    let mut matched = vec![vec![0; packets.len()]; sets.len()];
    for _ in 0..rounds {
        for (si, (_, t)) in sets.iter().enumerate() {
            prog.install(t).unwrap_or_else(|e| panic!("install: {e}"));
            for (pi, (_, p)) in packets.iter().enumerate() {
                let d = prog
                    .test_run_repeat(p, repeat)
                    .unwrap_or_else(|e| panic!("test run: {e}"));
                samples[si][pi].push(d.as_nanos() as f64);
                let (_, meta) = prog.test_run(p).unwrap_or_else(|e| panic!("test run: {e}"));
                matched[si][pi] = meta.map_or(0, |m| m.rules.count_ones());
            }
        }
    }
    samples
        .into_iter()
        .zip(matched)
        .map(|(per_packet, m)| {
            per_packet
                .into_iter()
                .zip(m)
                .map(|(mut v, matched)| Cell {
                    ns: median(&mut v),
                    matched,
                })
                .collect()
        })
        .collect()
}

/// The mean ns over the packets of one rule set.
fn mean(cells: &[Cell]) -> f64 {
    cells.iter().map(|c| c.ns).sum::<f64>() / cells.len() as f64
}

fn print_table(sets: &[(&str, Tables)], packets: &[(String, Vec<u8>)], ns: &[Vec<Cell>]) {
    print!("| packet |");
    for (name, _) in sets {
        print!(" {name} ns |");
    }
    println!();
    print!("|---|");
    for _ in sets {
        print!("---:|");
    }
    println!();
    for (pi, (name, _)) in packets.iter().enumerate() {
        print!("| {name} |");
        for s in ns {
            print!(" {:.1} ({} matched) |", s[pi].ns, s[pi].matched);
        }
        println!();
    }
    print!("| **mean** |");
    for s in ns {
        print!(" **{:.1}** |", mean(s));
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag:
    // then only check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let prog = match XdpProgram::load() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xdp_kernel_cost: cannot load the XDP program (run as root): {e}");
            std::process::exit(1);
        }
    };
    let repeat = env_u32("COMO_XDP_REPEAT", 200_000);
    let rounds = env_u32("COMO_XDP_ROUNDS", 7);
    let packets = vec![
        frame("nDPI/teams.pcap", "tcp and ip"),
        frame("nDPI/teams.pcap", "udp port 53"),
        frame("zeek/dns-edns-ecs.pcap", "ip6"),
        frame("nDPI/teams.pcap", "arp"),
        frame("zeek/vlan-pcp-dei.pcapng", "vlan and ip"),
    ];
    let filters: Vec<Filter> = (0..64)
        .map(|i| {
            let e = rule(i);
            compile(&e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"))
        })
        .collect();
    let sets = vec![
        ("1 rule", tables(&filters[..1])),
        ("8 rules", tables(&filters[..8])),
        ("64 rules", tables(&filters)),
    ];
    let ns = measure(&prog, &sets, &packets, repeat, rounds);
    println!("Mixed module-like rules (rule i = `rule(i)`)");
    describe(&sets);
    println!(
        "BPF_PROG_TEST_RUN, repeat {repeat}, median of {rounds} rounds; kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    print_table(&sets, &packets, &ns);
    let (one, eight, many) = (mean(&ns[0]), mean(&ns[1]), mean(&ns[2]));
    println!(
        "ratio 8/1 = {:.3}, 64/1 = {:.3} (goal: 64/1 <= 1.10)",
        eight / one,
        many / one
    );

    // Rule sets that constrain the same fields: the cost as a function of the number of rules
    // alone.
    for (shape, make) in [
        (
            "tcp port N",
            (|i: usize| format!("tcp port {}", 1000 + i)) as fn(usize) -> String,
        ),
        ("host 10.0.N.1", |i: usize| format!("host 10.0.{i}.1")),
    ] {
        let fs: Vec<Filter> = (0..64)
            .map(|i| {
                let e = make(i);
                compile(&e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"))
            })
            .collect();
        let sets_same = vec![
            ("1 rule", tables(&fs[..1])),
            ("8 rules", tables(&fs[..8])),
            ("64 rules", tables(&fs)),
        ];
        println!();
        println!("Rules of one shape: `{shape}`");
        describe(&sets_same);
        let ns_same = measure(&prog, &sets_same, &packets, repeat, rounds);
        print_table(&sets_same, &packets, &ns_same);
        println!(
            "ratio 8/1 = {:.3}, 64/1 = {:.3}",
            mean(&ns_same[1]) / mean(&ns_same[0]),
            mean(&ns_same[2]) / mean(&ns_same[0])
        );
    }

    // Worst case for the per-rule counters: every rule matches every packet.
    let all: Vec<Filter> = (0..64)
        .map(|i| {
            let e = format!("not port {}", 60_000 + i);
            compile(&e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}"))
        })
        .collect();
    let sets_all = vec![
        ("1 matching", tables(&all[..1])),
        ("64 matching", tables(&all)),
    ];
    println!();
    println!("Every rule matching (`not port 60000+i`): the per-rule counters");
    describe(&sets_all);
    let ns_all = measure(&prog, &sets_all, &packets, repeat, rounds);
    print_table(&sets_all, &packets, &ns_all);
    println!(
        "ratio 64/1 with every rule matching = {:.3}",
        mean(&ns_all[1]) / mean(&ns_all[0])
    );
}
