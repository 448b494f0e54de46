//! The query server over real HTTP on a daemon-like node (databases written by the test while
//! the server answers): the `max_queries` limit (503 + `Retry-After`, metrics, slots freed when
//! a client goes away), chained queries that follow their source module's storage, streaming
//! queries that go on across a replacement of the module set (a reload), and `POST /reload`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use como_config::Config;
use como_module::Format;
use como_runtime::{CollectSink, ModuleSpec, Options, PrintSink, TraceSource};
use como_server::{NodeState, ReloadError, ReloadReport, ReloadRequest, ServedModule, Server};
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
    node_of(dir, MODULES)
}

/// A node serving the modules of configuration `text`, each over its own database in `dir`
/// (returned, as for [`node`]).
fn node_of(dir: &Path, text: &str) -> (Arc<NodeState>, Config, Vec<Database>) {
    let (conf, served, dbs) = served(dir, text);
    let node = como_config::Node {
        name: "t".into(),
        location: String::new(),
        db_path: dir.to_owned(),
    };
    let st = Arc::new(NodeState::new(node, served, Vec::new()).expect("state"));
    (st, conf, dbs)
}

/// The modules of configuration `text` over their databases in `dir` (opened: the writers
/// are returned, as the daemon's storage holds them).
fn served(dir: &Path, text: &str) -> (Config, Vec<ServedModule>, Vec<Database>) {
    let conf = Config::parse(text, "test.toml").expect("config");
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
    (conf, served, dbs)
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

/// Before a reload: `flows` (several records per interval), `gone` (removed by the reload),
/// `pkts` and `web` as in [`MODULES`].
const BEFORE_RELOAD: &str = r#"
[[module]]
name = "pkts"
kind = "trace"
interval = "1s"

[[module]]
name = "web"
kind = "traffic"
filter = "tcp"
interval = "1s"

[[module]]
name = "flows"
kind = "tuple"
interval = "1s"

[[module]]
name = "gone"
kind = "traffic"
filter = "udp"
interval = "1s"
"#;

/// After the reload: `gone` is removed, `fresh` added, the others kept.
const AFTER_RELOAD: &str = r#"
[[module]]
name = "pkts"
kind = "trace"
interval = "1s"

[[module]]
name = "web"
kind = "traffic"
filter = "tcp"
interval = "1s"

[[module]]
name = "fresh"
kind = "traffic"
filter = "icmp"
interval = "1s"

[[module]]
name = "flows"
kind = "tuple"
interval = "1s"
"#;

/// Stored records: (timestamp, bytes).
type Records = [(u64, Vec<u8>)];

/// The records of `records` before `cut_ns`, and the rest.
fn split_at_ts(records: &Records, cut_ns: u64) -> (&Records, &Records) {
    let cut = records
        .iter()
        .position(|r| r.0 >= cut_ns)
        .expect("records after the cut");
    records.split_at(cut)
}

/// `/metrics` as text.
fn metrics_text(base: &str) -> String {
    let mut resp = agent()
        .get(format!("{base}/metrics"))
        .call()
        .expect("GET /metrics");
    resp.body_mut().read_to_string().expect("text")
}

/// A reload replaces the module set under one running server (as the live daemon does: the
/// old databases' writers closed, the same folders opened again for the new set): streaming
/// queries of kept modules, plain and chained, go on and deliver every record once, from
/// before and after the reload; one of a removed module ends with what it had; `/modules`,
/// `/status` and `/metrics` show the new set at once (the removed module's series dropped,
/// the kept modules' going on).
#[test]
fn streaming_queries_go_on_across_a_module_set_replacement() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (st, conf, dbs) = node_of(tmp.path(), BEFORE_RELOAD);
    let file = trace("nDPI/teams.pcap");
    let pkts = records_of(&conf, "pkts", &file);
    let flows = records_of(&conf, "flows", &file);
    let gone = records_of(&conf, "gone", &file);
    let want_flows = inline_csv(&conf, "flows", &file);
    let want_web = inline_csv(&conf, "web", &file);
    // The reload comes after an interval (5 s or more into the trace) with several `flows`
    // records: the reader moving to the new database starts at the timestamp of the last
    // record it sent, so the records of that interval are read again and must be skipped.
    let from_ns = pkts.first().map(|r| r.0).expect("records") + 5_000_000_000;
    let last_ts = flows
        .windows(2)
        .find_map(|w| (w[0].0 >= from_ns && w[0].0 == w[1].0).then_some(w[0].0))
        .expect("an interval with several flows");
    let cut_ns = last_ts + 1;
    let (flows_before, flows_after) = split_at_ts(&flows, cut_ns);
    let want_gone = {
        let all = inline_csv(&conf, "gone", &file);
        let n = 1 + gone.iter().filter(|r| r.0 < cut_ns).count();
        all.lines()
            .take(n)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let mut dbs = dbs.into_iter();
    let (mut pkts_db, web_db, mut flows_db, mut gone_db) = (
        dbs.next().expect("pkts"),
        dbs.next().expect("web"),
        dbs.next().expect("flows"),
        dbs.next().expect("gone"),
    );
    let (pkts_before, pkts_after) = split_at_ts(&pkts, cut_ns);
    append(&mut pkts_db, pkts_before);
    append(&mut flows_db, flows_before);
    append(&mut gone_db, split_at_ts(&gone, cut_ns).0);
    st.metrics.add_module_records(1, 7);
    st.metrics.add_module_records(3, 5);
    let server =
        Server::start(Arc::clone(&st), "127.0.0.1:0".parse().expect("addr")).expect("server");
    let base = format!("http://{}", server.addr());
    let open = |q: &str| {
        let resp = agent().get(format!("{base}{q}")).call().expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{q}");
        BufReader::new(resp.into_body().into_reader())
    };
    let mut streams = [
        (
            "flows",
            open("/flows?time=@0:%2B1h&format=csv"),
            String::new(),
        ),
        (
            "web",
            open("/web?source=pkts&time=@0:%2B1h&format=csv"),
            String::new(),
        ),
        (
            "gone",
            open("/gone?time=@0:%2B1h&format=csv"),
            String::new(),
        ),
    ];
    // Each stream has sent its first record: its producer runs, over the first set.
    for (name, r, got) in &mut streams {
        for _ in 0..2 {
            r.read_line(got).expect("a line");
        }
        assert_eq!(got.lines().count(), 2, "{name}: {got}");
    }
    assert_eq!(st.queries_running(), 3);

    // The reload: the writers of the first set are closed, the same folders opened again.
    drop((pkts_db, web_db, flows_db, gone_db));
    let (_, served, dbs) = served(tmp.path(), AFTER_RELOAD);
    assert_eq!(st.replace_modules(served), 1);
    let mut modules = agent().get(format!("{base}/modules")).call().expect("GET");
    let list: serde_json::Value =
        serde_json::from_str(&modules.body_mut().read_to_string().expect("body")).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["pkts", "web", "fresh", "flows"]);
    let mut status = agent().get(format!("{base}/status")).call().expect("GET");
    let status: serde_json::Value =
        serde_json::from_str(&status.body_mut().read_to_string().expect("body")).expect("json");
    let names: Vec<&str> = status["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["pkts", "web", "fresh", "flows"]);
    let m = metrics_text(&base);
    assert!(!m.contains("module=\"gone\""), "{m}");
    assert!(
        m.contains("como_module_records_total{module=\"web\"} 7"),
        "{m}"
    );
    assert!(
        m.contains("como_module_records_total{module=\"fresh\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("como_module_stored_bytes{module=\"fresh\"} 0"),
        "{m}"
    );
    // Indices are the new set's: `fresh` is 2.
    st.metrics.add_module_records(2, 3);
    assert!(
        metrics_text(&base).contains("como_module_records_total{module=\"fresh\"} 3"),
        "{m}"
    );
    let resp = agent()
        .get(format!("{base}/gone?wait=no"))
        .call()
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 404);

    // The new set stores the rest; the node's runtime ends.
    let mut dbs = dbs.into_iter();
    let (mut pkts_db, _web_db, _fresh_db, mut flows_db) = (
        dbs.next().expect("pkts"),
        dbs.next().expect("web"),
        dbs.next().expect("fresh"),
        dbs.next().expect("flows"),
    );
    append(&mut pkts_db, pkts_after);
    append(&mut flows_db, flows_after);
    st.set_finished();
    for (name, r, got) in &mut streams {
        r.read_to_string(got).expect("the rest");
        let want = match *name {
            "flows" => &want_flows,
            "web" => &want_web,
            _ => &want_gone,
        };
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(st.queries_running(), 0);
    server.stop().expect("stop");
}

/// POST `path` with an empty body: status and body.
fn post(base: &str, path: &str) -> (u16, String) {
    let mut resp = agent()
        .post(format!("{base}{path}"))
        .send_empty()
        .expect("POST");
    let body = resp.body_mut().read_to_string().expect("body");
    (resp.status().as_u16(), body)
}

/// A `POST /reload` that timed out (504) leaves its reload to the node: further `POST /reload`s
/// are refused (409) and none reaches the node until it has answered (or dropped) the first;
/// then the next is taken.
#[test]
fn a_timed_out_reload_holds_the_node_until_it_is_done() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (st, _conf, _dbs) = node(tmp.path());
    let server =
        Server::start(Arc::clone(&st), "127.0.0.1:0".parse().expect("addr")).expect("server");
    let base = format!("http://{}", server.addr());
    let (tx, requests) = std::sync::mpsc::channel::<ReloadRequest>();
    st.set_reloader(tx);
    st.set_reload_timeout(Duration::from_millis(300));

    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("goes on in the node"), "{body}");
    let first = requests
        .try_recv()
        .expect("the first request reached the node");
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already running"), "{body}");
    assert!(
        requests.try_recv().is_err(),
        "a second reload reached the node while the first ran"
    );

    // The node finishes the first one (its client is gone): the next is taken and answered.
    first.answer(Ok(ReloadReport::default()));
    let daemon = std::thread::spawn(move || {
        let report = ReloadReport {
            tables_generation: 4,
            ..ReloadReport::default()
        };
        requests.recv().expect("a request").answer(Ok(report));
        // The next one is dropped unanswered (a node stopping): that frees the node too.
        drop(requests.recv().expect("a request"));
        requests
    });
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["tables_generation"], 4);
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 503, "{body}");
    let requests = daemon.join().expect("daemon thread");
    let waiting = std::thread::spawn(move || {
        requests
            .recv()
            .map(|r| r.answer(Ok(ReloadReport::default())))
    });
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 200, "{body}");
    waiting.join().expect("thread").expect("a request");
    server.stop().expect("stop");
}

/// `POST /reload` hands a request to the daemon's loop (here a thread standing for it) and
/// answers with its outcome: 200 and the report as JSON, 400 with the configuration error,
/// 500 when applying failed; 409 while another reload runs and when the node cannot reload
/// (the reason in the body); 503 once the loop is gone.
#[test]
fn post_reload_answers_what_the_daemon_loop_did() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (st, _conf, _dbs) = node(tmp.path());
    let server =
        Server::start(Arc::clone(&st), "127.0.0.1:0".parse().expect("addr")).expect("server");
    let base = format!("http://{}", server.addr());
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no live source"), "{body}");

    let (tx, requests) = std::sync::mpsc::channel::<ReloadRequest>();
    st.set_reloader(tx);
    let report = ReloadReport {
        modules: vec!["pkts".into(), "web".into(), "dns".into()],
        kept: vec!["pkts".into()],
        added: vec!["dns".into()],
        removed: vec!["old".into()],
        changed: vec!["web".into()],
        tables_generation: 3,
    };
    let (got, seen) = std::sync::mpsc::channel::<()>();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let answered = report.clone();
    let daemon = std::thread::spawn(move || {
        // The first request waits until the test has seen a second one refused.
        let first = requests.recv().expect("a request");
        got.send(()).expect("test");
        wait.recv().expect("go");
        first.answer(Ok(answered));
        let invalid = "live.toml:7:10: module `dns`: unknown module kind `nosuch`";
        requests
            .recv()
            .expect("a request")
            .answer(Err(ReloadError::Invalid(invalid.into())));
        requests
            .recv()
            .expect("a request")
            .answer(Err(ReloadError::Failed("installing the tables: no".into())));
    });
    let first = {
        let base = base.clone();
        std::thread::spawn(move || post(&base, "/reload"))
    };
    seen.recv().expect("the first request reached the loop");
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already running"), "{body}");
    go.send(()).expect("daemon");
    let (code, body) = first.join().expect("first POST");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v, serde_json::to_value(&report).expect("json"));
    assert_eq!(v["tables_generation"], 3);
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body.trim(),
        "live.toml:7:10: module `dns`: unknown module kind `nosuch`"
    );
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 500, "{body}");
    daemon.join().expect("daemon thread");
    // The loop is gone (its receiver dropped): no reload.
    let (code, body) = post(&base, "/reload");
    assert_eq!(code, 503, "{body}");
    server.stop().expect("stop");
}
