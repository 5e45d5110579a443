//! `flock(2)` on a virtiofs cache: with QEMU's C virtiofsd a host lock
//! stops the guest and a guest lock stops the host; the Rust virtiofsd
//! (1.14) cannot pass locks on, and vmbuild says so.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::ChildStdout;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::harness::{wait_with_limit, Vmb};

/// Tries the lock the host holds, waits for `released`, then holds the lock
/// itself until the host says `go` (readdir of `sync` always asks the host).
/// `$c/flock` is `fixtures/flock.c` (busybox here has no flock applet).
const GUEST: &str = r#"
c=/var/cache/vmbuild
echo "guest: $($c/flock $c/lockfile 'echo locked')"
i=0; until ls $c/sync | grep -qx released; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done
$c/flock $c/lockfile '
    echo "guest holds it"
    i=0; until ls /var/cache/vmbuild/sync | grep -qx go; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done
'
"#;

/// Builds `fixtures/flock.c` statically into `dir/flock`.
fn build_flock_helper(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/fixtures/flock.c");
    let out = dir.join("flock");
    let st = std::process::Command::new("cc")
        .args(["-static", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc (the e2e tests need a C compiler and static glibc, libc6-dev)");
    assert!(st.success(), "cc -static {} failed", src.display());
}

/// What happened: the guest's first line, whether the host's `flock -n`
/// failed while the guest held the lock, and vmbuild's stderr.
struct Outcome {
    guest_first: String,
    host_refused: bool,
    stderr: String,
}

fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    lines
        .next()
        .expect("vmbuild's stdout ended early")
        .expect("read stdout")
}

fn try_host_lock(path: &Path) -> bool {
    let f = std::fs::File::open(path).unwrap();
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(_held) => true, // released when dropped
        Err((_, e)) => {
            assert_eq!(e, nix::errno::Errno::EWOULDBLOCK, "unexpected flock error");
            false
        }
    }
}

fn lock_both_ways(env: &[(&str, &Path)]) -> Outcome {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    std::fs::create_dir(c.join("sync")).unwrap();
    build_flock_helper(c);
    let lockfile = c.join("lockfile");
    std::fs::write(&lockfile, b"").unwrap();
    let host_lock = Flock::lock(
        std::fs::File::open(&lockfile).unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .expect("host flock");

    let cache = c.to_string_lossy().into_owned();
    let args = ["run", "--cache-dir", &cache, "--cache-mode", "virtiofs"];
    let mut cmd = v.cmd();
    for (k, val) in env {
        cmd.env(k, val);
    }
    let mut child = cmd
        .args(args)
        .args(["--", "sh", "-c", GUEST])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vmbuild");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let guest_first = next(&mut lines);
    drop(host_lock);
    std::fs::File::create(c.join("sync/released")).unwrap();
    let held = next(&mut lines);
    assert_eq!(held, "guest holds it", "the guest could not take the lock");
    let host_refused = !try_host_lock(&lockfile);
    std::fs::File::create(c.join("sync/go")).unwrap();
    let status = wait_with_limit(&mut child, Duration::from_secs(120));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    v.assert_clean();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    Outcome {
        guest_first,
        host_refused,
        stderr,
    }
}

#[test]
fn c_virtiofsd_shares_flock_with_the_host_both_ways() {
    let o = lock_both_ways(&[]);
    assert_eq!(o.guest_first, "guest: busy", "{}", o.stderr);
    assert!(o.host_refused, "the host locked a file the guest holds");
    assert!(
        !o.stderr.contains("does not pass file locks"),
        "{}",
        o.stderr
    );
}

#[test]
fn rust_virtiofsd_cannot_share_locks_and_vmbuild_says_so() {
    let bin = match std::env::var_os("VMBUILD_TEST_RUST_VIRTIOFSD") {
        Some(b) => std::path::PathBuf::from(b),
        None if std::env::var_os("CI").is_some() => {
            panic!("VMBUILD_TEST_RUST_VIRTIOFSD unset under CI")
        }
        None => return eprintln!("VMBUILD_TEST_RUST_VIRTIOFSD unset (scripts/test.sh sets it)"),
    };
    let dir = bin.parent().expect("binary in a directory");
    let o = lock_both_ways(&[("QEMU_VIRTIOFS_PATH", dir)]);
    // What the warning describes: neither side sees the other's lock.
    assert_eq!(o.guest_first, "guest: locked", "{}", o.stderr);
    assert!(!o.host_refused);
    assert!(
        o.stderr
            .contains("the Rust virtiofsd does not pass file locks to the host"),
        "{}",
        o.stderr
    );
}
