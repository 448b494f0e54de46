//! The UMEM: the packet buffer area an XDP socket shares with the kernel.
//!
//! One anonymous private mapping of `frame_size × frame_count` bytes, cut into frames
//! ("chunks") of `frame_size` bytes. It is mapped on 2 MiB hugepages when asked or available
//! (fewer TLB misses on the packet path), otherwise on 4 KiB pages. The mapping is registered
//! with the kernel (`XDP_UMEM_REG`) by [`crate::XskSocket::new`], which takes ownership of it.
//!
//! # Frame layout (aligned mode)
//! ```text
//! frame start                                                          frame start + frame_size
//! | headroom (ours) | XDP_PACKET_HEADROOM (256, the kernel's) | packet ...                  |
//!                                      [ XDP metadata ] ^ descriptor addr = data
//! ```
//! Hugepages come from a plain `mmap(MAP_HUGETLB | MAP_HUGE_2MB)` rather than the
//! `hugepage-rs` crate that DESIGN.md suggested trying: hugepage-rs 0.1.0 returns a null pointer
//! without the system error (no clear message for `hugepages = "on"`), has no fallback to small
//! pages, and sizes through a `Layout`, while the UMEM needs a page-aligned area whose mapped
//! length it controls; the wrapper here is a few lines (`sys::Mapping`).
//!
//! The XDP program's metadata (`bpf_xdp_adjust_meta`, at most 32 bytes: an
//! `ebpf_filters_common::XdpMeta` for CoMo's program) ends where the packet starts; the kernel
//! copies it along with the packet in copy mode and leaves it in place in zero-copy mode.

use std::fmt;
use std::str::FromStr;

use crate::sys::Mapping;
use crate::Error;

/// Size of a hugepage this crate maps (`MAP_HUGE_2MB`).
pub const HUGEPAGE_SIZE: usize = 2 << 20;
/// The headroom the kernel keeps in front of every packet, after the UMEM's own headroom
/// (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// Most bytes of XDP metadata the kernel accepts in front of a packet.
pub const MAX_META_LEN: usize = 32;

/// Whether the UMEM goes on 2 MiB hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Hugepages when the kernel can give them, else 4 KiB pages (logged at info level).
    #[default]
    Auto,
    /// Hugepages or an error.
    On,
    /// 4 KiB pages.
    Off,
}

/// Parses `auto`, `on` or `off` (the configuration's spelling of [`HugePages`] and
/// [`crate::ZeroCopy`]).
fn parse_tristate(s: &str) -> Option<u8> {
    match s {
        "auto" => Some(0),
        "on" => Some(1),
        "off" => Some(2),
        _ => None,
    }
}

impl FromStr for HugePages {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match parse_tristate(s) {
            Some(0) => Ok(Self::Auto),
            Some(1) => Ok(Self::On),
            Some(2) => Ok(Self::Off),
            _ => Err(Error::Config(format!(
                "hugepages = {s:?}: expected \"auto\", \"on\" or \"off\""
            ))),
        }
    }
}

impl fmt::Display for HugePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

impl FromStr for crate::ZeroCopy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match parse_tristate(s) {
            Some(0) => Ok(Self::Auto),
            Some(1) => Ok(Self::On),
            Some(2) => Ok(Self::Off),
            _ => Err(Error::Config(format!(
                "zero_copy = {s:?}: expected \"auto\", \"on\" or \"off\""
            ))),
        }
    }
}

/// How to build a [`Umem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UmemConfig {
    /// Bytes per frame: 2048 or 4096 (a power of two the kernel accepts in aligned mode).
    pub frame_size: u32,
    /// Number of frames.
    pub frame_count: u32,
    /// Bytes reserved for the application at the start of every frame, before the kernel's
    /// 256-byte `XDP_PACKET_HEADROOM` (0 unless you need room of your own there).
    pub headroom: u32,
    /// Hugepages or not.
    pub hugepages: HugePages,
}

impl Default for UmemConfig {
    /// 4096 frames of 2048 bytes (8 MiB), no extra headroom, hugepages when available.
    fn default() -> Self {
        Self {
            frame_size: 2048,
            frame_count: 4096,
            headroom: 0,
            hugepages: HugePages::Auto,
        }
    }
}

impl UmemConfig {
    /// Bytes of the area (`frame_size × frame_count`).
    pub fn area_len(&self) -> Result<usize, Error> {
        (self.frame_size as usize)
            .checked_mul(self.frame_count as usize)
            .ok_or_else(|| Error::Config("frame_size × frame_count overflows".into()))
    }

    /// Checks the values the kernel would refuse, with a message naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        if !matches!(self.frame_size, 2048 | 4096) {
            return Err(Error::Config(format!(
                "frame_size = {}: must be 2048 or 4096",
                self.frame_size
            )));
        }
        if self.frame_count == 0 {
            return Err(Error::Config(
                "frame_count = 0: need at least one frame".into(),
            ));
        }
        // The kernel wants headroom <= chunk_size - XDP_PACKET_HEADROOM; leave room for at
        // least a minimal Ethernet frame too.
        if self.headroom.saturating_add(XDP_PACKET_HEADROOM + 64) > self.frame_size {
            return Err(Error::Config(format!(
                "headroom = {}: leaves no room for a packet in a {}-byte frame \
                 (the kernel also keeps {XDP_PACKET_HEADROOM} bytes)",
                self.headroom, self.frame_size
            )));
        }
        let len = self.area_len()?;
        if len as u64 > u64::from(u32::MAX) * 4096 {
            return Err(Error::Config("UMEM too large".into()));
        }
        Ok(())
    }
}

/// The UMEM area: `frame_count` frames of `frame_size` bytes, page-aligned.
pub struct Umem {
    map: Mapping,
    config: UmemConfig,
    hugepages: bool,
}

impl fmt::Debug for Umem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Umem")
            .field("config", &self.config)
            .field("hugepages", &self.hugepages)
            .field("mapped_len", &self.map.len())
            .finish()
    }
}

impl Umem {
    /// Maps the area. With [`HugePages::On`] a failure to get hugepages is an error naming the
    /// pages needed and how to reserve them; with [`HugePages::Auto`] it falls back to 4 KiB
    /// pages and says so at info level.
    pub fn new(config: &UmemConfig) -> Result<Self, Error> {
        config.validate()?;
        let len = config.area_len()?;
        let base_flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let huge = |len: usize| {
            let huge_len = len.div_ceil(HUGEPAGE_SIZE) * HUGEPAGE_SIZE;
            Mapping::new(
                huge_len,
                base_flags | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB,
                None,
                0,
            )
        };
        let (map, hugepages) = match config.hugepages {
            HugePages::Off => (Self::small(len, base_flags)?, false),
            HugePages::On => match huge(len) {
                Ok(m) => (m, true),
                Err(source) => {
                    return Err(Error::HugePages {
                        bytes: len,
                        pages: len.div_ceil(HUGEPAGE_SIZE),
                        source,
                    })
                }
            },
            HugePages::Auto => match huge(len) {
                Ok(m) => (m, true),
                Err(e) => {
                    tracing::info!(
                        bytes = len,
                        pages = len.div_ceil(HUGEPAGE_SIZE),
                        error = %e,
                        "no 2 MiB hugepages for the UMEM; using 4 KiB pages \
                         (reserve some in /proc/sys/vm/nr_hugepages)"
                    );
                    (Self::small(len, base_flags)?, false)
                }
            },
        };
        Ok(Self {
            map,
            config: config.clone(),
            hugepages,
        })
    }

    fn small(len: usize, flags: libc::c_int) -> Result<Mapping, Error> {
        let page_len = len.div_ceil(4096) * 4096;
        Mapping::new(page_len, flags, None, 0).map_err(|source| Error::Mmap {
            what: "UMEM",
            bytes: page_len,
            source,
        })
    }

    /// Whether the area is on 2 MiB hugepages.
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &UmemConfig {
        &self.config
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.config.frame_size
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.config.frame_count
    }

    /// Bytes registered with the kernel (`frame_size × frame_count`).
    pub fn len(&self) -> usize {
        self.config.frame_size as usize * self.config.frame_count as usize
    }

    /// Whether the area is empty (never: a UMEM has at least one frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes mapped (the area rounded up to the page size).
    pub fn mapped_len(&self) -> usize {
        self.map.len()
    }

    /// First byte of the area.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let bad = |c: UmemConfig| {
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(UmemConfig {
            frame_size: 3000,
            ..UmemConfig::default()
        })
        .contains("frame_size = 3000"));
        assert!(bad(UmemConfig {
            frame_count: 0,
            ..UmemConfig::default()
        })
        .contains("frame_count = 0"));
        assert!(bad(UmemConfig {
            headroom: 1800,
            ..UmemConfig::default()
        })
        .contains("headroom = 1800"));
        assert!(UmemConfig::default().validate().is_ok());
    }

    #[test]
    fn small_pages_when_off() {
        let u = Umem::new(&UmemConfig {
            frame_count: 3,
            hugepages: HugePages::Off,
            ..UmemConfig::default()
        })
        .expect("4 KiB pages");
        assert!(!u.hugepages());
        assert_eq!(u.len(), 3 * 2048);
        assert_eq!(u.mapped_len(), 8192);
        assert_eq!(u.as_ptr() as usize % 4096, 0);
    }

    #[test]
    fn tristates_parse() {
        assert_eq!("auto".parse::<HugePages>().ok(), Some(HugePages::Auto));
        assert_eq!("off".parse::<HugePages>().ok(), Some(HugePages::Off));
        assert_eq!(
            "on".parse::<crate::ZeroCopy>().ok(),
            Some(crate::ZeroCopy::On)
        );
        let e = "yes".parse::<HugePages>().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("\"yes\"")));
    }
}
