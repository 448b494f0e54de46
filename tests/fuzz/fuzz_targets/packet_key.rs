//! Fuzz target `packet_key`: raw bytes as an Ethernet frame through
//! `ebpf_filters::kernel::PacketKey::extract` (the userspace reference of what the XDP program
//! extracts), against an independent model of the extraction rules of
//! `ebpf-filters/src/kernel/packet.rs` ([`como_fuzz::keymodel`]).
//!
//! Input: byte 0 bit 0 set = the wire length is bytes 1..5 (u32 little-endian), else the
//! captured length; the frame is everything from byte 5 (the layout of the `packet` target,
//! whose Ethernet seeds `scripts/fuzz.sh` reuses).
//!
//! Checked, for the frame and for every cut of it (every prefix up to 256 bytes, then a
//! sample): `extract` never panics; no field is both present and absent; every field's state
//! and value equal the model's; and against the whole frame, a field whose bytes (and the
//! bytes that decide it applies) are inside the cut has the same state and value, any other
//! field is absent.
#![no_main]

use como_fuzz::keymodel::{model, St};
use ebpf_filters::kernel::{FieldState, PacketKey};
use ebpf_filters_common::field;
use libfuzzer_sys::fuzz_target;

fn state(k: &PacketKey, f: u8) -> St {
    match k.get(f) {
        FieldState::Present(v) => St::Present(v),
        FieldState::NotApplicable => St::NotApplicable,
        FieldState::Absent => St::Absent,
    }
}

/// Asserts that `extract` agrees with the model on `data` and returns the model.
fn check_one(data: &[u8], wire: u32) -> [(St, usize); field::COUNT as usize] {
    let k = PacketKey::extract(data, wire);
    assert_eq!(
        k.present & k.absent,
        0,
        "a field both present and absent: {data:02x?}"
    );
    assert_eq!(
        (k.present | k.absent) >> field::COUNT,
        0,
        "bits beyond the last field"
    );
    let m = model(data, wire);
    for f in 0..field::COUNT {
        let (want, _) = m[usize::from(f)];
        assert_eq!(
            state(&k, f),
            want,
            "field {f} on {} bytes (wire {wire}): {data:02x?}",
            data.len()
        );
    }
    m
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let Some((wire, data)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let wire = if flags & 1 != 0 {
        u32::from_le_bytes(*wire)
    } else {
        u32::try_from(data.len()).unwrap_or(u32::MAX)
    };
    let full = check_one(data, wire);
    let cuts: Vec<usize> = if data.len() <= 256 {
        (0..data.len()).collect()
    } else {
        (0..256).chain((256..data.len()).step_by(61)).collect()
    };
    for cut in cuts {
        let Some(part) = data.get(..cut) else {
            continue;
        };
        let k = PacketKey::extract(part, wire);
        check_one(part, wire);
        for f in 0..field::COUNT {
            let (st, need) = full[usize::from(f)];
            let got = state(&k, f);
            let want = if st == St::Absent || cut < need {
                St::Absent
            } else {
                st
            };
            assert_eq!(
                got,
                want,
                "field {f}: cut at {cut} of {} (needs {need}): {data:02x?}",
                data.len()
            );
        }
    }
});
