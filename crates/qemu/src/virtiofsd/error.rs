//! The one error type of virtiofsd lookup and supervision.

use std::path::PathBuf;
use std::time::Duration;

use crate::virtiofsd::{Flavor, Sandbox};

/// Everything that can go wrong finding, identifying or running virtiofsd.
///
/// Every message says what was being done, on what, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum VirtiofsdError {
    /// `QEMU_VIRTIOFS_PATH` is set but holds no executable `virtiofsd`.
    #[error("QEMU_VIRTIOFS_PATH is set to {} but {} is not an executable file; set QEMU_VIRTIOFS_PATH to the directory that contains virtiofsd (not the binary itself), or unset it to search the default places", .dir.display(), .candidate.display())]
    VirtiofsdNotInDir { dir: PathBuf, candidate: PathBuf },

    /// No `virtiofsd` anywhere we looked.
    #[error("virtiofsd not found (needed for the virtiofs cache mode); looked in: {}; {install_hint}; or set QEMU_VIRTIOFS_PATH to the directory containing virtiofsd, or use the default mode (read-only 9p + overlay: unset QEMU_USE_VIRTIOFS / --cache-mode overlay)", join_paths(.searched))]
    VirtiofsdNotFound {
        searched: Vec<PathBuf>,
        install_hint: &'static str,
    },

    /// Running `virtiofsd --help` to tell the flavours apart failed.
    #[error("cannot run {} --help to identify it: {reason}; check that it is a working virtiofsd or point QEMU_VIRTIOFS_PATH at another one", .binary.display())]
    Probe { binary: PathBuf, reason: String },

    /// `virtiofsd --help` printed something we do not recognise.
    #[error("{} does not look like virtiofsd: its --help output has neither --shared-dir (Rust virtiofsd) nor -o source= (QEMU's C virtiofsd); it begins: {head:?}", .binary.display())]
    UnknownFlavor { binary: PathBuf, head: String },

    /// The requested sandbox does not exist for this flavour.
    #[error("{flavor} has no --sandbox={sandbox}; use one of: {}", .flavor.sandboxes().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))]
    UnsupportedSandbox { flavor: Flavor, sandbox: Sandbox },

    /// QEMU's C virtiofsd cannot run unprivileged.
    #[error("{} is QEMU's legacy C virtiofsd, which only runs as root; install the Rust virtiofsd (`cargo install virtiofsd`, or `apt-get install virtiofsd` on newer Debian/Ubuntu) and set QEMU_VIRTIOFS_PATH to its directory, or run vmbuild as root", .binary.display())]
    CFlavorNeedsRoot { binary: PathBuf },

    /// Something already sits where the vhost-user socket should go.
    #[error("virtiofsd socket path {} already exists; another virtiofsd may be using it: stop it or remove the file", .path.display())]
    SocketExists { path: PathBuf },

    /// The log file for virtiofsd could not be created.
    #[error("cannot create virtiofsd log {}: {source}", .path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },

    /// `virtiofsd` could not be started at all.
    #[error("cannot start {}: {source}; check that the file is an executable virtiofsd", .binary.display())]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },

    /// The VM's cgroup could not be opened for virtiofsd to join.
    #[error("cannot put virtiofsd in its VM's cgroup: {0}")]
    Cgroup(String),

    /// `virtiofsd` exited before its socket appeared.
    #[error("virtiofsd ({}) exited with {status} before creating its socket {}; full log: {}; last lines:\n{log_tail}", .binary.display(), .socket.display(), .log.display())]
    EarlyExit {
        binary: PathBuf,
        status: String,
        socket: PathBuf,
        log: PathBuf,
        log_tail: String,
    },

    /// `virtiofsd` did not create its socket (or its sandboxed worker) in time.
    #[error("virtiofsd ({}) was not ready (socket {} plus, with the Rust flavour's namespace sandbox, its worker process) within {timeout:?} and was killed; full log: {}; last lines:\n{log_tail}", .binary.display(), .socket.display(), .log.display())]
    SocketTimeout {
        binary: PathBuf,
        socket: PathBuf,
        timeout: Duration,
        log: PathBuf,
        log_tail: String,
    },

    /// Waiting for, signalling or reaping `virtiofsd` failed.
    #[error("supervising virtiofsd (pid {pid}) failed: {source}")]
    Supervise { pid: i32, source: std::io::Error },
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
