//! Mounting an environment image as the root commands run in: the block
//! device read-only, a tmpfs for writes, an overlay of both at `/sysroot`,
//! and the API filesystems inside it. The init itself stays in the
//! initramfs (its port, modules and busybox remain reachable); commands
//! are chrooted into `/sysroot`.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::MsFlags;
use vmbuild_proto::{RootSpec, ROOT_FSTYPES};

use crate::error::{InitError, Result};
use crate::modules::load_group_logged;
use crate::mounts::{mkdir_p, mount_fs};
use crate::overlay::{copy_root_owner, first_accepted, overlay_attempts};
use crate::root::GuestRoot;

/// Where the image's root appears (and commands are chrooted).
pub const SYSROOT: &str = "/sysroot";
/// Where the image itself is mounted read-only.
pub const IMAGE_LOWER: &str = "/run/vmbuild/root/lower";
/// The tmpfs holding the overlay's upper/ and work/.
pub const IMAGE_RW: &str = "/run/vmbuild/root/rw";
/// How long the disk may take to show up after virtio_blk is loaded.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEVICE_POLL: Duration = Duration::from_millis(1);

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);
const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// One API filesystem inside the root: (source, guest target, fstype,
/// flags, options). `/dev` is the initramfs's, bound recursively (with its
/// devpts and /dev/shm), so both see the same devices.
type InnerMount = (
    &'static str,
    &'static str,
    &'static str,
    MsFlags,
    &'static str,
);

/// Mounted in this order inside the root.
pub const INNER_MOUNTS: &[InnerMount] = &[
    ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
    ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
    (
        "/dev",
        "/dev",
        "none",
        MsFlags::MS_BIND.union(MsFlags::MS_REC),
        "",
    ),
    ("tmpfs", "/tmp", "tmpfs", NOSUID_NODEV, "mode=1777"),
    ("tmpfs", "/run", "tmpfs", NOSUID_NODEV, "mode=0755"),
];

/// Checks what the host asked for before touching anything.
pub fn validate(spec: &RootSpec) -> Result<()> {
    if !ROOT_FSTYPES.contains(&spec.fstype.as_str()) {
        return Err(InitError::Invalid(format!(
            "root filesystem type '{}' is not supported; use one of: {}",
            spec.fstype,
            ROOT_FSTYPES.join(", ")
        )));
    }
    let dev = Path::new(&spec.device);
    let plain = dev.starts_with("/dev")
        && dev.components().count() > 2
        && !spec.device.contains("/..")
        && !spec.device.contains("/./");
    if !plain {
        return Err(InitError::Invalid(format!(
            "root device '{}' must be a path under /dev (e.g. /dev/vda)",
            spec.device
        )));
    }
    Ok(())
}

/// Waits until `device` is a block device node (devtmpfs creates it when
/// the driver has probed the disk). Returns how long it took.
pub fn wait_for_block_device(device: &Path, timeout: Duration, poll: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        match std::fs::metadata(device) {
            Ok(m) if m.file_type().is_block_device() => return Ok(t0.elapsed()),
            Ok(_) => {
                return Err(InitError::Invalid(format!(
                    "root device {} exists but is not a block device",
                    device.display()
                )))
            }
            Err(_) if t0.elapsed() < timeout => std::thread::sleep(poll),
            Err(_) => {
                let seen = crate::sysfs::seen(Path::new("/sys/class/block"));
                return Err(InitError::DeviceNotFound {
                    device: device.display().to_string(),
                    waited_ms: t0.elapsed().as_millis(),
                    seen,
                });
            }
        }
    }
}

/// Mounts the image of `spec` at [`SYSROOT`] with everything commands
/// expect inside, and returns that root.
pub fn mount_image(spec: &RootSpec, log: &mut dyn FnMut(String)) -> Result<GuestRoot> {
    validate(spec)?;
    load_group_logged(&spec.fstype, log)?;
    load_group_logged("overlay", log)?;
    let t0 = Instant::now();
    let device = Path::new(&spec.device);
    let waited = wait_for_block_device(device, DEVICE_TIMEOUT, DEVICE_POLL)?;

    let lower = Path::new(IMAGE_LOWER);
    mkdir_p(lower)?;
    mount_fs(&spec.device, lower, &spec.fstype, MsFlags::MS_RDONLY, "").map_err(|e| match e {
        InitError::Mount {
            errno: Errno::EINVAL,
            ..
        } => InitError::Invalid(format!(
            "the root image on {} does not mount as {} (EINVAL; the console has the kernel's \
             reason): is it really {}? pass its real type or rebuild it",
            spec.device, spec.fstype, spec.fstype
        )),
        other => other,
    })?;
    let rw = Path::new(IMAGE_RW);
    mkdir_p(rw)?;
    mount_fs("tmpfs", rw, "tmpfs", MsFlags::empty(), "mode=0755")?;
    let (upper, work) = (rw.join("upper"), rw.join("work"));
    mkdir_p(&upper)?;
    mkdir_p(&work)?;
    copy_root_owner(lower, &upper)?;

    let sysroot = Path::new(SYSROOT);
    mkdir_p(sysroot)?;
    let attempts = overlay_attempts(lower, &upper, &work)?;
    let options: Vec<String> = attempts.iter().map(|(o, _)| o.clone()).collect();
    let ov = first_accepted(&options, |o| {
        mount_fs("overlay", sysroot, "overlay", MsFlags::empty(), o)
    })?;

    let root = GuestRoot::at(sysroot);
    for (source, target, fstype, flags, options) in INNER_MOUNTS {
        let at = root.host(Path::new(target))?;
        mkdir_p(&at)?;
        mount_fs(source, &at, fstype, *flags, options)?;
    }
    log(format!(
        "root: {} {} read-only with a tmpfs overlay at {SYSROOT} \
         ({}; device after {} us, mounted in {} us)",
        spec.fstype,
        spec.device,
        attempts[ov].1,
        waited.as_micros(),
        t0.elapsed().as_micros()
    ));
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(device: &str, fstype: &str) -> RootSpec {
        RootSpec {
            device: device.into(),
            fstype: fstype.into(),
        }
    }

    #[test]
    fn only_known_fstypes_and_plain_dev_paths() {
        assert!(validate(&spec("/dev/vda", "erofs")).is_ok());
        assert!(validate(&spec("/dev/disk/by-id/x", "ext4")).is_ok());
        let e = validate(&spec("/dev/vda", "squashfs")).unwrap_err();
        assert!(e.to_string().contains("erofs, ext4"), "{e}");
        for bad in [
            "/dev",
            "/dev/",
            "vda",
            "/tmp/vda",
            "/dev/../etc/x",
            "/devx/vda",
        ] {
            assert!(validate(&spec(bad, "erofs")).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_device_times_out_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("vda");
        let e = wait_for_block_device(&dev, Duration::from_millis(5), Duration::from_millis(1))
            .unwrap_err();
        assert!(matches!(e, InitError::DeviceNotFound { .. }), "{e}");
        assert!(e.to_string().contains("vda"), "{e}");
        std::fs::write(&dev, b"").unwrap();
        let e = wait_for_block_device(&dev, Duration::ZERO, Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
    }

    #[test]
    fn inner_mounts_cover_what_programs_expect() {
        let targets: Vec<&str> = INNER_MOUNTS.iter().map(|m| m.1).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev", "/tmp", "/run"]);
        let dev = INNER_MOUNTS.iter().find(|m| m.1 == "/dev").unwrap();
        assert!(
            dev.3.contains(MsFlags::MS_BIND | MsFlags::MS_REC),
            "devpts and shm come along"
        );
    }
}
