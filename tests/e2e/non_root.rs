//! vmbuild as a normal user (docs/security.md#non-root): QEMU runs as that
//! user with no capabilities and its seccomp sandbox (no cgroup: not
//! root), the default 9p cache mode reads the user's cache, and virtiofs
//! mode works with the Rust virtiofsd in a user namespace.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{processes_mentioning, stderr, stdout, BIN};

/// A uid no account has.
const UID: &str = "64123";

/// `vmbuild ARGS` as [`UID`] with its own HOME (the kernel and busybox
/// copied from root's cache, so nothing is downloaded) and TMPDIR.
fn as_user(home: &Path, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        UID,
        "--regid",
        UID,
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ])
    .arg(BIN)
    .args(args)
    .env("HOME", home)
    .env("TMPDIR", home.join("tmp"))
    .env_remove("XDG_CACHE_HOME")
    .env_remove("QEMU_USE_VIRTIOFS")
    .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("setpriv (util-linux)")
}

#[test]
fn a_normal_user_runs_with_9p_and_the_rust_virtiofsd() {
    let home = tempfile::Builder::new()
        .prefix("vmb-user-")
        .tempdir_in("/tmp")
        .unwrap();
    let h = home.path();
    let cache_src = std::env::var_os("HOME")
        .map(|d| Path::new(&d).join(".cache/vmbuild"))
        .unwrap();
    std::fs::create_dir_all(h.join(".cache/vmbuild")).unwrap();
    for d in ["kernels", "busybox"] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(cache_src.join(d))
            .arg(h.join(".cache/vmbuild"))
            .status()
            .unwrap();
        assert!(
            st.success(),
            "the root test run fetched the kernel and busybox first"
        );
    }
    std::fs::create_dir(h.join("tmp")).unwrap();
    std::fs::create_dir(h.join("cache")).unwrap();
    std::fs::write(h.join("cache/f"), "hello\n").unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{UID}:{UID}")])
        .arg(h)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(h, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = h.join("cache").to_string_lossy().into_owned();

    let o = as_user(
        h,
        &[],
        &[
            "-v",
            "run",
            "--cache-dir",
            &cache,
            "--",
            "cat",
            "/var/cache/vmbuild/f",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&o), "hello\n");
    let line = err
        .lines()
        .find(|l| l.contains("QEMU confinement"))
        .expect(&err);
    for want in [
        "uid 64123 (vmbuild's own user)",
        "no capabilities",
        "seccomp sandbox",
        "no cgroup",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }

    let rust = std::env::var_os("VMBUILD_TEST_RUST_VIRTIOFSD")
        .expect("VMBUILD_TEST_RUST_VIRTIOFSD (scripts/test.sh sets it)");
    let dir = Path::new(&rust).parent().unwrap().to_path_buf();
    let o = as_user(
        h,
        &[("QEMU_VIRTIOFS_PATH", &dir)],
        &[
            "run",
            "--cache-mode",
            "virtiofs",
            "--cache-dir",
            &cache,
            "--",
            "sh",
            "-c",
            "cat /var/cache/vmbuild/f; echo w > /var/cache/vmbuild/g",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello\n");
    let g = h.join("cache/g");
    assert_eq!(std::fs::read_to_string(&g).unwrap(), "w\n");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&g).unwrap()),
        64_123
    );

    let left: Vec<_> = std::fs::read_dir(h.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    assert!(processes_mentioning(h).is_empty());
}
