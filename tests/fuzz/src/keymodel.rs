//! An independent model of the kernel field extraction (the rules written in the module docs
//! of `ebpf-filters/src/kernel/packet.rs` and `ebpf-filters/common/src/lib.rs`), for the
//! `packet_key` target: for each field, its state on a frame and how many leading bytes of the
//! frame decide that state (the field's own bytes, and the bytes that say the field applies).
//!
//! Written from the documented rules, not from the code it checks.

use ebpf_filters_common::field;

/// State of one field (the model's copy of `FieldState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    /// The value, most significant byte first in the low bits.
    Present(u128),
    /// No such header.
    NotApplicable,
    /// The header is there, its bytes are past the captured end.
    Absent,
}

/// Number of fields.
const N: usize = field::COUNT as usize;

/// Per field: state and the captured length from which that state is final (0 for absent).
pub type Model = [(St, usize); N];

/// Big-endian value of `n` bytes at `o`, if they are captured.
fn be(d: &[u8], o: usize, n: usize) -> Option<u128> {
    let end = o.checked_add(n)?;
    let bytes = d.get(o..end)?;
    let mut v = 0u128;
    for &b in bytes {
        v = (v << 8) | u128::from(b);
    }
    Some(v)
}

/// The field of `n` bytes at `o`, known to apply once `pre` bytes are captured.
fn fld(d: &[u8], o: usize, n: usize, pre: usize) -> (St, usize) {
    match be(d, o, n) {
        Some(v) => (St::Present(v), pre.max(o + n)),
        None => (St::Absent, 0),
    }
}

/// Fields that need the L3 key: addresses and transport fields.
const L3_DEP: [u8; 9] = [
    field::SADDR4,
    field::DADDR4,
    field::SADDR6,
    field::DADDR6,
    field::SPORT,
    field::DPORT,
    field::L4B0,
    field::L4B1,
    field::L4B13,
];

fn set(m: &mut Model, f: u8, v: (St, usize)) {
    if let Some(slot) = m.get_mut(usize::from(f)) {
        *slot = v;
    }
}

/// The model of `PacketKey::extract(d, wire)`.
pub fn model(d: &[u8], wire: u32) -> Model {
    let mut m: Model = [(St::NotApplicable, 0); N];
    set(&mut m, field::DMAC, fld(d, 0, 6, 0));
    set(&mut m, field::SMAC, fld(d, 6, 6, 0));
    set(
        &mut m,
        field::LEN,
        if wire <= 65_535 {
            (St::Present(u128::from(wire)), 0)
        } else {
            (St::Absent, 0)
        },
    );
    // The VLAN walk: at most two tags are recorded; a third TPID means "deep".
    let mut off = 12usize;
    let mut depth = 0u8;
    let mut classes = [0u8; 2];
    let ethertype: u16;
    loop {
        let Some(t) = be(d, off, 2) else {
            set(&mut m, field::L3, (St::Absent, 0));
            for f in L3_DEP {
                set(&mut m, f, (St::Absent, 0));
            }
            if depth == 0 {
                set(&mut m, field::VID0, (St::Absent, 0));
            }
            if depth <= 1 {
                set(&mut m, field::VID1, (St::Absent, 0));
            }
            return m;
        };
        let t = t as u16;
        let class = match t {
            0x8100 => 1,
            0x88a8 => 2,
            0x9100 => 3,
            _ => 0,
        };
        if class == 0 {
            ethertype = t;
            break;
        }
        if depth == 2 {
            depth = 3;
            ethertype = 0;
            break;
        }
        let vid = match be(d, off + 2, 2) {
            Some(v) => (St::Present(v & 0x0fff), off + 4),
            None => (St::Absent, 0),
        };
        if depth == 0 {
            classes[0] = class;
            set(&mut m, field::VID0, vid);
        } else {
            classes[1] = class;
            set(&mut m, field::VID1, vid);
        }
        depth += 1;
        off += 4;
    }
    let walk_end = off + 2;
    // Tags the frame does not have: not applicable once the walk is over.
    if depth == 0 {
        set(&mut m, field::VID0, (St::NotApplicable, walk_end));
    }
    if depth <= 1 {
        set(&mut m, field::VID1, (St::NotApplicable, walk_end));
    }
    let l3 = walk_end;
    let (a, b, key_end) = match (depth, ethertype) {
        (0..=2, 0x0800) => match (be(d, l3 + 6, 2), d.get(l3 + 9)) {
            (Some(frag), Some(&proto)) => (u8::from(frag & 0x1fff == 0), proto, l3 + 10),
            _ => (0, 0, usize::MAX),
        },
        (0..=2, 0x86dd) => match d.get(l3 + 6) {
            Some(&44) => match d.get(l3 + 40) {
                Some(&b) => (44, b, l3 + 41),
                None => (0, 0, usize::MAX),
            },
            Some(&nh) => (nh, 0, l3 + 7),
            None => (0, 0, usize::MAX),
        },
        _ => (0, 0, l3),
    };
    if key_end == usize::MAX {
        set(&mut m, field::L3, (St::Absent, 0));
        for f in L3_DEP {
            set(&mut m, f, (St::Absent, 0));
        }
        return m;
    }
    let vlan_byte = (depth << 6) | (classes[0] << 4) | (classes[1] << 2);
    let key = (u128::from(vlan_byte) << 32)
        | (u128::from(ethertype) << 16)
        | (u128::from(a) << 8)
        | u128::from(b);
    set(&mut m, field::L3, (St::Present(key), key_end));
    for f in L3_DEP {
        set(&mut m, f, (St::NotApplicable, key_end));
    }
    if depth == 3 {
        return m;
    }
    let transport = match ethertype {
        0x0800 => {
            set(&mut m, field::SADDR4, fld(d, l3 + 12, 4, key_end));
            set(&mut m, field::DADDR4, fld(d, l3 + 16, 4, key_end));
            // key_end = l3 + 10: byte l3 (the header length) is captured.
            d.get(l3).map(|&v| l3 + 4 * usize::from(v & 0x0f))
        }
        0x86dd => {
            set(&mut m, field::SADDR6, fld(d, l3 + 8, 16, key_end));
            set(&mut m, field::DADDR6, fld(d, l3 + 24, 16, key_end));
            Some(l3 + 40)
        }
        0x0806 | 0x8035 => {
            set(&mut m, field::SADDR4, fld(d, l3 + 14, 4, key_end));
            set(&mut m, field::DADDR4, fld(d, l3 + 24, 4, key_end));
            None
        }
        _ => None,
    };
    if let Some(t) = transport {
        set(&mut m, field::SPORT, fld(d, t, 2, key_end));
        set(&mut m, field::DPORT, fld(d, t + 2, 2, key_end));
        set(&mut m, field::L4B0, fld(d, t, 1, key_end));
        set(&mut m, field::L4B1, fld(d, t + 1, 1, key_end));
        set(&mut m, field::L4B13, fld(d, t + 13, 1, key_end));
    }
    m
}
