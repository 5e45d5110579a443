//! The scratch disk: a blank ext4 filesystem the host made on a sparse
//! file, mounted at [`RW_ROOT`] so the overlay uppers of the shares (and
//! `/home/build` when no share is there) live on disk, bounded by the
//! disk's size, instead of in guest RAM.

use std::path::Path;

use nix::mount::MsFlags;
use vmbuild_proto::ScratchSpec;

use crate::error::{InitError, Result};
use crate::modules::load_group_logged;
use crate::mounts::{mkdir_p, mount_fs};
use crate::root::GuestRoot;
use crate::setup::RW_ROOT;
use crate::sysroot::{wait_for_block_device, DEVICE_POLL, DEVICE_TIMEOUT};

/// Where `/home/build` lives on the scratch disk when no share is there.
pub const HOME_ON_SCRATCH: &str = "/run/vmbuild/rw/home";

/// Checks the device is a plain `/dev/...` path.
pub fn validate(spec: &ScratchSpec) -> Result<()> {
    let dev = Path::new(&spec.device);
    let plain = dev.starts_with("/dev")
        && dev.components().count() > 2
        && !spec.device.contains("/..")
        && !spec.device.contains("/./");
    if plain {
        Ok(())
    } else {
        Err(InitError::Invalid(format!(
            "scratch device '{}' must be a path under /dev (e.g. /dev/vdb)",
            spec.device
        )))
    }
}

/// Mounts the scratch disk at [`RW_ROOT`] (nosuid, nodev; the host made
/// the filesystem, so there is nothing to format here).
pub fn mount(spec: &ScratchSpec, log: &mut dyn FnMut(String)) -> Result<()> {
    validate(spec)?;
    load_group_logged("ext4", log)?;
    let waited = wait_for_block_device(Path::new(&spec.device), DEVICE_TIMEOUT, DEVICE_POLL)?;
    mkdir_p(Path::new(RW_ROOT))?;
    mount_fs(
        &spec.device,
        Path::new(RW_ROOT),
        "ext4",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "noinit_itable",
    )?;
    log(format!(
        "scratch disk {} (ext4) at {RW_ROOT} after {} ms",
        spec.device,
        waited.as_millis()
    ));
    Ok(())
}

/// Bind-mounts [`HOME_ON_SCRATCH`] at `home` inside `root`, so what a build
/// writes there goes to the scratch disk.
pub fn home_on_scratch(root: &GuestRoot, home: &Path) -> Result<()> {
    let on_disk = Path::new(HOME_ON_SCRATCH);
    mkdir_p(on_disk)?;
    let target = root.host(home)?;
    mkdir_p(&target)?;
    nix::mount::mount(
        Some(on_disk),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        InitError::sys(
            format!("bind-mounting {HOME_ON_SCRATCH} at {}", home.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_dev_paths() {
        let ok = |d: &str| validate(&ScratchSpec { device: d.into() }).is_ok();
        assert!(ok("/dev/vdb"));
        assert!(!ok("/dev"));
        assert!(!ok("/tmp/disk"));
        assert!(!ok("/dev/../etc/x"));
    }
}
