//! Loader tests with hand-built tables (privileged: they need root for BPF; under
//! `COMO_REQUIRE_PRIVILEGED=1` they fail instead of skipping when they cannot run).

use como_xdp::{TableParts, XdpError, XdpProgram};
use ebpf_filters_common::{
    array_index, field, l3_key, stat, term_rules_index, GenConfig, LpmData, Terms,
    ARRAY_FIELDS_LEN, L3_KEY_BITS, LPM_ROOT_PREFIX, TERM_RULES_LEN,
};

/// Loads the program, or skips (returns `None`) when not allowed and not required.
fn load() -> Option<XdpProgram> {
    match XdpProgram::load() {
        Ok(p) => Some(p),
        Err(e) => {
            if std::env::var_os("COMO_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
                panic!("cannot load the XDP program (COMO_REQUIRE_PRIVILEGED=1): {e}");
            }
            eprintln!("skipped: cannot load the XDP program (need root): {e}");
            None
        }
    }
}

/// A UDP/IPv4 frame from 10.0.0.1:1000 to 10.0.0.2:`dport`.
fn udp4(dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 14 + 20 + 8 + 4];
    p[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    p[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(32u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p[34..36].copy_from_slice(&1000u16.to_be_bytes());
    p[36..38].copy_from_slice(&dport.to_be_bytes());
    p[38..40].copy_from_slice(&12u16.to_be_bytes());
    p
}

/// Hand-built tables: generation config, LPM entries, array entries, term-rule entries.
type Parts = (GenConfig, Vec<(u32, LpmData, Terms)>, Vec<Terms>, Vec<u64>);

/// Tables with rule `r` = term `r` = "udp and dst port `ports[r]`" (exact), rule bits `rules`.
fn port_rules(ports: &[u16]) -> Parts {
    let n = ports.len();
    let mut all = Terms::NONE;
    for t in 0..n {
        all.set(t);
    }
    // L3: the root matches no term; IPv4 first fragment UDP at depth 0 matches all of them.
    let mut root = LpmData::default();
    root.bytes[1] = field::L3;
    let mut udp = root;
    udp.bytes[2..7].copy_from_slice(&l3_key(0, 0, 0, 0x0800, 1, 17));
    let lpm = vec![
        (LPM_ROOT_PREFIX, root, Terms::NONE),
        (LPM_ROOT_PREFIX + L3_KEY_BITS, udp, all),
    ];
    let mut array = vec![Terms::ALL; ARRAY_FIELDS_LEN as usize];
    for v in 0..65_536u32 {
        let mut t = Terms::NONE;
        for (i, &p) in ports.iter().enumerate() {
            if u32::from(p) == v {
                t.set(i);
            }
        }
        array[array_index(0, field::DPORT, v) as usize] = t;
    }
    let mut term_rules = vec![0u64; TERM_RULES_LEN as usize];
    for byte in 0..(n as u32).div_ceil(8) {
        for v in 0..256u32 {
            let mut r = 0u64;
            for bit in 0..8 {
                let t = byte * 8 + bit;
                if v & (1 << bit) != 0 && (t as usize) < n {
                    r |= 1 << t;
                }
            }
            term_rules[term_rules_index(0, byte, v as u8) as usize] = r;
        }
    }
    let rules = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let gen = GenConfig {
        rules,
        flagged: 0,
        used: (1 << field::L3) | (1 << field::DPORT),
        nterms: n as u32,
        ..GenConfig::default()
    };
    (gen, lpm, array, term_rules)
}

fn install(p: &XdpProgram, ports: &[u16]) -> Result<u32, XdpError> {
    let (gen, lpm, array, term_rules) = port_rules(ports);
    p.install_parts(&TableParts {
        gen,
        lpm: &lpm,
        array: &array,
        term_rules: &term_rules,
    })
}

#[test]
fn empty_tables_pass_everything_and_write_metadata() {
    let Some(p) = load() else { return };
    let (action, meta) = p.test_run(&udp4(53)).expect("test run");
    assert_eq!(action, 2, "XDP_PASS");
    let meta = meta.expect("metadata written");
    assert_eq!((meta.rules, meta.recheck, meta.gen), (0, 0, 0));
    let s = p.stats().expect("stats");
    assert_eq!((s.seen, s.matched, s.passed), (1, 0, 1));
    assert!(matches!(
        p.test_run(&[0u8; 13]),
        Err(XdpError::ShortInput(13))
    ));
}

#[test]
fn port_rules_match_and_generations_flip() {
    let Some(p) = load() else { return };
    assert_eq!(install(&p, &[53, 80, 53]).expect("install"), 1);
    let (action, meta) = p.test_run(&udp4(53)).expect("test run");
    let meta = meta.expect("metadata");
    assert_eq!((meta.rules, meta.recheck, meta.gen), (0b101, 0, 1));
    assert_eq!(
        action, 2,
        "no socket on queue 0: the redirect falls back to XDP_PASS"
    );
    let (_, meta) = p.test_run(&udp4(80)).expect("test run");
    assert_eq!(meta.expect("metadata").rules, 0b010);
    let (_, meta) = p.test_run(&udp4(81)).expect("test run");
    assert_eq!(meta.expect("metadata").rules, 0);

    assert_eq!(install(&p, &[81]).expect("install"), 0);
    let (_, meta) = p.test_run(&udp4(81)).expect("test run");
    let meta = meta.expect("metadata");
    assert_eq!((meta.rules, meta.gen), (1, 0));
    let (_, meta) = p.test_run(&udp4(53)).expect("test run");
    assert_eq!(
        meta.expect("metadata").rules,
        0,
        "the old generation's rules are gone"
    );

    let s = p.stats().expect("stats");
    assert_eq!(s.seen, 5);
    assert_eq!(s.matched, 3);
    assert_eq!(s.redirect_failed, 3);
    assert_eq!(s.per_rule[0], 2);
    assert_eq!(s.per_rule[1], 1);
    assert_eq!(s.per_rule[2], 1);

    p.set_drop_unmatched(true).expect("flags");
    let (action, _) = p.test_run(&udp4(9)).expect("test run");
    assert_eq!(action, 1, "XDP_DROP");
    assert_eq!(p.stats().expect("stats").dropped, 1);
    let _ = stat::LEN;
}
