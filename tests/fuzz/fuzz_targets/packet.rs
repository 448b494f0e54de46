//! Fuzz target `packet`: one packet of any supported link type through the layer parser.
//!
//! Input: byte 0 picks the link type from [`LINKS`] (modulo its length), bytes 1..5 are the wire
//! length (u32 little-endian: it may be shorter or longer than the data), the rest is the
//! captured data.
#![no_main]

use como_packet::{LinkType, Packet};
use libfuzzer_sys::fuzz_target;

/// Link types the parser decodes, plus one it does not.
const LINKS: [LinkType; 13] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Ppp,
    LinkType::CHdlc,
    LinkType::Ieee80211,
    LinkType::Ieee80211Radiotap,
    LinkType::Other(147),
];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let Some((wire, data)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let pkt = Packet {
        ts_ns: 0,
        wire_len: u32::from_le_bytes(*wire),
        data,
        link: LINKS[usize::from(pick) % LINKS.len()],
        interface: 0,
    };
    como_fuzz::exercise_packet(&pkt);
});
