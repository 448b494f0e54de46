//! Opening: missing files, pipes (no mmap), empty files.

use std::io::Write;
use std::path::Path;

use como_tracefile::{ErrorKind, TraceReader};

/// The test traces.
const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces");

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let e = TraceReader::open("/nonexistent/dir/x.pcap").expect_err("missing");
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/dir/x.pcap: at byte 0: cannot read: "),
        "{e}"
    );
}

#[test]
fn an_empty_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("como-tracefile-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("empty.pcap");
    std::fs::write(&f, b"").expect("write");
    let e = TraceReader::open(&f).expect_err("empty");
    assert!(matches!(e.kind, ErrorKind::Empty), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_pipe_is_read_without_mmap() {
    let dir = std::env::temp_dir().join(format!("como-tracefile-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let fifo = dir.join("trace.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let bytes = std::fs::read(Path::new(TRACES).join("pcap-parser/wireshark_samples-test.pcapng"))
        .expect("read");
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .expect("open fifo");
        f.write_all(&bytes).expect("write fifo");
    });
    let mut r = TraceReader::open(&fifo).expect("open fifo");
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.expect("clean");
        n += 1;
    }
    writer.join().expect("writer");
    assert_eq!(n, 5898);
    std::fs::remove_dir_all(&dir).ok();
}
