//! The `gen-trace` command: files tcpdump reads with the expected packet count, byte-identical
//! reruns, and clear failures on bad options.

use std::path::PathBuf;
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("como-gen-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn gen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gen-trace"))
        .args(args)
        .output()
        .expect("run gen-trace")
}

fn tcpdump_count(path: &PathBuf, expr: &[&str]) -> String {
    let out = Command::new("tcpdump")
        .arg("-n")
        .arg("-r")
        .arg(path)
        .arg("--count")
        .args(expr)
        .output()
        .expect("tcpdump is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pcap_and_pcapng_outputs_hold_the_same_packets_for_tcpdump() {
    let pcap = tmp("a.pcap");
    let pcapng = tmp("a.pcapng");
    for (path, format) in [(&pcap, "pcap"), (&pcapng, "pcapng")] {
        let out = gen(&[
            "-n",
            "5000",
            "-f",
            format,
            "-o",
            path.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stderr);
        assert!(summary.contains("5000 packets"), "{summary}");
    }
    assert_eq!(tcpdump_count(&pcap, &[]), "5000 packets");
    assert_eq!(tcpdump_count(&pcapng, &[]), "5000 packets");
    for expr in [
        &["tcp", "port", "443"][..],
        &["vlan"],
        &["ip6"],
        &["udp", "port", "53"],
    ] {
        let a = tcpdump_count(&pcap, expr);
        assert_eq!(a, tcpdump_count(&pcapng, expr), "{expr:?}");
        assert_ne!(a, "0 packets", "{expr:?}");
    }
    let _ = std::fs::remove_file(pcap);
    let _ = std::fs::remove_file(pcapng);
}

#[test]
fn same_options_same_bytes() {
    let a = tmp("same-1.erf");
    let b = tmp("same-2.erf");
    for p in [&a, &b] {
        let out = gen(&[
            "-q",
            "-n",
            "3000",
            "-f",
            "erf",
            "-o",
            p.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success());
        assert!(out.stderr.is_empty(), "-q prints nothing");
    }
    let (x, y) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert!(!x.is_empty());
    assert_eq!(x, y);
    let _ = std::fs::remove_file(a);
    let _ = std::fs::remove_file(b);
}

#[test]
fn bad_options_fail_with_a_message() {
    let p = tmp("bad.pcap");
    let p = p.to_str().expect("utf-8");
    for args in [
        &["--vlan-share", "2", "-o", p][..],
        &["--flows", "0", "-o", p],
        &["-f", "pcapx", "-o", p],
        &["-o", "/nonexistent-dir/x.pcap"],
    ] {
        let out = gen(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}
