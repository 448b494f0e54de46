//! tcpdump's pcap-filter language: parser, IR and exact userspace evaluator.
//!
//! (Skeleton: being written.)

use como_packet::{LinkType, Packet};

/// A filter that does not compile: what is wrong and at which column (1-based, in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// 1-based column of the offending construct.
    pub column: usize,
    /// What is wrong, naming the construct.
    pub message: String,
}

/// A compiled filter for one link type.
#[derive(Debug, Clone)]
pub struct Filter {
    _link: LinkType,
}

/// Compiles `expr` (pcap-filter syntax; empty matches every packet) for packets of `link`.
pub fn compile(expr: &str, link: LinkType) -> Result<Filter, FilterError> {
    let _ = expr;
    Ok(Filter { _link: link })
}

impl Filter {
    /// Whether `pkt` matches, exactly as libpcap would decide.
    pub fn matches(&self, pkt: &Packet<'_>) -> bool {
        let _ = pkt;
        true
    }
}
