//! `como validate [-c FILE]`: checks a configuration file (syntax, unknown fields, durations,
//! sizes, module kinds and args, filters) and prints `ok`, or `FILE:LINE:COL: message` on stderr
//! with exit status 2. Without `-c` it checks the embedded default configuration.
//!
//! Filters are checked for Ethernet (the link type of live sources), and for the link type of
//! each `[[source]]` file (its first interface, read with `como_tracefile`): an expression
//! tcpdump refuses for that link type (`vlan` on Linux cooked captures, `ether host` on raw
//! IP) is reported at the filter's line and column, naming the source. A file that cannot be
//! read is a warning on stderr (it may not exist yet): its link type is not checked.

use std::path::{Path, PathBuf};

use como_config::{Config, ConfigError, SourceKind};

use crate::Failure;

/// Arguments of `como validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// Configuration file (TOML); without it the embedded default configuration.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs `como validate`.
pub(crate) fn run(args: &ValidateArgs) -> Result<(), Failure> {
    let result = match &args.config {
        Some(p) => Config::load(p).and_then(|c| check_file_sources(&c, p)),
        None => Config::default_config().map(|_| ()),
    };
    match result {
        Ok(_) => {
            println!("ok");
            Ok(())
        }
        Err(e) => {
            // `FILE:LINE:COL: message` at the start of the line, as compilers print it.
            eprintln!("{e}");
            Err(Failure::Reported(crate::EXIT_FILTER))
        }
    }
}

/// Checks the filters of `config` (read from `path`) for the link type of each file source
/// that is not Ethernet (Ethernet is checked by [`Config::parse`]).
fn check_file_sources(config: &Config, path: &Path) -> Result<(), ConfigError> {
    let files: Vec<_> = config
        .sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.kind {
            SourceKind::File { path, .. } => Some((i + 1, s.name(), path)),
            SourceKind::Xdp(_) => None,
        })
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let (file, text) = Config::read_text(path)?;
    for (n, name, trace) in files {
        let link = match como_tracefile::TraceReader::open(trace) {
            Ok(r) => r.link_type(),
            Err(e) => {
                eprintln!(
                    "warning: source {n} ({name}): {e}; its filters are not checked for its link type"
                );
                continue;
            }
        };
        if link != como_packet::LinkType::Ethernet {
            Config::check_filters(&text, &file, link, &format!("source {n} ({name})"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traces() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/traces")
    }

    /// A configuration reading `trace`, with one module filtered by `filter` (on line 7).
    fn check(trace: &str, filter: &str) -> Result<(), ConfigError> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        let text = format!(
            "[[source]]\ntype = \"file\"\npath = {:?}\n\n[[module]]\nname = \"m\"\nfilter = {filter:?}\nkind = \"traffic\"\n",
            traces().join(trace)
        );
        std::fs::write(&path, text).expect("write");
        let config = Config::load(&path)?;
        check_file_sources(&config, &path)
    }

    /// tcpdump refuses `vlan` on Linux cooked captures and `ether host` on raw IP
    /// (`tcpdump -r FILE EXPR`: "no VLAN support for Linux cooked v1", "ethernet addresses
    /// supported only on ..."); both compile for Ethernet, so only the file's link type finds
    /// them.
    #[test]
    fn filters_are_checked_for_the_link_type_of_file_sources() {
        let sll = "libtrace/100_sll.pcap";
        let raw = "tcpdump/LINKTYPE_RAW_ipv4.pcap";
        let eth = "nDPI/teams.pcap";
        let e = check(sll, "tcp or vlan").expect_err("vlan on LINUX_SLL");
        assert_eq!((e.line, e.column), (7, 18), "{e}");
        assert!(e.message.contains("module `m`"), "{e}");
        assert!(e.message.contains("LINUX_SLL"), "{e}");
        assert!(e.message.contains("source 1"), "{e}");
        let e = check(raw, "ether host 00:11:22:33:44:55").expect_err("ether host on RAW");
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.contains("RAW"), "{e}");
        for (trace, filter) in [(sll, "tcp port 80"), (raw, "ip"), (eth, "vlan"), (eth, "")] {
            assert!(check(trace, filter).is_ok(), "{trace} {filter}");
        }
        // A file that is not there yet is not an error.
        assert!(check("no/such.pcap", "vlan").is_ok());
    }
}
