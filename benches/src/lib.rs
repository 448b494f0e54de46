//! CoMo-rs benchmarks: criterion micro-benchmarks in `benches/benches`, drivers in `scripts/`.
