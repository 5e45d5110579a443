//! Everything decided and bound before QEMU starts: the host choice (QEMU
//! binary, accelerator), the run directory, the plan, and the two
//! listening sockets QEMU connects to.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::options::VmOptions;
use super::plan::{plan, BootFiles, HostChoice, VmPlan};
use crate::error::RunError;

/// What was decided while booting, for `--verbose` and `doctor`.
#[derive(Debug, Clone)]
pub struct BootInfo {
    pub qemu: PathBuf,
    pub accel: vmbuild_qemu::Accel,
    pub accel_reason: String,
    pub argv: Vec<std::ffi::OsString>,
}

/// A planned VM with its run dir and listening sockets.
pub(crate) struct Launch {
    pub rundir: tempfile::TempDir,
    pub ctl_listener: UnixListener,
    pub qmp_listener: UnixListener,
    pub plan: VmPlan,
    pub info: BootInfo,
}

impl Launch {
    /// Detects the host, plans the VM for `opts` (validated) and binds the
    /// control and QMP sockets.
    pub fn prepare(opts: &VmOptions, boot: &BootFiles) -> Result<Launch, RunError> {
        let (host, accel_reason) = detect_host(opts)?;
        let rundir = make_rundir()?;
        let plan = plan(opts, &host, boot, rundir.path())?;
        let ctl_listener = bind(&plan.qemu.control_socket)?;
        let qmp_listener = bind(&plan.qemu.qmp_socket)?;
        let info = BootInfo {
            qemu: host.qemu,
            accel: host.accel,
            accel_reason,
            argv: Vec::new(),
        };
        Ok(Launch {
            rundir,
            ctl_listener,
            qmp_listener,
            plan,
            info,
        })
    }
}

/// The QEMU binary and accelerator for `opts` on this host, and why that
/// accelerator.
fn detect_host(opts: &VmOptions) -> Result<(HostChoice, String), RunError> {
    let facts = vmbuild_qemu::probe_host();
    let (accel, reason) = match opts.accel {
        Some(a) => (a, format!("{a}: requested with --accel")),
        None => vmbuild_qemu::choose_accel(&facts),
    };
    let qemu = vmbuild_qemu::find_qemu(facts.arch, opts.qemu.as_deref())?;
    Ok((
        HostChoice {
            qemu,
            os: facts.os,
            arch: facts.arch,
            accel,
            tsc_khz: facts.tsc_khz,
        },
        reason,
    ))
}

/// A directory for sockets and logs. Unix socket paths are limited to 108
/// bytes, so a long `$TMPDIR` falls back to `/tmp`.
fn make_rundir() -> Result<tempfile::TempDir, RunError> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 64 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix("vmbuild-")
        .tempdir_in(&base)
        .map_err(|e| {
            RunError::io(
                format!("cannot create a run directory in {}", base.display()),
                e,
            )
        })
}

fn bind(path: &Path) -> Result<UnixListener, RunError> {
    UnixListener::bind(path)
        .map_err(|e| RunError::io(format!("cannot listen on {}", path.display()), e))
}
