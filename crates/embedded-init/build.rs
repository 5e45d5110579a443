//! Builds the static guest init (`guest-init/`, binary `vmbuild-init`) and
//! leaves it in `OUT_DIR` for `include_bytes!`, so the vmbuild binary carries
//! its own PID 1 and `cargo install` needs no second step.
//!
//! How (docs/install.md has the long form):
//! - `VMBUILD_INIT_PATH=/path/to/vmbuild-init` at build time embeds that file
//!   instead (it must be a static ELF); nothing is compiled.
//! - Otherwise a nested `cargo build --release --target x86_64-unknown-linux-gnu
//!   -p vmbuild-guest-init` runs with `-C target-feature=+crt-static` and its
//!   own target dir (`<target>/guest-init`, beside `debug/` and `release/`,
//!   shared by both profiles): a separate target dir means the nested cargo
//!   never waits on the lock the outer one holds. RUSTFLAGS apply only to
//!   target artifacts when `--target` is explicit, so proc-macros stay
//!   dynamic; no extra rustup target is needed, only the static glibc
//!   (libc6-dev). The outer cargo's jobserver (CARGO_MAKEFLAGS) is inherited,
//!   so the nested build shares the same job slots.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/elf.rs"]
mod elf;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest_dir.join("../..");
    println!("cargo:rerun-if-env-changed=VMBUILD_INIT_PATH");

    let init = match std::env::var_os("VMBUILD_INIT_PATH").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            println!("cargo:rerun-if-changed={}", p.display());
            p
        }
        None => {
            for watched in ["guest-init", "crates/proto", "Cargo.lock", "Cargo.toml"] {
                println!(
                    "cargo:rerun-if-changed={}",
                    workspace.join(watched).display()
                );
            }
            build_init(&workspace, &nested_target_dir(&out_dir))
        }
    };
    let bytes = std::fs::read(&init)
        .unwrap_or_else(|e| panic!("reading the guest init {}: {e}", init.display()));
    match elf::elf_needs_interpreter(&bytes) {
        Some(false) => {}
        Some(true) => panic!(
            "{} is dynamically linked (has PT_INTERP); it cannot be the guest's /init. \
             Is the static glibc (libc6-dev) installed, or RUSTFLAGS overridden?",
            init.display()
        ),
        None => panic!("{} is not an x86-64 ELF64 executable", init.display()),
    }
    std::fs::write(out_dir.join("vmbuild-init"), &bytes)
        .unwrap_or_else(|e| panic!("writing {}: {e}", out_dir.display()));
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    println!("cargo:rustc-env=VMBUILD_EMBEDDED_INIT_SHA256={sha}");
}

/// `<target>/guest-init` from `OUT_DIR` = `<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`,
/// so debug and release builds share one nested build; `OUT_DIR/target`
/// when the layout is not the usual one.
fn nested_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|t| t.join("guest-init"))
        .unwrap_or_else(|| out_dir.join("target"))
}

fn build_init(workspace: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .args(["-p", "vmbuild-guest-init", "--target", TRIPLE])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=symbols",
        );
    // What the outer cargo set for its own compilation must not leak into
    // the nested one (`cargo clippy` sets a workspace wrapper; flags for the
    // host build would replace the static ones).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    // Cargo reads a build script's stdout for directives: the nested
    // cargo's output goes to stderr (shown when the build fails).
    cmd.stdout(std::io::stderr());
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build the guest init: {e}"));
    assert!(
        status.success(),
        "building the guest init failed ({status}); the log is above. \
         Set VMBUILD_INIT_PATH to embed a prebuilt static vmbuild-init instead."
    );
    target_dir.join(TRIPLE).join("release").join("vmbuild-init")
}
