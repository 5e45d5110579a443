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
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .expect("vmbuild --version");
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

/// `scripts/deb.sh` builds the package; it lists everything a user needs
/// beside the binary, and installed into a scratch root (`dpkg --root`)
/// it gives a working `vmbuild --version` whose init hash is the shipped
/// init file's.
#[test]
fn deb_package_holds_binary_init_man_completions_and_installs() {
    let out_dir = tempfile::tempdir().expect("deb out dir");
    let built = Command::new(workspace().join("scripts/deb.sh"))
        .arg(out_dir.path())
        .output()
        .expect("run scripts/deb.sh");
    assert!(
        built.status.success(),
        "scripts/deb.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::fs::read_dir(out_dir.path())
        .expect("deb out dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output dir");

    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .expect("dpkg-deb -c");
    assert!(listing.status.success(), "{listing:?}");
    let files: Vec<String> = stdout(&listing)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect();
    for want in [
        "./usr/bin/vmbuild",
        "./usr/lib/vmbuild/vmbuild-init",
        "./usr/share/man/man1/vmbuild.1.gz",
        "./usr/share/man/man1/vmbuild-build.1.gz",
        "./usr/share/bash-completion/completions/vmbuild",
        "./usr/share/zsh/vendor-completions/_vmbuild",
        "./usr/share/fish/vendor_completions.d/vmbuild.fish",
        "./usr/share/vmbuild/vmbuild.schema.json",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} not in the .deb: {files:?}"
        );
    }
    let depends = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .arg("Depends")
        .output()
        .expect("dpkg-deb -f");
    assert!(stdout(&depends).contains("qemu-system-x86"), "{depends:?}");

    // A scratch root with an empty dpkg database; its dependencies are the
    // host's business here, so they are not checked.
    let root = tempfile::tempdir().expect("scratch root");
    let admin = root.path().join("var/lib/dpkg");
    for d in ["info", "updates"] {
        std::fs::create_dir_all(admin.join(d)).expect("dpkg admin dir");
    }
    std::fs::write(admin.join("status"), "").expect("dpkg status");
    let installed = Command::new("dpkg")
        .arg(format!("--root={}", root.path().display()))
        .args(["--force-depends", "-i"])
        .arg(&deb)
        .output()
        .expect("dpkg -i");
    assert!(installed.status.success(), "{installed:?}");
    let bin = root.path().join("usr/bin/vmbuild");
    let init =
        std::fs::read(root.path().join("usr/lib/vmbuild/vmbuild-init")).expect("installed init");
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(&init));
    assert_eq!(init_hash_line(&bin), format!("guest init sha256 {hash}"));
}
