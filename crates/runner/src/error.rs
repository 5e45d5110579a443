//! Errors of a VM run and the exit codes they map to (documented in README).

use std::path::PathBuf;
use std::time::Duration;

/// `vmbuild` could not start the VM (bad input, missing QEMU/kernel/init...).
pub const EXIT_SETUP: i32 = 125;
/// The run exceeded `--timeout`.
pub const EXIT_TIMEOUT: i32 = 124;
/// The VM itself failed: kernel panic, guest init crash, out of memory,
/// QEMU dying mid-run, or a broken control channel.
pub const EXIT_VM_FAILURE: i32 = 123;
/// Interrupted by SIGINT/SIGTERM (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Why the guest stopped without finishing its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmFailureKind {
    KernelPanic,
    InitCrash,
    OutOfMemory,
    /// The init reported a fatal error of its own (mount failed, ...).
    InitFatal,
    /// The guest init did not answer within its phase's deadline.
    Unresponsive,
    /// A helper process the VM depends on (virtiofsd) exited mid-run.
    HelperExited,
    /// QEMU went away without telling us why.
    Unexpected,
}

impl std::fmt::Display for VmFailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KernelPanic => "guest kernel panic",
            Self::InitCrash => "guest init crashed",
            Self::OutOfMemory => "guest ran out of memory",
            Self::InitFatal => "guest init failed",
            Self::Unresponsive => "guest did not respond",
            Self::HelperExited => "a helper of the VM exited",
            Self::Unexpected => "VM stopped unexpectedly",
        })
    }
}

/// Why a plan cannot be made (bad options; nothing was started).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("share name '{0}' must be 1-16 characters of [a-z0-9-]")]
    BadShareName(String),
    #[error("two shares are named '{0}'")]
    DuplicateShare(String),
    #[error("share target '{0}' must be an absolute guest path")]
    RelativeTarget(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Qemu(#[from] vmbuild_qemu::QemuError),
    #[error(transparent)]
    Image(#[from] vmbuild_image::ImageError),
    #[error(transparent)]
    Cache(#[from] vmbuild_cache::CacheError),
    #[error(transparent)]
    Virtiofsd(#[from] vmbuild_qemu::virtiofsd::VirtiofsdError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error(transparent)]
    Cgroup(#[from] vmbuild_qemu::confine::cgroup::live::CgroupError),
    #[error(transparent)]
    Confine(#[from] vmbuild_proc::ConfineError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// `VMBUILD_INIT` names a file that cannot be the guest's PID 1.
    #[error("VMBUILD_INIT={}: {why}; unset VMBUILD_INIT to use the guest init built into vmbuild", .path.display())]
    BadInit { path: PathBuf, why: String },
    /// A flag's value (or two flags together) cannot work.
    #[error("{flag}: {why}")]
    Flag { flag: String, why: String },
    /// A host tool vmbuild needs is missing.
    #[error("{tool} not found{}; {install}", .at.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default())]
    MissingTool {
        tool: String,
        /// The explicit path that was tried, if any.
        at: Option<PathBuf>,
        install: String,
    },
    /// A command cannot be run as given (a NUL byte, a relative cwd...).
    #[error("{0}")]
    BadCommand(String),
    /// The source directory of a build cannot be used.
    #[error("the source directory {} {why}", .path.display())]
    SourceDir { path: PathBuf, why: String },
    /// The bubblewrap sandbox did not start the command.
    #[error("bubblewrap could not start the command ({status}): {detail}")]
    SandboxStartFailed { status: String, detail: String },
    #[error("the {runner} runner does not support {feature}; {}", crate::features::hint(*.runner, .feature))]
    Unsupported {
        runner: crate::features::RunnerKind,
        feature: crate::features::Feature,
    },
    #[error("packing the outputs in {guest_dir} failed ({code}): {stderr}")]
    OutputPack {
        guest_dir: String,
        code: i32,
        stderr: String,
    },
    /// The root command that creates `environment.accounts` in the guest
    /// failed (e.g. a name the environment already has with another id).
    #[error("creating environment.accounts in the guest failed ({code}): {stderr}")]
    Accounts { code: i32, stderr: String },
    /// `persist=on-success` could not commit a volume's changes.
    #[error("committing cache {volume}: {why}")]
    Commit { volume: String, why: String },
    /// `--cache-to` failed with `ignore-error=false`.
    #[error("{flag}: {why}")]
    CacheTransfer { flag: String, why: String },
    #[error("root image {}: {why}", .path.display())]
    RootImage { path: PathBuf, why: String },
    #[error("invalid VM plan: {0}")]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Config(Box<vmbuild_config::ConfigError>),
    #[error("QEMU failed to start the VM ({status}): {detail}")]
    QemuStartFailed { status: String, detail: String },
    #[error("{kind}: {detail}")]
    Vm {
        kind: VmFailureKind,
        detail: String,
        console_tail: String,
    },
    #[error("timed out after {}s {during}; everything was stopped", .after.as_secs_f64())]
    Timeout { after: Duration, during: String },
    #[error("interrupted; everything was stopped")]
    Interrupted,
}

impl From<vmbuild_config::ConfigError> for RunError {
    fn from(e: vmbuild_config::ConfigError) -> Self {
        Self::Config(Box::new(e))
    }
}

impl RunError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code `vmbuild` uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Vm { .. } => EXIT_VM_FAILURE,
            Self::Timeout { .. } => EXIT_TIMEOUT,
            Self::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_SETUP,
        }
    }

    /// Console lines worth showing under the one-line error, if any.
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            Self::Vm { console_tail, .. } if !console_tail.trim().is_empty() => Some(console_tail),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_failure_class() {
        let vm = RunError::Vm {
            kind: VmFailureKind::KernelPanic,
            detail: "x".into(),
            console_tail: String::new(),
        };
        let codes = [
            RunError::BadCommand("bad".into()).exit_code(),
            vm.exit_code(),
            RunError::Timeout {
                after: Duration::from_secs(5),
                during: "running the command".into(),
            }
            .exit_code(),
            RunError::Interrupted.exit_code(),
        ];
        assert_eq!(
            codes,
            [EXIT_SETUP, EXIT_VM_FAILURE, EXIT_TIMEOUT, EXIT_INTERRUPTED]
        );
        let mut sorted = codes.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
    }

    #[test]
    fn bad_init_says_what_to_do() {
        let e = RunError::BadInit {
            path: "/a/vmbuild-init".into(),
            why: "dynamically linked".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("VMBUILD_INIT=/a/vmbuild-init: dynamically linked")
                && s.contains("unset VMBUILD_INIT"),
            "{s}"
        );
    }
}
