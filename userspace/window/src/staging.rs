//! Staging buffers: fixed-size, page-aligned anonymous mappings (on 2 MiB hugepages when the
//! kernel has some reserved and the size is a multiple of 2 MiB), filled by the workers and
//! written whole by the writer thread with `O_DIRECT`.
//!
//! A buffer always ends with a padding block (see [`crate::block`]) up to a multiple of
//! [`ALIGN`], so every write is aligned in offset and length. A packet is accepted only if
//! 12 bytes remain after it for that padding block.

use memmap2::{MmapMut, MmapOptions};

use crate::block::{epb_len, put_epb, put_pad, MIN_BLOCK};
use como_packet::Packet;

/// Alignment of every write (offset and length): the page size, a multiple of any logical
/// block size.
pub const ALIGN: usize = 4096;
/// Hugepage size.
const HUGE: usize = 2 * 1024 * 1024;

/// One staging buffer.
#[derive(Debug)]
pub struct Buf {
    /// The memory (stable address while the buffer lives).
    map: MmapMut,
    /// Bytes used (EPBs).
    pub used: usize,
    /// Index of this buffer in the pool (its io_uring registered-buffer index).
    pub id: u16,
    /// Largest interface id of a packet in it.
    pub max_iface: u32,
    /// Smallest packet timestamp (u64::MAX when empty).
    pub ts_min: u64,
    /// Largest packet timestamp.
    pub ts_max: u64,
    /// Packets in it.
    pub packets: u32,
}

impl Buf {
    /// Allocates a buffer of `size` bytes (a multiple of [`ALIGN`]); on hugepages when
    /// `huge` and possible. Returns it and whether it is on hugepages.
    pub fn alloc(size: usize, id: u16, huge: bool) -> std::io::Result<(Buf, bool)> {
        let mut on_huge = false;
        let map = if huge && size.is_multiple_of(HUGE) {
            match MmapOptions::new().len(size).huge(Some(21)).map_anon() {
                Ok(m) => {
                    on_huge = true;
                    m
                }
                Err(_) => MmapOptions::new().len(size).map_anon()?,
            }
        } else {
            MmapOptions::new().len(size).map_anon()?
        };
        Ok((
            Buf {
                map,
                used: 0,
                id,
                max_iface: 0,
                ts_min: u64::MAX,
                ts_max: 0,
                packets: 0,
            },
            on_huge,
        ))
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// Start address (for io_uring registration).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Whether an EPB of `caplen` bytes fits (with room for the final padding block).
    #[inline]
    pub fn fits(&self, caplen: usize) -> bool {
        self.used + epb_len(caplen) + MIN_BLOCK <= self.map.len()
    }

    /// Appends `p` cut to `cut` bytes on interface `iface`; false when it does not fit.
    #[inline]
    pub fn push(&mut self, p: &Packet<'_>, cut: usize, iface: u32) -> bool {
        let caplen = p.data.len().min(cut);
        if !self.fits(caplen) {
            return false;
        }
        let Some(out) = self.map.get_mut(self.used..) else {
            return false;
        };
        let Some(n) = put_epb(out, p, cut, iface) else {
            return false;
        };
        self.used += n;
        self.packets += 1;
        self.max_iface = self.max_iface.max(iface);
        self.ts_min = self.ts_min.min(p.ts_ns);
        self.ts_max = self.ts_max.max(p.ts_ns);
        true
    }

    /// Pads the content to a multiple of [`ALIGN`] with one padding block; returns the bytes
    /// to write.
    pub fn seal(&mut self) -> &[u8] {
        let mut end = self.used.next_multiple_of(ALIGN);
        if end != self.used && end - self.used < MIN_BLOCK {
            end += ALIGN;
        }
        let end = end.min(self.map.len());
        if let Some(tail) = self.map.get_mut(self.used..end) {
            let ok = put_pad(tail);
            debug_assert!(ok, "room for the padding block is reserved by fits()");
        }
        self.map.get(..end).unwrap_or(&[])
    }

    /// The whole mapping.
    pub fn raw(&self) -> &[u8] {
        &self.map
    }

    /// The bytes of EPBs (before sealing).
    pub fn content(&self) -> &[u8] {
        self.map.get(..self.used).unwrap_or(&[])
    }

    /// Replaces the content with `bytes` (already sealed); false when too long.
    pub fn load(&mut self, bytes: &[u8]) -> bool {
        let Some(dst) = self.map.get_mut(..bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        self.used = bytes.len();
        true
    }

    /// Empties the buffer for reuse.
    pub fn reset(&mut self) {
        self.used = 0;
        self.max_iface = 0;
        self.ts_min = u64::MAX;
        self.ts_max = 0;
        self.packets = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Blocks, BT_PAD};
    use como_packet::LinkType;

    #[test]
    fn fill_seal_walk() {
        let (mut b, _) = Buf::alloc(ALIGN * 4, 0, false).expect("alloc");
        let data = [7u8; 1500];
        let p = Packet {
            ts_ns: 5,
            wire_len: 1500,
            data: &data,
            link: LinkType::Ethernet,
            interface: 0,
        };
        let mut n = 0;
        while b.push(&p, 65535, 0) {
            n += 1;
        }
        assert_eq!(n, 10);
        let sealed = b.seal().to_vec();
        assert_eq!(sealed.len() % ALIGN, 0);
        let blocks: Vec<_> = Blocks::new(&sealed).collect();
        assert_eq!(blocks.iter().filter(|x| x.epb().is_some()).count(), 10);
        assert_eq!(blocks.last().map(|x| x.btype), Some(BT_PAD));
        assert_eq!(
            blocks.iter().map(|x| x.bytes.len()).sum::<usize>(),
            sealed.len()
        );
        // A nearly aligned fill: a padding block of less than 12 bytes is impossible, so
        // sealing goes one page further.
        b.reset();
        let small = [1u8; 4096 - 32 - 8];
        let q = Packet { data: &small, ..p };
        assert!(b.push(&q, 65535, 0));
        assert_eq!(b.used, 4088);
        assert_eq!(b.seal().len(), 8192);
    }
}
