//! The shared cache: overlay mode never changes the host, virtiofs mode
//! persists writes; virtiofsd lookup errors; per-language env defaults.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{assert_one_line_error, stderr, stdout, tree_digest, write_script, Vmb};

/// A cache tree with a bit of everything.
fn seed(cache: &Path) {
    std::fs::create_dir_all(cache.join("pip/wheels")).unwrap();
    std::fs::write(cache.join("pip/wheels/a.whl"), b"wheel-a").unwrap();
    std::fs::write(cache.join("keep.txt"), b"keep").unwrap();
    std::fs::write(cache.join("modify.txt"), b"old").unwrap();
    std::fs::write(cache.join("delete.txt"), b"gone soon").unwrap();
    std::fs::write(cache.join("rename.txt"), b"moving").unwrap();
    std::fs::write(cache.join("tool.sh"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        cache.join("tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("keep.txt", cache.join("link")).unwrap();
}

/// Creates, modifies, deletes and renames, and checks (in the guest) that
/// the build sees its own changes; prints the sha256 of a 1 MiB file it wrote.
const CHANGES: &str = r#"
set -e
c=/var/cache/vmbuild
test "$(cat $c/keep.txt)" = keep
test "$(cat /var/cache/melange/keep.txt)" = keep
test "$($c/tool.sh)" = tool
test "$(cat $c/link)" = keep
echo created > $c/new.txt
mkdir -p $c/newdir/sub && echo deep > $c/newdir/sub/f
echo new > $c/modify.txt
rm $c/delete.txt
mv $c/rename.txt $c/renamed.txt
rm -r $c/pip/wheels
head -c 1048576 /dev/urandom > $c/blob
test "$(cat $c/new.txt)" = created
test "$(cat $c/modify.txt)" = new
test ! -e $c/delete.txt && test ! -e $c/rename.txt && test "$(cat $c/renamed.txt)" = moving
test ! -e $c/pip/wheels
sha256sum $c/blob | cut -d' ' -f1
"#;

#[test]
fn overlay_mode_build_sees_its_changes_and_the_host_is_untouched() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    seed(&cache);
    let before = tree_digest(&cache);
    let c = cache.to_string_lossy().into_owned();
    let o = v.run(&["run", "--cache-dir", &c, "--", "sh", "-c", CHANGES]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("9p read-only + overlay; writes discarded"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        tree_digest(&cache),
        before,
        "the host cache changed in overlay mode"
    );
}

fn virtiofs_round_trip(v: &Vmb, mode_args: &[&str], env_on: bool) {
    virtiofs_round_trip_with(v, mode_args, env_on, &[]);
}

fn virtiofs_round_trip_with(
    v: &Vmb,
    mode_args: &[&str],
    env_on: bool,
    extra_env: &[(&str, &Path)],
) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    seed(&cache);
    let c = cache.to_string_lossy().into_owned();
    let mut args = vec!["run", "--cache-dir", &c];
    args.extend_from_slice(mode_args);
    args.extend_from_slice(&["--", "sh", "-c", CHANGES]);
    let mut cmd = v.cmd();
    if env_on {
        cmd.env("QEMU_USE_VIRTIOFS", "1");
    }
    for (k, val) in extra_env {
        cmd.env(k, val);
    }
    let o = cmd.args(&args).output().unwrap();
    v.assert_clean();
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("virtiofs read-write; writes persist"),
        "{}",
        stderr(&o)
    );
    let rd = |p: &str| std::fs::read_to_string(cache.join(p)).unwrap();
    assert_eq!(rd("new.txt"), "created\n");
    assert_eq!(rd("newdir/sub/f"), "deep\n");
    assert_eq!(rd("modify.txt"), "new\n");
    assert_eq!(rd("renamed.txt"), "moving");
    assert_eq!(rd("keep.txt"), "keep");
    assert!(!cache.join("delete.txt").exists() && !cache.join("rename.txt").exists());
    assert!(!cache.join("pip/wheels").exists());
    let blob = std::fs::read(cache.join("blob")).unwrap();
    assert_eq!(blob.len(), 1 << 20);
    assert_eq!(
        hex::encode(Sha256::digest(&blob)),
        stdout(&o).trim(),
        "byte-exact on the host"
    );
}

#[test]
fn virtiofs_mode_changes_persist_to_the_host_byte_exact() {
    let v = Vmb::new();
    virtiofs_round_trip(&v, &["--cache-mode", "virtiofs"], false);
}

#[test]
fn virtiofs_mode_works_with_the_rust_virtiofsd_too() {
    // scripts/test.sh installs it (`cargo install virtiofsd`) and names it;
    // QEMU_VIRTIOFS_PATH makes vmbuild use it instead of QEMU's C one.
    let bin = match std::env::var_os("VMBUILD_TEST_RUST_VIRTIOFSD") {
        Some(b) => std::path::PathBuf::from(b),
        None if std::env::var_os("CI").is_some() => {
            panic!("VMBUILD_TEST_RUST_VIRTIOFSD unset under CI")
        }
        None => return eprintln!("VMBUILD_TEST_RUST_VIRTIOFSD unset (scripts/test.sh sets it)"),
    };
    let dir = bin.parent().expect("binary in a directory");
    let v = Vmb::new();
    virtiofs_round_trip_with(
        &v,
        &["--cache-mode", "virtiofs"],
        false,
        &[("QEMU_VIRTIOFS_PATH", dir)],
    );
}

#[test]
fn qemu_use_virtiofs_env_selects_virtiofs_and_the_flag_wins() {
    let v = Vmb::new();
    virtiofs_round_trip(&v, &[], true);
    // The flag beats the variable: overlay leaves the host alone.
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().to_string_lossy().into_owned();
    let o = v
        .cmd()
        .env("QEMU_USE_VIRTIOFS", "1")
        .args([
            "run",
            "--cache-dir",
            &c,
            "--cache-mode",
            "overlay",
            "--",
            "sh",
            "-c",
            "echo x > /var/cache/vmbuild/f",
        ])
        .output()
        .unwrap();
    v.assert_clean();
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(!dir.path().join("f").exists());
}

#[test]
fn bad_qemu_use_virtiofs_value_is_an_error_not_off() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().to_string_lossy().into_owned();
    let o = v
        .cmd()
        .env("QEMU_USE_VIRTIOFS", "maybe")
        .args(["run", "--cache-dir", &c, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(assert_one_line_error(&o).contains("maybe"));
}

/// A QEMU wrapper that records being started, so a test can prove that a
/// setup error stopped vmbuild before QEMU ran.
fn recording_qemu(dir: &Path) -> (String, std::path::PathBuf) {
    let marker = dir.join("qemu-was-started");
    let real = which::which("qemu-system-x86_64").expect("qemu-system-x86_64 on PATH");
    let wrapper = dir.join("qemu-wrapper");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\ntouch '{}'\nexec '{}' \"$@\"\n",
            marker.display(),
            real.display()
        ),
    );
    (wrapper.to_string_lossy().into_owned(), marker)
}

#[test]
fn qemu_virtiofs_path_without_virtiofsd_is_an_error_naming_it() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let (qemu, marker) = recording_qemu(dir.path());
    let empty = dir.path().join("no-virtiofsd-here");
    std::fs::create_dir(&empty).unwrap();
    let c = dir.path().join("cache").to_string_lossy().into_owned();
    let o = v
        .cmd()
        .env("QEMU_VIRTIOFS_PATH", &empty)
        .args([
            "run",
            "--qemu",
            &qemu,
            "--cache-dir",
            &c,
            "--cache-mode",
            "virtiofs",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    v.assert_clean();
    assert_eq!(o.status.code(), Some(125), "stderr: {}", stderr(&o));
    let line = assert_one_line_error(&o);
    assert!(line.contains(&empty.display().to_string()), "{line}");
    assert!(!marker.exists(), "QEMU must not be started");
}

#[test]
fn no_virtiofsd_anywhere_lists_the_places_checked() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let (qemu, marker) = recording_qemu(dir.path());
    let c = dir.path().join("cache").to_string_lossy().into_owned();
    // Hide the system virtiofsd binaries in a private mount namespace.
    let mut hide = String::new();
    for p in ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"] {
        if Path::new(p).exists() {
            hide.push_str(&format!("mount --bind /dev/null {p} && "));
        }
    }
    let script = format!("{hide}exec \"$@\"");
    let bin = crate::harness::BIN;
    let o = std::process::Command::new("unshare")
        .env("TMPDIR", v.tmp.path())
        .env_remove("QEMU_VIRTIOFS_PATH")
        .env_remove("QEMU_USE_VIRTIOFS")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            bin,
        ])
        .args([
            "run",
            "--qemu",
            &qemu,
            "--cache-dir",
            &c,
            "--cache-mode",
            "virtiofs",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    v.assert_clean();
    assert_eq!(o.status.code(), Some(125), "stderr: {}", stderr(&o));
    let line = assert_one_line_error(&o);
    for place in [
        "/usr/libexec/virtiofsd",
        "/usr/lib/qemu/virtiofsd",
        "QEMU_VIRTIOFS_PATH",
    ] {
        assert!(line.contains(place), "{place} not in: {line}");
    }
    assert!(!marker.exists(), "QEMU must not be started");
}

#[test]
fn a_cache_dir_that_is_a_file_is_a_one_line_error() {
    let v = Vmb::new();
    let f = tempfile::NamedTempFile::new().unwrap();
    let p = f.path().to_string_lossy().into_owned();
    let o = v.run(&["run", "--cache-dir", &p, "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(assert_one_line_error(&o).contains("not a directory"));
}

#[test]
fn language_cache_defaults_fill_only_unset_variables() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().to_string_lossy().into_owned();
    let o = v.run(&[
        "run", "--cache-dir", &c, "-e", "PIP_CACHE_DIR=/mine", "--",
        "sh", "-c", "env; echo m2=$(readlink $HOME/.m2/repository); echo reg=$(readlink $HOME/.cargo/registry); test -d /var/cache/vmbuild/m2repository && echo m2dir=yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let has = |line: &str| out.lines().any(|l| l == line);
    assert!(has("PIP_CACHE_DIR=/mine"), "the user's value wins:\n{out}");
    let defaults = vmbuild_cache::cache_env_defaults(
        vmbuild_proto::GUEST_CACHE_DIR,
        vmbuild_proto::GUEST_HOME,
    );
    assert!(defaults.len() >= 12);
    for d in defaults.iter().filter(|d| d.name != "PIP_CACHE_DIR") {
        assert!(
            has(&format!("{}={}", d.name, d.value)),
            "{} missing or different:\n{out}",
            d.name
        );
    }
    assert!(has("m2=/var/cache/vmbuild/m2repository"), "{out}");
    assert!(has("reg=/var/cache/vmbuild/cargo/registry"), "{out}");
    assert!(has("m2dir=yes"), "{out}");
    assert!(
        !out.contains("CARGO_HOME="),
        "CARGO_HOME stays unset so ~/.cargo/bin works"
    );
}

#[test]
fn virtiofs_leaves_nothing_behind_on_failure_timeout_and_sigint() {
    use std::io::Read;
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().to_string_lossy().into_owned();
    let base = ["run", "--cache-dir", c.as_str(), "--cache-mode", "virtiofs"];
    // Failure of the command.
    let o = v.run(&[&base[..], &["--", "sh", "-c", "exit 3"]].concat());
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    // Timeout.
    let o = v.run(&[&base[..], &["--timeout", "4", "--", "sleep", "300"]].concat());
    assert_eq!(o.status.code(), Some(124), "stderr: {}", stderr(&o));
    // SIGINT.
    let mut child = v.spawn(&[&base[..], &["--", "sh", "-c", "echo ready; sleep 300"]].concat());
    let mut buf = [0u8; 6];
    child.stdout.take().unwrap().read_exact(&mut buf).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = crate::harness::wait_with_limit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    v.assert_clean();
}
