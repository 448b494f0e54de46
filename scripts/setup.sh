#!/usr/bin/env bash
#! Installs everything CoMo-rs needs to build and test on a Debian machine, idempotently.
#
# - Debian packages: tcpdump (the filter oracle), libpcap-dev (the benchmark baseline), build tools.
# - Rust: the stable toolchain from rust-toolchain.toml, nightly (cargo-fuzz needs it), cargo-fuzz.
# Re-running it is cheap: each step is skipped when its result is already there.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
for pkg in tcpdump tshark libpcap-dev pkg-config build-essential; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install rustup (https://rustup.rs) first" >&2
    exit 1
fi
rustup toolchain list | grep -q '^nightly' || { log "rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; }
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
log "ok"
