//! The packet trace window on a full disk (privileged: mounts a 4 MiB tmpfs): writing stops
//! and says so (counter, gauge), the capture side never blocks, the segments left are readable
//! by tshark, nothing outside the window's folder is deleted, and writing resumes by itself
//! once space is freed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use como_packet::{LinkType, Packet};
use como_window::{segment, Window, WindowConfig};

/// Whether the test can mount a tmpfs; fails instead of skipping under
/// `COMO_REQUIRE_PRIVILEGED=1`.
fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let why = if !root {
        Some("not root (mounting a tmpfs needs CAP_SYS_ADMIN)".to_owned())
    } else if Command::new("mount").arg("--version").output().is_err() {
        Some("`mount` not found".to_owned())
    } else {
        None
    };
    match why {
        None => true,
        Some(reason) => {
            if std::env::var("COMO_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                panic!("{test}: privileged test cannot run (COMO_REQUIRE_PRIVILEGED=1): {reason}");
            }
            eprintln!("{test}: SKIPPED (privileged test): {reason}");
            false
        }
    }
}

/// A tmpfs mounted for the test, unmounted when dropped (also on failure).
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount -t tmpfs failed");
        Tmpfs {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn frame(i: u32) -> Vec<u8> {
    let mut d = vec![0u8; 400];
    d[12] = 8;
    d[14] = 0x45;
    d[23] = 17;
    d[26..30].copy_from_slice(&[10, 1, (i >> 8) as u8, i as u8]);
    d[30..34].copy_from_slice(&[10, 2, 0, 1]);
    d
}

fn tshark_ok(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn window_disk_full_stops_then_resumes() {
    if !privileged("window_disk_full_stops_then_resumes") {
        return;
    }
    let fs = Tmpfs::new("4m");
    let filler = fs.dir.join("filler.bin");
    std::fs::write(&filler, vec![1u8; 1 << 20]).expect("filler");
    let bystander = fs.dir.join("bystander.txt");
    std::fs::write(&bystander, b"not the window's").expect("bystander");
    let dir = fs.dir.join("window");
    let mut cfg = WindowConfig::new(&dir);
    cfg.buffer_bytes = 64 * 1024;
    cfg.snaplen = 1600;
    cfg.buffers = 8;
    cfg.segment_bytes = 1 << 20;
    let w = Window::open(cfg).expect("window opens (buffered I/O on tmpfs)");
    let mut h = w.writer();
    let mut i = 0u32;
    let mut write = |h: &mut como_window::WindowWriter, n: u32| {
        for _ in 0..n {
            let d = frame(i);
            let p = Packet {
                ts_ns: 1_700_000_000_000_000_000 + u64::from(i) * 1_000_000,
                wire_len: d.len() as u32,
                data: &d,
                link: LinkType::Ethernet,
                interface: 0,
            };
            h.write(&p); // the live path: never waits
            i += 1;
        }
        h.flush();
    };
    // Fill the disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.stats().snapshot().disk_full {
        assert!(
            Instant::now() < deadline,
            "disk never reported full: {:?}",
            w.stats().snapshot()
        );
        write(&mut h, 500);
        w.sync();
        std::thread::sleep(Duration::from_millis(1));
    }
    let full = w.stats().snapshot();
    assert!(full.write_errors > 0, "{full:?}");
    // While full: writes are dropped and counted, never block, nothing is written.
    write(&mut h, 5_000);
    w.sync();
    let still = w.stats().snapshot();
    assert!(still.drops_disk_full > full.drops_disk_full, "{still:?}");
    assert!(still.disk_full);
    assert!(w.stats().prometheus().contains("como_trace_disk_full 1"));
    // The segments written so far are closed and readable.
    for s in segment::list(&dir)
        .expect("list")
        .iter()
        .filter(|s| !s.open)
    {
        assert!(tshark_ok(&s.path) > 0);
    }
    // Space returns: writing resumes by itself.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.stats().snapshot().disk_full {
        assert!(Instant::now() < deadline, "writing did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = w.stats().snapshot().packets;
    write(&mut h, 200);
    w.sync();
    assert!(
        w.stats().snapshot().packets > before,
        "{:?}",
        w.stats().snapshot()
    );
    drop(h);
    let end = w.finish();
    assert!(!end.disk_full);
    // Every segment opens in tshark; nothing outside the folder was touched.
    let mut total = 0;
    for s in segment::list(&dir).expect("list") {
        assert!(!s.open, "{} left open", s.path.display());
        total += tshark_ok(&s.path);
    }
    assert!(total > 0);
    assert!(bystander.exists());
}
