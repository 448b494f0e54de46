//! Builds the XDP program (`xdp-prog`, nightly, `bpfel-unknown-none`, `-Z build-std=core`) into
//! `OUT_DIR/como-xdp.o`, which `src/lib.rs` embeds.
//!
//! The nested build has its own target directory under `OUT_DIR`, so a second run with nothing
//! changed is a no-op cargo check of a few milliseconds, and this script reruns only when the
//! program's sources or the shared contract (`ebpf-filters/common`) change. When the toolchain
//! (nightly with `rust-src`, `bpf-linker`) is missing, the build fails with a message naming
//! `scripts/setup.sh`.

use std::{
    env,
    path::{Path, PathBuf},
    process::{exit, Command},
};

/// What to run to install the toolchain.
const SETUP: &str =
    "run `scripts/setup.sh` (it installs nightly with rust-src, LLVM 22 and bpf-linker 0.13.0)";

fn fail(msg: &str) -> ! {
    eprintln!("error: como-xdp: {msg}");
    eprintln!("error: como-xdp: {SETUP}");
    exit(1);
}

/// `rustup run nightly <tool> ...` with the outer cargo's environment removed (its rustc,
/// wrapper, flags and target dir are the stable toolchain's).
fn nightly(tool: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", tool]);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = matches!(key, "CARGO_HOME" | "CARGO_MAKEFLAGS" | "RUSTUP_HOME");
        let outer = key == "CARGO"
            || key.starts_with("CARGO_")
            || key.starts_with("RUST")
            || matches!(
                key,
                "TARGET" | "HOST" | "OUT_DIR" | "PROFILE" | "OPT_LEVEL" | "DEBUG" | "NUM_JOBS"
            );
        if outer && !keep {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");
    let prog = root.join("xdp-prog");
    let common = root.join("ebpf-filters/common");
    for p in [
        prog.join("src"),
        prog.join("Cargo.toml"),
        prog.join("Cargo.lock"),
        prog.join("rust-toolchain.toml"),
        common.join("src"),
        common.join("Cargo.toml"),
    ] {
        println!("cargo::rerun-if-changed={}", p.display());
    }
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        fail("OUT_DIR is not set (not run by cargo?)");
    };

    check_toolchain();

    let target_dir = out.join("xdp-target");
    let status = nightly("cargo")
        .current_dir(&prog)
        .args(["build", "--release", "--locked", "-Z", "build-std=core"])
        .args(["--target", "bpfel-unknown-none", "--target-dir"])
        .arg(&target_dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("building xdp-prog failed ({s})")),
        Err(e) => fail(&format!("cannot run `rustup run nightly cargo`: {e}")),
    }
    let built = target_dir.join("bpfel-unknown-none/release/como-xdp");
    let dest = out.join("como-xdp.o");
    if let Err(e) = copy_if_changed(&built, &dest) {
        fail(&format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            dest.display()
        ));
    }
}

/// Checks for nightly's `rust-src` and `bpf-linker`, failing with the setup command.
fn check_toolchain() {
    let sysroot = nightly("rustc").args(["--print", "sysroot"]).output();
    let sysroot = match sysroot {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => fail("the nightly toolchain is missing (rustup run nightly rustc failed)"),
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        fail("nightly's rust-src component is missing");
    }
    match Command::new("bpf-linker").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => fail("bpf-linker is missing"),
    }
}

/// Copies `from` to `to` unless `to` already has the same bytes (keeps its mtime stable).
fn copy_if_changed(from: &Path, to: &Path) -> std::io::Result<()> {
    let new = std::fs::read(from)?;
    if std::fs::read(to).is_ok_and(|old| old == new) {
        return Ok(());
    }
    std::fs::write(to, new)
}
