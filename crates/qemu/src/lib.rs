//! QEMU for vmbuild: the command-line builder (plain data -> argv, pure),
//! accelerator detection, finding the binary, process supervision, QMP,
//! reading the guest console, and virtiofsd (the vhost-user backend of the
//! virtiofs device: lookup, argv and supervision).

pub mod accel;
pub mod argv;
pub mod confine;
pub mod console;
pub mod find;
pub mod process;
pub mod qmp;
pub mod version;
pub mod virtiofsd;

use std::path::PathBuf;

pub use accel::{
    choose_accel, parse_cpu_flags, parse_tsc_khz, probe_host, probe_tsc_khz, HostFacts,
};
pub use argv::{
    build_argv, escape_opt_value, incoming_args, kernel_cmdline, Accel, Arch, Drive, DriveFormat,
    HostOs, Network, QemuVersion, Share, ShareKind, VmConfig, INCOMING_FD, SLIRP_DNS,
    SLIRP_GATEWAY, SLIRP_GUEST_ADDRESS,
};
pub use console::{classify, tail, GuestFailure};
pub use find::{find_qemu, install_hint, parse_qemu_version, qemu_version, QEMU_ENV};
pub use process::QemuProcess;
pub use qmp::{accept as accept_qmp, Qmp, QmpEvent};

/// Everything that can go wrong in this crate. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("unknown accelerator {given:?}; valid values: kvm, hvf, tcg")]
    InvalidAccel { given: String },

    #[error(
        "{name} not found on PATH; install it ({hint}) or set VMBUILD_QEMU to the QEMU binary"
    )]
    QemuNotFound { name: String, hint: String },

    #[error("QEMU binary {} ({origin}) does not exist or is not a file; fix the path or unset it to search PATH", path.display())]
    QemuPathMissing { path: PathBuf, origin: &'static str },

    #[error("cannot run {} --version: {source}; check that it is an executable QEMU", path.display())]
    Version {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read a version from `{} --version` (output: {output:?}); is it really qemu-system-*?", path.display())]
    VersionUnparsed { path: PathBuf, output: String },

    #[error("cannot create the QEMU log file {}: {source}; check the directory exists and is writable", path.display())]
    LogFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start {}: {source}; check the QEMU path (or set VMBUILD_QEMU)", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("accepting QEMU's QMP connection failed: {0}")]
    QmpAccept(#[source] std::io::Error),

    #[error("QMP handshake with QEMU failed: {0}; see the QEMU log for why it closed the monitor")]
    QmpHandshake(#[source] std::io::Error),

    #[error("QMP command {command} failed: {source}")]
    QmpCommand {
        command: &'static str,
        #[source]
        source: qapi::ExecuteError,
    },
}
