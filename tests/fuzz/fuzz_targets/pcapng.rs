//! Fuzz target `pcapng`: the input is a whole trace file (seeded with the pcapng files of
//! tests/data/traces); read it with `TraceReader::from_bytes`, drain every packet and parse each.
//! Format detection is by content, so every target reaches every reader; the seeds steer it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    como_fuzz::drain_trace("fuzz.pcapng", data);
});
