//! Everything decided and bound before QEMU starts: the host choice (QEMU
//! binary, accelerator), the run directory, the plan, and the two
//! listening sockets QEMU connects to.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::confine::{self, Confined};
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
    /// What QEMU runs with (`ConfinePlan::summary`), e.g. `uid 64012
    /// (vmbuild), keeps only CAP_DAC_READ_SEARCH (read-only 9p export),
    /// seccomp sandbox, cgroup v1 memory 2.2G pids 256, nofile 4096, ...`.
    pub confinement: String,
}

/// A planned VM with its run dir and listening sockets.
pub(crate) struct Launch {
    pub rundir: tempfile::TempDir,
    pub ctl_listener: UnixListener,
    pub qmp_listener: UnixListener,
    /// Where QEMU sends its state when this boot may be saved (warm start).
    pub migrate_listener: Option<UnixListener>,
    pub plan: VmPlan,
    pub info: BootInfo,
    pub confined: Confined,
    /// `--boot-timeout` (see [`super::GuestWaits::for_accel`]).
    pub boot_timeout: Option<std::time::Duration>,
}

impl Launch {
    /// Detects the host, decides QEMU's confinement, plans the VM for
    /// `opts` (validated), binds the control and QMP sockets and prepares
    /// them, the run dir, the console log and the cgroup for QEMU's uid.
    /// With `saveable`, also the socket a saved state is sent to.
    pub fn prepare(opts: &VmOptions, boot: &BootFiles, saveable: bool) -> Result<Launch, RunError> {
        let (mut host, accel_reason) = detect_host(opts)?;
        let mut files = vec![boot.kernel.as_path(), boot.initrd.as_path()];
        if let Some(r) = &opts.root_image {
            files.push(&r.path);
        }
        let (probe, confine_plan) = confine::decide(&host.qemu, opts, host.accel, &files);
        if let Some(why) = &confine_plan.refused {
            return Err(RunError::Flag {
                flag: "--network".into(),
                why: why.clone(),
            });
        }
        if let Some(uid) = confine_plan.firewall_uid {
            vmbuild_qemu::confine::firewall::ensure(uid).map_err(|why| RunError::Flag {
                flag: "--network user,restrict-host".into(),
                why,
            })?;
        }
        host.version = probe.version;
        host.sandbox = confine_plan.sandbox;
        let rundir = make_rundir()?;
        let plan = plan(opts, &host, boot, rundir.path())?;
        let ctl_listener = bind(&plan.qemu.control_socket)?;
        let qmp_listener = bind(&plan.qemu.qmp_socket)?;
        let migrate_path = super::plan::migrate_socket(rundir.path());
        let migrate_listener = if saveable {
            Some(bind(&migrate_path)?)
        } else {
            None
        };
        let mut sockets = vec![
            plan.qemu.control_socket.as_path(),
            plan.qemu.qmp_socket.as_path(),
        ];
        if saveable {
            sockets.push(&migrate_path);
        }
        if let Some(sc) = &plan.scratch {
            super::scratch::make(sc)?;
        }
        let confinement = confine_plan.summary();
        tracing::debug!(%confinement, notes = ?confine_plan.notes, "QEMU confinement");
        let confined = confine::prepare(
            probe,
            confine_plan,
            rundir.path(),
            &sockets,
            &plan.qemu.console_log,
            plan.scratch.as_ref().map(|sc| sc.path.as_path()),
        )?;
        let info = BootInfo {
            qemu: host.qemu,
            accel: host.accel,
            accel_reason,
            argv: Vec::new(),
            confinement,
        };
        Ok(Launch {
            rundir,
            ctl_listener,
            qmp_listener,
            migrate_listener,
            plan,
            info,
            confined,
            boot_timeout: opts.boot_timeout,
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
            // Filled in from the probe by Launch::prepare.
            version: vmbuild_qemu::QemuVersion::new(0, 0, 0),
            sandbox: false,
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
