//! Fuzz target `config`: the input, as UTF-8, is a configuration file given to
//! `como_config::Config::parse` (what `como validate -c FILE` and `como run -c FILE` call:
//! TOML syntax, unknown fields, durations, sizes, sources, module kinds and their typed
//! `args`, filters, the `[trace]` section).
//!
//! Checked: it never panics; every error carries a position inside the text (line >= 1 and at
//! most the number of lines, column >= 1 and at most one past the end of that line, in
//! characters), a non-empty message, and displays as `fuzz.toml:LINE:COL: message`; an
//! accepted configuration has 1 to 64 modules with distinct names, filters that compile, and
//! modules that build again from their kind and args.
#![no_main]

use como_config::{Config, MAX_MODULES};
use como_packet::LinkType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(c) => {
            assert!(
                (1..=MAX_MODULES).contains(&c.modules.len()),
                "{} modules accepted",
                c.modules.len()
            );
            for (i, m) in c.modules.iter().enumerate() {
                assert!(
                    c.modules.iter().skip(i + 1).all(|o| o.name != m.name),
                    "module `{}` accepted twice",
                    m.name
                );
                if !m.filter.is_empty() {
                    assert!(
                        ebpf_filters::compile(&m.filter, LinkType::Ethernet).is_ok(),
                        "module `{}`: filter {:?} accepted but does not compile",
                        m.name,
                        m.filter
                    );
                }
                assert!(
                    m.build().is_ok(),
                    "module `{}` accepted but does not build",
                    m.name
                );
                assert!(!m.interval.is_zero(), "module `{}`: zero interval", m.name);
            }
            if let Some(t) = &c.trace {
                if !t.filter.is_empty() {
                    assert!(
                        ebpf_filters::compile(&t.filter, LinkType::Ethernet).is_ok(),
                        "trace filter {:?} accepted but does not compile",
                        t.filter
                    );
                }
            }
        }
        Err(e) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                e.line >= 1 && e.line <= lines.len(),
                "error without a line in the text ({} lines): {e}",
                lines.len()
            );
            let width = lines.get(e.line - 1).map_or(0, |l| l.chars().count());
            assert!(
                e.column >= 1 && e.column <= width + 1,
                "error column outside line {} ({width} characters): {e}",
                e.line
            );
            assert!(!e.message.trim().is_empty(), "empty message: {e}");
            let shown = e.to_string();
            let head = format!("fuzz.toml:{}:{}: ", e.line, e.column);
            assert!(
                shown.starts_with(&head),
                "{shown:?} does not start with {head:?}"
            );
        }
    }
});
