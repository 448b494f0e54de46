//! The other standard modules, each against an independent expectation: tshark's per-packet
//! table (`topports`, `application`, `flowcount`), the trace file itself read without the
//! runtime (`trace` replay), hand-built traffic (`ewma`), plus record versioning and config
//! errors.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use common::{bin, data, run_module, spec};
use como_module::{decode, encode, Module, RecordError};
use como_modules::{application, ethtypes, ewma, flowcount, topports, trace, traffic, Counts};
use como_runtime::{run, CollectSink, ModuleSpec, Options, Pipeline, TraceSource};
use como_tracefile::{LinkType, Packet, TraceReader};

const TRACES: &[&str] = &[
    "nDPI/teams.pcap",
    "pcap-parser/wireshark_samples-test.pcapng",
    "nDPI/netflix.pcap",
    "libtrace/100_packetsns.pcap",
];

/// tshark's view of one frame: time, length, addresses, protocol, (sport, dport).
struct Frame {
    ts_ns: u64,
    len: u64,
    addrs: Option<(IpAddr, IpAddr)>,
    proto: Option<u8>,
    ports: Option<(u16, u16)>,
}

fn frames(trace: &str) -> Vec<Frame> {
    let path = data(&format!("oracle/{}.packets.tsv", trace.replace('/', "__")));
    let text = std::fs::read_to_string(path).expect("oracle table");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|l| {
            let r: Vec<&str> = l.split('\t').collect();
            let f = |i: usize| r.get(i).copied().filter(|s| !s.is_empty());
            let (secs, frac) = f(0).expect("time").split_once('.').expect("dot");
            let ts_ns = secs.parse::<u64>().expect("secs") * 1_000_000_000
                + format!("{frac:0<9}")[..9].parse::<u64>().expect("frac");
            let ip = |a: Option<&str>, b: Option<&str>| {
                a.or(b).map(|s| s.parse::<IpAddr>().expect("ip"))
            };
            let port = |i: usize| f(i).map(|s| s.parse::<u16>().expect("port"));
            let ports = match (port(8), port(9), port(10), port(11)) {
                (Some(a), Some(b), _, _) | (None, None, Some(a), Some(b)) => Some((a, b)),
                _ => None,
            };
            let (src, dst) = (ip(f(2), f(4)), ip(f(3), f(5)));
            Frame {
                ts_ns,
                len: f(1).expect("len").parse().expect("len"),
                addrs: src.zip(dst),
                proto: f(6).or(f(7)).map(|s| s.parse().expect("proto")),
                ports,
            }
        })
        .collect()
}

fn records<M: Module>(trace: &str, spec: ModuleSpec) -> Vec<M::Record> {
    run_module::<M>(trace, spec).1
}

/// A ranking of (protocol, port) with counters.
type Ranking = Vec<((u8, u16), Counts)>;
/// protocol, source, source port, destination, destination port.
type FiveTuple = (u8, IpAddr, u16, IpAddr, u16);

#[test]
fn topports_equals_tshark_destination_port_ranking() {
    let len = Duration::from_secs(10);
    for trace in TRACES {
        let mut bins: BTreeMap<u64, HashMap<(u8, u16), Counts>> = BTreeMap::new();
        for f in frames(trace) {
            if let (Some(p), Some((_, dport))) = (f.proto, f.ports) {
                bins.entry(bin(f.ts_ns, len))
                    .or_default()
                    .entry((p, dport))
                    .or_default()
                    .add(f.len);
            }
        }
        let want: Vec<(u64, Ranking)> = bins
            .into_iter()
            .map(|(ts, m)| {
                let mut v: Vec<_> = m.into_iter().collect();
                v.sort_by(|a, b| {
                    b.1.bytes
                        .cmp(&a.1.bytes)
                        .then(b.1.pkts.cmp(&a.1.pkts))
                        .then(a.0.cmp(&b.0))
                });
                v.truncate(4);
                (ts, v)
            })
            .collect();
        let got: Vec<_> =
            records::<topports::TopPorts>(trace, spec("topports", "topn = 4", "", len))
                .into_iter()
                .map(|r| (r.ts, r.top))
                .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{trace}");
    }
}

#[test]
fn application_classes_follow_the_port_table() {
    let class_of = |table: &[(&str, &[u16])], port: u16| {
        table
            .iter()
            .find(|(_, ports)| ports.contains(&port))
            .map(|(n, _)| (*n).to_owned())
    };
    for (args, table) in [
        ("", application::DEFAULT_CLASSES),
        (
            "[classes]\nhttps = [443]\nstun = [3478, 3479]",
            &[("https", &[443u16][..]), ("stun", &[3478, 3479][..])][..],
        ),
    ] {
        for trace in TRACES {
            let mut want: BTreeMap<String, Counts> = BTreeMap::new();
            for f in frames(trace) {
                let class = f
                    .ports
                    .and_then(|(s, d)| class_of(table, d).or_else(|| class_of(table, s)))
                    .unwrap_or_else(|| "other".to_owned());
                want.entry(class).or_default().add(f.len);
            }
            let mut got: BTreeMap<String, Counts> = BTreeMap::new();
            for r in records::<application::Application>(
                trace,
                spec("application", args, "", Duration::from_secs(1 << 40)),
            ) {
                for (c, n) in r.classes {
                    got.entry(c).or_default().merge(n);
                }
            }
            assert_eq!(got, want, "{trace} args {args:?}");
        }
    }
    // A port in two classes is refused with its number.
    let bad: toml::Value = toml::from_str("[classes]\na = [80]\nb = [80]").expect("toml");
    let e = como_modules::build("application", Some(&bad))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("port 80"), "{e}");
}

#[test]
fn flowcount_is_within_the_hyperloglog_bound_of_tshark_flows() {
    let len = Duration::from_secs(10);
    for trace in TRACES {
        let mut bins: BTreeMap<u64, HashSet<FiveTuple>> = BTreeMap::new();
        for f in frames(trace) {
            if let (Some((s, d)), Some(p)) = (f.addrs, f.proto) {
                let (sp, dp) = f.ports.unwrap_or((0, 0));
                bins.entry(bin(f.ts_ns, len))
                    .or_default()
                    .insert((p, s, sp, d, dp));
            }
        }
        let got: BTreeMap<u64, u64> =
            records::<flowcount::FlowCount>(trace, spec("flowcount", "", "ip or ip6", len))
                .into_iter()
                .map(|r| (r.ts, r.flows))
                .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            bins.keys().collect::<Vec<_>>(),
            "{trace}"
        );
        for (ts, set) in &bins {
            let n = set.len() as f64;
            let e = got[ts] as f64;
            // 3 standard errors of HLL with 4096 registers (1.04/64), at least 1 flow.
            assert!(
                (e - n).abs() <= (3.0 * 1.04 / 64.0 * n).max(1.0),
                "{trace} {ts}: {e} vs {n}"
            );
        }
    }
}

#[test]
fn trace_records_replay_the_matching_packets_cut_to_snaplen() {
    let file = "nDPI/teams.pcap";
    let recs = records::<trace::Trace>(
        file,
        spec("trace", "snaplen = 64", "udp", Duration::from_secs(1)),
    );
    let filter = ebpf_filters::compile("udp", LinkType::Ethernet).expect("filter");
    let mut reader = TraceReader::open(data(&format!("traces/{file}"))).expect("open");
    let mut want = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.expect("packet");
        if filter.matches(&p) {
            want.push((p.ts_ns, p.wire_len, p.data[..p.data.len().min(64)].to_vec()));
        }
    }
    let module = trace::Trace::new(trace::Config { snaplen: 64 }).expect("module");
    let mut got = Vec::new();
    for r in &recs {
        module
            .replay(r, &mut |p: &Packet<'_>| {
                got.push((p.ts_ns, p.wire_len, p.data.to_vec()));
                Ok(())
            })
            .expect("replay");
    }
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // Other modules cannot replay.
    let t = traffic::Traffic;
    let r = traffic::Record {
        ts: 0,
        counts: Counts::default(),
    };
    assert!(matches!(
        t.replay(&r, &mut |_| Ok(())),
        Err(RecordError::Unsupported(_))
    ));
}

#[test]
fn ewma_stores_only_intervals_outside_the_band() {
    let frame = [0u8; 1514];
    let m = spec(
        "ewma",
        "change_thresh = 2.0\nweight = 0.5",
        "",
        Duration::from_secs(1),
    );
    let mut p = Pipeline::start(
        vec![m],
        &Options {
            workers: 1,
            ..Options::default()
        },
        CollectSink::default(),
    )
    .expect("start");
    // Bytes per 1 s interval: 1000, 1000, 1000, 5000 (alert), 1000, 300 (alert), 1000.
    for (sec, bytes) in [
        (10u64, 1000u32),
        (11, 1000),
        (12, 1000),
        (13, 5000),
        (14, 1000),
        (15, 300),
        (16, 1000),
    ] {
        let mut left = bytes;
        let mut i = 0;
        while left > 0 {
            let n = left.min(1000);
            let pkt = Packet {
                ts_ns: sec * 1_000_000_000 + i,
                wire_len: n,
                data: &frame[..60],
                link: LinkType::Ethernet,
                interface: 0,
            };
            p.packet(&pkt).expect("packet");
            left -= n;
            i += 1;
        }
    }
    let (_, sink) = p.finish().expect("finish");
    let alerts: Vec<(u64, u64)> = sink
        .intervals
        .iter()
        .flat_map(|(_, _, r)| r.iter())
        .map(|r| decode::<ewma::Ewma>(&r.bytes).expect("decode"))
        .map(|r| (r.ts / 1_000_000_000, r.bytes))
        .collect();
    // ewma 1000 after three intervals; 5000 > 2 * 1000: alert, ewma 3000; 1000 < 3000 / 2:
    // alert, ewma 2000; 300 < 2000 / 2: alert, ewma 1150; 1000 is inside [575, 2300].
    assert_eq!(alerts, vec![(13, 5000), (14, 1000), (15, 300)]);
    assert_eq!(
        sink.intervals.len(),
        7,
        "every interval is exported, only alerts are stored"
    );
}

#[test]
fn records_carry_a_version_byte() {
    let r = traffic::Record {
        ts: 1_700_000_000_000_000_000,
        counts: Counts {
            pkts: 3,
            bytes: 180,
        },
    };
    let bytes = encode::<traffic::Traffic>(&r).expect("encode");
    assert_eq!(bytes[0], traffic::Traffic::RECORD_VERSION);
    assert_eq!(decode::<traffic::Traffic>(&bytes).expect("decode"), r);
    let mut other = bytes.clone();
    other[0] = 9;
    assert!(matches!(
        decode::<traffic::Traffic>(&other),
        Err(RecordError::Version {
            found: 9,
            expected: 1
        })
    ));
    assert!(matches!(
        decode::<traffic::Traffic>(&[]),
        Err(RecordError::Empty)
    ));
    assert!(matches!(
        decode::<traffic::Traffic>(&bytes[..3]),
        Err(RecordError::Decode(_))
    ));
}

#[test]
fn ethtypes_count_the_network_layer_behind_vlan_tags() {
    let mac = [0x02u8, 0, 0, 0, 0, 1];
    let eth = |types: &[u16], payload: &[u8]| -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&mac);
        for (i, t) in types.iter().enumerate() {
            f.extend_from_slice(&t.to_be_bytes());
            if i + 1 < types.len() {
                f.extend_from_slice(&[0x00, 0x0a]); // VLAN TCI: id 10
            }
        }
        f.extend_from_slice(payload);
        f
    };
    let mut ipv4 = vec![
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ipv4.resize(20, 0);
    let mut ipv6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    ipv6.resize(40, 0);
    let arp = [0u8; 28];
    let frames = [
        eth(&[0x0800], &ipv4),
        eth(&[0x8100, 0x0800], &ipv4),
        eth(&[0x8100, 0x86dd], &ipv6),
        eth(&[0x0806], &arp),
    ];
    let m = spec("ethtypes", "", "", Duration::from_secs(1));
    let mut p = Pipeline::start(
        vec![m],
        &Options {
            workers: 1,
            ..Options::default()
        },
        CollectSink::default(),
    )
    .expect("start");
    for (i, f) in frames.iter().enumerate() {
        let pkt = Packet {
            ts_ns: 1_000_000_000 + i as u64,
            wire_len: f.len() as u32,
            data: f,
            link: LinkType::Ethernet,
            interface: 0,
        };
        p.packet(&pkt).expect("packet");
    }
    let (_, sink) = p.finish().expect("finish");
    let recs: Vec<ethtypes::Record> = sink
        .intervals
        .iter()
        .flat_map(|(_, _, r)| r.iter())
        .map(|r| decode::<ethtypes::EthTypes>(&r.bytes).expect("decode"))
        .collect();
    let got: Vec<(u16, u64, u64)> = recs[0]
        .types
        .iter()
        .map(|(t, c)| (*t, c.pkts, c.bytes))
        .collect();
    assert_eq!(
        got,
        vec![(0x0800, 2, 34 + 38), (0x0806, 1, 42), (0x86dd, 1, 58)]
    );
}

#[test]
fn print_params_cut_rankings_and_unknown_ones_are_refused() {
    let file = "nDPI/teams.pcap";
    let m = spec("topaddr", "topn = 10", "", Duration::from_secs(10));
    let module = std::sync::Arc::clone(&m.module);
    let mut src = TraceSource::open(data(&format!("traces/{file}"))).expect("open");
    let (_, sink) = run(
        vec![m],
        &Options::default(),
        &mut src,
        CollectSink::default(),
    )
    .expect("run");
    let print = |params: &[(&str, &str)]| -> Result<String, RecordError> {
        let params: como_module::PrintParams = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::Error::other("poisoned"))?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut p = module.printer_with(
            como_module::Format::Csv,
            Box::new(Shared(std::sync::Arc::clone(&buf))),
            &params,
        )?;
        for (_, _, recs) in &sink.intervals {
            for r in recs {
                p.record(&r.bytes)?;
            }
        }
        p.finish()?;
        let text = String::from_utf8(buf.lock().expect("lock").clone()).expect("utf8");
        Ok(text)
    };
    let ranks = |text: &str| -> Vec<u64> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).expect("rank").parse().expect("n"))
            .collect()
    };
    let all = print(&[]).expect("print");
    let two = print(&[("topn", "2")]).expect("print");
    assert!(ranks(&all).iter().any(|&r| r > 2));
    assert!(!ranks(&two).is_empty() && ranks(&two).iter().all(|&r| r <= 2));
    let intervals = sink
        .intervals
        .iter()
        .filter(|(_, _, r)| !r.is_empty())
        .count();
    assert_eq!(ranks(&two).iter().filter(|&&r| r == 1).count(), intervals);
    let e = print(&[("bogus", "1")])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("no print parameter `bogus`") && e.contains("topn"),
        "{e}"
    );
    let traffic = como_modules::build("traffic", None).expect("traffic");
    let params: como_module::PrintParams =
        [("topn".to_owned(), "2".to_owned())].into_iter().collect();
    let e = traffic
        .printer_with(como_module::Format::Csv, Box::new(std::io::sink()), &params)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("takes: none"), "{e}");
}
