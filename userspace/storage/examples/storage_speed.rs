//! Throughput of the storage manager on this machine: appends `count` records of `size` bytes
//! (syncing every `sync_every` records), then reads them all back, then seeks to 1000 random
//! times. Compare with `dd if=/dev/zero of=DIR/dd bs=1M count=N conv=fdatasync` run next to it.
//!
//! `cargo run --release -p como-storage --example storage_speed -- DIR [count] [size] [sync_every]`
//! (DIR must not exist; it is removed at the end).

use std::time::Instant;

use como_storage::{Database, Options};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: storage_speed DIR [count] [size] [sync_every]")?;
    if std::path::Path::new(&dir).exists() {
        return Err(format!("{dir} exists; give a new directory").into());
    }
    let count = arg(2, 2_000_000);
    let size = arg(3, 200) as usize;
    let sync_every = arg(4, 10_000).max(1);
    let payload = vec![0x5Au8; size];
    let mut db = Database::open(&dir, Options::default())?;
    let t = Instant::now();
    for i in 0..count {
        db.append(i * 1000, &payload)?;
        if (i + 1) % sync_every == 0 {
            db.sync()?;
        }
    }
    db.sync()?;
    let w = t.elapsed().as_secs_f64();
    let bytes = db.stored_bytes() as f64;
    println!(
        "append+sync: {count} records of {size} B in {w:.3} s: {:.0} krec/s, {:.1} MB/s (file bytes)",
        count as f64 / w / 1e3,
        bytes / w / 1e6
    );
    let t = Instant::now();
    let mut n = 0u64;
    for r in db.reader(..) {
        r?;
        n += 1;
    }
    let r = t.elapsed().as_secs_f64();
    println!(
        "read all: {n} records in {r:.3} s: {:.0} krec/s, {:.1} MB/s",
        n as f64 / r / 1e3,
        bytes / r / 1e6
    );
    let t = Instant::now();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let from = (x % count) * 1000;
        let first = db.reader(from..).next().ok_or("no record")??;
        if first.ts != from {
            return Err("seek returned the wrong record".into());
        }
    }
    println!(
        "seek: 1000 random seeks + first record in {:.1} µs each",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(db);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
