#!/usr/bin/env bash
#! Runs every CoMo-rs test: formatting, lints, docs, unit/integration/differential tests, and a
#! short bounded run of each fuzz target. Installs what it needs first (scripts/setup.sh).
#!
#! Privileged tests (netns, veth, XDP) fail instead of skipping when COMO_REQUIRE_PRIVILEGED=1
#! (set by .ci/run). FUZZ_SECONDS (default 20) bounds each fuzz target's run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
step() { printf '\n== %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
step "cargo test"
cargo test --workspace --locked
step "fuzz targets (${FUZZ_SECONDS:-20} s each)"
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
