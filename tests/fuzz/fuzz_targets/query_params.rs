//! Fuzz target `query_params`: the parameters of a query URL (`/<module>?time=-1h:0&format=csv
//! &topn=3`, `/trace?filter=tcp&start=..&end=..&format=pcapng`) through
//! `como_server::params::parse`, `params::parse_trace` and `params::parse_time_point` (both
//! sides of `time=A:B`, `start`, `end`), then every standard module's `printer_with` with the
//! parsed format and print-time parameters (what the query server does before it answers).
//!
//! Input: bytes 0..8 = "now" in ns (u64 little-endian), the rest = the query string as it
//! arrives in a URL (`k=v&k=v`, `+` and `%XX` decoded as a form, invalid UTF-8 replaced).
//!
//! Checked: nothing panics; an accepted query has `start_ns <= end_ns`, no time parameter
//! means everything up to now, a repeated parameter is refused, and every parameter that is
//! not `time`/`start`/`end`/`format`/`wait`/`source` is handed to the module as a print
//! parameter. For `/trace`: an accepted query has `start_ns <= end_ns`, only the parameters
//! `filter`/`time`/`start`/`end`/`format`, each once, the filter given (or none), a filter that
//! compiles, and no time parameter means every packet (`0..u64::MAX`); a refusal has a message.
#![no_main]

use como_server::params;
use libfuzzer_sys::fuzz_target;

/// Form decoding: `+` is a space, `%XX` a byte (a bad escape stays as it is).
fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const KNOWN: [&str; 6] = ["time", "start", "end", "format", "wait", "source"];

const TRACE_KNOWN: [&str; 5] = ["filter", "time", "start", "end", "format"];

/// `/trace`'s parameters: what an accepted query must satisfy.
fn check_trace(pairs: &[(String, String)], now: u64, twice: bool) {
    let t = match params::parse_trace(pairs, now) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.0.is_empty(), "empty error message");
            return;
        }
    };
    assert!(!twice, "/trace: a repeated parameter was accepted: {pairs:?}");
    assert!(
        pairs.iter().all(|(k, _)| TRACE_KNOWN.contains(&k.as_str())),
        "/trace: an unknown parameter was accepted: {pairs:?}"
    );
    assert!(t.start_ns <= t.end_ns, "/trace: range {t:?} accepted");
    let filter = pairs.iter().find(|(k, _)| k == "filter").map(|(_, v)| v.as_str());
    assert_eq!(t.filter, filter.unwrap_or_default(), "/trace filter");
    if let Err(e) = ebpf_filters::compile(&t.filter, como_packet::LinkType::Ethernet) {
        assert_eq!(
            e.kind,
            ebpf_filters::ErrorKind::LinkType,
            "/trace: accepted a filter that does not compile: {:?}: {e}",
            t.filter
        );
    }
    if !pairs
        .iter()
        .any(|(k, _)| matches!(k.as_str(), "time" | "start" | "end"))
    {
        assert_eq!((t.start_ns, t.end_ns), (0, u64::MAX), "/trace: no range given");
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((now, query)) = input.split_first_chunk::<8>() else {
        return;
    };
    let now = u64::from_le_bytes(*now);
    let pairs: Vec<(String, String)> = query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (
                decode(p.get(..i).unwrap_or_default()),
                decode(p.get(i + 1..).unwrap_or_default()),
            ),
            None => (decode(p), String::new()),
        })
        .collect();
    for (_, v) in &pairs {
        let _ = params::parse_time_point(v, now);
        if let Some((a, b)) = v.split_once(':') {
            let _ = params::parse_time_point(a, now);
            let _ = params::parse_time_point(b, now);
        }
        let _ = como_module::parse_duration(v);
    }
    let twice = pairs
        .iter()
        .enumerate()
        .any(|(i, (k, _))| pairs.iter().skip(i + 1).any(|(o, _)| o == k));
    check_trace(&pairs, now, twice);
    let q = match params::parse(&pairs, now) {
        Ok(q) => q,
        Err(e) => {
            assert!(!e.0.is_empty(), "empty error message");
            return;
        }
    };
    assert!(!twice, "a repeated parameter was accepted: {pairs:?}");
    assert!(
        q.start_ns <= q.end_ns,
        "range {}..{} accepted: {pairs:?}",
        q.start_ns,
        q.end_ns
    );
    if !pairs
        .iter()
        .any(|(k, _)| matches!(k.as_str(), "time" | "start" | "end"))
    {
        assert_eq!(
            (q.start_ns, q.end_ns),
            (0, now),
            "no range given: {pairs:?}"
        );
    }
    for (k, v) in &pairs {
        if !KNOWN.contains(&k.as_str()) {
            assert_eq!(q.print.get(k), Some(v), "print parameter {k:?} lost");
        }
    }
    assert_eq!(
        q.print.len(),
        pairs
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .count(),
        "print parameters: {pairs:?}"
    );
    for kind in como_modules::KINDS {
        let Ok(m) = como_modules::build(kind, None) else {
            continue;
        };
        let out: Box<dyn std::io::Write + Send> = Box::new(Vec::<u8>::new());
        if let Ok(p) = m.printer_with(q.format, out, &q.print) {
            let _ = p.finish();
        }
    }
});
