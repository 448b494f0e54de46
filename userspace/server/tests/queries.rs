//! The query server over real HTTP on a daemon-like node (databases written by the test while
//! the server answers): the `max_queries` limit (503 + `Retry-After`, metrics, slots freed when
//! a client goes away) and chained queries that follow their source module's storage.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use como_config::Config;
use como_module::Format;
use como_runtime::{CollectSink, ModuleSpec, Options, PrintSink, TraceSource};
use como_server::{NodeState, ServedModule, Server};
use como_storage::Database;

fn trace(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/traces")
        .join(name)
}

/// `pkts`: a `trace` module (stores the packets); `web`: traffic of TCP packets, per second.
const MODULES: &str = r#"
[[module]]
name = "pkts"
kind = "trace"
interval = "1s"

[[module]]
name = "web"
kind = "traffic"
filter = "tcp"
interval = "1s"
"#;

/// A node serving `MODULES`, each over its own database in `dir` (the databases are returned
/// to be written by the test, as the daemon's storage thread would).
fn node(dir: &Path) -> (Arc<NodeState>, Config, Vec<Database>) {
    let conf = Config::parse(MODULES, "test.toml").expect("config");
    let mut dbs = Vec::new();
    let mut served = Vec::new();
    for m in &conf.modules {
        let db = Database::open(dir.join(&m.name), como_storage::Options::default()).expect("db");
        served.push(ServedModule {
            config: m.clone(),
            read: db.read_handle(),
        });
        dbs.push(db);
    }
    let node = como_config::Node {
        name: "t".into(),
        location: String::new(),
        db_path: dir.to_owned(),
    };
    let st = Arc::new(NodeState::new(node, served, Vec::new()).expect("state"));
    (st, conf, dbs)
}

fn spec(conf: &Config, name: &str) -> ModuleSpec {
    let m = conf
        .modules
        .iter()
        .find(|m| m.name == name)
        .expect("module");
    ModuleSpec {
        name: m.name.clone(),
        module: m.build().expect("module"),
        filter: m.filter.clone(),
        interval: m.interval,
    }
}

/// The stored records (ts, bytes) of module `name` run over `file`.
fn records_of(conf: &Config, name: &str, file: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut src = TraceSource::open(file).expect("trace");
    let opts = Options {
        workers: 1,
        ..Options::default()
    };
    let (_, sink) = como_runtime::run(
        vec![spec(conf, name)],
        &opts,
        &mut src,
        CollectSink::default(),
    )
    .expect("run");
    // Storage timestamps never go down (as the daemon's storage sink keeps them).
    let mut last = 0;
    sink.intervals
        .into_iter()
        .flat_map(|(_, _, recs)| recs)
        .map(|r| {
            last = r.ts_ns.max(last);
            (last, r.bytes)
        })
        .collect()
}

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Module `name` run over `file`, printed as CSV: what `como inline` prints.
fn inline_csv(conf: &Config, name: &str, file: &Path) -> String {
    let out = Buf::default();
    let m = conf
        .modules
        .iter()
        .find(|m| m.name == name)
        .expect("module");
    let printer = m
        .module
        .printer_with(
            Format::Csv,
            Box::new(out.clone()),
            &como_module::PrintParams::new(),
        )
        .expect("printer");
    let mut src = TraceSource::open(file).expect("trace");
    let opts = Options {
        workers: 1,
        ..Options::default()
    };
    como_runtime::run(
        vec![spec(conf, name)],
        &opts,
        &mut src,
        PrintSink::new(vec![printer]),
    )
    .expect("run");
    let bytes = out.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    String::from_utf8(bytes).expect("utf-8")
}

fn append(db: &mut Database, records: &[(u64, Vec<u8>)]) {
    for (ts, bytes) in records {
        db.append(*ts, bytes).expect("append");
    }
    db.sync().expect("sync");
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The value of an unlabelled metric in `/metrics`.
fn metric(base: &str, name: &str) -> u64 {
    let mut resp = agent()
        .get(format!("{base}/metrics"))
        .call()
        .expect("GET /metrics");
    let text = resp.body_mut().read_to_string().expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Reads `/metrics` until `como_queries_running` is `want` (a producer notices a client that
/// went away at its next look; this waits for that, not for a duration).
fn running_becomes(base: &str, want: u64) {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let now = metric(base, "como_queries_running");
        if now == want {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "como_queries_running stays at {now}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `max_queries` queries streaming, one more is refused with 503 and `Retry-After: 1`;
/// when a client goes away its producer ends and frees its place; `/metrics` counts both.
#[test]
fn max_queries_refuses_beyond_the_limit_and_frees_a_closed_stream() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (st, _conf, _dbs) = node(tmp.path());
    st.set_max_queries(3);
    let server =
        Server::start(Arc::clone(&st), "127.0.0.1:0".parse().expect("addr")).expect("server");
    let base = format!("http://{}", server.addr());
    // Streaming queries (the end of the range is in the future): two plain, one chained.
    let streaming = [
        "/web?time=-1h:%2B1h&format=csv",
        "/pkts?time=-1h:%2B1h&format=pcap",
        "/web?source=pkts&time=-1h:%2B1h&format=csv",
    ];
    let mut held = Vec::new();
    for q in streaming {
        let resp = agent().get(format!("{base}{q}")).call().expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{q}");
        held.push(resp);
    }
    assert_eq!(st.queries_running(), 3);
    let refuse = |q: &str| {
        let mut resp = agent().get(format!("{base}{q}")).call().expect("GET");
        assert_eq!(resp.status().as_u16(), 503, "{q}");
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.as_bytes().to_vec());
        assert_eq!(retry.as_deref(), Some(&b"1"[..]), "{q}");
        let body = resp.body_mut().read_to_string().expect("body");
        assert!(body.contains("max_queries") && body.contains('3'), "{body}");
    };
    // Queries over stored data and chained ones count the same.
    refuse("/web?wait=no");
    refuse("/web?source=pkts&wait=no");
    assert_eq!(metric(&base, "como_query_rejected_total"), 2);
    assert_eq!(metric(&base, "como_queries_running"), 3);
    // Bad queries are refused for what they are, not for the limit.
    let resp = agent()
        .get(format!("{base}/web?time=1"))
        .call()
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = agent().get(format!("{base}/nope")).call().expect("GET");
    assert_eq!(resp.status().as_u16(), 404);

    // The chained stream's client goes away: its producer ends, the next query is served.
    drop(held.pop());
    running_becomes(&base, 2);
    let mut resp = agent()
        .get(format!("{base}/web?wait=no&format=csv"))
        .call()
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.body_mut().read_to_string().expect("body"),
        "ts,pkts,bytes\n"
    );
    // Its place is free once its answer ended: a client's next query is not refused.
    assert_eq!(st.queries_running(), 2);
    // A plain stream's client goes away likewise.
    drop(held.pop());
    running_becomes(&base, 1);
    // The node's runtime ends: the last stream ends, and its place is freed.
    st.set_finished();
    let mut rest = Vec::new();
    for mut r in held {
        r.body_mut()
            .as_reader()
            .read_to_end(&mut rest)
            .expect("stream ends");
    }
    running_becomes(&base, 0);
    assert_eq!(metric(&base, "como_query_rejected_total"), 2);
    server.stop().expect("stop");
}

/// A chained query whose end is in the future follows its source module: records the source
/// stores after the query started are replayed into the chained module, whose intervals are
/// sent as they complete; the answer equals the module run over the whole original trace.
#[test]
fn chained_query_follows_records_stored_after_it_started() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (st, conf, mut dbs) = node(tmp.path());
    let file = trace("nDPI/teams.pcap");
    let records = records_of(&conf, "pkts", &file);
    let want = inline_csv(&conf, "web", &file);
    assert!(want.lines().count() > 20, "{want}");
    // The first 10 seconds of packets are stored before the query, the rest after.
    let first_ts = records.first().map(|r| r.0).expect("records");
    let cut = records
        .iter()
        .position(|r| r.0 >= first_ts + 10_000_000_000)
        .expect("a trace longer than 10 s");
    let (before, after) = records.split_at(cut);
    let pkts = dbs.first_mut().expect("pkts db");
    append(pkts, before);
    let server =
        Server::start(Arc::clone(&st), "127.0.0.1:0".parse().expect("addr")).expect("server");
    let base = format!("http://{}", server.addr());
    let mut resp = agent()
        .get(format!("{base}/web?source=pkts&time=@0:%2B1h&format=csv"))
        .call()
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = BufReader::new(resp.body_mut().as_reader());
    // The intervals of the first part arrive while the query still runs...
    let mut got = String::new();
    for _ in 0..2 {
        reader.read_line(&mut got).expect("a line");
    }
    assert_eq!(got.lines().next(), Some("ts,pkts,bytes"), "{got}");
    assert_eq!(got.lines().nth(1), want.lines().nth(1), "{got}");
    assert_eq!(st.queries_running(), 1);
    // ...then the source stores the rest, and the node's runtime ends.
    append(pkts, after);
    st.set_finished();
    reader.read_to_string(&mut got).expect("the rest");
    assert_eq!(got, want);
    assert_eq!(st.queries_running(), 0);
    // Without following (wait=no), the same answer from what is stored now.
    let mut resp = agent()
        .get(format!(
            "{base}/web?source=pkts&time=@0:%2B1h&format=csv&wait=no"
        ))
        .call()
        .expect("GET");
    assert_eq!(resp.body_mut().read_to_string().expect("body"), want);
    server.stop().expect("stop");
}
