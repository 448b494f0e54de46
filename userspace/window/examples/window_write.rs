//! Writes trace files into a packet trace window, as fast as the window takes them (the
//! benchmark driver of `scripts/bench-window.sh`, and a way to fill a window by hand).
//!
//! ```text
//! window_write --dir DIR [--repeat N] [--segment-mib M] [--buffer-kib K] [--buffers B]
//!              [--snaplen S] [--no-uring] [--no-direct] [--drop] FILE...
//! ```
//! The files are read into memory first; each pass over them shifts the timestamps so the
//! window sees one continuous capture. `--drop` uses the live path (`write`: drops when no
//! buffer is free) instead of waiting for buffers. Prints one line of `key=value` results.

use std::path::PathBuf;
use std::time::Instant;

use como_packet::Packet;
use como_tracefile::TraceReader;
use como_window::{Window, WindowConfig};

/// An owned packet.
struct Owned {
    ts_ns: u64,
    wire_len: u32,
    link: como_packet::LinkType,
    data: Vec<u8>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut repeat = 1u64;
    let mut cfg_seg = 1024u64;
    let mut buf_kib = 1024usize;
    let mut buffers = 32usize;
    let mut snaplen = 65535u32;
    let (mut uring, mut direct, mut drop_mode) = (true, true, false);
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(val()?)),
            "--repeat" => repeat = val()?.parse()?,
            "--segment-mib" => cfg_seg = val()?.parse()?,
            "--buffer-kib" => buf_kib = val()?.parse()?,
            "--buffers" => buffers = val()?.parse()?,
            "--snaplen" => snaplen = val()?.parse()?,
            "--no-uring" => uring = false,
            "--no-direct" => direct = false,
            "--drop" => drop_mode = true,
            _ => files.push(PathBuf::from(a)),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    let mut packets = Vec::new();
    for f in &files {
        let mut r = TraceReader::open(f)?;
        while let Some(p) = r.next_packet() {
            let Ok(p) = p else {
                eprintln!(
                    "{}: damaged, its packets before the damage are used",
                    f.display()
                );
                break;
            };
            packets.push(Owned {
                ts_ns: p.ts_ns,
                wire_len: p.wire_len,
                link: p.link,
                data: p.data.to_vec(),
            });
        }
    }
    let first = packets.first().map_or(0, |p| p.ts_ns);
    let last = packets.last().map_or(0, |p| p.ts_ns);
    let span = last.saturating_sub(first) + 1_000;
    let mut cfg = WindowConfig::new(&dir);
    cfg.segment_bytes = cfg_seg << 20;
    cfg.buffer_bytes = buf_kib << 10;
    cfg.buffers = buffers;
    cfg.snaplen = snaplen;
    cfg.uring = uring;
    cfg.direct = direct;
    cfg.segment_ns = None;
    let w = Window::open(cfg)?;
    let engine = w.engine();
    let huge = w.hugepages();
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    let mut bytes = 0u64;
    let mut offered = 0u64;
    {
        let mut h = w.writer();
        for r in 0..repeat {
            let shift = r * span;
            for p in &packets {
                let q = Packet {
                    ts_ns: p.ts_ns + shift,
                    wire_len: p.wire_len,
                    data: &p.data,
                    link: p.link,
                    interface: 0,
                };
                offered += 1;
                bytes += p.data.len() as u64;
                if drop_mode {
                    h.write(&q);
                } else {
                    h.write_wait(&q);
                }
            }
        }
    }
    let st = w.finish();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    println!(
        "packets={offered} stored={} packet_bytes={bytes} file_bytes={} secs={secs:.3} \
         file_mb_s={:.1} drops_disk_slow={} drops_disk_full={} segments={} index_cpu_s={:.3} \
         process_cpu_s={cpu:.3} uring={} registered_buffers={} fixed_file={} hugepages={huge}",
        st.packets,
        st.file_bytes,
        st.file_bytes as f64 / secs / 1e6,
        st.drops_disk_slow,
        st.drops_disk_full,
        st.segments_closed,
        st.index_ns as f64 / 1e9,
        engine.uring,
        engine.registered_buffers,
        engine.fixed_file,
    );
    Ok(())
}

/// User + system CPU time of the process, in seconds.
fn cpu_time() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) : utime is the 14th field.
    let rest = s.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0;
    let g = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (g(11) + g(12)) / tick
}
