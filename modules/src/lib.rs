//! The standard CoMo-rs modules, each a short example of the module API (`como-module`):
//!
//! | kind | what it computes per interval | CSV columns |
//! |------|-------------------------------|-------------|
//! | [`traffic`] | packets and bytes (wire length) | `ts,pkts,bytes` |
//! | [`protocol`] | packets and bytes per IP protocol (IPv4 and IPv6) | `ts,proto,pkts,bytes` |
//! | [`application`] | packets and bytes per application class (port table) | `ts,class,pkts,bytes` |
//! | [`topaddr`] | top-N source (or destination) addresses, prefix-aggregated | `ts,rank,addr,pkts,bytes` |
//! | [`topports`] | top-N transport ports | `ts,rank,proto,port,pkts,bytes` |
//! | [`tuple`](mod@tuple) | 5-tuple flows | `ts,proto,src,sport,dst,dport,first,last,pkts,bytes,tcp_flags` |
//! | [`ethtypes`] | packets and bytes per EtherType | `ts,ethertype,pkts,bytes` |
//! | [`flowcount`] | distinct 5-tuple flows (HyperLogLog) | `ts,flows` |
//! | [`trace`] | the matching packets themselves (up to `snaplen`); prints pcap | `ts,wire_len,cap_len,summary` |
//! | [`ewma`] | alerts when traffic leaves an EWMA band | `ts,bytes,ewma,ratio` |
//!
//! [`build`] makes a module from its kind name and TOML `args` table (the registry the config
//! file and `como inline` use).

pub mod application;
mod counttable;
pub mod ethtypes;
pub mod ewma;
pub mod flowcount;
pub mod protocol;
pub mod topaddr;
pub mod topports;
pub mod trace;
pub mod traffic;
pub mod tuple;

use std::sync::Arc;

use como_module::{erase, from_args, AnyModule, Module, ModuleError};
use serde::{Deserialize, Serialize};

/// Kind names of the standard modules.
pub const KINDS: &[&str] = &[
    "traffic",
    "protocol",
    "application",
    "topaddr",
    "topports",
    "tuple",
    "ethtypes",
    "flowcount",
    "trace",
    "ewma",
];

/// Builds a standard module from its kind and its `args` table.
pub fn build(kind: &str, args: Option<&toml::Value>) -> Result<Arc<dyn AnyModule>, ModuleError> {
    fn make<M: Module>(args: Option<&toml::Value>) -> Result<Arc<dyn AnyModule>, ModuleError> {
        Ok(erase(from_args::<M>(args)?))
    }
    match kind {
        "traffic" => make::<traffic::Traffic>(args),
        "protocol" => make::<protocol::Protocol>(args),
        "application" => make::<application::Application>(args),
        "topaddr" => make::<topaddr::TopAddr>(args),
        "topports" => make::<topports::TopPorts>(args),
        "tuple" => make::<tuple::Tuple>(args),
        "ethtypes" => make::<ethtypes::EthTypes>(args),
        "flowcount" => make::<flowcount::FlowCount>(args),
        "trace" => make::<trace::Trace>(args),
        "ewma" => make::<ewma::Ewma>(args),
        _ => Err(ModuleError::UnknownKind {
            kind: kind.to_owned(),
            known: KINDS.join(", "),
        }),
    }
}

/// Packets and bytes (wire length): the counter most modules keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Packets.
    pub pkts: u64,
    /// Bytes on the wire.
    pub bytes: u64,
}

impl Counts {
    /// Adds one packet of `bytes` bytes.
    #[inline]
    pub fn add(&mut self, bytes: u64) {
        self.pkts += 1;
        self.bytes += bytes;
    }

    /// Adds another counter.
    #[inline]
    pub fn merge(&mut self, other: Counts) {
        self.pkts += other.pkts;
        self.bytes += other.bytes;
    }
}

/// Config of modules that take no arguments.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_every_kind_and_reports_bad_args() {
        for kind in KINDS {
            let m = build(kind, None).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(m.kind(), *kind);
            assert!(!m.columns().is_empty());
        }
        let e = build("nosuch", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("unknown module kind `nosuch`") && e.contains("topaddr"),
            "{e}"
        );
        let bad: toml::Value =
            toml::from_str("topn = 5\nfoo = 1").unwrap_or(toml::Value::Integer(0));
        let e = build("topaddr", Some(&bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown field `foo`"), "{e}");
        let bad: toml::Value = toml::from_str("topn = \"x\"").unwrap_or(toml::Value::Integer(0));
        let e = build("topaddr", Some(&bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("topn") || e.contains("invalid type"), "{e}");
    }
}
