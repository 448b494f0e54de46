//! `application`: packets and bytes per application class, from a port → class table.
//!
//! A packet takes the class of its destination port if the table has it, else of its source
//! port, else `other`; packets without ports (ICMP, non-first fragments, non-IP) are `other`
//! too. The table is configurable (`[module.args.classes]` maps a class name to a list of ports
//! and replaces the default, which is [`DEFAULT_CLASSES`]). Lookups go through a 64 Ki-entry
//! array built at init: no hashing and no allocation per packet.

use std::collections::BTreeMap;

use como_module::{Cell, Interval, Module, ModuleError, Pkt};
use serde::{Deserialize, Serialize};

use crate::Counts;

/// The default port table: well-known services grouped as most operators group them.
pub const DEFAULT_CLASSES: &[(&str, &[u16])] = &[
    ("web", &[80, 443, 8000, 8008, 8080, 8443]),
    ("dns", &[53, 853, 5353]),
    ("mail", &[25, 110, 143, 465, 587, 993, 995]),
    ("ssh", &[22]),
    ("ftp", &[20, 21]),
    ("ntp", &[123]),
    ("dhcp", &[67, 68, 546, 547]),
    ("snmp", &[161, 162]),
    ("netbios-smb", &[137, 138, 139, 445]),
    ("vpn", &[500, 1194, 1701, 1723, 4500, 51820]),
    ("voip", &[3478, 5060, 5061]),
    ("remote-desktop", &[3389, 5900]),
    ("database", &[1433, 1521, 3306, 5432, 6379, 27017]),
    (
        "p2p",
        &[6881, 6882, 6883, 6884, 6885, 6886, 6887, 6888, 6889],
    ),
];

/// Class index of packets no table entry matches.
const OTHER: u8 = 0;

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Class name → ports; replaces [`DEFAULT_CLASSES`] when given.
    pub classes: Option<BTreeMap<String, Vec<u16>>>,
}

/// The `application` module.
#[derive(Debug)]
pub struct Application {
    /// Class names; index 0 is `other`.
    names: Vec<String>,
    /// Port → class index.
    by_port: Box<[u8; 65536]>,
}

/// One interval: per class, in table order (`other` first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Interval start (ns).
    pub ts: u64,
    /// (class name, counts), classes seen only.
    pub classes: Vec<(String, Counts)>,
}

impl Module for Application {
    type Config = Config;
    type State = Vec<Counts>;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "application";

    fn new(config: Config) -> Result<Self, ModuleError> {
        let table: Vec<(String, Vec<u16>)> = match config.classes {
            Some(c) => c.into_iter().collect(),
            None => DEFAULT_CLASSES
                .iter()
                .map(|(n, p)| ((*n).to_owned(), p.to_vec()))
                .collect(),
        };
        if table.len() > 254 {
            return Err(ModuleError::Invalid {
                kind: Self::KIND.into(),
                message: "at most 254 classes".into(),
            });
        }
        let mut names = vec!["other".to_owned()];
        let mut by_port = Box::new([OTHER; 65536]);
        for (name, ports) in table {
            if names.contains(&name) {
                return Err(ModuleError::Invalid {
                    kind: Self::KIND.into(),
                    message: format!("class `{name}` given twice (or named `other`)"),
                });
            }
            let idx = names.len() as u8;
            names.push(name.clone());
            for p in ports {
                let slot = &mut by_port[usize::from(p)];
                if *slot != OTHER {
                    return Err(ModuleError::Invalid {
                        kind: Self::KIND.into(),
                        message: format!("port {p} is in two classes (second: `{name}`)"),
                    });
                }
                *slot = idx;
            }
        }
        Ok(Self { names, by_port })
    }

    fn new_state(&self, _: Interval) -> Vec<Counts> {
        vec![Counts::default(); self.names.len()]
    }

    fn update(&self, state: &mut Vec<Counts>, pkt: &Pkt<'_>) {
        let class_of = |p: Option<u16>| p.map_or(OTHER, |p| self.by_port[usize::from(p)]);
        let mut class = class_of(pkt.dst_port());
        if class == OTHER {
            class = class_of(pkt.src_port());
        }
        if let Some(c) = state.get_mut(usize::from(class)) {
            c.add(pkt.wire_len());
        }
    }

    fn merge(&self, into: &mut Vec<Counts>, other: Vec<Counts>) {
        for (a, b) in into.iter_mut().zip(other) {
            a.merge(b);
        }
    }

    fn new_export(&self) {}

    fn export(&self, _: &mut (), ivl: Interval, state: Vec<Counts>, out: &mut Vec<Record>) {
        let classes = self
            .names
            .iter()
            .zip(state)
            .filter(|(_, c)| c.pkts > 0)
            .map(|(n, c)| (n.clone(), c))
            .collect();
        out.push(Record {
            ts: ivl.start_ns,
            classes,
        });
    }

    fn record_ts(&self, r: &Record) -> u64 {
        r.ts
    }

    fn columns(&self) -> &'static [&'static str] {
        &["ts", "class", "pkts", "bytes"]
    }

    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        for (n, c) in &r.classes {
            row(&[
                Cell::Ts(r.ts),
                Cell::Str(n),
                Cell::U64(c.pkts),
                Cell::U64(c.bytes),
            ]);
        }
    }
}
