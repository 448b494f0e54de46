//! Crash test with a real process: this test binary re-runs itself as a writer child (selected by
//! an environment variable) that appends, syncs and reports each acknowledged record on stdout;
//! the parent kills it with SIGKILL in the middle of its appends, reopens the database, and checks
//! that every acknowledged record is there, once, intact, and that appending continues.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use como_storage::{Database, Options};

const CHILD_ENV: &str = "COMO_STORAGE_CRASH_CHILD_DIR";

fn opts() -> Options {
    Options {
        segment_bytes: 4096,
        index_every: 256,
        ..Options::default()
    }
}

/// Payload of record `i`: its index then bytes derived from it (variable length).
fn payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.extend((0..(i * 13 % 97)).map(|k| (i ^ k.wrapping_mul(7)) as u8));
    p
}

fn ts(i: u64) -> u64 {
    1_000_000_000 + i * 1_000 - (i % 3) // non-decreasing; equal steps are fine too
}

/// Reads the database and checks it holds exactly records `0..n`, intact; returns `n`.
fn check_prefix(dir: &Path) -> u64 {
    let db = Database::open(dir, opts()).expect("reopen after kill");
    if let Some(f) = &db.open_report().truncated_file {
        eprintln!(
            "torn tail cut: {} bytes of {}",
            db.open_report().truncated_bytes,
            f.display()
        );
    }
    let mut n = 0u64;
    for r in db.reader(..) {
        let r = r.expect("no corrupt record after a crash");
        assert_eq!(r.payload, payload(n), "record {n} wrong or duplicated");
        assert_eq!(r.ts, ts(n), "record {n} timestamp");
        n += 1;
    }
    n
}

/// The writer child. In a normal test run (variable unset) it does nothing.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut db = Database::open(&dir, opts()).expect("child open");
    let mut next = db.reader(..).count() as u64;
    let mut out = std::io::stdout().lock();
    writeln!(out, "START {next}").expect("stdout");
    out.flush().expect("flush");
    let mut batch = 0u64;
    loop {
        // Batches of 1..=6 records, then a sync, then the acknowledgement.
        batch = batch % 6 + 1;
        for _ in 0..batch {
            db.append(ts(next), &payload(next)).expect("child append");
            next += 1;
        }
        db.sync().expect("child sync");
        writeln!(out, "ACK {next}").expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn sigkill_mid_append_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked_total = 0u64;
    let mut kill_after = 40u64;
    for round in 0..8 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut acked = None;
        let mut acks_this_round = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child output");
            if let Some(n) = line.strip_prefix("START ") {
                let start: u64 = n.parse().expect("start count");
                assert!(
                    start >= acked_total,
                    "round {round}: child saw {start} < {acked_total}"
                );
            } else if let Some(n) = line.strip_prefix("ACK ") {
                acked = Some(n.parse::<u64>().expect("ack count"));
                acks_this_round += 1;
                if acks_this_round == kill_after {
                    // SIGKILL while the child keeps appending.
                    child.kill().expect("kill child");
                    break;
                }
            }
        }
        let status = child.wait().expect("reap child");
        assert!(
            !status.success(),
            "round {round}: the child must have been killed"
        );
        let acked = acked.expect("the child acknowledged something");
        acked_total = acked_total.max(acked);
        let found = check_prefix(dir.path());
        eprintln!("round {round}: {acked} acknowledged, {found} found after SIGKILL");
        assert!(
            found >= acked_total,
            "round {round}: {found} records after the kill, {acked_total} were acknowledged"
        );
        kill_after = kill_after * 7 % 97 + 20;
    }
    let db = Database::open(dir.path(), opts()).expect("final open");
    assert!(db.segments().len() > 3, "the child rolled segments");
    assert_eq!(
        db.read_handle().verify().expect("verify"),
        check_prefix(dir.path())
    );
}
