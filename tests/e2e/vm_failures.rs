//! Faults users hit with similar tools, replayed: a guest that never comes
//! up, a virtiofsd that dies under a running VM, and QEMU refusing to start
//! in the ways that used to hide its own error. Each must end promptly with
//! its exit code, a message that says what happened, and no leftovers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{stderr, wait_with_limit, write_script, Vmb};

const EXIT_VM_FAILURE: i32 = 123;
const EXIT_SETUP: i32 = 125;

/// The static busybox vmbuild keeps for its initramfs: run as `/init` it
/// becomes busybox's own init, which prints a line and waits for a console
/// forever — a guest that boots but never speaks the protocol.
fn stalling_init() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let root = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&home).join(".cache"))
        .join("vmbuild/busybox");
    let found = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh boots once first)", root.display()))
        .flatten()
        .map(|e| e.path().join("bin/busybox"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("no cached busybox under {}", root.display()))
}

#[test]
fn a_guest_that_never_answers_ends_with_123_and_its_console() {
    let v = Vmb::new();
    let t0 = Instant::now();
    let o = v
        .cmd()
        .env("VMBUILD_INIT", stalling_init())
        // Long enough for the kernel to reach busybox's init (whose line
        // the console tail must show) even on a loaded host: 4 s was not
        // when three builds shared the 2 cores.
        .args(["run", "--boot-timeout", "15", "--", "true"])
        .output()
        .expect("spawn");
    v.assert_clean();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(EXIT_VM_FAILURE), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        err.contains("first message (Hello) after 15s") && err.contains("--boot-timeout"),
        "{err}"
    );
    // The console tail shows what the stuck guest printed.
    assert!(err.contains("Please press Enter"), "{err}");
}

#[test]
fn boot_timeout_also_comes_from_the_environment_and_bad_values_are_refused() {
    let v = Vmb::new();
    let o = v
        .cmd()
        .env("VMBUILD_INIT", stalling_init())
        .env("VMBUILD_BOOT_TIMEOUT", "3s")
        .args(["run", "--", "true"])
        .output()
        .expect("spawn");
    v.assert_clean();
    assert_eq!(o.status.code(), Some(EXIT_VM_FAILURE), "{}", stderr(&o));
    assert!(stderr(&o).contains("after 3s"), "{}", stderr(&o));
    let o = v.run(&["run", "--boot-timeout", "soon", "--", "true"]);
    assert_eq!(o.status.code(), Some(EXIT_SETUP));
    assert!(stderr(&o).contains("invalid duration"), "{}", stderr(&o));
}

/// `pid` of the virtiofsd serving a run under `v`.
fn virtiofsd_of(v: &Vmb) -> u32 {
    let t0 = Instant::now();
    loop {
        let found = crate::harness::processes_mentioning(v.tmp.path())
            .into_iter()
            .find(|(_, cmd)| cmd.contains("virtiofsd") && !cmd.contains("vmbuild "));
        if let Some((pid, _)) = found {
            return pid;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no virtiofsd appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill virtiofsd");
}

#[test]
fn virtiofsd_dying_mid_run_stops_the_vm_promptly_naming_it() {
    let v = Vmb::new();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_string_lossy().into_owned();
    let mut child = v
        .cmd()
        .env("QEMU_USE_VIRTIOFS", "1")
        .args(["run", "--cache-dir", &c, "--", "sh", "-c"])
        .arg("echo ready; sleep 60; ls /var/cache/vmbuild")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "ready\n");
    kill9(virtiofsd_of(&v));
    let t0 = Instant::now();
    let status = wait_with_limit(&mut child, Duration::from_secs(20));
    let took = t0.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
    assert_eq!(status.code(), Some(EXIT_VM_FAILURE), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        err.contains("virtiofsd serving share vmbuild-cache") && err.contains("signal: 9"),
        "{err}"
    );
    v.assert_clean();
}

#[test]
fn virtiofsd_dying_during_boot_stops_the_vm_too() {
    // A virtiofsd that serves its socket, then dies while the guest boots.
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let real = std::env::var_os("VMBUILD_TEST_RUST_VIRTIOFSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/qemu/virtiofsd"));
    let wrapper = dir.path().join("virtiofsd");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\ncase \"$1\" in --version|-V|--help|-h) exec \"{0}\" \"$@\";; esac\n# serves, then dies while the guest boots\n\"{0}\" \"$@\" &\nsleep 1\nkill -9 $!\necho 'fake crash' >&2\nexit 1\n",
            real.display()
        ),
    );
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let o = v
        .cmd()
        .env("QEMU_USE_VIRTIOFS", "1")
        .env("QEMU_VIRTIOFS_PATH", dir.path())
        .args(["run", "--cache-dir"])
        .arg(&cache)
        .args(["--", "true"])
        .output()
        .expect("spawn");
    v.assert_clean();
    let err = stderr(&o);
    // Dead before QEMU spawned (setup error naming virtiofsd) or after
    // (a VM failure naming it): either way, promptly, and saying so.
    assert!(
        matches!(o.status.code(), Some(EXIT_VM_FAILURE) | Some(EXIT_SETUP)),
        "{err}"
    );
    assert!(err.contains("virtiofsd"), "{err}");
}

#[test]
fn qemu_refusing_an_option_shows_qemu_own_error() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("qemu-wrapper");
    write_script(
        &wrapper,
        "#!/bin/sh\nexec qemu-system-x86_64 \"$@\" -device no-such-device\n",
    );
    let o = v.run(&["run", "--qemu", &wrapper.to_string_lossy(), "--", "true"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(EXIT_SETUP), "{err}");
    assert!(
        err.contains("'no-such-device' is not a valid device model name"),
        "{err}"
    );
}

/// A "QEMU" that connects to the QMP socket, breaks the handshake by
/// closing it, says why on stderr and exits: the handshake error must not
/// hide its words.
const BREAKS_QMP: &str = r#"#!/usr/bin/env python3
import socket, sys, time
for i, a in enumerate(sys.argv):
    if a.startswith("socket,id=qmp,"):
        path = dict(kv.split("=", 1) for kv in a.split(",")[2:] if "=" in kv)["path"]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.close()
print("fake-qemu: cannot map guest RAM: out of luck", file=sys.stderr, flush=True)
time.sleep(0.3)
sys.exit(1)
"#;

#[test]
fn qemu_dying_after_breaking_the_handshake_shows_its_own_error() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("qemu-fake");
    write_script(&fake, BREAKS_QMP);
    let o = v.run(&["run", "--qemu", &fake.to_string_lossy(), "--", "true"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(EXIT_SETUP), "{err}");
    assert!(err.contains("cannot map guest RAM: out of luck"), "{err}");
    assert!(err.contains("exit status: 1"), "{err}");
}
