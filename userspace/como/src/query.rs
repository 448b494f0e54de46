//! `como query [--server URL] MODULE [--time A:B] [--format F] [k=v ...]`: asks a running node
//! over HTTP and copies the answer to stdout as it arrives (streamed answers included).
//!
//! The HTTP client is `ureq`: small, blocking (no async runtime in the CLI for one request),
//! rustls-based, maintained. Exit status: 0 on success; 1 when the server cannot be reached or
//! answers an HTTP error (its reason, the body, on stderr); 2 for bad usage.

use std::io::{self, Write};

use anyhow::{anyhow, Context};

use crate::Failure;

/// Arguments of `como query`.
#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// The node's query server.
    #[arg(long, default_value = "http://127.0.0.1:44444")]
    server: String,
    /// The module (its configured name).
    #[arg(value_name = "MODULE")]
    module: String,
    /// Time range A:B (each side 0, -1h30m, +50s, @unix or @yyyymmddhhmmss).
    #[arg(long, allow_hyphen_values = true)]
    time: Option<String>,
    /// Output format: json, csv, pretty, plain, gnuplot (pcap for `trace`).
    #[arg(long)]
    format: Option<String>,
    /// Other query parameters as k=v (start, end, wait, source, print parameters such as topn).
    #[arg(value_name = "K=V", allow_hyphen_values = true)]
    params: Vec<String>,
}

/// Runs `como query`.
pub(crate) fn run(args: &QueryArgs) -> Result<(), Failure> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(t) = &args.time {
        pairs.push(("time".into(), t.clone()));
    }
    if let Some(f) = &args.format {
        pairs.push(("format".into(), f.clone()));
    }
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::Filter(anyhow!("parameter `{p}` is not k=v")))?;
        pairs.push((k.to_owned(), v.to_owned()));
    }
    let url = format!(
        "{}/{}",
        args.server.trim_end_matches('/'),
        args.module.trim_start_matches('/')
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&url);
    for (k, v) in &pairs {
        req = req.query(k, v);
    }
    let mut resp = req
        .call()
        .with_context(|| format!("GET {url}"))
        .map_err(Failure::File)?;
    let status = resp.status();
    let mut body = resp.body_mut().as_reader();
    if !status.is_success() {
        let mut text = String::new();
        let _ = io::Read::read_to_string(&mut body, &mut text);
        return Err(Failure::File(anyhow!(
            "HTTP {}: {}",
            status.as_u16(),
            text.trim()
        )));
    }
    let mut out = io::stdout().lock();
    match io::copy(&mut body, &mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(Failure::File(anyhow!("reading the answer: {e}"))),
    }
    out.flush()
        .or_else(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| Failure::File(e.into()))
}
