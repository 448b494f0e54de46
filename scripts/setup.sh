#!/usr/bin/env bash
#! Installs everything CoMo-rs needs to build and test on a Debian machine, idempotently.
#
# - Debian packages: tcpdump (the filter oracle), libpcap-dev (the benchmark baseline), build tools.
# - Rust: the stable toolchain from rust-toolchain.toml, nightly with rust-src (cargo-fuzz and the
#   XDP program need it), cargo-fuzz.
# - The eBPF toolchain for xdp-prog: Debian's LLVM 22 and bpf-linker 0.13.0 built against it (the
#   crate's default feature wants LLVM 23, which Debian lacks; without LLVM_PREFIX it finds LLVM 14).
# - Live-capture test tools: iproute2 (netns, veth), tcpreplay, ethtool.
# Re-running it is cheap: each step is skipped when its result is already there.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
for pkg in tcpdump tshark libpcap-dev pkg-config build-essential \
    llvm-22-dev libpolly-22-dev libelf-dev zlib1g-dev libzstd-dev iproute2 tcpreplay ethtool; do
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
rustup component list --toolchain nightly --installed | grep -q '^rust-src' \
    || { log "rustup component add rust-src --toolchain nightly"; rustup component add rust-src --toolchain nightly; }
if ! bpf-linker --version 2>/dev/null | grep -q '0\.13\.0'; then
    log "cargo install bpf-linker 0.13.0 (LLVM 22; a few minutes)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked bpf-linker --version 0.13.0 \
        --no-default-features --features llvm-22
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
log "ok"
