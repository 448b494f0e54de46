//! Runtime tests on real traces: worker-count independence, interval alignment and flushing,
//! classification, storage.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn trace(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/traces")
        .join(rel)
}

fn spec(kind: &str, args: &str, filter: &str, interval: Duration) -> ModuleSpec {
    let args: toml::Value = toml::from_str(args).expect("args toml");
    ModuleSpec {
        name: kind.to_owned(),
        module: como_modules::build(kind, Some(&args)).expect("build"),
        filter: filter.to_owned(),
        interval,
    }
}

fn all_specs(interval: Duration) -> Vec<ModuleSpec> {
    vec![
        spec("traffic", "", "", interval),
        spec("protocol", "", "", interval),
        spec("application", "", "", interval),
        spec("topaddr", "topn = 5", "", interval),
        spec(
            "topaddr",
            "topn = 3\nuse_dst = true\nmask = 24",
            "ip",
            interval,
        ),
        spec("topports", "", "", interval),
        spec("tuple", "", "", interval),
        spec("ethtypes", "", "", interval),
        spec("flowcount", "", "", interval),
        spec("trace", "snaplen = 64", "tcp", interval),
        spec("ewma", "change_thresh = 1.5", "", interval),
    ]
}

fn run_file(file: &str, specs: Vec<ModuleSpec>, workers: usize) -> (RunReport, CollectSink) {
    let mut src = TraceSource::open(trace(file)).expect("open trace");
    let opts = Options {
        workers,
        ..Options::default()
    };
    run(specs, &opts, &mut src, CollectSink::default()).expect("run")
}

const FILES: &[&str] = &[
    "nDPI/teams.pcap",
    "zeek/workshop_2011_browse.pcap",
    "pcap-parser/wireshark_samples-test.pcapng",
    "libtrace/100_packetsns.pcap",
    "nDPI/6in4tunnel.pcap",
    "libtrace/fragtest.erf",
    "zeek/ipv6-fragmented-dns.pcap",
];

#[test]
fn one_worker_and_three_workers_export_identical_records() {
    for file in FILES {
        for secs in [1, 60] {
            let (r1, s1) = run_file(file, all_specs(Duration::from_secs(secs)), 1);
            let (r3, s3) = run_file(file, all_specs(Duration::from_secs(secs)), 3);
            let (r2, s2) = run_file(file, all_specs(Duration::from_secs(secs)), 2);
            assert_eq!(
                (&r1, &s1.intervals),
                (&r2, &s2.intervals),
                "{file}: 1 vs 2 workers"
            );
            assert!(r1.packets > 0, "{file}: no packets");
            assert_eq!(r1, r3, "{file}: reports differ");
            assert!(
                s1.intervals.iter().any(|(_, _, recs)| !recs.is_empty()),
                "{file}: nothing exported"
            );
            assert_eq!(
                s1.intervals, s3.intervals,
                "{file} interval {secs}s: records differ"
            );
        }
    }
}

#[test]
fn intervals_are_aligned_ordered_and_flushed_at_end() {
    let len = Duration::from_millis(500);
    let (report, sink) = run_file("nDPI/teams.pcap", vec![spec("traffic", "", "", len)], 2);
    let mut prev = None;
    let mut pkts = 0;
    for (m, ivl, recs) in &sink.intervals {
        assert_eq!(*m, 0);
        assert_eq!(ivl.len_ns, 500_000_000);
        assert_eq!(ivl.start_ns % 500_000_000, 0, "not epoch-aligned");
        if let Some(p) = prev {
            assert!(ivl.start_ns > p, "intervals out of order");
        }
        prev = Some(ivl.start_ns);
        for r in recs {
            assert_eq!(r.ts_ns, ivl.start_ns);
            let rec =
                como_module::decode::<como_modules::traffic::Traffic>(&r.bytes).expect("decode");
            pkts += rec.counts.pkts;
        }
    }
    // The last interval was flushed at the end of the input: every packet is accounted.
    assert_eq!(pkts, report.packets);
}

#[test]
fn filters_classify_and_matched_counts_follow_them() {
    let (report, sink) = run_file(
        "nDPI/teams.pcap",
        vec![
            spec("traffic", "", "tcp", Duration::from_secs(3600)),
            spec("traffic", "", "udp", Duration::from_secs(3600)),
            spec("traffic", "", "", Duration::from_secs(3600)),
        ],
        1,
    );
    let total = |m: usize| -> u64 {
        sink.intervals
            .iter()
            .filter(|(i, _, _)| *i == m)
            .flat_map(|(_, _, r)| r)
            .map(|r| {
                como_module::decode::<como_modules::traffic::Traffic>(&r.bytes)
                    .map_or(0, |x| x.counts.pkts)
            })
            .sum()
    };
    // tcpdump -r nDPI/teams.pcap --count tcp / udp
    let tcpdump = |expr: &str| -> Option<u64> {
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(trace("nDPI/teams.pcap"))
            .args(["--count", expr])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    assert_eq!(report.matched[2], report.packets);
    assert_eq!(total(0), report.matched[0]);
    assert_eq!(total(1), report.matched[1]);
    assert_eq!(total(2), report.packets);
    if let (Some(t), Some(u)) = (tcpdump("tcp"), tcpdump("udp")) {
        assert_eq!((report.matched[0], report.matched[1]), (t, u));
    }
}

#[test]
fn bad_filter_and_bad_specs_are_refused() {
    let s = vec![spec("traffic", "", "tcp and", Duration::from_secs(1))];
    assert!(matches!(
        check_filters(&s, LinkType::Ethernet),
        Err(RuntimeError::Filter { .. })
    ));
    let s = vec![spec("traffic", "", "", Duration::ZERO)];
    assert!(matches!(
        Pipeline::start(s, &Options::default(), CollectSink::default()).err(),
        Some(RuntimeError::Interval(_))
    ));
    assert!(matches!(
        Pipeline::start(Vec::new(), &Options::default(), CollectSink::default()).err(),
        Some(RuntimeError::ModuleCount(0))
    ));
}

#[test]
fn advance_flushes_idle_intervals() {
    let sink = CollectSink::default();
    let mut p = Pipeline::start(
        vec![spec("traffic", "", "", Duration::from_secs(1))],
        &Options {
            workers: 2,
            ..Options::default()
        },
        sink,
    )
    .expect("start");
    let frame = [0u8; 60];
    let pkt = Packet {
        ts_ns: 10_200_000_000,
        wire_len: 60,
        data: &frame,
        link: LinkType::Ethernet,
        interface: 0,
    };
    p.packet(&pkt).expect("packet");
    // Idle: the interval [10s, 11s) is flushed by the call, without another packet.
    p.advance(11_000_000_000).expect("advance");
    let (_, sink) = p.finish().expect("finish");
    assert_eq!(sink.intervals.len(), 1);
    assert_eq!(sink.intervals[0].1.start_ns, 10_000_000_000);
}

#[test]
fn storage_sink_stores_what_was_exported() {
    let dir = std::env::temp_dir().join(format!("como-runtime-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names = vec!["traffic".to_owned(), "tuple".to_owned()];
    let sink = StorageSink::open(&dir, &names, &como_storage::Options::default()).expect("open");
    let mut src = TraceSource::open(trace("zeek/workshop_2011_browse.pcap")).expect("trace");
    let specs = vec![
        spec("traffic", "", "", Duration::from_secs(1)),
        spec("tuple", "", "", Duration::from_secs(1)),
    ];
    let (_, sink) = run(
        specs.clone(),
        &Options {
            workers: 2,
            ..Options::default()
        },
        &mut src,
        sink,
    )
    .expect("run");
    drop(sink);
    let mut src = TraceSource::open(trace("zeek/workshop_2011_browse.pcap")).expect("trace");
    let (_, collected) = run(
        specs,
        &Options {
            workers: 1,
            ..Options::default()
        },
        &mut src,
        CollectSink::default(),
    )
    .expect("run");
    for (i, n) in names.iter().enumerate() {
        let db = como_storage::Database::open(dir.join(n), como_storage::Options::default())
            .expect("reopen");
        let stored: Vec<(u64, Vec<u8>)> = db
            .reader(..)
            .map(|r| r.map(|r| (r.ts, r.payload.to_vec())).expect("read"))
            .collect();
        let expected: Vec<(u64, Vec<u8>)> = collected
            .intervals
            .iter()
            .filter(|(m, _, _)| *m == i)
            .flat_map(|(_, _, r)| r.iter().map(|e| (e.ts_ns, e.bytes.clone())))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(stored, expected, "{n}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merged_sources_interleave_by_time() {
    let a = "zeek/workshop_2011_browse.pcap";
    let b = "nDPI/teams.pcap";
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(TraceSource::open(trace(a)).expect("a")),
        Box::new(TraceSource::open(trace(b)).expect("b")),
    ];
    let mut merged = MergedSource::new(sources);
    let mut last = 0;
    let mut n = 0u64;
    while let Next::Packet(p) = merged.next_packet().expect("next") {
        assert!(p.ts_ns >= last, "out of order");
        last = p.ts_ns;
        n += 1;
    }
    // 121 + 1540 frames (tshark's counts in tests/data/oracle).
    assert_eq!(n, 121 + 1540);
    let traffic = |src: &mut dyn Source| {
        run(
            vec![spec(
                "traffic",
                "",
                "",
                Duration::from_secs(3600 * 24 * 365 * 100),
            )],
            &Options {
                workers: 2,
                ..Options::default()
            },
            src,
            CollectSink::default(),
        )
        .expect("run")
        .0
    };
    let both = traffic(&mut MergedSource::new(vec![
        Box::new(TraceSource::open(trace(a)).expect("a")),
        Box::new(TraceSource::open(trace(b)).expect("b")),
    ]));
    let one = traffic(&mut TraceSource::open(trace(a)).expect("a"));
    let two = traffic(&mut TraceSource::open(trace(b)).expect("b"));
    assert_eq!(
        (both.packets, both.bytes),
        (one.packets + two.packets, one.bytes + two.bytes)
    );
}

/// A live-like source: a few packets, then idle until the sink saw an interval (or 5 s).
struct Live {
    sent: u32,
    frame: [u8; 60],
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    started: std::time::Instant,
}

impl Source for Live {
    fn name(&self) -> String {
        "live".into()
    }

    fn next_packet(&mut self) -> Result<Next<'_>, SourceError> {
        if self.sent < 3 {
            self.sent += 1;
            return Ok(Next::Packet(Packet {
                ts_ns: 5_000_000_000 + u64::from(self.sent),
                wire_len: 60,
                data: &self.frame,
                link: LinkType::Ethernet,
                interface: 0,
            }));
        }
        if self.seen.load(std::sync::atomic::Ordering::SeqCst) > 0
            || self.started.elapsed() > Duration::from_secs(5)
        {
            return Ok(Next::End);
        }
        Ok(Next::Idle)
    }
}

struct CountingSink(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Sink for CountingSink {
    fn interval(&mut self, _: usize, _: Interval, _: &[Exported]) -> Result<(), SinkError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[test]
fn idle_timeout_flushes_a_live_source_before_it_ends() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut live = Live {
        sent: 0,
        frame: [0; 60],
        seen: std::sync::Arc::clone(&seen),
        started: std::time::Instant::now(),
    };
    let opts = Options {
        workers: 2,
        idle_timeout: Duration::from_millis(100),
    };
    let t = std::time::Instant::now();
    run(
        vec![spec("traffic", "", "", Duration::from_millis(50))],
        &opts,
        &mut live,
        CountingSink(std::sync::Arc::clone(&seen)),
    )
    .expect("run");
    // The interval was exported while the source was idle (it ends only once it saw that),
    // well before the 5 s give-up.
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn replay_chains_a_module_over_stored_trace_records() {
    let file = "nDPI/teams.pcap";
    let len = Duration::from_secs(10);
    let (_, stored) = run_file(file, vec![spec("trace", "", "tcp", len)], 2);
    let records: Vec<Result<Vec<u8>, String>> = stored
        .intervals
        .into_iter()
        .flat_map(|(_, _, r)| r.into_iter().map(|e| Ok(e.bytes)))
        .collect();
    assert!(records.len() > 100);
    let trace_module = como_modules::build("trace", None).expect("trace");
    let mut replay = ReplaySource::new("trace", trace_module, Box::new(records.into_iter()));
    let opts = Options {
        workers: 2,
        ..Options::default()
    };
    let (_, chained) = run(
        vec![spec("tuple", "", "", len)],
        &opts,
        &mut replay,
        CollectSink::default(),
    )
    .expect("run");
    let (_, direct) = run_file(file, vec![spec("tuple", "", "tcp", len)], 2);
    assert!(!direct.intervals.is_empty());
    assert_eq!(chained.intervals, direct.intervals);

    // A module without replay cannot be a source.
    let (_, traffic) = run_file(file, vec![spec("traffic", "", "", len)], 1);
    let recs: Vec<Result<Vec<u8>, String>> = traffic
        .intervals
        .into_iter()
        .flat_map(|(_, _, r)| r.into_iter().map(|e| Ok(e.bytes)))
        .collect();
    let mut replay = ReplaySource::new(
        "traffic",
        como_modules::build("traffic", None).expect("m"),
        Box::new(recs.into_iter()),
    );
    let e = replay
        .next_packet()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("cannot replay"), "{e}");
}

#[test]
fn a_filter_invalid_for_a_later_link_type_is_a_warning_not_a_failure() {
    // Ethernet interface first, then a NULL/loopback one, where `ether` qualifiers are invalid.
    let file = "libtrace/complex.pcapng";
    let specs = vec![
        spec(
            "traffic",
            "",
            "ether multicast or ether broadcast or ether src 00:00:00:00:00:00 or ip or ip6",
            Duration::from_secs(3600),
        ),
        spec("traffic", "", "", Duration::from_secs(3600)),
    ];
    let mut src = TraceSource::open(trace(file)).expect("open");
    assert_eq!(src.link_type(), LinkType::Ethernet);
    check_filters(&specs, LinkType::Ethernet).expect("valid on Ethernet");
    assert!(check_filters(&specs, LinkType::Null).is_err());
    let (report, _) = run(
        specs,
        &Options {
            workers: 2,
            ..Options::default()
        },
        &mut src,
        CollectSink::default(),
    )
    .expect("run");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("link type NULL"),
        "{:?}",
        report.warnings
    );
    assert!(report.matched[0] < report.matched[1]);
    assert_eq!(report.matched[1], report.packets);
}

/// Per-module CPU accounting: every module that saw packets has time, a module whose filter
/// matched nothing has none; with 1 and 2 workers.
#[test]
fn module_cpu_accounting() {
    for workers in [1, 2] {
        let specs = vec![
            spec("traffic", "", "", Duration::from_secs(1)),
            spec("tuple", "", "", Duration::from_secs(1)),
            spec(
                "traffic",
                "",
                "vlan 4000 and port 1",
                Duration::from_secs(1),
            ),
        ];
        let opts = Options {
            workers,
            ..Options::default()
        };
        let mut pipe = Pipeline::start(specs, &opts, CollectSink::default()).expect("start");
        let cpu = pipe.module_cpu();
        let mut src = TraceSource::open(trace("nDPI/teams.pcap")).expect("open");
        while let Ok(Next::Packet(p)) = src.next_packet() {
            pipe.packet(&p).expect("packet");
        }
        let (report, _) = pipe.finish().expect("finish");
        assert!(report.packets > 1000);
        assert_eq!(report.matched[2], 0);
        assert!(cpu.nanos(0) > 0 && cpu.nanos(1) > 0, "workers {workers}");
        assert_eq!(cpu.nanos(2), 0, "workers {workers}");
        assert_eq!(cpu.nanos(7), 0);
    }
}

/// Progress of file sources: bytes consumed grow to the file size; a merge sums its sources;
/// `run_observed` reports it at least at the end of the input.
#[test]
fn progress_of_file_sources() {
    let a = "zeek/workshop_2011_browse.pcap";
    let b = "nDPI/teams.pcap";
    let size = |f: &str| std::fs::metadata(trace(f)).expect("size").len();
    let mut src = TraceSource::open(trace(a)).expect("open");
    let (start, total) = src.progress().expect("a file knows its progress");
    assert_eq!(total, size(a));
    assert!(start < total, "{start} of {total} before reading");
    let mut last = start;
    while let Next::Packet(_) = src.next_packet().expect("next") {
        let (now, _) = src.progress().expect("progress");
        assert!(now >= last, "progress went back: {now} < {last}");
        last = now;
    }
    assert_eq!(src.progress(), Some((total, total)));

    let mut merged = MergedSource::new(vec![
        Box::new(TraceSource::open(trace(a)).expect("a")),
        Box::new(TraceSource::open(trace(b)).expect("b")),
    ]);
    let mut seen = Vec::new();
    let (report, _) = run_observed(
        vec![spec("traffic", "", "", Duration::from_secs(1))],
        &Options {
            workers: 1,
            ..Options::default()
        },
        &mut merged,
        CollectSink::default(),
        &mut |s: &dyn Source| seen.push(s.progress()),
    )
    .expect("run");
    assert_eq!(report.packets, 121 + 1540);
    let whole = size(a) + size(b);
    assert_eq!(seen.last(), Some(&Some((whole, whole))));
}

#[test]
fn damaged_files_give_every_packet_before_the_damage_then_the_error() {
    // Real damaged traces (SOURCES.md): the batch read hands over the packets read before the
    // damage, then the error; the run accounts exactly what `next_packet` reads one by one.
    for file in [
        "nDPI/fuzz-2021-10-13.pcap",
        "suricata-verify/bug-6875-01/fuzz.pcap",
    ] {
        let mut reader = como_tracefile::TraceReader::open(trace(file)).expect("open");
        let mut want = 0u64;
        let mut want_err = None;
        while let Some(next) = reader.next_packet() {
            match next {
                Ok(_) => want += 1,
                Err(e) => want_err = Some(e.to_string()),
            }
        }
        let want_err = want_err.expect("a damaged file ends on an error");
        for workers in [1, 2] {
            let (report, _) = run_file(file, all_specs(Duration::from_secs(1)), workers);
            assert_eq!(report.packets, want, "{file}, {workers} workers");
            let err = report.source_error.expect("the error is reported");
            assert!(err.contains(&want_err), "{file}: {err} vs {want_err}");
        }
    }
}

/// The flow hash's inputs as defined: both addresses through `src_ip`/`dst_ip`, the ports
/// (none for a fragment), the IP protocol, mixed by `mix_flow`. `flow_hash` reads the same
/// values straight from the bytes.
fn flow_hash_by_definition(p: &Parsed<'_>) -> u64 {
    let (Some(a), Some(b)) = (p.src_ip(), p.dst_ip()) else {
        return 0;
    };
    let fold = |ip: std::net::IpAddr| -> u64 {
        match ip {
            std::net::IpAddr::V4(v) => u64::from(u32::from(v)),
            std::net::IpAddr::V6(v) => {
                let x = u128::from(v);
                (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
            }
        }
    };
    let (sp, dp) = if p.frag.is_some() {
        (0, 0)
    } else {
        (p.src_port().unwrap_or(0), p.dst_port().unwrap_or(0))
    };
    mix_flow((fold(a), sp), (fold(b), dp), p.l4_proto.unwrap_or(0))
}

/// The workers' flow hash equals its definition on every packet of every bundled trace, cut
/// short too (truncated headers), and is the same for both directions of a flow.
#[test]
fn flow_hash_follows_its_definition_and_is_symmetric() {
    let mut hashed = 0;
    for (name, pkts) in como_tests::ethernet_traces() {
        for (i, owned) in pkts.iter().enumerate() {
            let pkt = owned.view();
            for cut in [pkt.data.len(), 54, 38, 30] {
                let p = Packet {
                    data: pkt.data.get(..cut.min(pkt.data.len())).unwrap_or_default(),
                    ..pkt
                };
                let parsed = Parsed {
                    packet: p,
                    layers: Layers::parse(&p),
                };
                let want = flow_hash_by_definition(&parsed);
                assert_eq!(flow_hash(&parsed), want, "{name} packet {i} cut at {cut}");
                hashed += u64::from(want != 0);
            }
        }
    }
    assert!(hashed > 1000, "only {hashed} packets had addresses");

    // One TCP flow, both directions (Ethernet, IPv4, TCP; ports 40000 and 443).
    let frame = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f[46] = 0x50;
        f
    };
    let hash = |f: &[u8]| {
        let p = Packet {
            data: f,
            wire_len: 54,
            ..Packet::EMPTY
        };
        flow_hash(&Parsed {
            packet: p,
            layers: Layers::parse(&p),
        })
    };
    let there = frame([10, 0, 0, 1], [192, 0, 2, 7], 40000, 443);
    let back = frame([192, 0, 2, 7], [10, 0, 0, 1], 443, 40000);
    let other = frame([10, 0, 0, 1], [192, 0, 2, 7], 40001, 443);
    assert_ne!(hash(&there), 0);
    assert_eq!(hash(&there), hash(&back));
    assert_ne!(hash(&there), hash(&other));
}

/// The one-worker path hands packets to the modules in runs cut at interval ends: whatever the
/// slices given to `Pipeline::packets` (1, 7, 64 or 200 packets at once), with modules of
/// different interval lengths and timestamps that go back and forth across interval ends, its
/// reports and records equal those of three workers, which take the packets one by one.
#[test]
fn one_worker_runs_equal_three_workers_whatever_the_slices_and_the_time_order() {
    let mut owned = Vec::new();
    for file in [
        "nDPI/teams.pcap",
        "zeek/ipv6-fragmented-dns.pcap",
        "libtrace/fragtest.erf",
    ] {
        let mut r = como_tracefile::TraceReader::open(trace(file)).expect("open");
        while let Some(p) = r.next_packet() {
            let p = p.expect("packet");
            owned.push((p.wire_len, p.data.to_vec(), p.link, p.interface));
        }
    }
    assert!(owned.len() > 1000, "{} packets", owned.len());
    // 7 ms apart from an interval start on, every 5th packet 1.3 s back, a 3 s jump every 97.
    let base = 1_700_000_000_000_000_000u64;
    let mut t = base;
    let times: Vec<u64> = (0..owned.len() as u64)
        .map(|i| {
            t += 7_000_000 + if i % 97 == 96 { 3_000_000_000 } else { 0 };
            if i % 5 == 4 {
                t - 1_300_000_000
            } else {
                t
            }
        })
        .collect();
    let pkts: Vec<Packet<'_>> = owned
        .iter()
        .zip(&times)
        .map(|((wire_len, data, link, interface), &ts_ns)| Packet {
            ts_ns,
            wire_len: *wire_len,
            data,
            link: *link,
            interface: *interface,
        })
        .collect();
    let run = |workers: usize, slice: usize| {
        let opts = Options {
            workers,
            ..Options::default()
        };
        // Intervals of four lengths: a run is cut at the earliest end among the modules.
        let mut specs = all_specs(Duration::from_millis(500));
        for (i, s) in specs.iter_mut().enumerate() {
            s.interval = Duration::from_millis([500, 2000, 1000, 300][i % 4]);
        }
        let mut pipe = Pipeline::start(specs, &opts, CollectSink::default()).expect("start");
        for chunk in pkts.chunks(slice) {
            pipe.packets(chunk).expect("packets");
        }
        pipe.finish().expect("finish")
    };
    let (want_report, want) = run(3, 1);
    assert!(
        want.intervals.len() > 100,
        "{} intervals",
        want.intervals.len()
    );
    for slice in [1, 7, 64, 200] {
        let (report, got) = run(1, slice);
        assert_eq!(report, want_report, "slices of {slice}: reports differ");
        assert_eq!(
            got.intervals, want.intervals,
            "slices of {slice}: records differ"
        );
    }
}
