//! Tests of the configuration parser: positions of errors, durations, sizes, the default config.

use super::*;

fn err(text: &str) -> ConfigError {
    match Config::parse(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

const MINIMAL: &str = "[[module]]\nname = \"t\"\nkind = \"traffic\"\n";

#[test]
fn default_config_validates() {
    let c = Config::default_config().expect("default config");
    assert_eq!(c.query.listen.to_string(), "127.0.0.1:44444");
    assert!(c.modules.iter().any(|m| m.name == "traffic"));
    assert!(c.sources.is_empty());
}

#[test]
fn full_config() {
    let text = r#"
[node]
name = "probe"
location = "lab"
db_path = "/tmp/x"
[query]
listen = "127.0.0.1:0"
[[source]]
type = "file"
path = "a.pcap"
speed = 2.5
[[module]]
name = "top"
kind = "topaddr"
filter = "tcp port 80"
interval = "500ms"
streamsize = "64MiB"
retention = 3600
priority = 2
[module.args]
topn = 3
use_dst = true
[[module]]
name = "traffic"
kind = "traffic"
interval = 5
streamsize = 1000
retention = "72h"
"#;
    let c = Config::parse(text, "t.toml").expect("parse");
    assert_eq!(c.node.name, "probe");
    assert_eq!(c.node.db_path, PathBuf::from("/tmp/x"));
    assert_eq!(
        c.sources[0].kind,
        SourceKind::File {
            path: "a.pcap".into(),
            speed: Some(2.5)
        }
    );
    let top = &c.modules[0];
    assert_eq!(top.interval, Duration::from_millis(500));
    assert_eq!(top.streamsize, Some(64 << 20));
    assert_eq!(top.retention, Some(Duration::from_secs(3600)));
    assert_eq!(top.priority, 2);
    assert_eq!(top.filter, "tcp port 80");
    assert_eq!(top.module.kind(), "topaddr");
    let t = &c.modules[1];
    assert_eq!(t.interval, Duration::from_secs(5));
    assert_eq!(t.streamsize, Some(1000));
    assert_eq!(t.retention, Some(Duration::from_secs(72 * 3600)));
}

#[test]
fn unknown_fields_have_line_and_column() {
    let e = err("[node]\nname = \"x\"\n  colour = \"red\"\n");
    assert_eq!((e.line, e.column), (3, 3), "{e}");
    assert!(e.message.contains("unknown field `colour`"), "{e}");
    assert!(e.to_string().starts_with("t.toml:3:3: "), "{e}");
    let e = err(&format!("{MINIMAL}flter = \"ip\"\n"));
    assert_eq!((e.line, e.column), (4, 1), "{e}");
    assert!(e.message.contains("flter"), "{e}");
    let e = err("[nodes]\n");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn bad_durations() {
    let e = err(&format!("{MINIMAL}interval = \"5x\"\n"));
    assert_eq!((e.line, e.column), (4, 12), "{e}");
    assert!(e.message.contains("bad duration `5x`"), "{e}");
    let e = err(&format!("{MINIMAL}interval = \"0s\"\n"));
    assert_eq!((e.line, e.column), (4, 12), "{e}");
    assert!(e.message.contains("positive"), "{e}");
    let e = err(&format!("{MINIMAL}retention = \"-3h\"\n"));
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn bad_filter_points_into_the_filter() {
    // `port 99999`: the error column of the filter is where `99999` starts.
    let e = err(&format!("{MINIMAL}filter = \"tcp and port 99999\"\n"));
    assert_eq!(e.line, 4, "{e}");
    let filter_col = "filter = \"".len() + 1;
    let f = ebpf_filters::compile("tcp and port 99999", como_packet::LinkType::Ethernet)
        .expect_err("bad filter");
    assert_eq!(e.column, filter_col + f.column - 1, "{e}");
    assert!(e.message.contains("bad filter"), "{e}");
    let e = err(&format!("{MINIMAL}filter = \"tcp and\"\n"));
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn bad_args_kind_names() {
    let e = err(&format!("{MINIMAL}[module.args]\ntopn = 5\n"));
    // The args table's position: its `[module.args]` header.
    assert_eq!((e.line, e.column), (4, 1), "{e}");
    assert!(e.message.contains("topn"), "{e}");
    let e = err("[[module]]\nname = \"t\"\nkind = \"trafic\"\n");
    assert_eq!((e.line, e.column), (3, 8), "{e}");
    assert!(e.message.contains("unknown module kind"), "{e}");
    let e = err(&format!("{MINIMAL}{MINIMAL}"));
    assert_eq!((e.line, e.column), (5, 8), "{e}");
    assert!(e.message.contains("twice"), "{e}");
    let e = err("[[module]]\nname = \"../x\"\nkind = \"traffic\"\n");
    assert_eq!((e.line, e.column), (2, 8), "{e}");
    let e = err("[[module]]\nname = \"status\"\nkind = \"traffic\"\n");
    assert_eq!(e.line, 2, "{e}");
    let e = err("[node]\nname = \"x\"\n");
    assert!(e.message.contains("no [[module]]"), "{e}");
}

#[test]
fn sources_and_listen() {
    let e = err(&format!("[[source]]\ntype = \"dag\"\n{MINIMAL}"));
    assert_eq!(e.line, 2, "{e}");
    let e = err(&format!("[[source]]\ntype = \"file\"\n{MINIMAL}"));
    assert!(e.message.contains("path"), "{e}");
    let e = err(&format!(
        "[[source]]\ntype = \"file\"\npath = \"x\"\nspeed = 0.0\n{MINIMAL}"
    ));
    assert_eq!((e.line, e.column), (4, 9), "{e}");
    let e = err(&format!("[query]\nlisten = \"nowhere\"\n{MINIMAL}"));
    assert_eq!((e.line, e.column), (2, 10), "{e}");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert_eq!(parse_size("1.5KiB"), Ok(1536));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("2 G"), Ok(2 << 30));
    for bad in ["", "MiB", "5XB", "1e3", "99999999999999999999TB", "-1"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    let e = err(&format!("{MINIMAL}streamsize = \"lots\"\n"));
    assert_eq!((e.line, e.column), (4, 14), "{e}");
}
