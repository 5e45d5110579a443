//! The install path a user takes: `cargo install --path crates/vmbuild`
//! gives one binary that boots VMs with no script run and no init copied
//! (the guest init is built into it; see docs/install.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{stdout, Vmb, BIN};

/// The checkout's root (this file is tests/e2e/install.rs).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cargo running the tests (cargo sets `CARGO` for them), else `cargo`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The `guest init sha256 ...` line of `BIN --version`.
pub fn init_hash_line(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().expect("vmbuild --version");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    text.lines()
        .find(|l| l.starts_with("guest init sha256 "))
        .unwrap_or_else(|| panic!("no init hash in --version: {text}"))
        .to_string()
}

#[test]
fn cargo_install_gives_a_vmbuild_that_boots() {
    let vmb = Vmb::new();
    let root = tempfile::tempdir().expect("install root");
    let out = cargo()
        .args(["install", "--locked", "--quiet", "--path"])
        .arg(workspace().join("crates/vmbuild"))
        .arg("--root")
        .arg(root.path())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo install");
    assert!(
        out.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin_dir = root.path().join("bin");
    let installed: Vec<_> = std::fs::read_dir(&bin_dir)
        .expect("bin dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(installed, ["vmbuild"], "only the one binary is installed");
    let vmbuild = bin_dir.join("vmbuild");

    // Run from outside the checkout, with no init override: the VM boots on
    // the init the binary carries.
    let run = Command::new(&vmbuild)
        .args(["run", "--", "sh", "-c", "echo booted; test -x /init"])
        .current_dir(root.path())
        .env("TMPDIR", vmb.tmp.path())
        .env_remove("VMBUILD_INIT")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the installed vmbuild");
    assert!(
        run.status.success() && stdout(&run).contains("booted"),
        "installed vmbuild did not boot: {run:?}"
    );
    vmb.assert_clean();

    let version = stdout(
        &Command::new(&vmbuild)
            .arg("--version")
            .output()
            .expect("--version"),
    );
    assert!(
        version.starts_with(&format!("vmbuild {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // The installed binary and the one under test carry the same init.
    assert_eq!(init_hash_line(&vmbuild), init_hash_line(Path::new(BIN)));
}
