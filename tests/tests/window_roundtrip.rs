//! The packet trace window end to end, against tcpdump and tshark: real traces written through
//! the window come back, for a filter, exactly as `tcpdump -r original -w - EXPR` selects them
//! (bytes identical up to the snaplen); every segment opens in tshark with the packet count of
//! its index; segments survive a kill -9 of the writing process; retention holds its limits
//! and deletes oldest first; a segment being read is not deleted (the next-oldest go in its
//! place, and it goes once its reader is gone); lost indexes are rebuilt as the writer wrote
//! them.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use como_packet::{LinkType, Packet};
use como_tests::{load_trace, traces_dir, OwnedPacket};
use como_tracefile::TraceReader;
use como_window::{index::Index, segment, Limits, Query, Window, WindowConfig};

/// A packet as compared: timestamp in µs (tcpdump -w writes µs), wire length, bytes.
type Cmp = (u64, u32, Vec<u8>);

fn small_config(dir: &Path) -> WindowConfig {
    let mut c = WindowConfig::new(dir);
    c.buffer_bytes = 272 * 1024; // one packet of 262144 bytes fits
    c.buffers = 8;
    c.segment_bytes = 1024 * 1024;
    c.snaplen = 0;
    c
}

/// Writes every packet of `packets` through a window in `dir` (waiting for buffers: a trace
/// replay must not lose packets) and closes it.
fn write_window(cfg: WindowConfig, packets: &[OwnedPacket]) -> como_window::StatsSnapshot {
    let w = Window::open(cfg).expect("window opens");
    {
        let mut h = w.writer();
        for p in packets {
            assert!(h.write_wait(&p.view()), "packet stored");
        }
    }
    w.finish()
}

fn query(dir: &Path, expr: &str, snaplen: usize) -> Vec<Cmp> {
    let mut out = Vec::new();
    como_window::query(dir, &Query::all(expr), &mut |p: &Packet<'_>| {
        out.push((
            p.ts_ns / 1000,
            p.wire_len,
            p.data[..p.data.len().min(snaplen)].to_vec(),
        ));
        Ok(())
    })
    .unwrap_or_else(|e| panic!("query {expr:?} on {}: {e}", dir.display()));
    out
}

/// What tcpdump selects from `trace` with `expr` (None when tcpdump refuses the expression).
fn tcpdump(trace: &Path, expr: &str, tmp: &Path, snaplen: usize) -> Option<Vec<Cmp>> {
    let out = tmp.join("tcpdump.pcap");
    let _ = std::fs::remove_file(&out);
    let st = Command::new("tcpdump")
        .arg("-r")
        .arg(trace)
        .arg("-w")
        .arg(&out)
        .arg(expr)
        .output()
        .expect("tcpdump runs (the oracle must be installed)");
    if !st.status.success() {
        // Refused expression, or a file tcpdump cannot read (several link types).
        return None;
    }
    let mut r = TraceReader::open(&out).expect("tcpdump output reads");
    let mut v = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        v.push((
            p.ts_ns / 1000,
            p.wire_len,
            p.data[..p.data.len().min(snaplen)].to_vec(),
        ));
    }
    Some(v)
}

/// The most frequent IPv4 source, a second address and the most frequent TCP/UDP destination
/// port among the plain Ethernet IPv4 packets of a trace.
fn frequent(packets: &[OwnedPacket]) -> (Option<[u8; 4]>, Option<[u8; 4]>, Option<u16>) {
    let mut hosts: HashMap<[u8; 4], u32> = HashMap::new();
    let mut ports: HashMap<u16, u32> = HashMap::new();
    for p in packets {
        let d = &p.data;
        let net = match p.link {
            LinkType::Ethernet if d.get(12..14) == Some(&[8, 0]) => 14,
            LinkType::LinuxSll if d.get(14..16) == Some(&[8, 0]) => 16,
            _ => continue,
        };
        let Some(ip) = d.get(net..net + 20) else {
            continue;
        };
        for a in [&ip[12..16], &ip[16..20]] {
            *hosts.entry(a.try_into().expect("4 bytes")).or_default() += 1;
        }
        let t = net + usize::from(ip[0] & 15) * 4;
        if matches!(ip[9], 6 | 17) {
            if let Some(b) = d.get(t + 2..t + 4) {
                *ports.entry(u16::from_be_bytes([b[0], b[1]])).or_default() += 1;
            }
        }
    }
    let mut h: Vec<_> = hosts.into_iter().collect();
    h.sort_by_key(|(a, n)| (std::cmp::Reverse(*n), *a));
    let mut p: Vec<_> = ports.into_iter().collect();
    p.sort_by_key(|(a, n)| (std::cmp::Reverse(*n), *a));
    (
        h.first().map(|x| x.0),
        h.get(1).map(|x| x.0),
        p.first().map(|x| x.0),
    )
}

/// Traces of the repository whose link type the window indexes (plus NULL, which it stores
/// without keys), read whole without damage.
fn traces() -> Vec<(String, Vec<OwnedPacket>)> {
    let table = std::fs::read_to_string(traces_dir().join("SOURCES.tsv")).expect("SOURCES.tsv");
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(lt)) = (f.first(), f.get(6)) else {
            continue;
        };
        if !(lt.starts_with("EN10MB")
            || lt.starts_with("LINUX_SLL")
            || ["RAW", "IPV4", "IPV6", "NULL", "ERF type 2=ETH"].contains(lt))
        {
            continue;
        }
        let Ok(t) = load_trace(file) else {
            continue;
        };
        if t.error.is_some() || t.packets.is_empty() {
            continue;
        }
        out.push((file.to_string(), t.packets));
    }
    out
}

fn fmt4(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

#[test]
fn window_roundtrip_equals_tcpdump_on_every_trace() {
    let traces = traces();
    assert!(traces.len() > 150, "only {} traces found", traces.len());
    let mut checked = 0;
    let mut nonempty = 0;
    let mut failures = Vec::new();
    for (name, packets) in &traces {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("window");
        let st = write_window(small_config(&dir), packets);
        assert_eq!(st.packets, packets.len() as u64, "{name}: packets stored");
        let (a, b, port) = frequent(packets);
        let mut exprs: Vec<String> = vec![
            "".into(),
            "tcp".into(),
            "ip6 or arp".into(),
            "udp port 53".into(),
        ];
        if let Some(a) = a {
            exprs.push(format!("host {}", fmt4(a)));
            exprs.push(format!("not host {}", fmt4(a)));
            exprs.push(format!("src host {} and tcp", fmt4(a)));
            if let Some(b) = b {
                exprs.push(format!("host {} or host {}", fmt4(a), fmt4(b)));
                exprs.push(format!("host {} and (host {} or port 1)", fmt4(a), fmt4(b)));
            }
        }
        if let Some(p) = port {
            exprs.push(format!("port {p}"));
            exprs.push(format!("dst port {p} or vlan"));
        }
        let original = traces_dir().join(name);
        for e in &exprs {
            let Some(want) = tcpdump(&original, e, tmp.path(), usize::MAX) else {
                continue;
            };
            let got = query(&dir, e, usize::MAX);
            if got != want {
                failures.push(format!(
                    "{name}: {e:?}: {} packets, tcpdump {}",
                    got.len(),
                    want.len()
                ));
            }
            checked += 1;
            nonempty += usize::from(!want.is_empty());
        }
    }
    assert!(
        checked > 1000 && nonempty > 500,
        "{checked} comparisons, {nonempty} non-empty"
    );
}

#[test]
fn window_snaplen_cuts_and_keeps_wire_length() {
    let t = load_trace("nDPI/netflix.pcap").expect("trace");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let mut cfg = small_config(&dir);
    cfg.snaplen = 96;
    write_window(cfg, &t.packets);
    let original = traces_dir().join("nDPI/netflix.pcap");
    for e in ["", "tcp port 443", "host 192.168.1.7"] {
        let want = tcpdump(&original, e, tmp.path(), 96).expect("tcpdump");
        let got = query(&dir, e, usize::MAX);
        assert!(got.iter().all(|p| p.2.len() <= 96));
        assert_eq!(got, want, "{e:?}");
    }
    // tshark sees the cut too.
    for s in segment::list(&dir).expect("list") {
        let out = Command::new("tshark")
            .args(["-r"])
            .arg(&s.path)
            .args(["-T", "fields", "-e", "frame.cap_len"])
            .output()
            .expect("tshark runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines()
                .all(|l| l.parse::<u32>().is_ok_and(|n| n <= 96)),
            "{text}"
        );
    }
}

/// tshark's packet count for a file, with its complaints.
fn tshark_count(path: &Path) -> (usize, String) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark runs (the oracle must be installed)");
    let err: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("Running as user") && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.status.success(), "tshark -r {}: {err}", path.display());
    (String::from_utf8_lossy(&out.stdout).lines().count(), err)
}

/// Every segment of `dir` opens in tshark without a message and holds the packets its index
/// says; returns the total.
fn check_segments_with_tshark(dir: &Path) -> usize {
    let mut total = 0;
    let segs = segment::list(dir).expect("list");
    assert!(!segs.is_empty());
    for s in segs {
        assert!(!s.open, "{} still open", s.path.display());
        let idx = Index::load(&s.index_path()).expect("index");
        let (n, err) = tshark_count(&s.path);
        assert!(err.is_empty(), "tshark on {}: {err}", s.path.display());
        assert_eq!(n as u64, idx.packets, "{}", s.path.display());
        let (t0, t1) = s.range.expect("closed name carries the range");
        assert_eq!((t0, t1), (idx.ts_min, idx.ts_max));
        total += n;
    }
    total
}

#[test]
fn window_segments_open_in_tshark_with_several_link_types() {
    let mut all = Vec::new();
    for f in [
        "nDPI/teams.pcap",
        "libtrace/100_sll.pcap",
        "gopacket/pcap/test_loopback.pcap",
        "tcpdump/LINKTYPE_RAW_ipv6.pcap",
        "nDPI/synscan.pcap",
    ] {
        all.extend(load_trace(f).expect("trace").packets);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let mut cfg = small_config(&dir);
    cfg.segment_bytes = 400 * 1024;
    let st = write_window(cfg, &all);
    assert_eq!(st.packets, all.len() as u64);
    assert!(st.segments_closed >= 3, "rotation by size: {st:?}");
    assert_eq!(check_segments_with_tshark(&dir), all.len());
    // Segment file names carry increasing, non-overlapping sequence numbers; the query over
    // all of them returns every packet in the order written.
    let got = query(&dir, "", usize::MAX);
    let want: Vec<Cmp> = all
        .iter()
        .map(|p| (p.ts_ns / 1000, p.wire_len, p.data.clone()))
        .collect();
    assert!(got == want);
    // With several link types in one segment, the index still prunes (union of each link
    // type's requirement) and the answer is the exact filter's.
    for e in [
        "host 52.114.77.33",
        "port 443 and host 52.113.194.132",
        "ip6 host ::1",
    ] {
        let mut n = 0;
        let st = como_window::query(&dir, &Query::all(e), &mut |_| {
            n += 1;
            Ok(())
        })
        .expect("query");
        let want = all
            .iter()
            .filter(|p| ebpf_filters::compile(e, p.link).is_ok_and(|f| f.matches(&p.view())))
            .count();
        assert_eq!(n, want, "{e}");
        assert!(st.groups_read < st.groups, "{e}: no pruning: {st:?}");
    }
}

#[test]
fn window_rotates_by_packet_time_and_prunes_by_time() {
    let t = load_trace("nDPI/teams.pcap").expect("trace");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let mut cfg = small_config(&dir);
    cfg.segment_bytes = 1 << 30;
    cfg.segment_ns = Some(2_000_000_000);
    // Rotation by time happens between staging buffers: small ones for a fine split.
    cfg.buffer_bytes = 16 * 1024;
    cfg.snaplen = 1600;
    write_window(cfg, &t.packets);
    let segs = segment::list(&dir).expect("list");
    let first = t.packets.first().map(|p| p.ts_ns).unwrap_or(0);
    let last = t.packets.last().map(|p| p.ts_ns).unwrap_or(0);
    let span = (last - first) / 2_000_000_000;
    assert!(
        segs.len() as u64 >= span.min(5),
        "{} segments for {span} x 2 s",
        segs.len()
    );
    // A time range in the middle returns exactly the packets of that range.
    let (a, b) = (first + (last - first) / 3, first + 2 * (last - first) / 3);
    let mut got = 0;
    let st = como_window::query(
        &dir,
        &Query {
            filter: String::new(),
            start_ns: a,
            end_ns: b,
        },
        &mut |_| {
            got += 1;
            Ok(())
        },
    )
    .expect("query");
    let want = t
        .packets
        .iter()
        .filter(|p| p.ts_ns >= a && p.ts_ns <= b)
        .count();
    assert_eq!(got, want);
    assert!(
        st.segments_read < st.segments,
        "time pruning skipped no segment: {st:?}"
    );
}

/// Many synthetic packets (host 10.0.x.y, one per ms).
fn synthetic(n: u32, start_ns: u64, size: usize) -> Vec<OwnedPacket> {
    (0..n)
        .map(|i| {
            let mut d = vec![0u8; size.max(54)];
            d[12] = 8;
            d[14] = 0x45;
            d[23] = 17;
            d[26..30].copy_from_slice(&[10, 0, (i >> 8) as u8, i as u8]);
            d[30..34].copy_from_slice(&[192, 168, 0, 1]);
            d[36..38].copy_from_slice(&53u16.to_be_bytes());
            OwnedPacket {
                ts_ns: start_ns + u64::from(i) * 1_000_000,
                wire_len: d.len() as u32,
                link: LinkType::Ethernet,
                interface: 0,
                data: d,
            }
        })
        .collect()
}

fn total_bytes(dir: &Path) -> u64 {
    segment::list(dir)
        .expect("list")
        .iter()
        .map(|s| s.bytes)
        .sum()
}

#[test]
fn window_retention_by_bytes_keeps_the_newest_within_one_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let mut cfg = small_config(&dir);
    cfg.segment_bytes = 256 * 1024;
    cfg.limits = Limits {
        max_bytes: Some(1 << 20),
        ..Limits::default()
    };
    // Something else in the folder's parent must survive.
    let bystander = tmp.path().join("keep.me");
    std::fs::write(&bystander, b"x").expect("write");
    let pk = synthetic(20_000, 1_700_000_000_000_000_000, 300);
    let st = write_window(cfg, &pk);
    assert!(st.segments_deleted > 0, "{st:?}");
    let total = total_bytes(&dir);
    assert!(
        total <= (1 << 20) + 256 * 1024,
        "window holds {total} bytes"
    );
    assert!(
        total >= (1 << 20) - 256 * 1024,
        "too much deleted: {total} bytes left"
    );
    // Oldest first: the newest packet is kept, what is left is a suffix of what was written.
    let got = query(&dir, "", usize::MAX);
    assert!(!got.is_empty());
    let want: Vec<Cmp> = pk
        .iter()
        .map(|p| (p.ts_ns / 1000, p.wire_len, p.data.clone()))
        .collect();
    assert!(want.ends_with(&got), "not a suffix");
    assert!(bystander.exists());
    check_segments_with_tshark(&dir);
}

#[test]
fn window_retention_by_age_uses_packet_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let mut cfg = small_config(&dir);
    cfg.segment_ns = Some(1_000_000_000);
    cfg.limits = Limits {
        window_ns: Some(5_000_000_000),
        ..Limits::default()
    };
    let start = 1_700_000_000_000_000_000;
    let pk = synthetic(20_000, start, 100); // 20 s of packet time
    write_window(cfg, &pk);
    let newest = pk.last().map(|p| p.ts_ns).unwrap_or(0);
    let segs = segment::list(&dir).expect("list");
    let oldest_end = segs
        .iter()
        .filter_map(|s| s.range)
        .map(|r| r.1)
        .min()
        .expect("kept");
    assert!(
        oldest_end >= newest - 5_000_000_000,
        "a segment older than the window is kept"
    );
    let oldest_start = segs
        .iter()
        .filter_map(|s| s.range)
        .map(|r| r.0)
        .min()
        .expect("kept");
    assert!(
        oldest_start <= newest - 5_000_000_000 + 1_000_000_000,
        "more deleted than needed: oldest kept starts {} s before the newest",
        (newest - oldest_start) / 1_000_000_000
    );
}

/// A window of several closed segments of synthetic packets (no limits); returns its segments.
fn segments_for_retention(dir: &Path) -> Vec<segment::Segment> {
    let mut cfg = small_config(dir);
    cfg.segment_bytes = 256 * 1024;
    write_window(cfg, &synthetic(5_000, 1_700_000_000_000_000_000, 300));
    let segs = segment::list(dir).expect("list");
    assert!(segs.len() >= 5, "{} segments", segs.len());
    segs
}

fn paths(segs: &[segment::Segment]) -> Vec<std::path::PathBuf> {
    segs.iter().map(|s| s.path.clone()).collect()
}

#[test]
fn window_retention_skips_a_segment_being_read_and_deletes_it_later() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let segs = segments_for_retention(&dir);
    let all: u64 = segs.iter().map(|s| s.bytes).sum();
    // Room for the newest three segments: the oldest ones must go.
    let keep: u64 = segs.iter().rev().take(3).map(|s| s.bytes).sum();
    let oldest = segs.first().expect("segments").clone();
    let reader = segment::ReadLock::open(&oldest.path).expect("lock");
    let limits = Limits {
        max_bytes: Some(keep),
        ..Limits::default()
    };
    let mut floor = 0;
    let d = segment::enforce(&dir, &limits, u64::MAX, &mut floor).expect("enforce");
    // The one being read is kept; the next-oldest go in its place until the limit holds
    // (counting the kept one), not one more.
    assert_eq!(d.blocked, 1, "{d:?}");
    let left = segment::list(&dir).expect("list");
    assert_eq!(left.first().map(|s| &s.path), Some(&oldest.path));
    // Expected: oldest first, skipping the one being read, while the total exceeds the limit.
    let mut total = all;
    let mut want = vec![oldest.path.clone()];
    for s in segs.iter().skip(1) {
        if total > keep {
            total -= s.bytes;
        } else {
            want.push(s.path.clone());
        }
    }
    assert!(segs.len() - want.len() >= 2, "too few deletions to tell");
    assert_eq!(paths(&left), want);
    assert_eq!(d.segments as usize, segs.len() - want.len());
    assert!(left.iter().map(|s| s.bytes).sum::<u64>() <= keep + oldest.bytes);
    // While it is still read, nothing more goes.
    let d = segment::enforce(&dir, &limits, u64::MAX, &mut floor).expect("enforce");
    assert_eq!((d.segments, d.blocked), (0, 1), "{d:?}");
    // Its reader gone, the next pass deletes it (it is older than what was deleted), and only
    // it.
    drop(reader);
    let d = segment::enforce(&dir, &limits, u64::MAX, &mut floor).expect("enforce");
    assert_eq!((d.segments, d.blocked), (1, 0), "{d:?}");
    assert!(!oldest.path.exists() && !oldest.index_path().exists());
    assert_eq!(paths(&segment::list(&dir).expect("list")), want[1..]);
    let d = segment::enforce(&dir, &limits, u64::MAX, &mut floor).expect("enforce");
    assert_eq!(d.segments, 0);
}

#[test]
fn window_retention_by_age_and_free_disk_skips_a_segment_being_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let segs = segments_for_retention(&dir);
    let oldest = segs.first().expect("segments").clone();
    let _reader = segment::ReadLock::open(&oldest.path).expect("lock");
    // Age: the window ends where the third segment starts; the two before are too old.
    let third = segs[2].range.expect("range");
    let newest = segs.last().and_then(|s| s.range).expect("range").1;
    let limits = Limits {
        window_ns: Some(newest - third.0),
        ..Limits::default()
    };
    let d = segment::enforce(&dir, &limits, newest, &mut 0).expect("enforce");
    assert_eq!((d.segments, d.blocked), (1, 1), "{d:?}");
    let mut want = paths(&segs);
    want.remove(1);
    assert_eq!(paths(&segment::list(&dir).expect("list")), want);
    // Free disk: a limit no filesystem meets deletes every segment but the one being read.
    let limits = Limits {
        min_free_percent: Some(100.0),
        ..Limits::default()
    };
    let d = segment::enforce(&dir, &limits, newest, &mut 0).expect("enforce");
    assert_eq!(d.blocked, 1, "{d:?}");
    assert_eq!(d.segments as usize, segs.len() - 2);
    assert_eq!(
        paths(&segment::list(&dir).expect("list")),
        vec![oldest.path.clone()]
    );
}

/// Waits (bounded) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn window_writer_retention_passes_delete_a_skipped_segment_once_its_reader_is_gone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let segs = segments_for_retention(&dir);
    let oldest = segs.first().expect("segments").clone();
    let newest = segs.last().expect("segments").clone();
    let reader = segment::ReadLock::open(&oldest.path).expect("lock");
    // A window with a limit below what the folder holds: its writer's periodic passes run
    // retention without any packet written.
    let mut cfg = small_config(&dir);
    cfg.limits = Limits {
        max_bytes: Some(newest.bytes + oldest.bytes),
        ..Limits::default()
    };
    let w = Window::open(cfg).expect("window opens");
    let only = |want: Vec<std::path::PathBuf>| {
        let dir = dir.clone();
        move || paths(&segment::list(&dir).expect("list")) == want
    };
    wait_for(
        "the segments between the one being read and the newest to go",
        only(vec![oldest.path.clone(), newest.path.clone()]),
    );
    // The pass counts its deletions once it is done: wait for the count too.
    let deleted = || {
        w.stats()
            .segments_deleted
            .load(std::sync::atomic::Ordering::Relaxed) as usize
    };
    wait_for("the deletions to be counted", || {
        deleted() >= segs.len() - 2
    });
    assert_eq!(deleted(), segs.len() - 2);
    drop(reader);
    wait_for(
        "the segment no longer read to go",
        only(vec![newest.path.clone()]),
    );
    let st = w.finish();
    assert_eq!(st.segments_deleted as usize, segs.len() - 1);
}

#[test]
fn window_query_prunes_groups_by_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let pk = synthetic(30_000, 1_700_000_000_000_000_000, 200);
    write_window(small_config(&dir), &pk);
    let mut n = 0;
    let st = como_window::query(&dir, &Query::all("host 10.0.1.44"), &mut |_| {
        n += 1;
        Ok(())
    })
    .expect("query");
    assert_eq!(
        n,
        pk.iter()
            .filter(|p| p.data[26..30] == [10, 0, 1, 44])
            .count()
    );
    assert!(
        st.groups_read * 10 < st.groups,
        "index did not prune: {st:?}"
    );
    // A filter without keys reads everything.
    let st = como_window::query(&dir, &Query::all("not host 10.0.1.44"), &mut |_| Ok(()))
        .expect("query");
    assert_eq!(st.groups_read, st.groups);
}

/// Child side of the kill -9 test: writes packets forever into the window given in the
/// environment.
#[test]
fn window_kill9_child() {
    let Ok(dir) = std::env::var("COMO_WINDOW_KILL9_DIR") else {
        return; // only runs as the child of window_survives_kill9
    };
    let mut cfg = small_config(Path::new(&dir));
    cfg.segment_bytes = 1 << 20;
    let w = Window::open(cfg).expect("open");
    let pk = load_trace("nDPI/teams.pcap").expect("trace").packets;
    let mut h = w.writer();
    let mut ts = 1_700_000_000_000_000_000u64;
    loop {
        for p in &pk {
            ts += 1000;
            let mut q = p.view();
            q.ts_ns = ts;
            h.write_wait(&q);
        }
        h.flush();
    }
}

#[test]
fn window_survives_kill9() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut recovered = false;
    // Kill while a segment is open (retry if the kill landed between two segments).
    for _ in 0..5 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "window_kill9_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("COMO_WINDOW_KILL9_DIR", &dir)
            .spawn()
            .expect("child starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = segment::list(&dir).unwrap_or_default().len();
        loop {
            let segs = segment::list(&dir).unwrap_or_default();
            if segs.len() >= base + 3 && segs.iter().any(|s| s.open && s.bytes > 300_000) {
                break;
            }
            assert!(Instant::now() < deadline, "child wrote nothing");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let open = segment::list(&dir)
            .expect("list")
            .into_iter()
            .filter(|s| s.open)
            .count();
        assert!(open <= 1, "{open} open segments");
        // Reopening recovers: the open segment is cut, indexed, renamed.
        let w = Window::open(small_config(&dir)).expect("reopen");
        let _ = w.finish();
        check_segments_with_tshark(&dir);
        if open == 1 {
            recovered = true;
            break;
        }
        std::fs::remove_dir_all(&dir).expect("clean");
        std::fs::create_dir_all(&dir).expect("mkdir");
    }
    assert!(recovered, "never killed while a segment was open");
    let total = check_segments_with_tshark(&dir);
    // Every packet read back is one the child wrote, in order (a prefix of its stream).
    let pk = load_trace("nDPI/teams.pcap").expect("trace").packets;
    let got = query(&dir, "", usize::MAX);
    assert_eq!(got.len(), total);
    for (i, g) in got.iter().enumerate() {
        let p = &pk[i % pk.len()];
        assert_eq!((g.1, &g.2), (p.wire_len, &p.data), "packet {i}");
        assert_eq!(
            g.0,
            (1_700_000_000_000_000_000 + 1000 * (i as u64 + 1)) / 1000
        );
    }
}

#[test]
fn window_query_survives_a_damaged_or_missing_index() {
    let t = load_trace("nDPI/netflix.pcap").expect("trace");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    write_window(small_config(&dir), &t.packets);
    let want = query(&dir, "host 192.168.1.7 and tcp", usize::MAX);
    assert!(!want.is_empty());
    let segs = segment::list(&dir).expect("list");
    // Truncate one index and remove another: those segments are scanned whole.
    let first = segs.first().expect("segment").index_path();
    let len = std::fs::metadata(&first).expect("idx").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    if let Some(last) = segs.get(1) {
        std::fs::remove_file(last.index_path()).expect("rm");
    }
    assert_eq!(query(&dir, "host 192.168.1.7 and tcp", usize::MAX), want);
    // Reopening the window leaves the segments alone.
    let _ = Window::open(small_config(&dir)).expect("reopen").finish();
    assert_eq!(query(&dir, "host 192.168.1.7 and tcp", usize::MAX), want);
}

/// A window of several closed segments of nDPI/netflix.pcap (full packets), with the index
/// bytes the writer wrote for each segment.
fn netflix_window(dir: &Path) -> (Vec<segment::Segment>, Vec<Vec<u8>>) {
    let t = load_trace("nDPI/netflix.pcap").expect("trace");
    let mut cfg = small_config(dir);
    cfg.snaplen = 16384; // above the trace's largest packet
    cfg.buffer_bytes = 64 * 1024;
    cfg.segment_bytes = 200 * 1024;
    let st = write_window(cfg, &t.packets);
    assert_eq!(st.packets, t.packets.len() as u64);
    let segs = segment::list(dir).expect("list");
    assert!(segs.len() >= 5, "{} segments", segs.len());
    let idx = segs
        .iter()
        .map(|s| std::fs::read(s.index_path()).expect("the writer wrote an index"))
        .collect();
    (segs, idx)
}

/// The window's config for reopening the netflix window.
fn reopen_config(dir: &Path) -> WindowConfig {
    let mut cfg = small_config(dir);
    cfg.snaplen = 16384; // above the trace's largest packet
    cfg.buffer_bytes = 64 * 1024;
    cfg
}

/// Opens the window in `dir` and waits (bounded) until it has rebuilt `n` indexes.
fn reopen_and_reindex(dir: &Path, n: u64) -> como_window::StatsSnapshot {
    let w = Window::open(reopen_config(dir)).expect("window reopens");
    wait_for("the indexes to be rebuilt", || {
        w.stats().snapshot().reindexed_segments >= n
    });
    let metric = format!("\ncomo_trace_segments_reindexed_total {n}\n");
    assert!(
        w.stats().prometheus().contains(&metric),
        "{metric:?} missing"
    );
    w.finish()
}

#[test]
fn window_rebuilds_lost_indexes_as_the_writer_wrote_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let (segs, written) = netflix_window(&dir);
    // The segments' file lengths are what the writer's indexes cover.
    for (s, b) in segs.iter().zip(&written) {
        let i = Index::decode(b).expect("decodes");
        assert_eq!(i.data_end, s.bytes, "{}", s.path.display());
    }
    // Lose five indexes in five ways; the others stay as written.
    std::fs::remove_file(segs[0].index_path()).expect("rm");
    let half = written[1].len() as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(segs[1].index_path())
        .expect("open")
        .set_len(half)
        .expect("truncate");
    let garbage: Vec<u8> = (0..written[2].len())
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    std::fs::write(segs[2].index_path(), garbage).expect("garbage");
    let mut long = Index::decode(&written[3]).expect("decodes");
    long.data_end = segs[3].bytes + 4096;
    std::fs::write(segs[3].index_path(), long.encode()).expect("long");
    // The index of another segment (that fits its size, not its time range).
    let donor = written
        .iter()
        .enumerate()
        .find(|(i, b)| *i != 4 && Index::decode(b).is_some_and(|x| x.data_end <= segs[4].bytes))
        .map(|(_, b)| b)
        .expect("a donor index");
    std::fs::write(segs[4].index_path(), donor).expect("foreign");
    // Meanwhile, a query scans those segments whole and is still exact.
    let original = traces_dir().join("nDPI/netflix.pcap");
    let expr = "host 192.168.1.7 and tcp";
    let want = tcpdump(&original, expr, tmp.path(), usize::MAX).expect("tcpdump");
    assert!(!want.is_empty());
    assert_eq!(query(&dir, expr, usize::MAX), want);
    let st = reopen_and_reindex(&dir, 5);
    assert_eq!(st.reindexed_segments, 5, "{st:?}");
    // Back, byte for byte as the writer wrote them; the untouched one was left alone.
    for (s, b) in segs.iter().zip(&written) {
        let now = std::fs::read(s.index_path()).expect("index back");
        assert!(now == *b, "{}: rebuilt index differs", s.path.display());
    }
    // A second start finds nothing to rebuild.
    let w = Window::open(reopen_config(&dir)).expect("reopen");
    assert_eq!(w.finish().reindexed_segments, 0);
    // Indexed queries (pruning groups) return exactly tcpdump's selection.
    let (a, _, port) = frequent(&load_trace("nDPI/netflix.pcap").expect("trace").packets);
    let mut exprs = vec![expr.to_string(), "udp".into(), "".into()];
    if let Some(a) = a {
        exprs.push(format!("host {}", fmt4(a)));
    }
    if let Some(p) = port {
        exprs.push(format!("port {p}"));
    }
    for e in &exprs {
        let want = tcpdump(&original, e, tmp.path(), usize::MAX).expect("tcpdump");
        assert_eq!(query(&dir, e, usize::MAX), want, "{e:?}");
    }
    let st = como_window::query(&dir, &Query::all("host 192.168.1.7 and udp"), &mut |_| {
        Ok(())
    })
    .expect("query");
    assert!(st.groups_read < st.groups, "no pruning: {st:?}");
}

#[test]
fn window_reindexes_a_damaged_segment_up_to_the_damage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("w");
    let (segs, written) = netflix_window(&dir);
    // Garbage over a block in the middle of the second segment (the start of one of its
    // middle groups), and its index lost.
    let s = &segs[1];
    let idx = Index::decode(&written[1]).expect("decodes");
    assert!(idx.groups.len() >= 3, "{} groups", idx.groups.len());
    let k = idx.groups.len() / 2;
    let damage = idx.groups[k].off;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&s.path)
            .expect("open");
        f.write_all_at(&[0xA5; 64], damage).expect("garbage");
    }
    std::fs::remove_file(s.index_path()).expect("rm");
    // What a whole scan of the damaged segment returns (stops at the damage).
    let scanned = query(&dir, "", usize::MAX);
    let before: u64 = idx.groups[..k].iter().map(|g| u64::from(g.count)).sum();
    let total: u64 = written
        .iter()
        .map(|b| Index::decode(b).expect("decodes").packets)
        .sum();
    assert_eq!(scanned.len() as u64, total - idx.packets + before);
    let st = reopen_and_reindex(&dir, 1);
    assert_eq!(st.reindexed_segments, 1);
    // Indexed up to the damage, with the writer's groups before it.
    let rebuilt = Index::load(&s.index_path()).expect("index rebuilt");
    assert_eq!(rebuilt.data_end, damage);
    assert_eq!(rebuilt.packets, before);
    assert_eq!(rebuilt.groups, idx.groups[..k]);
    // The indexed query returns what the scan returned; the segment is kept as it is.
    assert_eq!(query(&dir, "", usize::MAX), scanned);
    assert_eq!(std::fs::metadata(&s.path).expect("kept").len(), s.bytes);
    // No rebuild loop: the next start leaves it alone.
    let w = Window::open(reopen_config(&dir)).expect("reopen");
    assert_eq!(w.finish().reindexed_segments, 0);
}
