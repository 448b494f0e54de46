//! `TraceReader::next_batch` and `for_each_batch` give exactly what `next_packet` gives,
//! whatever the batch size or the batches per call: the same packets in the same order, then
//! the same error (file, offset, kind) or the end, on every bundled trace, damaged ones
//! included.

use como_packet::Packet;
use como_tracefile::TraceReader;

/// One packet as an owned value: (time, wire length, bytes, link type, interface).
type Owned = (u64, u32, Vec<u8>, String, u32);

fn owned(p: &Packet<'_>) -> Owned {
    (
        p.ts_ns,
        p.wire_len,
        p.data.to_vec(),
        format!("{:?}", p.link),
        p.interface,
    )
}

/// Every packet, then the error's text (`None` at a clean end), one packet at a time.
fn one_by_one(mut r: TraceReader) -> (Vec<Owned>, Option<String>) {
    let mut out = Vec::new();
    while let Some(next) = r.next_packet() {
        match next {
            Ok(p) => out.push(owned(&p)),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    (out, None)
}

/// The same through `next_batch` with batches of `size`.
fn batched(mut r: TraceReader, size: usize) -> (Vec<Owned>, Option<String>) {
    let mut out = Vec::new();
    loop {
        let mut buf = vec![Packet::EMPTY; size];
        let (n, err) = r.next_batch(&mut buf);
        assert!(n <= size);
        out.extend(buf.iter().take(n).map(owned));
        drop(buf);
        if let Some(e) = err {
            // Nothing after an error.
            let mut again = vec![Packet::EMPTY; size];
            assert_eq!(r.next_batch(&mut again).0, 0, "a packet after the error");
            return (out, Some(e.to_string()));
        }
        if n < size {
            let mut again = vec![Packet::EMPTY; size];
            assert_eq!(r.next_batch(&mut again).0, 0, "a packet after the end");
            return (out, None);
        }
    }
}

/// The same through `for_each_batch`, `batches` batches per call.
fn each_batch(mut r: TraceReader, batches: usize) -> (Vec<Owned>, Option<String>) {
    let mut out = Vec::new();
    loop {
        let mut slices = 0;
        let (n, err) = r.for_each_batch(batches, &mut |pkts| {
            assert!(!pkts.is_empty() && pkts.len() <= como_tracefile::BATCH);
            slices += 1;
            out.extend(pkts.iter().map(owned));
        });
        assert!(slices <= batches);
        if let Some(e) = err {
            assert_eq!(
                r.for_each_batch(batches, &mut |_| ()).0,
                0,
                "after the error"
            );
            return (out, Some(e.to_string()));
        }
        if n < batches * como_tracefile::BATCH {
            assert_eq!(r.for_each_batch(batches, &mut |_| ()).0, 0, "after the end");
            return (out, None);
        }
    }
}

#[test]
fn batches_of_any_size_read_what_single_packets_read() {
    let files = como_tests::trace_files();
    assert!(files.len() > 50, "bundled traces missing: {}", files.len());
    let mut packets = 0;
    let mut errors = 0;
    for f in &files {
        let Ok(r) = TraceReader::open(f) else {
            continue;
        };
        let want = one_by_one(r);
        packets += want.0.len();
        errors += usize::from(want.1.is_some());
        for size in [1, 2, 7, 64] {
            let r = TraceReader::open(f).expect("opened once already");
            let got = batched(r, size);
            assert_eq!(got.0.len(), want.0.len(), "{}: batch {size}", f.display());
            assert!(
                got.0 == want.0,
                "{}: batch {size}: packets differ",
                f.display()
            );
            assert_eq!(got.1, want.1, "{}: batch {size}: error", f.display());
        }
        for batches in [1, 3, 16] {
            let r = TraceReader::open(f).expect("opened once already");
            let got = each_batch(r, batches);
            assert!(
                got == want,
                "{}: {batches} batches per call: packets or error differ",
                f.display()
            );
        }
    }
    // The bundled traces hold damaged files and thousands of packets: both paths were taken.
    assert!(packets > 10_000, "{packets} packets");
    assert!(errors > 0, "no damaged trace was read");
}
