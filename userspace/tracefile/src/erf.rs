//! ERF (being written).

use como_packet::{LinkType, Packet};

use crate::error::Fail;

/// ERF reading state.
pub(crate) struct ErfState;

/// Whether `d` looks like ERF.
pub(crate) fn is_erf(_d: &[u8]) -> bool {
    false
}

/// First link.
pub(crate) fn first_link(_d: &[u8]) -> LinkType {
    LinkType::Ethernet
}

impl ErfState {
    /// New.
    pub(crate) fn new() -> Self {
        Self
    }
    /// Next.
    pub(crate) fn next<'a>(
        &mut self,
        _d: &'a [u8],
        _pos: &mut usize,
    ) -> Result<Option<Packet<'a>>, Fail> {
        Ok(None)
    }
}
