//! `como reload [--server URL]`: asks a running live node to reload its configuration file
//! (`POST /reload`, as SIGHUP does) and prints what it did, the server's JSON (modules running
//! now, `kept` with their open interval, `added`, `removed`, `changed`, `tables_generation`).
//!
//! Exit status: 0 when the node reloaded; 2 when the configuration does not validate (the
//! node's `FILE:LINE:COL: message` on stderr, as `como validate` prints it; the node keeps its
//! running modules); 1 when the server cannot be reached or cannot reload (no live source, no
//! configuration file, another reload running, a failure applying it: the reason on stderr).

use std::io::{Read, Write};

use anyhow::{anyhow, Context};

use crate::Failure;

/// Arguments of `como reload`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReloadArgs {
    /// The node's query server.
    #[arg(long, default_value = "http://127.0.0.1:44444")]
    server: String,
}

/// Runs `como reload`.
pub(crate) fn run(args: &ReloadArgs) -> Result<(), Failure> {
    let url = format!("{}/reload", args.server.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&url)
        .send_empty()
        .with_context(|| format!("POST {url}"))
        .map_err(Failure::File)?;
    let status = resp.status().as_u16();
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .map_err(|e| Failure::File(anyhow!("reading the answer: {e}")))?;
    match status {
        200 => {
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Failure::File(e.into()))
        }
        400 => {
            eprintln!("{}", body.trim_end());
            Err(Failure::Reported(crate::EXIT_FILTER))
        }
        _ => Err(Failure::File(anyhow!("HTTP {status}: {}", body.trim()))),
    }
}
