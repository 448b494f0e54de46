//! Runs one query over a packet trace window and reports what it read (the query side of
//! `scripts/bench-window.sh`).
//!
//! ```text
//! window_query --dir DIR [--out FILE.pcap] EXPR...
//! ```
//! Prints one line of `key=value` results: packets returned, segments and index groups read,
//! bytes read, wall time.

use std::path::PathBuf;
use std::time::Instant;

use como_window::{OutFormat, Query};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut expr = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(args.next().ok_or("--dir needs a value")?)),
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a value")?)),
            _ => expr.push(a),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    let q = Query::all(expr.join(" "));
    let t = Instant::now();
    let st = match out {
        Some(o) => {
            let f = std::io::BufWriter::new(std::fs::File::create(o)?);
            como_window::write_query(&dir, &q, OutFormat::Pcap, f)?.0
        }
        None => como_window::query(&dir, &q, &mut |_| Ok(()))?,
    };
    println!(
        "packets={} segments_read={} segments={} groups_read={} groups={} bytes_read={} secs={:.3}",
        st.packets,
        st.segments_read,
        st.segments,
        st.groups_read,
        st.groups,
        st.bytes_read,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
