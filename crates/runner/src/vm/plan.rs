//! The VM plan: options in, everything a boot does out — the QEMU
//! configuration, the guest's `Setup` message and the virtiofsd daemons to
//! start — with no process, socket or file touched. [`super::Vm::boot`]
//! only executes a plan, so what a VM will look like is unit-tested here
//! like `vmbuild_qemu::build_argv`.
//!
//! Shares are a loop: each [`SharedDir`] becomes one QEMU share under its
//! tag, one guest mount at its target, and in virtiofs mode one virtiofsd.

use std::path::{Path, PathBuf};

use vmbuild_cache::SharedDir;
use vmbuild_proto::{CacheMode, MountSpec, NetworkSpec, RootSpec, ScratchSpec, Setup, GUEST_HOME};
use vmbuild_qemu::{
    Accel, Arch, Drive, DriveFormat, HostOs, Network, QemuVersion, Share, ShareKind, VmConfig,
};

use super::options::{RootImage, VmOptions};
pub use crate::error::PlanError;

/// 9p message size: the largest this guest kernel accepts
/// (docs/boot.md#ninep-msize).
pub const NINEP_MSIZE: u32 = 512_000;
/// The guest's hostname (also in its /etc/hosts, so it resolves).
pub const GUEST_HOSTNAME: &str = "vmbuild";
/// The guest device of the root image: it is the only (first) virtio disk.
pub const ROOT_DEVICE: &str = "/dev/vda";

/// What was decided about the host before planning: which QEMU, which
/// accelerator, and the host facts the command line depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostChoice {
    pub qemu: PathBuf,
    pub os: HostOs,
    pub arch: Arch,
    pub accel: Accel,
    /// Host TSC rate in kHz (x86_64), see `vmbuild_qemu::probe_tsc_khz`.
    pub tsc_khz: Option<u64>,
    /// The QEMU release (`vmbuild_qemu::confine::probe`).
    pub version: QemuVersion,
    /// Start QEMU with its seccomp sandbox (it supports it and the run is
    /// not unconfined).
    pub sandbox: bool,
}

/// The boot files: an uncompressed kernel and the initramfs with the init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// One virtiofsd to start before QEMU, serving `shared_dir` on `socket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonPlan {
    /// The share's mount tag, for messages ("virtiofsd for vmbuild-cache").
    pub tag: String,
    pub shared_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// The scratch disk to make before QEMU starts (see
/// [`VmOptions::disk_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchPlan {
    /// A sparse file in the run dir (removed with it).
    pub path: PathBuf,
    pub bytes: u64,
}

/// Everything a boot does, decided.
#[derive(Debug, Clone, PartialEq)]
pub struct VmPlan {
    pub qemu: VmConfig,
    pub setup: Setup,
    pub daemons: Vec<DaemonPlan>,
    pub scratch: Option<ScratchPlan>,
}

/// The scratch disk's file in `rundir`.
pub fn scratch_image(rundir: &Path) -> PathBuf {
    rundir.join("scratch.img")
}

/// The guest device of the `n`-th virtio disk (`/dev/vda`, `/dev/vdb` ...).
fn virtio_disk(n: usize) -> String {
    let letter = char::from(b'a' + u8::try_from(n.min(25)).unwrap_or(25));
    format!("/dev/vd{letter}")
}

/// The run directory's fixed paths (sockets and logs).
pub fn control_socket(rundir: &Path) -> PathBuf {
    rundir.join("ctl.sock")
}
/// QMP socket path in `rundir`.
pub fn qmp_socket(rundir: &Path) -> PathBuf {
    rundir.join("qmp.sock")
}
/// Where the host listens for a saved VM state (warm start) in `rundir`;
/// QEMU connects to it on QMP `migrate`.
pub fn migrate_socket(rundir: &Path) -> PathBuf {
    rundir.join("migrate.sock")
}
/// QEMU's own stdout/stderr log in `rundir`.
pub fn qemu_log(rundir: &Path) -> PathBuf {
    rundir.join("qemu.log")
}

fn valid_name(n: &str) -> bool {
    (1..=16).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Plans a VM: `opts` validated by [`VmOptions::validate`] (the root image
/// path is then absolute and readable), the host decided, the boot files
/// ready, and `rundir` the directory for sockets and logs.
pub fn plan(
    opts: &VmOptions,
    host: &HostChoice,
    boot: &BootFiles,
    rundir: &Path,
) -> Result<VmPlan, PlanError> {
    let mut shares = Vec::new();
    let mut mounts = Vec::new();
    let mut daemons = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for s in &opts.shares {
        if !valid_name(&s.name) {
            return Err(PlanError::BadShareName(s.name.clone()));
        }
        if names.contains(&s.name.as_str()) {
            return Err(PlanError::DuplicateShare(s.name.clone()));
        }
        if !s.target.starts_with('/') {
            return Err(PlanError::RelativeTarget(s.target.clone()));
        }
        names.push(&s.name);
        let tag = s.tag();
        let kind = match s.mode {
            CacheMode::Overlay => ShareKind::NineP { read_only: true },
            CacheMode::Virtiofs => {
                let socket = rundir.join(format!("virtiofs-{}.sock", s.name));
                daemons.push(DaemonPlan {
                    tag: tag.clone(),
                    shared_dir: s.host_dir.clone(),
                    socket: socket.clone(),
                    log: rundir.join(format!("virtiofsd-{}.log", s.name)),
                });
                ShareKind::Virtiofs { socket }
            }
        };
        shares.push(Share {
            tag: tag.clone(),
            host_path: s.host_dir.clone(),
            kind,
        });
        mounts.push(guest_mount(s, tag));
    }

    let mut drives: Vec<Drive> = opts.root_image.iter().map(root_drive).collect();
    let scratch = opts.disk_bytes.map(|bytes| ScratchPlan {
        path: scratch_image(rundir),
        bytes,
    });
    let scratch_spec = scratch.as_ref().map(|sc| {
        drives.push(Drive {
            path: sc.path.clone(),
            read_only: false,
            format: DriveFormat::Raw,
        });
        ScratchSpec {
            device: virtio_disk(drives.len() - 1),
        }
    });
    let mut mkdirs = vec![GUEST_HOME.to_string()];
    mkdirs.extend(opts.mkdirs.iter().cloned());
    let setup = Setup {
        mounts,
        mkdirs,
        symlinks: opts.symlinks.clone(),
        root: opts.root_image.as_ref().map(root_spec),
        network: network_spec(opts.network),
        hostname: Some(GUEST_HOSTNAME.into()),
        ca_certs: opts.ca_certs.clone(),
        scratch: scratch_spec,
    };
    let qemu = VmConfig {
        qemu: host.qemu.clone(),
        host_os: host.os,
        arch: host.arch,
        accel: host.accel,
        cpus: opts.cpus,
        memory_mib: opts.memory_mib,
        kernel: boot.kernel.clone(),
        initrd: boot.initrd.clone(),
        kernel_cmdline_extra: opts.kernel_args.clone(),
        tsc_khz: host.tsc_khz,
        console_log: opts
            .console_log
            .clone()
            .unwrap_or_else(|| rundir.join("console.log")),
        control_socket: control_socket(rundir),
        qmp_socket: qmp_socket(rundir),
        shares,
        drives,
        network: opts.network,
        version: host.version,
        sandbox: host.sandbox,
    };
    Ok(VmPlan {
        qemu,
        setup,
        daemons,
        scratch,
    })
}

fn guest_mount(s: &SharedDir, tag: String) -> MountSpec {
    MountSpec {
        tag,
        mode: s.mode,
        target: s.target.clone(),
        aliases: s.aliases.clone(),
        msize: Some(NINEP_MSIZE),
        owner: s.owner,
        root_mode: s.root_mode,
    }
}

/// The root image as the guest's first disk: read-only, raw.
fn root_drive(r: &RootImage) -> Drive {
    Drive {
        path: r.path.clone(),
        read_only: true,
        format: DriveFormat::Raw,
    }
}

fn root_spec(r: &RootImage) -> RootSpec {
    RootSpec {
        device: ROOT_DEVICE.into(),
        fstype: r.fstype.clone(),
    }
}

/// What the guest init is told about its NIC: QEMU user-mode networking's
/// fixed addresses, or nothing (loopback only).
fn network_spec(network: Network) -> Option<NetworkSpec> {
    match network {
        Network::None => None,
        Network::User => Some(NetworkSpec {
            address: vmbuild_qemu::SLIRP_GUEST_ADDRESS.into(),
            gateway: vmbuild_qemu::SLIRP_GATEWAY.into(),
            dns: vec![vmbuild_qemu::SLIRP_DNS.into()],
        }),
    }
}

#[cfg(test)]
mod tests;
