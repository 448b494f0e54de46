//! Integration tests of the storage manager on real files in temporary directories: round trip
//! across segments, time seeks against a model, caps, torn tails, corruption, concurrent readers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use como_storage::{
    Database, Error, Options, Record, RecordId, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};

/// Deterministic payload of record `i` (variable length, content depends on `i`).
fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("record {i}:").into_bytes();
    p.extend((0..(i * 7 % 61)).map(|k| (i.wrapping_mul(31) + k) as u8));
    p
}

fn small(segment_bytes: u64) -> Options {
    Options {
        segment_bytes,
        index_every: 128,
        ..Options::default()
    }
}

/// Deterministic xorshift64* generator (no dependency, fixed seed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn read_all(db: &Database) -> Vec<(u64, Vec<u8>)> {
    db.reader(..)
        .map(|r| r.map(|r| (r.ts, r.payload)))
        .collect::<Result<_, _>>()
        .expect("read back")
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Appends records `0..n` with `ts(i)`; returns the model and the ids.
fn fill(
    db: &mut Database,
    n: u64,
    ts: impl Fn(u64) -> u64,
) -> (Vec<(u64, Vec<u8>)>, Vec<RecordId>) {
    let mut model = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let p = payload(i);
        ids.push(db.append(ts(i), &p).expect("append"));
        model.push((ts(i), p));
    }
    (model, ids)
}

#[test]
fn round_trip_across_many_segments_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), small(1024)).expect("open");
    assert_eq!(db.reader(..).count(), 0);
    assert_eq!((db.first_ts(), db.last_ts()), (None, None));
    let (model, _) = fill(&mut db, 2000, |i| 1_000_000 + i * 10);
    // Written but not yet acknowledged: only what the rolls synced is visible.
    let before_sync = read_all(&db);
    assert!(before_sync.len() < model.len());
    assert_eq!(before_sync[..], model[..before_sync.len()]);
    db.sync().expect("sync");
    assert_eq!(read_all(&db), model);
    let segs = db.segments();
    assert!(segs.len() > 50, "only {} segments", segs.len());
    assert!(segs.iter().all(|s| s.bytes <= 1024));
    assert_eq!(segs.iter().map(|s| s.records).sum::<u64>(), 2000);
    assert_eq!(db.stored_bytes(), segs.iter().map(|s| s.bytes).sum::<u64>());
    let on_disk: u64 = seg_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(db.stored_bytes(), on_disk);
    assert_eq!(
        (db.first_ts(), db.last_ts()),
        (Some(1_000_000), Some(1_000_000 + 19_990))
    );
    db.close().expect("close");

    let db = Database::open(dir.path(), small(1024)).expect("reopen");
    assert_eq!(db.open_report(), &como_storage::OpenReport::default());
    assert_eq!(read_all(&db), model);
    assert_eq!(db.read_handle().verify().expect("verify"), 2000);
    drop(db);

    // Without sidecars every closed segment is rescanned, with the same result.
    for p in fs::read_dir(dir.path()).expect("list") {
        let p = p.expect("entry").path();
        if p.extension().is_some_and(|e| e == "idx") {
            fs::remove_file(p).expect("rm idx");
        }
    }
    let mut db = Database::open(dir.path(), small(1024)).expect("reopen without sidecars");
    assert_eq!(db.open_report().rescanned_segments, segs.len() - 1);
    assert_eq!(read_all(&db), model);
    // Appending continues after the reopen, in the same last segment.
    db.append(1_000_000 + 19_990, b"tail")
        .expect("append equal ts");
    db.sync().expect("sync");
    let all = read_all(&db);
    assert_eq!(all.len(), 2001);
    assert_eq!(all[2000], (1_000_000 + 19_990, b"tail".to_vec()));
}

#[test]
fn out_of_order_append_is_an_error_also_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), small(1024)).expect("open");
    db.append(100, b"a").expect("append");
    db.append(100, b"b").expect("equal ts is fine");
    match db.append(99, b"c") {
        Err(Error::OutOfOrder {
            ts: 99,
            last_ts: 100,
        }) => {}
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    db.close().expect("close");
    let mut db = Database::open(dir.path(), small(1024)).expect("reopen");
    assert!(matches!(db.append(50, b"d"), Err(Error::OutOfOrder { .. })));
    assert_eq!(
        read_all(&db),
        vec![(100, b"a".to_vec()), (100, b"b".to_vec())]
    );
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Options {
        segment_bytes: 10,
        ..Options::default()
    };
    assert!(matches!(
        Database::open(dir.path(), o),
        Err(Error::InvalidOptions(_))
    ));
    let o = Options {
        index_every: 0,
        ..Options::default()
    };
    assert!(matches!(
        Database::open(dir.path(), o),
        Err(Error::InvalidOptions(_))
    ));
}

/// Many random ranges (fixed seed) against a Vec model, with duplicate timestamps that straddle
/// segment and index-entry boundaries; before and after a reopen (sidecar indexes).
#[test]
fn seek_by_time_returns_exactly_the_records_in_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut db = Database::open(dir.path(), small(2048)).expect("open");
    let mut ts = 5_000u64;
    let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..4000u64 {
        // Runs of equal timestamps, sometimes long enough to span a segment.
        ts += match rng.below(10) {
            0..=5 => 0,
            6..=8 => 1 + rng.below(3),
            _ => 50,
        };
        let p = payload(i);
        db.append(ts, &p).expect("append");
        model.push((ts, p));
    }
    db.sync().expect("sync");
    let max_ts = ts;
    for round in 0..2 {
        let db_ref = &db;
        for _ in 0..800 {
            let a = 4_900 + rng.below(max_ts - 4_800);
            let b = a + if rng.below(4) == 0 {
                rng.below(5)
            } else {
                rng.below(3000)
            };
            let variant = rng.below(5);
            let reader = match variant {
                0 => db_ref.reader(a..b),
                1 => db_ref.reader(a..=b),
                2 => db_ref.reader(a..),
                3 => db_ref.reader(..b),
                _ => db_ref.reader(b..a),
            };
            let got: Vec<(u64, Vec<u8>)> = reader
                .map(|r| r.map(|r| (r.ts, r.payload)))
                .collect::<Result<_, _>>()
                .expect("read");
            let want: Vec<(u64, Vec<u8>)> = model
                .iter()
                .filter(|(t, _)| match variant {
                    0 => (a..b).contains(t),
                    1 => (a..=b).contains(t),
                    2 => (a..).contains(t),
                    3 => (..b).contains(t),
                    _ => (b..a).contains(t),
                })
                .cloned()
                .collect();
            assert_eq!(
                got.len(),
                want.len(),
                "round {round} variant {variant} range {a} {b}"
            );
            assert_eq!(got, want, "round {round} variant {variant} range {a} {b}");
        }
        if round == 0 {
            db.close().expect("close");
            db = Database::open(dir.path(), small(2048)).expect("reopen");
        }
    }
    // Exact points at segment boundaries.
    for s in db.segments() {
        let got: Vec<u64> = db
            .reader(s.first_ts..=s.first_ts)
            .map(|r| r.expect("read").ts)
            .collect();
        let want = model.iter().filter(|(t, _)| *t == s.first_ts).count();
        assert_eq!(got.len(), want, "records at ts {}", s.first_ts);
    }
}

/// Fixed-size records: each closed segment holds the same number of them.
fn fixed_payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(48, 0xAB);
    p
}

fn index_of(p: &[u8]) -> u64 {
    u64::from_le_bytes(p[..8].try_into().expect("8 bytes"))
}

#[test]
fn cap_by_bytes_drops_oldest_segments_first_and_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = FRAME_HEADER_LEN + 48;
    let per_seg = 15u64;
    let seg_bytes = SEGMENT_HEADER_LEN + per_seg * frame; // exactly 15 frames per segment
    let max = 10 * seg_bytes + 3 * frame;
    let opts = Options {
        segment_bytes: seg_bytes,
        max_bytes: Some(max),
        ..small(seg_bytes)
    };
    let mut db = Database::open(dir.path(), opts.clone()).expect("open");
    for i in 0..2000u64 {
        db.append(i, &fixed_payload(i)).expect("append");
        assert!(
            db.stored_bytes() <= max,
            "after record {i}: {} > {max}",
            db.stored_bytes()
        );
        let segs = db.segments();
        // Minimal: one more (full) segment would exceed the cap, unless nothing was dropped.
        if segs.first().is_some_and(|s| s.first_ts > 0) {
            assert!(
                db.stored_bytes() + seg_bytes > max,
                "dropped more than needed after {i}"
            );
        }
    }
    db.sync().expect("sync");
    let all = read_all(&db);
    let first = index_of(&all[0].1);
    // A suffix, starting at a segment boundary.
    assert_eq!(first % per_seg, 0);
    let idx: Vec<u64> = all.iter().map(|(_, p)| index_of(p)).collect();
    assert_eq!(idx, (first..2000).collect::<Vec<_>>());
    let on_disk: u64 = seg_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(on_disk, db.stored_bytes());
    assert_eq!(db.first_ts(), Some(first));
    db.close().expect("close");

    // A smaller cap at open drops more, oldest first.
    let opts2 = Options {
        max_bytes: Some(3 * seg_bytes),
        ..opts
    };
    let db = Database::open(dir.path(), opts2).expect("reopen with smaller cap");
    assert!(db.stored_bytes() <= 3 * seg_bytes);
    let all2 = read_all(&db);
    assert_eq!(all2[..], all[all.len() - all2.len()..]);
    assert!(all2.len() as u64 > per_seg);
    assert_eq!(seg_files(dir.path()).len(), db.segments().len());
}

#[test]
fn cap_by_age_drops_only_expired_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = FRAME_HEADER_LEN + 48;
    let seg_bytes = SEGMENT_HEADER_LEN + 10 * frame;
    let retention = 95_000u64;
    let opts = Options {
        retention_ns: Some(retention),
        ..small(seg_bytes)
    };
    let mut db = Database::open(dir.path(), opts).expect("open");
    let ts = |i: u64| 1_000_000 + i * 1_000;
    for i in 0..1000u64 {
        db.append(ts(i), &fixed_payload(i)).expect("append");
        let newest = ts(i);
        let segs = db.segments();
        let oldest = segs.first().expect("a segment");
        // The oldest kept segment still holds an unexpired record...
        assert!(oldest.last_ts >= newest.saturating_sub(retention) || segs.len() == 1);
        // ... and the segment dropped just before it had none (it ended right before it).
        if oldest.first_ts > ts(0) {
            let first_kept = (oldest.first_ts - 1_000_000) / 1_000;
            assert!(
                ts(first_kept - 1) < newest - retention,
                "dropped too early at {i}"
            );
        }
    }
    db.sync().expect("sync");
    let all = read_all(&db);
    let first = index_of(&all[0].1);
    assert_eq!(first % 10, 0);
    assert_eq!(all.len() as u64, 1000 - first);
    // 95 µs of retention at 1 record/µs and 10 records/segment: between 96 and 105 records kept.
    assert!(
        (96..=105).contains(&all.len()),
        "{} records kept",
        all.len()
    );
    assert_eq!(seg_files(dir.path()).len(), db.segments().len());
}

/// Truncates the last segment at every byte offset inside its last record; reopening keeps all
/// earlier records, reports the cut and lets appending continue.
#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let base = tempfile::tempdir().expect("tempdir");
    let pristine = base.path().join("pristine");
    let mut db = Database::open(&pristine, small(4096)).expect("open");
    let (model, ids) = fill(&mut db, 300, |i| 10 + i);
    db.close().expect("close");
    let last_id = *ids.last().expect("ids");
    let last_seg = seg_files(&pristine).pop().expect("a segment");
    let full_len = fs::metadata(&last_seg).expect("stat").len();
    assert_eq!(
        full_len,
        last_id.offset + FRAME_HEADER_LEN + payload(299).len() as u64
    );
    assert!(
        last_id.offset > SEGMENT_HEADER_LEN,
        "the last segment has several records"
    );
    for cut in last_id.offset..full_len {
        let d = base.path().join(format!("cut{cut}"));
        copy_dir(&pristine, &d);
        let seg = d.join(last_seg.file_name().expect("name"));
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(cut))
            .expect("truncate");
        let mut db = Database::open(&d, small(4096)).expect("reopen after tear");
        if cut > last_id.offset {
            let rep = db.open_report();
            assert_eq!(
                rep.truncated_file.as_deref(),
                Some(seg.as_path()),
                "cut {cut}"
            );
            assert_eq!(rep.truncated_at, last_id.offset);
            assert_eq!(rep.truncated_bytes, cut - last_id.offset);
        }
        assert_eq!(
            fs::metadata(&seg).expect("stat").len(),
            last_id.offset,
            "cut {cut}"
        );
        assert_eq!(read_all(&db)[..], model[..299], "cut {cut}");
        db.append(10 + 299, b"after")
            .expect("append after recovery");
        db.close().expect("close");
        let db = Database::open(&d, small(4096)).expect("reopen");
        assert_eq!(db.open_report().truncated_file, None);
        let all = read_all(&db);
        assert_eq!(all.len(), 300);
        assert_eq!(all[..299], model[..299]);
        assert_eq!(all[299], (309, b"after".to_vec()));
        drop(db);
        fs::remove_dir_all(&d).expect("cleanup");
    }
}

/// A last segment holding one record, cut anywhere (header included): the segment is removed,
/// the previous ones are intact, appending continues.
#[test]
fn torn_new_segment_is_removed() {
    let base = tempfile::tempdir().expect("tempdir");
    let pristine = base.path().join("pristine");
    let mut db = Database::open(&pristine, small(1024)).expect("open");
    let (mut model, _) = fill(&mut db, 100, |i| i);
    // A record too large for the current segment: it opens a new one, alone.
    let big = vec![7u8; 900];
    let id = db.append(100, &big).expect("append big");
    assert_eq!(id.offset, SEGMENT_HEADER_LEN);
    db.close().expect("close");
    let last_seg = seg_files(&pristine).pop().expect("a segment");
    let full_len = fs::metadata(&last_seg).expect("stat").len();
    for cut in 0..full_len {
        let d = base.path().join(format!("cut{cut}"));
        copy_dir(&pristine, &d);
        let seg = d.join(last_seg.file_name().expect("name"));
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(cut))
            .expect("truncate");
        let mut db = Database::open(&d, small(1024)).expect("reopen");
        assert_eq!(
            db.open_report().removed_segments,
            vec![seg.clone()],
            "cut {cut}"
        );
        assert!(!seg.exists());
        assert_eq!(read_all(&db), model, "cut {cut}");
        db.append(100, b"x").expect("append continues");
        db.close().expect("close");
        fs::remove_dir_all(&d).expect("cleanup");
    }
    model.push((100, big));
    let db = Database::open(&pristine, small(1024)).expect("reopen pristine");
    assert_eq!(read_all(&db), model);
}

fn expect_corrupt(r: Result<impl std::fmt::Debug, Error>, path: &Path, offset: u64) {
    match r {
        Err(e @ Error::Corrupt { .. }) => {
            let Error::Corrupt {
                path: p, offset: o, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((p.as_path(), *o), (path, offset), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("offset {offset}")), "{msg}");
        }
        other => panic!(
            "expected Corrupt at {} {offset}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn flipped_byte_in_a_closed_segment_is_reported_with_file_and_offset() {
    for field_offset in [0u64, 5, 13, FRAME_HEADER_LEN + 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Database::open(dir.path(), small(1024)).expect("open");
        let (model, ids) = fill(&mut db, 400, |i| 1000 + i);
        db.close().expect("close");
        let segs = seg_files(dir.path());
        assert!(segs.len() > 5);
        // A record in the middle of the third segment.
        let in_third: Vec<(usize, RecordId)> = ids
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, id)| id.segment == 2)
            .collect();
        let (victim, id) = in_third[in_third.len() / 2];
        let path = segs[2].clone();
        let mut bytes = fs::read(&path).expect("read");
        bytes[(id.offset + field_offset) as usize] ^= 0x40;
        fs::write(&path, &bytes).expect("write");

        // With its sidecar, open succeeds; readers stop at the damage with file and offset.
        let db = Database::open(dir.path(), small(1024)).expect("open with sidecar");
        let mut reader = db.reader(..);
        for (k, want) in model.iter().enumerate().take(victim) {
            let r = reader.next().expect("a record").expect("intact record");
            assert_eq!((&r.ts, &r.payload), (&want.0, &want.1), "record {k}");
        }
        expect_corrupt(reader.next().expect("an error item"), &path, id.offset);
        assert!(reader.next().is_none(), "the reader stops after an error");
        expect_corrupt(db.read_handle().verify(), &path, id.offset);
        // A reader whose range starts after the damaged segment never reads it.
        let after = db.segments()[4].first_ts;
        let tail: Vec<Record> = db
            .reader(after..)
            .collect::<Result<_, _>>()
            .expect("after damage");
        assert_eq!(
            tail.len(),
            model.iter().filter(|(t, _)| *t >= after).count()
        );
        assert!(tail.len() > 100);
        drop(db);

        // Without the sidecar, open scans the segment and refuses it.
        fs::remove_file(path.with_extension("idx")).expect("rm idx");
        expect_corrupt(
            Database::open(dir.path(), small(1024)).map(|_| ()),
            &path,
            id.offset,
        );
    }
}

#[test]
fn damage_inside_the_last_segment_is_not_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), small(4096)).expect("open");
    let (_, ids) = fill(&mut db, 200, |i| i);
    db.close().expect("close");
    let last = *ids.last().expect("ids");
    let victim = ids
        .iter()
        .rev()
        .find(|id| id.segment == last.segment && id.offset < last.offset)
        .copied()
        .expect("two records in the last segment");
    let path = seg_files(dir.path()).pop().expect("seg");
    let mut bytes = fs::read(&path).expect("read");
    bytes[(victim.offset + FRAME_HEADER_LEN) as usize] ^= 1;
    fs::write(&path, &bytes).expect("write");
    expect_corrupt(
        Database::open(dir.path(), small(4096)).map(|_| ()),
        &path,
        victim.offset,
    );
    // The file was not cut.
    assert_eq!(fs::metadata(&path).expect("stat").len(), bytes.len() as u64);
}

/// One writer thread appends, syncs and rolls; a snapshot-reader thread always sees a prefix of
/// what was appended that never shrinks; a following reader sees every record exactly once.
#[test]
fn concurrent_readers_while_appending_and_rolling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), small(2048)).expect("open");
    let handle = db.read_handle();
    const N: u64 = 6000;
    let snap = {
        let h = handle.clone();
        thread::spawn(move || {
            let mut seen = 0usize;
            let mut rounds = 0u64;
            while seen < N as usize {
                let recs: Vec<Record> = h
                    .reader(..)
                    .collect::<Result<_, _>>()
                    .expect("snapshot read");
                for (k, r) in recs.iter().enumerate() {
                    assert_eq!((r.ts, &r.payload), (k as u64 * 3, &payload(k as u64)));
                }
                assert!(
                    recs.len() >= seen,
                    "snapshot shrank from {seen} to {}",
                    recs.len()
                );
                seen = recs.len();
                rounds += 1;
                thread::yield_now();
            }
            rounds
        })
    };
    let follow = {
        let h = handle.clone();
        thread::spawn(move || {
            let mut r = h.follow(..);
            let mut got = Vec::new();
            while (got.len() as u64) < N {
                match r.next() {
                    Some(rec) => got.push(rec.expect("follow read")),
                    None => {
                        r.wait(Duration::from_millis(200));
                    }
                }
            }
            assert!(r.next().is_none());
            got
        })
    };
    for i in 0..N {
        db.append(i * 3, &payload(i)).expect("append");
        if i % 7 == 6 {
            db.sync().expect("sync");
        }
    }
    db.sync().expect("final sync");
    let rounds = snap.join().expect("snapshot thread");
    let got = follow.join().expect("follow thread");
    assert!(rounds >= 1);
    assert_eq!(got.len() as u64, N);
    for (k, r) in got.iter().enumerate() {
        assert_eq!((r.ts, &r.payload), (k as u64 * 3, &payload(k as u64)));
    }
    assert!(db.segments().len() > 20);
    // A follow reader with an end stops for good after it.
    let mut bounded = handle.follow(30..=60);
    assert_eq!(bounded.by_ref().count(), 11);
    db.append(N * 3, b"later").expect("append");
    db.sync().expect("sync");
    assert!(bounded.next().is_none());
}

/// A reader keeps reading a segment the caps removed from the database; the file goes away when
/// the reader lets go of it.
#[test]
fn reader_keeps_reading_a_segment_dropped_by_the_caps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = FRAME_HEADER_LEN + 48;
    let seg_bytes = SEGMENT_HEADER_LEN + 10 * frame;
    let opts = Options {
        max_bytes: Some(4 * seg_bytes),
        ..small(seg_bytes)
    };
    let mut db = Database::open(dir.path(), opts).expect("open");
    for i in 0..35u64 {
        db.append(i, &fixed_payload(i)).expect("append");
    }
    db.sync().expect("sync");
    let held: Vec<PathBuf> = db.segments().into_iter().map(|s| s.path).collect();
    assert_eq!(held.len(), 4);
    let mut reader = db.reader(..);
    let first = reader.next().expect("a record").expect("ok");
    assert_eq!(index_of(&first.payload), 0);
    for i in 35..200u64 {
        db.append(i, &fixed_payload(i)).expect("append");
    }
    db.sync().expect("sync");
    let live: Vec<PathBuf> = db.segments().into_iter().map(|s| s.path).collect();
    assert!(
        held.iter().all(|p| !live.contains(p)),
        "the old segments left the database"
    );
    assert_eq!(db.first_ts(), Some(160));
    assert!(
        held.iter().all(|p| p.exists()),
        "deletion deferred while a reader holds them"
    );
    // The reader still returns exactly its snapshot.
    let rest: Vec<u64> = reader
        .by_ref()
        .map(|r| index_of(&r.expect("ok").payload))
        .collect();
    assert_eq!(rest, (1..35).collect::<Vec<_>>());
    drop(reader);
    assert!(
        held.iter().all(|p| !p.exists()),
        "deleted once the reader let go"
    );
    assert!(held.iter().all(|p| !p.with_extension("idx").exists()));
    assert_eq!(seg_files(dir.path()).len(), live.len());
}

#[test]
fn handles_and_readers_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<como_storage::ReadHandle>();
    send::<como_storage::Reader>();
    send::<Database>();
    let _ = Arc::new(0);
}

#[test]
fn damaged_segment_headers_are_reported_at_offset_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), small(1024)).expect("open");
    fill(&mut db, 200, |i| i);
    db.close().expect("close");
    let segs = seg_files(dir.path());
    for (victim, byte) in [
        (1usize, 3usize),
        (1, 14),
        (segs.len() - 1, 9),
        (segs.len() - 1, 25),
    ] {
        let path = &segs[victim];
        let mut bytes = fs::read(path).expect("read");
        bytes[byte] ^= 0x22;
        fs::write(path, &bytes).expect("write");
        expect_corrupt(Database::open(dir.path(), small(1024)).map(|_| ()), path, 0);
        bytes[byte] ^= 0x22;
        fs::write(path, &bytes).expect("restore");
    }
    // A segment renamed so that its name disagrees with its header is refused too.
    let moved = dir.path().join("00000000000000000001-0000000001.seg");
    fs::rename(&segs[1], &moved).expect("rename");
    expect_corrupt(
        Database::open(dir.path(), small(1024)).map(|_| ()),
        &moved,
        0,
    );
    fs::rename(&moved, &segs[1]).expect("rename back");
    assert_eq!(
        Database::open(dir.path(), small(1024))
            .expect("open")
            .reader(..)
            .count(),
        200
    );
}

#[test]
fn unrelated_files_are_kept_and_orphan_sidecars_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(dir.path(), small(1024)).expect("open");
    let (model, _) = fill(&mut db, 100, |i| i);
    db.close().expect("close");
    let notes = dir.path().join("README.txt");
    fs::write(&notes, "operator notes").expect("write");
    let orphan = dir.path().join("00000000000000000000-0000009999.idx");
    fs::write(&orphan, "stale").expect("write");
    let db = Database::open(dir.path(), small(1024)).expect("reopen");
    assert!(notes.exists());
    assert!(!orphan.exists());
    assert_eq!(read_all(&db), model);
}

/// A following reader whose segments are dropped by the caps before it reaches them skips to
/// what is still stored, in order, without error.
#[test]
fn follow_reader_across_caps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = FRAME_HEADER_LEN + 48;
    let seg_bytes = SEGMENT_HEADER_LEN + 10 * frame;
    let opts = Options {
        max_bytes: Some(3 * seg_bytes),
        ..small(seg_bytes)
    };
    let mut db = Database::open(dir.path(), opts).expect("open");
    let mut follow = db.read_handle().follow(..);
    assert!(follow.next().is_none(), "empty database");
    assert!(
        !follow.wait(Duration::from_millis(1)),
        "nothing acknowledged yet"
    );
    let mut seen = Vec::new();
    for i in 0..500u64 {
        db.append(i, &fixed_payload(i)).expect("append");
        if i % 10 == 9 {
            db.sync().expect("sync");
        }
        if i % 37 == 0 {
            seen.extend(follow.by_ref().map(|r| index_of(&r.expect("read").payload)));
        }
    }
    db.sync().expect("sync");
    seen.extend(follow.by_ref().map(|r| index_of(&r.expect("read").payload)));
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate"
    );
    assert_eq!(seen.last(), Some(&499));
    let stored = read_all(&db);
    let first_stored = index_of(&stored[0].1);
    let tail: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|&i| i >= first_stored)
        .collect();
    assert_eq!(tail, (first_stored..500).collect::<Vec<_>>());
}
