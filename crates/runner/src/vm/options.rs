//! What a VM looks like, as plain data the CLI fills from flags, and its
//! checks against the host (files exist, types are supported) before any
//! plan is made.

use std::path::PathBuf;

use vmbuild_cache::SharedDir;
use vmbuild_proto::SymlinkSpec;
use vmbuild_qemu::{Accel, Network};

use crate::error::RunError;

/// A root image: the erofs/ext4 file commands run in instead of the
/// initramfs's busybox, either an environment image vmbuild built and
/// cached (`vmbuild image`) or the user's own (`--rootfs`). Attached
/// read-only; the guest puts a tmpfs overlay on it, so the file never
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImage {
    pub path: PathBuf,
    /// `erofs` or `ext4` ([`vmbuild_proto::ROOT_FSTYPES`]).
    pub fstype: String,
}

/// What the VM looks like; the CLI fills this from flags and environment.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub qemu: Option<PathBuf>,
    /// `None`: detect (KVM/HVF when really usable, else TCG).
    pub accel: Option<Accel>,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Host directories shown in the guest (the cache dir, the source dir,
    /// ...), each with its own mode and guest path; see
    /// [`vmbuild_cache::SharedDir`].
    pub shares: Vec<SharedDir>,
    /// Extra kernel command-line arguments (appended last, so they win).
    pub kernel_args: Vec<String>,
    /// Keep the guest console here instead of in the run dir.
    pub console_log: Option<PathBuf>,
    /// Symlinks the guest creates during setup (cache defaults).
    pub symlinks: Vec<SymlinkSpec>,
    /// Extra guest directories created after the mounts.
    pub mkdirs: Vec<String>,
    /// Run commands in this image (`None`: the initramfs's busybox).
    pub root_image: Option<RootImage>,
    /// The guest's NIC (`Network::None`: loopback only).
    pub network: Network,
    /// PEM certificates the guest trusts besides its root's own.
    pub ca_certs: Option<String>,
    /// How long each guest phase may take (`--boot-timeout`); `None`: by
    /// accelerator, see [`super::GuestWaits::for_accel`].
    pub boot_timeout: Option<std::time::Duration>,
    /// UNSAFE, for benchmarks only (`--unsafe-no-confinement`): QEMU runs
    /// with all of vmbuild's privileges, no seccomp sandbox, no cgroup and
    /// no rlimits (docs/security.md).
    pub unconfined: bool,
    /// Size of the scratch disk (`--disk`): a sparse file in the run dir,
    /// formatted ext4 on the host, attached read-write; the guest's writes
    /// to `/home/build` and the cache overlays go there instead of RAM.
    /// `None`: no disk (tmpfs, bounded by `--memory`).
    pub disk_bytes: Option<u64>,
    /// `--network user,restrict-host`: with [`Network::User`], the guest
    /// cannot reach the host's own services (docs/security.md#networking).
    pub restrict_host: bool,
    /// Warm start (docs/warm-start.md): the snapshot store to restore from
    /// and save to, usually `<cache root>/snapshots`. `None` (`--cold`):
    /// always boot, never save.
    pub snapshots: Option<PathBuf>,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            qemu: None,
            accel: None,
            cpus: 1,
            memory_mib: 1024,
            shares: Vec::new(),
            kernel_args: Vec::new(),
            console_log: None,
            symlinks: Vec::new(),
            mkdirs: Vec::new(),
            root_image: None,
            network: Network::None,
            ca_certs: None,
            boot_timeout: None,
            unconfined: false,
            disk_bytes: None,
            restrict_host: false,
            snapshots: None,
        }
    }
}

impl VmOptions {
    /// Checks what can be checked before booting and makes paths absolute:
    /// the root image must be a readable file of a supported type, so a typo
    /// fails before QEMU starts.
    ///
    /// Errors: [`RunError::RootImage`].
    pub fn validate(mut self) -> Result<VmOptions, RunError> {
        if let Some(r) = &self.root_image {
            self.root_image = Some(checked_root_image(r)?);
        }
        Ok(self)
    }
}

/// The root image with an absolute path, checked to be a readable file of
/// a supported filesystem type.
fn checked_root_image(r: &RootImage) -> Result<RootImage, RunError> {
    let bad = |why: String| RunError::RootImage {
        path: r.path.clone(),
        why,
    };
    if !vmbuild_proto::ROOT_FSTYPES.contains(&r.fstype.as_str()) {
        return Err(bad(format!(
            "filesystem type '{}' is not supported; use one of: {}",
            r.fstype,
            vmbuild_proto::ROOT_FSTYPES.join(", ")
        )));
    }
    let path = std::fs::canonicalize(&r.path)
        .and_then(|p| std::fs::File::open(&p).map(|_| p))
        .map_err(|e| {
            bad(format!(
                "cannot be read: {e}; build one (`vmbuild image build`) or fix the path"
            ))
        })?;
    if !path.is_file() {
        return Err(bad("is not a file (want an erofs or ext4 image)".into()));
    }
    Ok(RootImage {
        path,
        fstype: r.fstype.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(path: PathBuf, fstype: &str) -> Result<VmOptions, RunError> {
        VmOptions {
            root_image: Some(RootImage {
                path,
                fstype: fstype.into(),
            }),
            ..VmOptions::default()
        }
        .validate()
    }

    #[test]
    fn root_image_path_becomes_absolute() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("env.erofs");
        std::fs::write(&img, b"x").unwrap();
        let opts = validated(d.path().join("./env.erofs"), "erofs").unwrap();
        assert_eq!(
            opts.root_image,
            Some(RootImage {
                path: img.canonicalize().unwrap(),
                fstype: "erofs".into()
            })
        );
        assert!(VmOptions::default()
            .validate()
            .unwrap()
            .root_image
            .is_none());
    }

    #[test]
    fn missing_or_non_file_root_image_fails_before_boot() {
        let d = tempfile::tempdir().unwrap();
        for path in [d.path().join("nope.erofs"), d.path().to_path_buf()] {
            let e = validated(path.clone(), "erofs").unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
    }

    #[test]
    fn unsupported_root_fstype_fails_before_boot() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("env.sqfs");
        std::fs::write(&img, b"x").unwrap();
        let e = validated(img, "squashfs").unwrap_err().to_string();
        assert!(e.contains("'squashfs'") && e.contains("erofs, ext4"), "{e}");
    }
}
