//! pcapng (being written).

use como_packet::{LinkType, Packet};

use crate::error::{ErrorKind, Fail};

/// pcapng reading state.
pub(crate) struct PcapNgState;

/// Whether `d` starts with a section header block.
pub(crate) fn is_pcapng(d: &[u8]) -> bool {
    d.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a])
}

impl PcapNgState {
    /// Opens.
    pub(crate) fn open(_d: &[u8]) -> Result<(Self, usize), Fail> {
        Err(Fail::at(0, ErrorKind::UnknownFormat))
    }
    /// First link.
    pub(crate) fn first_link(&self, _d: &[u8], _pos: usize) -> LinkType {
        LinkType::Ethernet
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
