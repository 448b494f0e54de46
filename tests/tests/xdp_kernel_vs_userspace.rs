//! The XDP program in the kernel (`BPF_PROG_TEST_RUN`) against its userspace reference and the
//! exact evaluator, packet by packet (privileged: needs root for BPF; under
//! `COMO_REQUIRE_PRIVILEGED=1` it fails instead of skipping when it cannot run).
//!
//! Every Ethernet trace of `tests/data/traces` × every corpus expression that compiles for
//! Ethernet, 64 rules per install: for every frame of 14 to `MAX_TEST_FRAME` bytes
//! (the kernel refuses shorter ones; longer ones would reach the program cut into fragments it
//! does not see, and cannot arrive whole at an XDP program that is not multi-buffer aware), the
//! [`XdpMeta`] the program writes equals `Tables::classify(PacketKey::extract(..))` (rules and
//! recheck; its generation is the one installed), its rule bit equals `Filter::matches` for
//! exact rules and is a superset for flagged ones.
//!
//! The program sees a frame's captured bytes as the whole frame, so the reference, the exact
//! evaluator and the program all get `wire_len = captured length` (a trace cut by its
//! snaplen is classified as if those bytes were the frame on the wire).
//!
//! Also: the generation switch (install A, classify, install B, classify; and a thread that
//! classifies in a loop while another installs A and B alternately never sees a mix), and IPv4
//! address fields on both of the program's paths in one generation (the loader's arrays, and
//! the trie for a field with more long prefixes than the arrays hold).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use como_packet::{LinkType, Packet};
use como_tests::{corpus_section, ethernet_traces, OwnedPacket};
use como_xdp::{XdpMeta, XdpProgram, MAX_TEST_FRAME};
use ebpf_filters::kernel::{PacketKey, Tables};
use ebpf_filters::{compile, Filter};

/// Loads the program, or skips (`None`) when not allowed and not required.
fn load(test: &str) -> Option<XdpProgram> {
    match XdpProgram::load() {
        Ok(p) => Some(p),
        Err(e) => {
            if std::env::var_os("COMO_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
                panic!("{test}: cannot load the XDP program (COMO_REQUIRE_PRIVILEGED=1): {e}");
            }
            eprintln!("{test}: SKIPPED (privileged test): cannot load the XDP program: {e}");
            None
        }
    }
}

/// Ethernet frames of 14 to `MAX_TEST_FRAME` bytes of every trace (at most `cap` per trace, evenly
/// spread), with the trace's name; and the number of such frames before sampling.
fn ethernet_packets(cap: usize) -> (Vec<(String, OwnedPacket)>, usize) {
    let mut out = Vec::new();
    let mut total = 0;
    for (name, packets) in ethernet_traces() {
        let eth: Vec<OwnedPacket> = packets
            .into_iter()
            .filter(|p| (14..=MAX_TEST_FRAME).contains(&p.data.len()))
            .collect();
        total += eth.len();
        let step = eth.len().div_ceil(cap).max(1);
        for p in eth.into_iter().step_by(step) {
            out.push((name.clone(), p));
        }
    }
    (out, total)
}

/// The corpus expressions that compile for Ethernet.
fn corpus_filters() -> Vec<(String, Filter)> {
    let mut exprs: Vec<String> = corpus_section("valid");
    exprs.extend(corpus_section("invalid"));
    exprs
        .into_iter()
        .filter_map(|e| compile(&e, LinkType::Ethernet).ok().map(|f| (e, f)))
        .collect()
}

/// The packet as the XDP program sees it: the captured bytes are the frame.
fn as_seen(p: &OwnedPacket) -> Packet<'_> {
    Packet {
        wire_len: p.data.len() as u32,
        ..p.view()
    }
}

#[test]
fn xdp_kernel_equals_userspace_reference_on_every_trace() {
    let Some(prog) = load("xdp_kernel_equals_userspace_reference_on_every_trace") else {
        return;
    };
    let start = Instant::now();
    let (packets, total) = ethernet_packets(usize::MAX);
    assert!(
        packets.len() > 30_000,
        "only {} Ethernet packets",
        packets.len()
    );
    let filters = corpus_filters();
    assert!(
        filters.len() > 150,
        "only {} corpus expressions compile",
        filters.len()
    );
    let mut failures: Vec<String> = Vec::new();
    let mut runs = 0u64;
    let mut pairs = 0u64;
    let mut matches = 0u64;
    let mut uncertain = 0u64;
    let mut install_time = std::time::Duration::ZERO;
    for batch in filters.chunks(64) {
        let rules: Vec<Option<&Filter>> = batch.iter().map(|(_, f)| Some(f)).collect();
        let tables = Tables::compile(&rules).unwrap_or_else(|e| panic!("compile: {e}"));
        let t0 = Instant::now();
        let gen = prog
            .install(&tables)
            .unwrap_or_else(|e| panic!("install: {e}"));
        install_time += t0.elapsed();
        let flagged = tables.gen_config().flagged;
        for (trace, p) in &packets {
            let want = tables.classify(&PacketKey::extract(&p.data, p.data.len() as u32));
            let (_, meta) = prog
                .test_run(&p.data)
                .unwrap_or_else(|e| panic!("test run on {trace}: {e}"));
            runs += 1;
            let Some(got) = meta else {
                failures.push(format!("{trace} (len {}): no metadata", p.data.len()));
                continue;
            };
            if got.recheck == tables.gen_config().rules && got.rules == got.recheck {
                uncertain += 1;
            }
            if (got.rules, got.recheck, got.gen) != (want.rules, want.recheck, gen)
                && failures.len() < 40
            {
                failures.push(format!(
                    "{trace} (len {}, first bytes {:02x?}): kernel rules {:#x} recheck {:#x} gen {}, reference rules {:#x} recheck {:#x} gen {gen}",
                    p.data.len(),
                    &p.data[..p.data.len().min(40)],
                    got.rules,
                    got.recheck,
                    got.gen,
                    want.rules,
                    want.recheck
                ));
            }
            for (i, (e, f)) in batch.iter().enumerate() {
                let m = f.matches(&as_seen(p));
                let k = got.rules & (1 << i) != 0;
                pairs += 1;
                matches += u64::from(m);
                let exact = flagged & (1 << i) == 0 && got.recheck & (1 << i) == 0;
                let bad = if exact { m != k } else { m && !k };
                if bad && failures.len() < 40 {
                    failures.push(format!(
                        "{e:?} on {trace} (len {}): exact evaluator {m}, kernel {k}, flagged {}",
                        p.data.len(),
                        !exact
                    ));
                }
            }
        }
    }
    println!(
        "{runs} kernel runs: {} packets (all {total} Ethernet frames of 14..={MAX_TEST_FRAME} bytes of the traces) x {} batches of {} corpus expressions; {pairs} (packet, rule) pairs, {matches} matches; {uncertain} uncertain classifications; installs {install_time:?}; total {:?}",
        packets.len(),
        filters.len().div_ceil(64),
        filters.len(),
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements, first:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        matches > 0,
        "no rule matched any packet: nothing was tested"
    );
}

/// What the program says of `packets` under the tables in force.
fn classify_all(prog: &XdpProgram, packets: &[&[u8]]) -> Vec<XdpMeta> {
    packets
        .iter()
        .map(|p| {
            prog.test_run(p)
                .unwrap_or_else(|e| panic!("test run: {e}"))
                .1
                .unwrap_or_else(|| panic!("no metadata"))
        })
        .collect()
}

/// Two rule sets that disagree on most packets, and a few packets of one trace.
fn two_rule_sets() -> (Tables, Tables, Vec<Vec<u8>>) {
    let a: Vec<Filter> = ["tcp", "udp port 53", "host 192.168.1.1 or arp"]
        .iter()
        .map(|e| compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let b: Vec<Filter> = ["udp", "tcp port 80", "ip6", "not tcp"]
        .iter()
        .map(|e| compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let ta = Tables::compile(&a.iter().map(Some).collect::<Vec<_>>()).expect("compile A");
    let tb = Tables::compile(&b.iter().map(Some).collect::<Vec<_>>()).expect("compile B");
    let (packets, _) = ethernet_packets(50);
    let packets: Vec<Vec<u8>> = packets.into_iter().map(|(_, p)| p.data).collect();
    (ta, tb, packets)
}

#[test]
fn xdp_generation_switch_follows_installs() {
    let Some(prog) = load("xdp_generation_switch_follows_installs") else {
        return;
    };
    let (ta, tb, packets) = two_rule_sets();
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    let reference = |t: &Tables| -> Vec<(u64, u64)> {
        refs.iter()
            .map(|p| {
                let m = t.classify(&PacketKey::extract(p, p.len() as u32));
                (m.rules, m.recheck)
            })
            .collect()
    };
    let (ra, rb) = (reference(&ta), reference(&tb));
    assert_ne!(ra, rb, "the two rule sets must disagree on some packet");
    for round in 0..3 {
        let ga = prog.install(&ta).expect("install A");
        let got: Vec<(u64, u64)> = classify_all(&prog, &refs)
            .iter()
            .map(|m| {
                assert_eq!(m.gen, ga, "round {round}: generation of A");
                (m.rules, m.recheck)
            })
            .collect();
        assert_eq!(got, ra, "round {round}: results under A");
        let gb = prog.install(&tb).expect("install B");
        assert_ne!(ga, gb, "each install flips the generation");
        let got: Vec<(u64, u64)> = classify_all(&prog, &refs)
            .iter()
            .map(|m| {
                assert_eq!(m.gen, gb, "round {round}: generation of B");
                (m.rules, m.recheck)
            })
            .collect();
        assert_eq!(got, rb, "round {round}: results under B");
    }
}

#[test]
fn xdp_concurrent_installs_never_mix_generations() {
    let Some(prog) = load("xdp_concurrent_installs_never_mix_generations") else {
        return;
    };
    let (ta, tb, packets) = two_rule_sets();
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    let reference = |t: &Tables| -> Vec<(u64, u64)> {
        refs.iter()
            .map(|p| {
                let m = t.classify(&PacketKey::extract(p, p.len() as u32));
                (m.rules, m.recheck)
            })
            .collect()
    };
    let (ra, rb) = (reference(&ta), reference(&tb));
    // Generation 1 holds A, generation 0 holds B from here on.
    assert_eq!(prog.install(&ta).expect("install A"), 1);
    assert_eq!(prog.install(&tb).expect("install B"), 0);
    let stop = AtomicBool::new(false);
    let installs = 40;
    let (seen_a, seen_b, runs) = std::thread::scope(|s| {
        let classifier = s.spawn(|| {
            let (mut seen_a, mut seen_b, mut runs) = (0u64, 0u64, 0u64);
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for (i, p) in refs.iter().enumerate() {
                    let m = match prog.test_run(p) {
                        Ok((_, Some(m))) => m,
                        Ok((_, None)) => {
                            errors.push("no metadata".to_owned());
                            continue;
                        }
                        Err(e) => {
                            errors.push(e.to_string());
                            continue;
                        }
                    };
                    runs += 1;
                    let (want, which) = if m.gen == 1 { (ra[i], "A") } else { (rb[i], "B") };
                    if (m.rules, m.recheck) != want && errors.len() < 20 {
                        errors.push(format!(
                            "packet {i} under {which} (gen {}): rules {:#x} recheck {:#x}, want {:#x} {:#x}",
                            m.gen, m.rules, m.recheck, want.0, want.1
                        ));
                    }
                    if m.gen == 1 {
                        seen_a += 1;
                    } else {
                        seen_b += 1;
                    }
                }
            }
            assert!(errors.is_empty(), "mixed classifications:\n{}", errors.join("\n"));
            (seen_a, seen_b, runs)
        });
        for i in 0..installs {
            let (t, want) = if i % 2 == 0 { (&ta, 1) } else { (&tb, 0) };
            let g = prog
                .install(t)
                .unwrap_or_else(|e| panic!("install {i}: {e}"));
            assert_eq!(g, want, "install {i} flips to the expected generation");
        }
        stop.store(true, Ordering::Relaxed);
        classifier
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    println!(
        "{runs} classifications during {installs} installs: {seen_a} under A, {seen_b} under B"
    );
    assert!(
        seen_a > 0 && seen_b > 0,
        "the classifier saw both rule sets"
    );
}

/// An Ethernet + IPv4 + UDP frame from `src` to `dst`.
fn udp4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 36, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 16, 0, 0]);
    f.extend_from_slice(&[0; 8]);
    f
}

#[test]
fn xdp_ipv4_addresses_beyond_the_arrays_use_the_trie() {
    let Some(prog) = load("xdp_ipv4_addresses_beyond_the_arrays_use_the_trie") else {
        return;
    };
    // 600 source hosts in 600 /16s (60 rules of 10) need 1200 chunks, more than the arrays
    // hold (`ADDR4_CHUNKS`): the source field stays in the trie, the destination field fits.
    let host = |i: u32| [1 + (i / 200) as u8, (i % 200) as u8, 0, 1];
    let mut exprs: Vec<String> = (0..60u32)
        .map(|r| {
            (0..10)
                .map(|k| {
                    let h = host(10 * r + k);
                    format!("ip src host {}.{}.{}.{}", h[0], h[1], h[2], h[3])
                })
                .collect::<Vec<_>>()
                .join(" or ")
        })
        .collect();
    exprs.extend(
        [
            "dst net 192.168.0.0/16 or dst host 10.1.2.3",
            "host 1.5.0.1",
            "src net 2.0.0.0/8 and dst net 10.1.2.0/25",
        ]
        .map(String::from),
    );
    let filters: Vec<Filter> = exprs
        .iter()
        .map(|e| compile(e, LinkType::Ethernet).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let tables = Tables::compile(&filters.iter().map(Some).collect::<Vec<_>>()).expect("compile");
    for i in 0..filters.len() {
        let r = tables.rule_report(i).expect("report");
        assert!(r.exact, "rule {i} is compiled exactly: {:?}", r.reasons);
    }
    prog.install(&tables).expect("install");
    let gen = prog.gen_config().expect("generation config");
    assert_eq!(
        gen.addr4,
        1 << como_xdp::field::DADDR4,
        "only the destination field fits the arrays"
    );
    let srcs = [
        [1, 0, 0, 1],
        [1, 5, 0, 1],
        [3, 199, 0, 1],
        [1, 0, 0, 2],
        [2, 7, 1, 1],
        [9, 9, 9, 9],
    ];
    let dsts = [
        [192, 168, 3, 4],
        [10, 1, 2, 3],
        [10, 1, 2, 200],
        [1, 5, 0, 1],
        [8, 8, 8, 8],
    ];
    let mut matched = vec![0usize; filters.len()];
    for src in srcs {
        for dst in dsts {
            let frame = udp4(src, dst);
            let (_, meta) = prog.test_run(&frame).expect("test run");
            let meta = meta.expect("metadata");
            let want = tables.classify(&PacketKey::extract(&frame, frame.len() as u32));
            assert_eq!(
                (meta.rules, meta.recheck),
                (want.rules, want.recheck),
                "{src:?} -> {dst:?}: kernel vs reference"
            );
            let packet = Packet {
                ts_ns: 0,
                wire_len: frame.len() as u32,
                data: &frame,
                link: LinkType::Ethernet,
                interface: 0,
            };
            for (i, f) in filters.iter().enumerate() {
                assert_eq!(
                    meta.rules & (1 << i) != 0,
                    f.matches(&packet),
                    "{src:?} -> {dst:?}: rule {i} ({})",
                    exprs[i].get(..60).unwrap_or(&exprs[i])
                );
                matched[i] += usize::from(meta.rules & (1 << i) != 0);
            }
        }
    }
    // The first host rule (1.0.0.1, 1.5.0.1), the last (3.199.0.1) and the last three rules.
    for i in [0, 59, 60, 61, 62] {
        assert!(matched[i] > 0, "rule {i} matched no frame: {matched:?}");
    }
}
