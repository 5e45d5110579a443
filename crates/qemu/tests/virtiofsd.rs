//! virtiofsd supervision against real processes: the installed C virtiofsd
//! (qemu-system-x86 ships it), stand-ins that fail, and optionally the Rust
//! virtiofsd when `VMBUILD_TEST_RUST_VIRTIOFSD` names its binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{test_kill_process, test_kill_process_group, Pid};
use vmbuild_qemu::virtiofsd::VirtiofsdError;
use vmbuild_qemu::virtiofsd::{probe, Flavor, Sandbox, Virtiofsd, VirtiofsdArgs};

const C_VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn gone(pid: i32) -> bool {
    let pid = Pid::from_raw(pid).unwrap();
    test_kill_process(pid).is_err() && test_kill_process_group(pid).is_err()
}

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

struct Dirs {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    sock: PathBuf,
    log: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir(&share).unwrap();
    Dirs {
        sock: tmp.path().join("fs.sock"),
        log: tmp.path().join("virtiofsd.log"),
        share,
        _tmp: tmp,
    }
}

async fn start_stop_real(binary: &Path, flavor: Flavor) {
    let d = dirs();
    let mut v = Virtiofsd::start(binary, flavor, &d.share, &d.sock, &d.log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = v.pid();
    assert!(!gone(pid), "virtiofsd should be running");
    assert!(d.sock.exists(), "socket should exist");
    v.stop().await.unwrap();
    assert!(gone(pid), "no process left in group {pid}");
    assert!(!d.sock.exists(), "socket removed");
    // Stopping twice is fine.
    v.stop().await.unwrap();
}

#[tokio::test]
async fn c_virtiofsd_starts_and_stops_cleanly() {
    let bin = Path::new(C_VIRTIOFSD);
    assert!(
        bin.exists(),
        "install qemu-system-x86 (it ships {C_VIRTIOFSD})"
    );
    assert_eq!(probe(bin).await.unwrap().flavor, Flavor::LegacyC);
    if !is_root() {
        let d = dirs();
        let err = Virtiofsd::start(bin, Flavor::LegacyC, &d.share, &d.sock, &d.log)
            .await
            .unwrap_err();
        assert!(
            matches!(err, VirtiofsdError::CFlavorNeedsRoot { .. }),
            "{err:?}"
        );
        return;
    }
    start_stop_real(bin, Flavor::LegacyC).await;
}

#[tokio::test]
async fn c_virtiofsd_leaves_no_pid_file() {
    if !is_root() {
        return; // covered by the CFlavorNeedsRoot assertion above
    }
    let d = dirs();
    let pidfile = format!(
        "/var/run/virtiofsd/{}.pid",
        d.sock.to_str().unwrap().replace('/', ".")
    );
    let mut v = Virtiofsd::start(
        Path::new(C_VIRTIOFSD),
        Flavor::LegacyC,
        &d.share,
        &d.sock,
        &d.log,
    )
    .await
    .unwrap();
    assert!(
        Path::new(&pidfile).exists(),
        "QEMU 7.2's virtiofsd writes {pidfile}"
    );
    v.stop().await.unwrap();
    assert!(!Path::new(&pidfile).exists(), "{pidfile} left behind");
}

#[tokio::test]
async fn c_virtiofsd_shares_a_dir_with_a_comma() {
    if !is_root() {
        return;
    }
    let d = dirs();
    let odd = d.share.join("a,b");
    std::fs::create_dir(&odd).unwrap();
    let mut v = Virtiofsd::start(
        Path::new(C_VIRTIOFSD),
        Flavor::LegacyC,
        &odd,
        &d.sock,
        &d.log,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    v.stop().await.unwrap();
}

#[tokio::test]
async fn dropping_stops_it_too() {
    if !is_root() {
        return; // the only real daemon CI has is the root-only C one
    }
    let d = dirs();
    let v = Virtiofsd::start(
        Path::new(C_VIRTIOFSD),
        Flavor::LegacyC,
        &d.share,
        &d.sock,
        &d.log,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let pid = v.pid();
    assert!(!gone(pid));
    drop(v);
    // Drop signalled the group; give the reaper a moment.
    let t = Instant::now();
    while !gone(pid) && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone(pid), "group {pid} still alive after drop");
    assert!(!d.sock.exists());
}

#[tokio::test]
async fn binary_that_exits_at_once_is_reported_quickly() {
    let d = dirs();
    let t = Instant::now();
    let err = Virtiofsd::start(
        Path::new("/bin/false"),
        Flavor::Rust,
        &d.share,
        &d.sock,
        &d.log,
    )
    .await
    .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(err, VirtiofsdError::EarlyExit { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("exit status: 1"), "{msg}");
    assert!(msg.contains(&d.log.display().to_string()), "{msg}");
}

#[tokio::test]
async fn early_exit_shows_the_log_tail() {
    let d = dirs();
    let fake = script(
        d.share.parent().unwrap(),
        "noisy",
        "echo line one; echo 'sandbox: boom' >&2; exit 3",
    );
    let err = Virtiofsd::start(&fake, Flavor::Rust, &d.share, &d.sock, &d.log)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(
        msg.contains("line one") && msg.contains("sandbox: boom"),
        "{msg}"
    );
}

#[tokio::test]
async fn no_socket_in_time_is_a_timeout_and_kills_it() {
    let d = dirs();
    let pidfile = d.share.parent().unwrap().join("sleeper.pid");
    let fake = script(
        d.share.parent().unwrap(),
        "sleeper",
        &format!(
            "echo $$ > '{}'; echo waiting; exec sleep 30",
            pidfile.display()
        ),
    );
    let args = VirtiofsdArgs {
        socket_path: d.sock.clone(),
        shared_dir: d.share.clone(),
        sandbox: Sandbox::None,
        rlimit_nofile: 1024,
    };
    let t = Instant::now();
    let err = Virtiofsd::start_with(
        &fake,
        Flavor::Rust,
        &args,
        &d.log,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let VirtiofsdError::SocketTimeout { log_tail, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(log_tail.contains("waiting"), "{err}");
    // The sleeper was killed and reaped: nothing in its group survives.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "sleeper {pid} left running");
}

#[tokio::test]
async fn existing_socket_path_is_refused() {
    let d = dirs();
    std::fs::write(&d.sock, b"").unwrap();
    let err = Virtiofsd::start(
        Path::new("/bin/false"),
        Flavor::Rust,
        &d.share,
        &d.sock,
        &d.log,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, VirtiofsdError::SocketExists { .. }),
        "{err:?}"
    );
    assert!(d.sock.exists(), "must not delete what it did not create");
}

#[tokio::test]
async fn missing_binary_is_a_spawn_error() {
    let d = dirs();
    let err = Virtiofsd::start(
        Path::new("/nonexistent/virtiofsd"),
        Flavor::Rust,
        &d.share,
        &d.sock,
        &d.log,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VirtiofsdError::Spawn { .. }), "{err:?}");
}

/// The Rust virtiofsd that `scripts/test.sh` installs (`cargo install
/// virtiofsd`). Outside CI a developer may not have it; in CI (`CI` set)
/// its absence is a failure, never a silent skip.
fn rust_virtiofsd() -> Option<PathBuf> {
    match std::env::var_os("VMBUILD_TEST_RUST_VIRTIOFSD") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "VMBUILD_TEST_RUST_VIRTIOFSD is unset under CI: run the suite with scripts/test.sh"
            )
        }
        None => {
            eprintln!("VMBUILD_TEST_RUST_VIRTIOFSD unset (scripts/test.sh sets it); not testing the Rust virtiofsd");
            None
        }
    }
}

#[tokio::test]
async fn rust_virtiofsd_when_available() {
    let Some(bin) = rust_virtiofsd() else { return };
    assert_eq!(probe(&bin).await.unwrap().flavor, Flavor::Rust);
    start_stop_real(&bin, Flavor::Rust).await;
}

/// Starts virtiofsd, connects a real (paused) QEMU to it so the daemon forks
/// its sandboxed worker, then stops it while QEMU is still attached: no
/// process, zombie or socket may remain.
async fn stop_while_qemu_connected(binary: &Path, flavor: Flavor) {
    let d = dirs();
    let mut v = Virtiofsd::start(binary, flavor, &d.share, &d.sock, &d.log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut chardev = std::ffi::OsString::from("socket,id=fs,path=");
    chardev.push(&d.sock);
    let mut qemu = tokio::process::Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-machine", "q35,memory-backend=mem"])
        .args(["-object", "memory-backend-memfd,id=mem,size=64M,share=on"])
        .arg("-chardev")
        .arg(&chardev)
        .args(["-device", "vhost-user-fs-pci,chardev=fs,tag=cache"])
        .args([
            "-display", "none", "-monitor", "none", "-serial", "none", "-S",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-system-x86_64 (package qemu-system-x86) must be installed");
    let pid = v.pid();
    // Wait for the connection: the daemon's group grows a worker.
    let t = Instant::now();
    let mut members;
    loop {
        members = group_members(pid);
        if members.len() > 1 || t.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        members.len() > 1,
        "no sandboxed worker appeared; log: {:?}",
        std::fs::read_to_string(&d.log)
    );
    v.stop().await.unwrap();
    for m in members {
        assert!(
            test_kill_process(Pid::from_raw(m).unwrap()).is_err(),
            "process {m} of group {pid} left behind (zombie or alive)"
        );
    }
    assert!(!d.sock.exists());
    let _ = qemu.start_kill();
    let _ = qemu.wait().await;
}

/// Every process (zombies included) whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 1..].to_owned();
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

#[tokio::test]
async fn c_virtiofsd_stops_cleanly_while_qemu_is_connected() {
    if !is_root() {
        return;
    }
    stop_while_qemu_connected(Path::new(C_VIRTIOFSD), Flavor::LegacyC).await;
}

#[tokio::test]
async fn rust_virtiofsd_stops_cleanly_while_qemu_is_connected() {
    let Some(bin) = rust_virtiofsd() else { return };
    stop_while_qemu_connected(&bin, Flavor::Rust).await;
}

#[tokio::test]
async fn start_found_uses_the_lookup_and_probe() {
    // Runs in a child process so QEMU_VIRTIOFS_PATH does not leak into
    // other tests of this binary.
    if std::env::var_os("VMBUILD_CACHE_START_FOUND_CHILD").is_none() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(C_VIRTIOFSD, tmp.path().join("virtiofsd")).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "start_found_uses_the_lookup_and_probe",
                "--nocapture",
            ])
            .env("VMBUILD_CACHE_START_FOUND_CHILD", "1")
            .env("QEMU_VIRTIOFS_PATH", tmp.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    let d = dirs();
    let res = Virtiofsd::start_found(&d.share, &d.sock, &d.log).await;
    if is_root() {
        let mut v = res.unwrap_or_else(|e| panic!("{e}"));
        assert!(d.sock.exists());
        v.stop().await.unwrap();
    } else {
        let err = res.unwrap_err();
        assert!(
            matches!(err, VirtiofsdError::CFlavorNeedsRoot { .. }),
            "{err:?}"
        );
    }
}
