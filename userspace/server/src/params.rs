//! CoMo's query parameters: `time=A:B`, `start`/`end`, `format`, `wait`, `source`, and the
//! print-time parameters passed to the module.
//!
//! Each side of `time=A:B` is one of: `0` (now), `-1h30m` / `+50s` (relative to now, in
//! `como_module::parse_duration`'s syntax), `@1700000000` or `@1700000000.25` (Unix seconds),
//! `@20231114221320` (UTC, `yyyymmddhhmmss`: exactly 14 digits). `start` and `end` are Unix
//! seconds (fractions allowed). With none of them the range is everything stored up to now.
//! A `+` written unencoded in a URL arrives as a space: a leading space reads as `+`.
//!
//! `/trace` ([`parse_trace`]) takes `filter` (tcpdump's syntax), `format` (`pcap`, `pcapng`) and
//! the same time range (`time=A:B` or `start`/`end`; with none of them, every stored packet).
//! Every parameter may be given once; an error names the parameter.

use std::collections::BTreeMap;

use como_module::{parse_duration, Format, PrintParams};

/// A bad query parameter: the reason goes back in a 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryParams {
    /// First nanosecond asked for (inclusive).
    pub start_ns: u64,
    /// End (exclusive), ns.
    pub end_ns: u64,
    /// Output format.
    pub format: Format,
    /// Whether to stream records of intervals that complete later (default: yes, when `end`
    /// is in the future).
    pub wait: bool,
    /// Run the module over this other module's stored records (chaining).
    pub source: Option<String>,
    /// Everything else: print-time parameters for the module.
    pub print: PrintParams,
}

const NS: u64 = 1_000_000_000;

fn secs_to_ns(s: f64, what: &str) -> Result<u64, ParamError> {
    if !s.is_finite() || s < 0.0 || s >= (u64::MAX / NS) as f64 {
        return Err(ParamError(format!("{what}: out of range")));
    }
    Ok((s * NS as f64).round() as u64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `yyyymmddhhmmss` (UTC) into ns since the epoch.
fn parse_datetime(s: &str) -> Result<u64, ParamError> {
    let bad = || ParamError(format!("bad date `@{s}` (expected @yyyymmddhhmmss, UTC)"));
    let field = |r: std::ops::Range<usize>| -> Result<u32, ParamError> {
        s.get(r).and_then(|v| v.parse().ok()).ok_or_else(bad)
    };
    let (y, mo, d, h, mi, se) = (
        i64::from(field(0..4)?),
        field(4..6)?,
        field(6..8)?,
        field(8..10)?,
        field(10..12)?,
        field(12..14)?,
    );
    if y < 1970 || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return Err(bad());
    }
    if h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se);
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    secs.checked_mul(NS).ok_or_else(bad)
}

/// Parses one side of `time=A:B` relative to `now_ns`.
pub fn parse_time_point(s: &str, now_ns: u64) -> Result<u64, ParamError> {
    if s == "0" {
        return Ok(now_ns);
    }
    if let Some(abs) = s.strip_prefix('@') {
        if abs.len() == 14 && abs.bytes().all(|b| b.is_ascii_digit()) {
            return parse_datetime(abs);
        }
        let secs: f64 = abs.parse().map_err(|_| {
            ParamError(format!("bad time `{s}` (@unix seconds or @yyyymmddhhmmss)"))
        })?;
        return secs_to_ns(secs, s);
    }
    let (sign, rel) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        // ` `: an unencoded `+` in a URL (`time=-1h:+1h`) arrives as a space.
        Some(b'+' | b' ') => (1, &s[1..]),
        _ => {
            return Err(ParamError(format!(
                "bad time `{s}` (0, -1h30m, +50s, @unix or @yyyymmddhhmmss)"
            )))
        }
    };
    let d = parse_duration(rel).map_err(|e| ParamError(format!("bad time `{s}`: {e}")))?;
    let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Ok(if sign < 0 {
        now_ns.saturating_sub(d)
    } else {
        now_ns.saturating_add(d)
    })
}

/// The parameters of a query as a map, each given once.
fn once(pairs: &[(String, String)]) -> Result<BTreeMap<&str, &str>, ParamError> {
    let mut seen = BTreeMap::new();
    for (k, v) in pairs {
        if seen.insert(k.as_str(), v.as_str()).is_some() {
            return Err(ParamError(format!("parameter `{k}` given twice")));
        }
    }
    Ok(seen)
}

/// Takes the time range out of `seen`: `time=A:B`, or `start`/`end` in Unix seconds; the range
/// is `0..default_end` when none is given.
fn range(
    seen: &mut BTreeMap<&str, &str>,
    now_ns: u64,
    default_end: u64,
) -> Result<(u64, u64), ParamError> {
    let mut start_ns = 0;
    let mut end_ns = default_end;
    if let Some(t) = seen.remove("time") {
        if seen.contains_key("start") || seen.contains_key("end") {
            return Err(ParamError(
                "give either time= or start=/end=, not both".into(),
            ));
        }
        let (a, b) = t
            .split_once(':')
            .ok_or_else(|| ParamError(format!("bad time `{t}` (expected A:B)")))?;
        start_ns = parse_time_point(a, now_ns)?;
        end_ns = parse_time_point(b, now_ns)?;
    }
    if let Some(s) = seen.remove("start") {
        let v: f64 = s
            .parse()
            .map_err(|_| ParamError(format!("bad start `{s}` (Unix seconds)")))?;
        start_ns = secs_to_ns(v, "start")?;
    }
    if let Some(e) = seen.remove("end") {
        let v: f64 = e
            .parse()
            .map_err(|_| ParamError(format!("bad end `{e}` (Unix seconds)")))?;
        end_ns = secs_to_ns(v, "end")?;
    }
    if end_ns < start_ns {
        return Err(ParamError(
            "the end of the time range is before its start".into(),
        ));
    }
    Ok((start_ns, end_ns))
}

/// Parses a query's parameters (`pairs` in URL order, already percent-decoded).
pub fn parse(pairs: &[(String, String)], now_ns: u64) -> Result<QueryParams, ParamError> {
    let mut seen = once(pairs)?;
    let (start_ns, end_ns) = range(&mut seen, now_ns, now_ns)?;
    let format = match seen.remove("format") {
        None => Format::Pretty,
        Some(f) => f.parse().map_err(|e| ParamError(format!("format: {e}")))?,
    };
    let wait = match seen.remove("wait") {
        None | Some("yes") => true,
        Some("no") => false,
        Some(w) => return Err(ParamError(format!("bad wait `{w}` (yes or no)"))),
    };
    let source = seen.remove("source").map(str::to_owned);
    let print = seen
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(QueryParams {
        start_ns,
        end_ns,
        format,
        wait,
        source,
        print,
    })
}

/// The parameters of a `/trace` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParams {
    /// Filter expression (tcpdump's syntax; empty: every packet). It compiles.
    pub filter: String,
    /// First nanosecond asked for (inclusive).
    pub start_ns: u64,
    /// End (exclusive), ns; `u64::MAX` (every packet from `start_ns` on) when no end is given.
    pub end_ns: u64,
    /// Output file format.
    pub format: como_window::OutFormat,
}

/// Parses the parameters of `/trace` (`pairs` in URL order, already percent-decoded): `filter`,
/// `format`, `time=A:B` or `start`/`end`. The filter is compiled (for Ethernet) to refuse a
/// bad expression here, with the parser's reason.
pub fn parse_trace(pairs: &[(String, String)], now_ns: u64) -> Result<TraceParams, ParamError> {
    let mut seen = once(pairs)?;
    let (start_ns, end_ns) = range(&mut seen, now_ns, u64::MAX)?;
    let format = match seen.remove("format") {
        None => como_window::OutFormat::Pcap,
        Some(f) => f.parse().map_err(|e| ParamError(format!("format: {e}")))?,
    };
    let filter = seen.remove("filter").unwrap_or_default().to_owned();
    if let Some(other) = seen.keys().next() {
        return Err(ParamError(format!(
            "unknown parameter `{other}` (filter, time, start, end, format)"
        )));
    }
    if let Err(e) = ebpf_filters::compile(&filter, como_packet::LinkType::Ethernet) {
        // An expression for another link type is the window's to judge per packet.
        if e.kind != ebpf_filters::ErrorKind::LinkType {
            return Err(ParamError(format!("bad filter: {e}")));
        }
    }
    Ok(TraceParams {
        filter,
        start_ns,
        end_ns,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000 * NS;

    fn p(q: &[(&str, &str)]) -> Result<QueryParams, ParamError> {
        let v: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        parse(&v, NOW)
    }

    #[test]
    fn time_points() {
        assert_eq!(parse_time_point("0", NOW), Ok(NOW));
        assert_eq!(parse_time_point("-1h30m", NOW), Ok(NOW - 5400 * NS));
        assert_eq!(parse_time_point("+50s", NOW), Ok(NOW + 50 * NS));
        assert_eq!(parse_time_point(" 50s", NOW), Ok(NOW + 50 * NS));
        assert_eq!(parse_time_point("@1234", NOW), Ok(1234 * NS));
        assert_eq!(parse_time_point("@1234.5", NOW), Ok(1234 * NS + NS / 2));
        // date -u -d @1700000000 +%Y%m%d%H%M%S → 20231114221320
        assert_eq!(parse_time_point("@20231114221320", NOW), Ok(NOW));
        assert_eq!(
            parse_time_point("@20000229000000", NOW),
            Ok(951_782_400 * NS)
        );
        for bad in [
            "",
            "5",
            "-5x",
            "@",
            "@abc",
            "@20231314221320",
            "@20230230000000",
            "x",
        ] {
            assert!(parse_time_point(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn query() {
        let q = p(&[("time", "-1h:0"), ("format", "csv"), ("topn", "3")]).expect("ok");
        assert_eq!((q.start_ns, q.end_ns), (NOW - 3600 * NS, NOW));
        assert_eq!(q.format, Format::Csv);
        assert!(q.wait);
        assert_eq!(q.print.get("topn").map(String::as_str), Some("3"));
        let q = p(&[("start", "10"), ("end", "20.5"), ("wait", "no")]).expect("ok");
        assert_eq!(
            (q.start_ns, q.end_ns, q.wait),
            (10 * NS, 20 * NS + NS / 2, false)
        );
        let q = p(&[]).expect("ok");
        assert_eq!((q.start_ns, q.end_ns, q.format), (0, NOW, Format::Pretty));
        for bad in [
            vec![("time", "0")],
            vec![("time", "0:-1h")],
            vec![("time", "-1h:0"), ("start", "1")],
            vec![("format", "xml")],
            vec![("wait", "maybe")],
            vec![("start", "yesterday")],
            vec![("end", "-5")],
            vec![("format", "csv"), ("format", "json")],
        ] {
            assert!(p(&bad).is_err(), "{bad:?}");
        }
    }

    fn t(q: &[(&str, &str)]) -> Result<TraceParams, ParamError> {
        let v: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        parse_trace(&v, NOW)
    }

    #[test]
    fn trace_query() {
        let q = t(&[]).expect("ok");
        assert_eq!(
            q,
            TraceParams {
                filter: String::new(),
                start_ns: 0,
                end_ns: u64::MAX,
                format: como_window::OutFormat::Pcap,
            }
        );
        let q = t(&[
            ("filter", "udp port 53"),
            ("time", "-10m:0"),
            ("format", "pcapng"),
        ])
        .expect("ok");
        assert_eq!(
            (q.filter.as_str(), q.start_ns, q.end_ns, q.format),
            (
                "udp port 53",
                NOW - 600 * NS,
                NOW,
                como_window::OutFormat::PcapNg
            )
        );
        let q = t(&[("start", "10"), ("end", "20.5")]).expect("ok");
        assert_eq!((q.start_ns, q.end_ns), (10 * NS, 20 * NS + NS / 2));
        for (bad, names) in [
            (vec![("filter", "tcp and")], "filter"),
            (vec![("format", "erf")], "format"),
            (vec![("time", "1")], "time"),
            (vec![("color", "red")], "color"),
            (vec![("start", "5"), ("end", "1")], "end"),
            (vec![("start", "@5")], "start"),
            (vec![("time", "-1h:0"), ("end", "1")], "time="),
            (vec![("filter", "tcp"), ("filter", "udp")], "filter"),
        ] {
            match t(&bad) {
                Ok(q) => panic!("{bad:?} accepted: {q:?}"),
                Err(e) => assert!(e.0.contains(names), "{bad:?}: {e}"),
            }
        }
    }
}
