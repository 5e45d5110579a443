//! Timeouts, Ctrl-C and setup errors: distinct exit codes, one-line
//! errors, and nothing left behind.

use std::io::Read;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{assert_one_line_error, stderr, wait_with_limit, Boot, Vmb};

in_both_boot_modes!(
    timeout_stops_the_vm_with_its_own_code,
    sigint_mid_run_stops_everything,
);

const EXIT_VM_FAILURE: i32 = 123;
const EXIT_TIMEOUT: i32 = 124;
const EXIT_SETUP: i32 = 125;
const EXIT_INTERRUPTED: i32 = 130;

fn timeout_stops_the_vm_with_its_own_code(boot: Boot) {
    let v = Vmb::booting(boot);
    let t0 = Instant::now();
    let o = v.run(&["run", "--timeout", "5", "--", "sleep", "300"]);
    let took = t0.elapsed();
    assert_eq!(
        o.status.code(),
        Some(EXIT_TIMEOUT),
        "stderr: {}",
        stderr(&o)
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "took {took:?}"
    );
    assert!(stderr(&o).contains("timed out after 5s"), "{}", stderr(&o));
}

fn sigint_mid_run_stops_everything(boot: Boot) {
    let v = Vmb::booting(boot);
    let mut child = v.spawn(&["run", "--", "sh", "-c", "echo ready; sleep 300"]);
    // Wait until the command really runs in the guest.
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).expect("read ready");
    assert_eq!(&buf, b"ready\n");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("send SIGINT");
    let status = wait_with_limit(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .ok();
    assert_eq!(status.code(), Some(EXIT_INTERRUPTED), "stderr: {err}");
    v.assert_clean();
}

#[test]
fn missing_kernel_is_a_one_line_setup_error() {
    let v = Vmb::new();
    let o = v.run(&["run", "--kernel", "/nonexistent/vmlinuz", "--", "true"]);
    assert_eq!(o.status.code(), Some(EXIT_SETUP));
    assert!(assert_one_line_error(&o).contains("/nonexistent/vmlinuz"));
}

#[test]
fn corrupt_kernel_is_a_one_line_setup_error() {
    let v = Vmb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let noise: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&k, noise).unwrap();
    let mods = dir.path().join("modules");
    std::fs::create_dir(&mods).unwrap();
    let k = k.to_string_lossy().into_owned();
    let m = mods.to_string_lossy().into_owned();
    let o = v.run(&["run", "--kernel", &k, "--kernel-modules", &m, "--", "true"]);
    assert_eq!(o.status.code(), Some(EXIT_SETUP), "stderr: {}", stderr(&o));
    assert!(assert_one_line_error(&o).contains("not a Linux kernel"));
}

#[test]
fn missing_qemu_is_a_one_line_setup_error() {
    let v = Vmb::new();
    let o = v.run(&[
        "run",
        "--qemu",
        "/nonexistent/qemu-system-x86_64",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(EXIT_SETUP));
    assert!(assert_one_line_error(&o).contains("/nonexistent/qemu-system-x86_64"));
    // Not on PATH either.
    let o = v
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(EXIT_SETUP), "stderr: {}", stderr(&o));
    assert!(assert_one_line_error(&o).contains("qemu-system-x86_64"));
    v.assert_clean();
}

#[test]
fn unknown_accel_is_a_one_line_setup_error() {
    let v = Vmb::new();
    let o = v.run(&["run", "--accel", "warp", "--", "true"]);
    assert_eq!(o.status.code(), Some(EXIT_SETUP));
    let line = assert_one_line_error(&o);
    assert!(line.contains("warp") && line.contains("tcg"), "{line}");
}

#[test]
fn a_guest_kernel_panic_is_reported_as_a_vm_failure() {
    // The init cannot be killed by a command (PID 1 ignores it), but the
    // kernel can be crashed on purpose through sysrq.
    let v = Vmb::new();
    let o = v.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo c > /proc/sysrq-trigger; sleep 30",
    ]);
    assert_eq!(
        o.status.code(),
        Some(EXIT_VM_FAILURE),
        "stderr: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("kernel panic"), "{}", stderr(&o));
}
