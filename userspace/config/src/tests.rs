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
    assert_eq!(c.query.max_queries, DEFAULT_MAX_QUERIES);
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
    for route in ["status", "modules", "metrics", "reload"] {
        let e = err(&format!(
            "[[module]]\nname = \"{route}\"\nkind = \"traffic\"\n"
        ));
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("own routes"), "{e}");
    }
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
fn max_queries() {
    let c = Config::parse(&format!("[query]\nmax_queries = 3\n{MINIMAL}"), "t.toml")
        .expect("max_queries = 3");
    assert_eq!(c.query.max_queries, 3);
    let c = Config::parse(MINIMAL, "t.toml").expect("minimal");
    assert_eq!(c.query.max_queries, 32);
    for bad in ["0", "-1"] {
        let e = err(&format!(
            "[query]\nlisten = \"127.0.0.1:0\"\nmax_queries = {bad}\n{MINIMAL}"
        ));
        assert_eq!((e.line, e.column), (3, 15), "{e}");
        assert!(e.message.contains("max_queries must be at least 1"), "{e}");
    }
    let e = err(&format!("[query]\nmax_queries = \"many\"\n{MINIMAL}"));
    assert_eq!(e.line, 2, "{e}");
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

#[test]
fn xdp_source_every_field() {
    let text = format!(
        r#"[[source]]
type = "xdp"
interface = "veth-c0"
queues = [1, 0]
mode = "skb"
zero_copy = "off"
frame_size = 2048
frames = 8192
rx_ring = 1024
fill_ring = 2048
hugepages = "on"
cpus = [1]
unmatched = "drop"
netns = "cap-1"
{MINIMAL}"#
    );
    let c = Config::parse(&text, "t.toml").expect("parse");
    let SourceKind::Xdp(x) = &c.sources[0].kind else {
        panic!("not xdp: {:?}", c.sources[0]);
    };
    assert_eq!(x.interface, "veth-c0");
    assert_eq!(x.queues, Queues::List(vec![0, 1]));
    assert_eq!(x.mode, XdpMode::Skb);
    assert_eq!(x.zero_copy, Switch::Off);
    assert_eq!(
        (x.frame_size, x.frames, x.rx_ring, x.fill_ring),
        (2048, 8192, 1024, 2048)
    );
    assert_eq!(x.hugepages, Switch::On);
    assert_eq!(x.cpus, vec![1]);
    assert_eq!((x.cpu_of(0), x.cpu_of(1)), (Some(1), Some(1)));
    assert_eq!(x.unmatched, Unmatched::Drop);
    assert_eq!(x.netns.as_deref(), Some("cap-1"));
    assert_eq!(c.sources[0].name(), "xdp:veth-c0");
    assert_eq!(c.sources[0].type_name(), "xdp");
}

#[test]
fn xdp_source_defaults() {
    let text = format!("[[source]]\ntype = \"xdp\"\ninterface = \"eth0\"\n{MINIMAL}");
    let c = Config::parse(&text, "t.toml").expect("parse");
    assert_eq!(c.sources[0].kind, SourceKind::Xdp(XdpSource::new("eth0")));
    let x = XdpSource::new("eth0");
    assert_eq!(x.queues, Queues::All);
    assert_eq!(x.mode, XdpMode::Auto);
    assert_eq!(x.unmatched, Unmatched::Pass);
    assert_eq!(x.cpu_of(3), None);
}

/// The error of `[[source]] type = "xdp"` plus `extra` lines (line 4 on).
fn xdp_err(extra: &str) -> ConfigError {
    err(&format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"eth0\"\n{extra}\n{MINIMAL}"
    ))
}

#[test]
fn xdp_source_errors_have_positions() {
    let e = err(&format!("[[source]]\ntype = \"xdp\"\n{MINIMAL}"));
    assert_eq!((e.line, e.column), (2, 8), "{e}");
    assert!(e.message.contains("needs `interface`"), "{e}");
    let e = xdp_err("queues = \"some\"");
    assert_eq!((e.line, e.column), (4, 10), "{e}");
    assert!(e.message.contains("\"all\""), "{e}");
    let e = xdp_err("queues = [0, 64]");
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("out of range"), "{e}");
    let e = xdp_err("queues = [2, 2]");
    assert!(e.message.contains("twice"), "{e}");
    let e = xdp_err("queues = []");
    assert!(e.message.contains("empty"), "{e}");
    let e = xdp_err("mode = \"fast\"");
    assert_eq!((e.line, e.column), (4, 8), "{e}");
    assert!(e.message.contains("native"), "{e}");
    let e = xdp_err("zero_copy = \"yes\"");
    assert_eq!((e.line, e.column), (4, 13), "{e}");
    let e = xdp_err("hugepages = true");
    assert_eq!(e.line, 4, "{e}");
    let e = xdp_err("frame_size = 3000");
    assert_eq!((e.line, e.column), (4, 14), "{e}");
    assert!(e.message.contains("2048 or 4096"), "{e}");
    let e = xdp_err("rx_ring = 1000");
    assert_eq!((e.line, e.column), (4, 11), "{e}");
    assert!(e.message.contains("power of two"), "{e}");
    let e = xdp_err("fill_ring = 16");
    assert!(e.message.contains("power of two"), "{e}");
    let e = xdp_err("frames = -1");
    assert_eq!(e.line, 4, "{e}");
    let e = xdp_err("cpus = [-1]");
    assert!(e.message.contains("cpu"), "{e}");
    let e = xdp_err("cpus = []");
    assert!(e.message.contains("empty"), "{e}");
    let e = xdp_err("unmatched = \"reject\"");
    assert_eq!((e.line, e.column), (4, 13), "{e}");
    let e = xdp_err("netns = \"../etc\"");
    assert_eq!((e.line, e.column), (4, 9), "{e}");
    let e = xdp_err("ring = 4");
    assert_eq!((e.line, e.column), (4, 1), "{e}");
    assert!(e.message.contains("unknown field `ring`"), "{e}");
    let e = xdp_err("path = \"x.pcap\"");
    assert_eq!((e.line, e.column), (4, 8), "{e}");
    assert!(e.message.contains("for file sources"), "{e}");
    let e = err(&format!(
        "[[source]]\ntype = \"file\"\npath = \"a\"\ninterface = \"eth0\"\n{MINIMAL}"
    ));
    assert_eq!((e.line, e.column), (4, 13), "{e}");
    assert!(e.message.contains("for xdp sources"), "{e}");
    let e = err(&format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"a/b\"\n{MINIMAL}"
    ));
    assert_eq!((e.line, e.column), (3, 13), "{e}");
    let e = err(&format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"a\"\n[[source]]\ntype = \"xdp\"\ninterface = \"a\"\n{MINIMAL}"
    ));
    assert!(e.message.contains("two xdp sources"), "{e}");
    let e = err(&format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"a\"\nnetns = \"n\"\n[[source]]\ntype = \"xdp\"\ninterface = \"a\"\nnetns = \"n\"\n{MINIMAL}"
    ));
    assert!(
        e.message
            .contains("two xdp sources on interface `a` in network namespace `n`"),
        "{e}"
    );
}

#[test]
fn several_xdp_sources_on_distinct_interfaces_are_one_node() {
    // A TAP's two ports: each direction of the link on its own interface, own settings.
    let c = Config::parse(&format!(
        "[[source]]\ntype = \"xdp\"\ninterface = \"tap0\"\ncpus = [0]\n[[source]]\ntype = \"xdp\"\ninterface = \"tap1\"\nmode = \"skb\"\ncpus = [1]\n[[source]]\ntype = \"xdp\"\ninterface = \"tap0\"\nnetns = \"other\"\n{MINIMAL}"
        ),
        "two-ports.toml",
    )
    .expect("three xdp sources");
    let xdp: Vec<(&str, Option<&str>, XdpMode, &[usize])> = c
        .sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::Xdp(x) => Some((
                x.interface.as_str(),
                x.netns.as_deref(),
                x.mode,
                x.cpus.as_slice(),
            )),
            SourceKind::File { .. } => None,
        })
        .collect();
    assert_eq!(
        xdp,
        [
            ("tap0", None, XdpMode::Auto, &[0][..]),
            ("tap1", None, XdpMode::Skb, &[1][..]),
            ("tap0", Some("other"), XdpMode::Auto, &[][..]),
        ]
    );
}

#[test]
fn lexing_errors_without_a_toml_message_still_say_what_is_wrong() {
    // Found by the `config` fuzz target: toml gives an empty message for a control character
    // in a comment.
    let e = err("#\0\n");
    assert_eq!((e.line, e.column), (1, 2), "{e}");
    assert!(e.message.contains("unexpected character"), "{e}");
}

#[test]
fn live_window_leaves_room_for_its_kernel_rule() {
    let modules = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[[module]]\nname = \"m{i}\"\nkind = \"traffic\"\n"))
            .collect()
    };
    let xdp = "[[source]]\ntype = \"xdp\"\ninterface = \"eth1\"\n";
    let trace = "[trace]\npath = \"/w\"\n";
    // 64 modules: fine without the window, or with it on a file source.
    assert!(Config::parse(&format!("{xdp}{}", modules(64)), "c.toml").is_ok());
    assert!(Config::parse(
        &format!(
            "[[source]]\ntype = \"file\"\npath = \"a.pcap\"\n{trace}{}",
            modules(64)
        ),
        "c.toml"
    )
    .is_ok());
    assert!(Config::parse(&format!("{xdp}{trace}{}", modules(63)), "c.toml").is_ok());
    let e = err(&format!("{xdp}{trace}{}", modules(64)));
    assert!(e.message.contains("at most 63 modules"), "{e}");
    // The error points at the 64th module (3 lines each, after 3 + 2 lines).
    assert_eq!(e.line, 5 + 63 * 3 + 1, "{e}");
}

/// `check_filters`: the filters of modules and of the trace window against another link type
/// than Ethernet, the error at the filter's position, naming the module and the source.
#[test]
fn filters_for_another_link_type() {
    use como_packet::LinkType;
    let text = "[trace]\nfilter = \"ip\"\n[[module]]\nname = \"v\"\nkind = \"traffic\"\nfilter = \"tcp or vlan 5\"\n";
    Config::parse(text, "t.toml").expect("every filter compiles for Ethernet");
    let e = Config::check_filters(text, "t.toml", LinkType::LinuxSll, "source 1 (file:a.pcap)")
        .expect_err("no vlan on Linux cooked captures");
    assert_eq!(e.line, 6, "{e}");
    assert!(
        e.message.starts_with(
            "module `v`: bad filter for link type LINUX_SLL of source 1 (file:a.pcap): "
        ),
        "{e}"
    );
    Config::check_filters(text, "t.toml", LinkType::Ethernet, "x").expect("Ethernet");
    let plain = text.replace(" or vlan 5", "");
    Config::check_filters(&plain, "t.toml", LinkType::LinuxSll, "x").expect("tcp, ip");
    let text = "[trace]\nfilter = \"ether src 00:11:22:33:44:55\"\n[[module]]\nname = \"v\"\nkind = \"traffic\"\n";
    let e = Config::check_filters(text, "t.toml", LinkType::Raw, "source 2 (file:b.pcap)")
        .expect_err("no ethernet addresses on raw IP");
    assert_eq!(e.line, 2, "{e}");
    assert!(
        e.message.starts_with("trace: bad filter for link type RAW"),
        "{e}"
    );
    // A window that is off is not checked.
    let off = text.replace("[trace]\n", "[trace]\nenabled = false\n");
    Config::check_filters(&off, "t.toml", LinkType::Raw, "x").expect("window off");
}
