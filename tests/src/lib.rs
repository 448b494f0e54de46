//! Integration and differential tests of CoMo-rs; the tests are in `tests/tests/`, their data in
//! `tests/data/` (provenance in `tests/data/traces/SOURCES.md`).

use std::path::PathBuf;

/// The folder of the test data (`tests/data`).
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}
