//! The boot-time floor for benchmarks: the same QEMU command line and
//! kernel as a real run, but an initramfs whose /init (a busybox script)
//! powers off at once — no guest init, no modules, no control channel use.

use std::path::Path;
use std::time::{Duration, Instant};

use super::launch::Launch;
use super::options::VmOptions;
use super::plan::BootFiles;
use crate::error::RunError;

/// The floor initramfs: `/init` = `poweroff -f` through busybox.
pub fn floor_initramfs(busybox: &Path, out: &Path) -> Result<(), RunError> {
    let bb = std::fs::read(busybox)
        .map_err(|e| RunError::io(format!("reading {}", busybox.display()), e))?;
    let mut w = vmbuild_image::cpio::CpioWriter::new(Vec::new());
    let script = b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n";
    let write = |w: &mut vmbuild_image::cpio::CpioWriter<Vec<u8>>| -> std::io::Result<()> {
        for d in ["dev", "proc", "sys", "bin"] {
            w.dir(d, 0o755)?;
        }
        w.file("bin/busybox", 0o755, &bb)?;
        w.file("init", 0o755, script)
    };
    write(&mut w).map_err(|e| RunError::io("writing the floor initramfs", e))?;
    let bytes = w
        .finish()
        .map_err(|e| RunError::io("writing the floor initramfs", e))?;
    std::fs::write(out, bytes).map_err(|e| RunError::io(format!("writing {}", out.display()), e))
}

/// Boots `kernel` with `initrd` under the same QEMU command line a run uses
/// and returns the wall time from spawning QEMU to its exit.
pub async fn boot_floor(
    opts: &VmOptions,
    kernel: &Path,
    initrd: &Path,
) -> Result<Duration, RunError> {
    let boot = BootFiles {
        kernel: kernel.to_path_buf(),
        initrd: initrd.to_path_buf(),
    };
    let launch = Launch::prepare(opts, &boot, false)?;
    let argv = vmbuild_qemu::build_argv(&launch.plan.qemu);
    let log = super::plan::qemu_log(launch.rundir.path());
    let t0 = Instant::now();
    let mut qemu = vmbuild_qemu::QemuProcess::spawn(
        &launch.plan.qemu.qemu,
        &argv,
        &log,
        launch.confined.child.as_ref(),
    )?;
    // QEMU connects to both sockets; the kernel's backlog completes the
    // connections, so nothing needs accepting for it to boot.
    let status = tokio::time::timeout(Duration::from_secs(60), qemu.wait())
        .await
        .map_err(|_| RunError::Timeout {
            after: Duration::from_secs(60),
            during: "booting the floor VM".into(),
        })?
        .map_err(|e| RunError::io("waiting for QEMU", e))?;
    let took = t0.elapsed();
    if !status.success() {
        return Err(RunError::QemuStartFailed {
            status: status.to_string(),
            detail: qemu.read_log(),
        });
    }
    Ok(took)
}
