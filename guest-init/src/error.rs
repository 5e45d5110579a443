//! The one error type of the init. Every variant names what was being done,
//! so the host (and the console log) can tell the user what to fix.

use nix::errno::Errno;
use std::io;
use std::path::PathBuf;

use vmbuild_proto::FrameError;

/// Anything that stops the init; all of them end on the fatal path.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A mount(2) call failed.
    #[error(
        "mounting {fstype} '{device}' at {target} with options '{options}' failed: {errno} \
         (is the {fstype} module in the initramfs and is the device/tag present on the QEMU command line?)"
    )]
    Mount {
        fstype: String,
        device: String,
        target: String,
        options: String,
        errno: Errno,
    },

    /// A system call other than mount failed.
    #[error("{context}: {errno}")]
    Sys { context: String, errno: Errno },

    /// File I/O failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },

    /// `finit_module` refused a module.
    #[error(
        "loading kernel module {path} failed: {errno} (modules.load must list dependencies first \
         and match the kernel release; rebuild the initramfs)"
    )]
    Module { path: PathBuf, errno: Errno },

    /// A line of `modules.load` is unusable.
    #[error("{path} line {line}: {reason} (rebuild the initramfs)")]
    ModuleList {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// The control port never showed up.
    #[error(
        "virtio-serial port '{name}' not found after {waited_ms} ms; ports seen: [{seen}] \
         (does QEMU have -device virtserialport,name={name} and the initramfs virtio_console?)"
    )]
    PortNotFound {
        name: String,
        waited_ms: u128,
        seen: String,
    },

    /// The root image's disk never showed up.
    #[error(
        "root device {device} not found after {waited_ms} ms; block devices seen: [{seen}] \
         (does QEMU have the image as a -drive with a virtio-blk-device, and the initramfs virtio_blk?)"
    )]
    DeviceNotFound {
        device: String,
        waited_ms: u128,
        seen: String,
    },

    /// Networking was asked for but no NIC showed up.
    #[error(
        "no network interface appeared within {waited_ms} ms; interfaces seen: [{seen}] \
         (does QEMU have -netdev user with a virtio-net-device, and the initramfs virtio_net?)"
    )]
    NicNotFound { waited_ms: u128, seen: String },

    /// Reading or writing the control channel failed.
    #[error("control channel: {0}")]
    Frame(#[from] FrameError),

    /// The host sent something the init cannot act on.
    #[error("invalid request from host: {0}")]
    Invalid(String),
}

impl InitError {
    /// Wraps an errno with what was being done.
    pub fn sys(context: impl Into<String>, errno: Errno) -> Self {
        Self::Sys {
            context: context.into(),
            errno,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with [`InitError`].
pub type Result<T, E = InitError> = std::result::Result<T, E>;
