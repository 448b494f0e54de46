//! Hand-built packets for the filter tests: Ethernet, 802.1Q, MPLS, PPPoE, IPv4 (with options
//! and fragments), IPv6 (with a fragment header), TCP, UDP, ICMP, Geneve, 802.11+radiotap.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use como_packet::{LinkType, Packet};

pub const MAC_A: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
pub const MAC_B: [u8; 6] = [0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb];

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// 802.1Q tag + inner EtherType + payload (what follows the outer EtherType 0x8100).
pub fn vlan(id: u16, inner: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    v.extend_from_slice(&inner.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// MPLS label stack (last one has the bottom-of-stack bit) + payload.
pub fn mpls(labels: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let bos = u32::from(i + 1 == labels.len());
        v.extend_from_slice(&((l << 12) | (bos << 8) | 64).to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// PPPoE session header + PPP protocol + payload.
pub fn pppoe(session: u16, ppp_proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x11, 0x00];
    v.extend_from_slice(&session.to_be_bytes());
    v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(&ppp_proto.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn ipv4_full(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    options: &[u8],
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut v = vec![0x40 | ihl as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0x12, 0x34]);
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(options);
    v.extend_from_slice(payload);
    v
}

pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    ipv4_full(proto, src, dst, &[], 0, payload)
}

pub fn ipv6(nh: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[nh, 64]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

/// IPv6 fragment header (first fragment) + payload.
pub fn ipv6_frag(nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![nh, 0, 0, 1, 0, 0, 0, 7];
    v.extend_from_slice(payload);
    v
}

pub fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .map(|a| a.octets())
        .unwrap_or([0; 16])
}

pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

pub fn icmp(typ: u8, code: u8) -> Vec<u8> {
    vec![typ, code, 0, 0, 0, 1, 0, 1]
}

/// Geneve header (no options) + payload.
pub fn geneve(vni: u32, proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Radiotap (8 bytes, no fields) + 802.11 data frame (FromDS=0, ToDS=1) + LLC/SNAP + payload.
pub fn wlan_data(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 0, 0, 0, 0, 0];
    v.extend_from_slice(&[0x08, 0x01, 0, 0]); // data frame, To DS
    v.extend_from_slice(&MAC_B); // addr1 = BSSID
    v.extend_from_slice(&MAC_A); // addr2 = source
    v.extend_from_slice(&[0xff; 6]); // addr3 = destination
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn pkt(data: &[u8], link: LinkType) -> Packet<'_> {
    Packet {
        ts_ns: 0,
        wire_len: data.len() as u32,
        data,
        link,
        interface: 0,
    }
}

/// A standard set of Ethernet packets covering the supported protocols.
pub fn ethernet_zoo() -> Vec<Vec<u8>> {
    let a = [10, 0, 0, 1];
    let b = [192, 168, 1, 2];
    let t = tcp(1234, 80, 0x02, b"GET / HTTP/1.0\r\n");
    let u = udp(5353, 53, b"\x12\x34\x01\x00");
    let v6a = v6("2001:db8::1");
    let v6b = v6("fe80::1");
    vec![
        eth(MAC_A, MAC_B, 0x0800, &ipv4(6, a, b, &t)),
        eth(MAC_B, MAC_A, 0x0800, &ipv4(17, b, a, &u)),
        eth(
            [0xff; 6],
            MAC_A,
            0x0800,
            &ipv4(1, a, [224, 0, 0, 1], &icmp(8, 0)),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4_full(6, a, b, &[1, 1, 1, 0], 0, &t),
        ),
        eth(MAC_A, MAC_B, 0x0800, &ipv4_full(6, a, b, &[], 0x00b9, &t)),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(47, a, b, &[0, 0, 0x08, 0, 1, 2, 3, 4]),
        ),
        eth(MAC_A, MAC_B, 0x86dd, &ipv6(6, v6a, v6b, &t)),
        eth(
            [0x33, 0x33, 0, 0, 0, 1],
            MAC_B,
            0x86dd,
            &ipv6(17, v6b, v6("ff02::1"), &u),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x86dd,
            &ipv6(44, v6a, v6b, &ipv6_frag(17, &u)),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x86dd,
            &ipv6(58, v6a, v6b, &[128, 0, 0, 0, 0, 1, 0, 1]),
        ),
        eth(
            [0xff; 6],
            MAC_A,
            0x0806,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 1, 0, 0, 0, 0,
                0, 0, 192, 168, 1, 2,
            ],
        ),
        eth(MAC_A, MAC_B, 0x8100, &vlan(100, 0x0800, &ipv4(6, a, b, &t))),
        eth(
            MAC_A,
            MAC_B,
            0x88a8,
            &vlan(200, 0x8100, &vlan(300, 0x0800, &ipv4(17, b, a, &u))),
        ),
        eth(MAC_A, MAC_B, 0x8847, &mpls(&[100], &ipv4(6, a, b, &t))),
        eth(
            MAC_A,
            MAC_B,
            0x8847,
            &mpls(&[12345, 6789], &ipv4(17, b, a, &u)),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x8864,
            &pppoe(0x3b, 0x0021, &ipv4(6, a, b, &t)),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(
                17,
                a,
                b,
                &udp(
                    40000,
                    6081,
                    &geneve(
                        10,
                        0x6558,
                        &eth(
                            MAC_B,
                            MAC_A,
                            0x0800,
                            &ipv4(6, b, a, &tcp(22, 5555, 0x10, b"x")),
                        ),
                    ),
                ),
            ),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(
                17,
                a,
                b,
                &udp(
                    40000,
                    6081,
                    &geneve(11, 0x0800, &ipv4(1, b, a, &icmp(0, 0))),
                ),
            ),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(132, a, b, &[0, 7, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        eth(
            MAC_A,
            MAC_B,
            0x0800,
            &ipv4(112, a, b, &[0x21, 1, 100, 1, 0, 1, 0, 0]),
        ),
    ]
}

/// Writes a pcap file (LE, µs) with the given link type; each packet's wire length is its
/// full length, its captured length `caps[i]`.
pub fn write_pcap(
    path: &std::path::Path,
    linktype: u32,
    pkts: &[(Vec<u8>, usize)],
) -> std::io::Result<()> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&linktype.to_le_bytes());
    for (i, (data, cap)) in pkts.iter().enumerate() {
        let cap = (*cap).min(data.len());
        v.extend_from_slice(&(i as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(cap as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&data[..cap]);
    }
    std::fs::write(path, v)
}
