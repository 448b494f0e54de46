//! Rebuilds the lost indexes of a packet trace window's closed segments in the foreground (what
//! `Window::open` does on a background thread) and reports what it did and how fast.
//!
//! ```text
//! window_reindex --dir DIR [--all]
//! ```
//! `--all` rebuilds every closed segment's index, lost or not (to measure the rebuild rate).
//! Prints one line of `key=value` results. Do not run it on a window a daemon is writing:
//! retention may delete a segment meanwhile (the rebuild then writes nothing for it).

use std::path::PathBuf;
use std::time::Instant;

use como_window::{reindex, segment};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut all = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(args.next().ok_or("--dir needs a value")?)),
            "--all" => all = true,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    let t = Instant::now();
    let (mut segments, mut rebuilt, mut bytes, mut packets, mut damaged) = (0u64, 0u64, 0, 0, 0);
    for s in segment::list(&dir)?.iter().rev().filter(|s| !s.open) {
        segments += 1;
        if !all && reindex::check(s).is_none() {
            continue;
        }
        if let Some(r) = reindex::rebuild(s)? {
            rebuilt += 1;
            bytes += r.file_bytes;
            packets += r.index.packets;
            damaged += u64::from(r.index.data_end < r.file_bytes);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "segments={segments} rebuilt={rebuilt} damaged={damaged} bytes={bytes} packets={packets} secs={secs:.3} mb_per_s={:.1}",
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}
