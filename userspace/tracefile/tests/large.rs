//! Files large enough to get a pager thread (32 MiB and more; see `src/pager.rs`): every packet
//! is read once, in order, with its bytes, through `next_batch`, `for_each_batch` and
//! `next_packet`; a reader dropped early or stopped by damage returns at once; a truncated
//! large file reports the offset of the cut after every whole packet before it.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use como_packet::{LinkType, Packet};
use como_tracefile::{ErrorKind, PcapWriter, TraceReader};

/// Bytes per packet, so that the file is ~100 MB: past the pager's 64 MiB read-ahead, so it
/// waits for the reader and is woken again.
const FRAME: usize = 1200;
/// Packets in the file.
const PACKETS: u64 = 85_000;
/// pcap file header and record header sizes.
const FILE_HEADER: u64 = 24;
const RECORD: u64 = 16 + FRAME as u64;

/// Packet `i`: its number in the first 8 bytes, then a pattern that depends on it.
fn frame(i: u64) -> Vec<u8> {
    let mut f = vec![0u8; FRAME];
    f[..8].copy_from_slice(&i.to_be_bytes());
    for (k, b) in f[8..].iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(k) as u8;
    }
    f
}

fn write_trace(path: &Path) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut w = PcapWriter::new(file, LinkType::Ethernet, 65535, true).expect("header");
    for i in 0..PACKETS {
        let data = frame(i);
        let p = Packet {
            ts_ns: 1_700_000_000_000_000_000 + i * 1000,
            wire_len: FRAME as u32,
            data: &data,
            ..Packet::EMPTY
        };
        w.write_packet(&p).expect("write");
    }
    w.into_inner().expect("flush");
}

/// Checks that `p` is packet `i`.
fn check(i: u64, p: &Packet<'_>) {
    assert_eq!(
        p.ts_ns,
        1_700_000_000_000_000_000 + i * 1000,
        "packet {i} time"
    );
    assert!(p.data == frame(i).as_slice(), "packet {i} bytes differ");
}

/// Runs `f` on another thread and fails if it does not finish within a minute (a reader
/// whose drop waits for a stuck pager would hang the test instead of failing it).
fn within_a_minute(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => t.join().expect("no panic"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after 60 s"),
    }
}

#[test]
fn a_large_file_is_read_whole_in_order_by_batches_and_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("large.pcap");
    write_trace(&path);
    let len = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(len, FILE_HEADER + PACKETS * RECORD);

    let p = path.clone();
    within_a_minute("batches", move || {
        let mut r = TraceReader::open(&p).expect("open");
        let mut i = 0;
        loop {
            // A batch borrows the reader: one buffer per call.
            let mut buf = vec![Packet::EMPTY; 256];
            let (n, err) = r.next_batch(&mut buf);
            assert!(err.is_none(), "{err:?}");
            for q in &buf[..n] {
                check(i, q);
                i += 1;
            }
            if n < buf.len() {
                break;
            }
        }
        assert_eq!(i, PACKETS);
        assert_eq!(r.offset(), len);
    });
    let p = path.clone();
    within_a_minute("16 batches per call", move || {
        let mut r = TraceReader::open(&p).expect("open");
        let mut i = 0;
        loop {
            let (n, err) = r.for_each_batch(16, &mut |pkts| {
                for q in pkts {
                    check(i, q);
                    i += 1;
                }
            });
            assert!(err.is_none(), "{err:?}");
            if n < 16 * como_tracefile::BATCH {
                break;
            }
        }
        assert_eq!(i, PACKETS);
    });
    let p = path.clone();
    within_a_minute("one by one", move || {
        let mut r = TraceReader::open(&p).expect("open");
        let mut i = 0;
        while let Some(q) = r.next_packet() {
            check(i, &q.expect("no error"));
            i += 1;
        }
        assert_eq!(i, PACKETS);
    });
}

#[test]
fn a_reader_dropped_early_returns_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("large.pcap");
    write_trace(&path);
    within_a_minute("drop after one batch", move || {
        for _ in 0..20 {
            let mut r = TraceReader::open(&path).expect("open");
            let mut buf = vec![Packet::EMPTY; 64];
            let (n, err) = r.next_batch(&mut buf);
            assert_eq!((n, err.is_none()), (64, true));
            check(63, &buf[63]);
            drop(r);
        }
    });
}

#[test]
fn a_truncated_large_file_reports_the_cut_after_every_whole_packet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.pcap");
    write_trace(&path);
    // Cut in the middle of a record past the pager's first 64 MiB.
    let whole = 70_000;
    let cut_at = FILE_HEADER + whole * RECORD + 16 + 100;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for writing")
        .set_len(cut_at)
        .expect("truncate");
    within_a_minute("truncated", move || {
        let mut r = TraceReader::open(&path).expect("open");
        let mut i = 0;
        let err = loop {
            let mut buf = vec![Packet::EMPTY; 1000];
            let (n, err) = r.next_batch(&mut buf);
            for q in &buf[..n] {
                check(i, q);
                i += 1;
            }
            if let Some(e) = err {
                break e;
            }
            assert_eq!(n, buf.len(), "end without an error");
        };
        assert_eq!(i, whole);
        assert_eq!(err.offset, FILE_HEADER + whole * RECORD);
        assert!(
            matches!(
                err.kind,
                ErrorKind::TruncatedRecord {
                    len: 1200,
                    remaining: 100
                }
            ),
            "{err}: expected the cut record"
        );
        assert!(err.to_string().contains("cut.pcap"), "{err}");
    });
}
