//! What a resolved kernel is, and the checks and messages both kernel
//! sources (the pinned package in `resolve.rs`, a user's file in
//! `user.rs`) share. Its own module so that those two depend on it and not
//! on each other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ImageError;

/// Where a kernel came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KernelOrigin {
    /// The pinned package of `images/kernel.toml`.
    Pinned {
        /// Package name.
        package: String,
        /// Version.
        version: String,
    },
    /// The archive's current kernel, used because the pin was gone.
    Fallback {
        /// Package name.
        package: String,
        /// Version actually used.
        version: String,
    },
    /// A kernel passed by the user (`--kernel` / `VMBUILD_KERNEL`).
    User {
        /// The path given.
        path: PathBuf,
    },
}

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// What QEMU gets as `-kernel`: an ELF vmlinux with a PVH note when
    /// possible, else the bzImage.
    pub image: PathBuf,
    /// Kernel release (`uname -r`), e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// `.../lib/modules/<release>`. Always set by [`crate::resolve_kernel`] today
    /// (a missing directory is an error).
    pub modules_dir: Option<PathBuf>,
    /// Where the kernel came from.
    pub origin: KernelOrigin,
}

pub(crate) fn no_pvh_notice(path: &Path, why: &str) -> String {
    format!(
        "notice: booting the compressed kernel {} because {why}; boots are ~2.5 s slower under TCG",
        path.display()
    )
}

pub(crate) fn corrupt(path: &Path, reason: String) -> ImageError {
    ImageError::CorruptKernel {
        path: path.to_path_buf(),
        reason,
    }
}

pub(crate) fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
