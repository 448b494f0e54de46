//! CoMo-rs benchmarks: criterion micro-benchmarks in `benches/benches`, drivers in `scripts/`.
//!
//! The library holds what the benchmarks share: the deterministic synthetic trace generator
//! ([`synth`]) and a small ERF writer ([`erf`]) for the generator's `--format erf`.

pub mod erf;
pub mod synth;
