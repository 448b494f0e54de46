//! Name tables: service names for `port`/`portrange`, IP protocol names for `proto`, and
//! link-layer protocol names for `ether proto`.
//!
//! Service and protocol names are BUILT IN (no lookup in the running system's files, no
//! NSS, no DNS): the tables are generated from Debian netbase's `/etc/services` and
//! `/etc/protocols`, the files Debian's tcpdump resolves names with, so a name means the same
//! port and the same TCP/UDP set as there (`http` is TCP only, `domain` both, `ntp` UDP only).
//! An unknown name is rejected.

#[path = "names_data.rs"]
mod data;

/// Which transports a service name is defined for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProto {
    /// TCP only (or different port numbers; libpcap then uses the TCP one).
    Tcp,
    /// UDP only.
    Udp,
    /// Same port for TCP and UDP: the filter tests TCP, UDP and SCTP.
    Both,
}

/// libpcap's `pcap_nametoport`: a service name or a decimal port number.
pub fn port(name: &str) -> Option<(u16, PortProto)> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
        let n: u32 = name.parse().ok()?;
        return u16::try_from(n).ok().map(|p| (p, PortProto::Both));
    }
    let &(_, tcp, udp) = data::SERVICES.iter().find(|(n, _, _)| *n == name)?;
    match (tcp, udp) {
        (Some(t), Some(u)) if t == u => Some((t, PortProto::Both)),
        (Some(t), _) => Some((t, PortProto::Tcp)),
        (None, Some(u)) => Some((u, PortProto::Udp)),
        (None, None) => None,
    }
}

/// libpcap's `pcap_nametoportrange`: `N-M`, or two names/numbers split at the first `-`.
pub fn port_range(name: &str) -> Option<(u16, u16, PortProto)> {
    let (a, b) = name.split_once('-')?;
    let (p1, pr1) = port(a)?;
    let (p2, pr2) = port(b)?;
    let proto = if pr1 == pr2 { pr1 } else { PortProto::Both };
    Some((p1, p2, proto))
}

/// IP protocol number for a name (`tcp`, `gre`, `ospf`/`ospfigp`, `ipv6-icmp` ...).
pub fn ip_proto(name: &str) -> Option<u32> {
    data::PROTOCOLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| u32::from(v))
}

/// EtherType for the link-layer protocol names libpcap knows and this compiler supports.
pub fn ether_proto(name: &str) -> Option<u32> {
    Some(match name {
        "ip" => 0x0800,
        "ip6" => 0x86dd,
        "arp" => 0x0806,
        "rarp" => 0x8035,
        "loopback" => 0x9000,
        _ => return None,
    })
}

/// Link-layer protocol names libpcap knows but that are outside the supported set.
pub fn unsupported_ether_proto(name: &str) -> bool {
    matches!(
        name,
        "aarp"
            | "atalk"
            | "decnet"
            | "lat"
            | "sca"
            | "moprc"
            | "mopdl"
            | "iso"
            | "stp"
            | "ipx"
            | "netbeui"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_like_debian() {
        assert_eq!(port("domain"), Some((53, PortProto::Both)));
        assert_eq!(port("http"), Some((80, PortProto::Tcp)));
        assert_eq!(port("ntp"), Some((123, PortProto::Udp)));
        assert_eq!(port("smtp"), Some((25, PortProto::Tcp)));
        assert_eq!(port("ftp-data"), Some((20, PortProto::Tcp)));
        assert_eq!(port("no-such-service"), None);
        assert_eq!(port_range("25-smtp"), Some((25, 25, PortProto::Both)));
        assert_eq!(port_range("smtp-domain"), Some((25, 53, PortProto::Both)));
        assert_eq!(ip_proto("gre"), Some(47));
        assert_eq!(ip_proto("ospf"), Some(89));
        // Debian tcpdump: "unknown ip proto 'ospfigp'" (the alias is upper case).
        assert_eq!(ip_proto("ospfigp"), None);
        assert_eq!(ip_proto("tcp"), Some(6));
    }
}
