//! Link-layer types, numbered as in the tcpdump.org LINKTYPE_ registry.
//!
//! File formats store LINKTYPE_ values (not the platform-dependent DLT_ values); the few
//! DLT_ aliases that appear in old files (DLT_RAW 12/14, DLT_LOOP 12 on OpenBSD) are mapped
//! by [`LinkType::from_linktype`].

/// A link-layer header type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// BSD loopback: 4-byte address family in host byte order (LINKTYPE_NULL, 0).
    Null,
    /// Ethernet II / 802.3 (LINKTYPE_ETHERNET, 1).
    Ethernet,
    /// PPP, RFC 1661 (LINKTYPE_PPP, 9), and PPP in HDLC-like framing (LINKTYPE_PPP_HDLC, 50).
    Ppp,
    /// Cisco HDLC (LINKTYPE_C_HDLC, 104).
    CHdlc,
    /// Raw IP, version from the first nibble (LINKTYPE_RAW, 101; DLT_RAW 12 and 14).
    Raw,
    /// IEEE 802.11 without radio header (LINKTYPE_IEEE802_11, 105).
    Ieee80211,
    /// OpenBSD loopback: 4-byte address family in network byte order (LINKTYPE_LOOP, 108).
    Loop,
    /// Linux "cooked" capture v1 (LINKTYPE_LINUX_SLL, 113).
    LinuxSll,
    /// IEEE 802.11 behind a radiotap header (LINKTYPE_IEEE802_11_RADIOTAP, 127).
    Ieee80211Radiotap,
    /// Raw IPv4 (LINKTYPE_IPV4, 228).
    Ipv4,
    /// Raw IPv6 (LINKTYPE_IPV6, 229).
    Ipv6,
    /// Linux "cooked" capture v2 (LINKTYPE_LINUX_SLL2, 276).
    LinuxSll2,
    /// Any other link type, by its LINKTYPE_ number: packets are kept but not decoded.
    Other(u32),
}

impl LinkType {
    /// The link type for a LINKTYPE_ number read from a file.
    pub fn from_linktype(value: u32) -> Self {
        match value {
            0 => Self::Null,
            1 => Self::Ethernet,
            9 | 50 => Self::Ppp,
            104 => Self::CHdlc,
            12 | 14 | 101 => Self::Raw,
            105 => Self::Ieee80211,
            108 => Self::Loop,
            113 => Self::LinuxSll,
            127 => Self::Ieee80211Radiotap,
            228 => Self::Ipv4,
            229 => Self::Ipv6,
            276 => Self::LinuxSll2,
            other => Self::Other(other),
        }
    }

    /// The LINKTYPE_ number written to files.
    pub fn to_linktype(self) -> u32 {
        match self {
            Self::Null => 0,
            Self::Ethernet => 1,
            Self::Ppp => 9,
            Self::CHdlc => 104,
            Self::Raw => 101,
            Self::Ieee80211 => 105,
            Self::Loop => 108,
            Self::LinuxSll => 113,
            Self::Ieee80211Radiotap => 127,
            Self::Ipv4 => 228,
            Self::Ipv6 => 229,
            Self::LinuxSll2 => 276,
            Self::Other(v) => v,
        }
    }

    /// tcpdump's name for the link type (`EN10MB`, `LINUX_SLL` ...), as in its "link-type" line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Ethernet => "EN10MB",
            Self::Ppp => "PPP",
            Self::CHdlc => "C_HDLC",
            Self::Raw => "RAW",
            Self::Ieee80211 => "IEEE802_11",
            Self::Loop => "LOOP",
            Self::LinuxSll => "LINUX_SLL",
            Self::Ieee80211Radiotap => "IEEE802_11_RADIO",
            Self::Ipv4 => "IPV4",
            Self::Ipv6 => "IPV6",
            Self::LinuxSll2 => "LINUX_SLL2",
            Self::Other(_) => "OTHER",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_round_trip() {
        for v in [0, 1, 9, 101, 104, 105, 108, 113, 127, 228, 229, 276, 147] {
            assert_eq!(LinkType::from_linktype(v).to_linktype(), v);
        }
        assert_eq!(LinkType::from_linktype(12), LinkType::Raw);
        assert_eq!(LinkType::from_linktype(50), LinkType::Ppp);
    }
}
