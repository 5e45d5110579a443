//! Warm start, guest side (docs/warm-start.md).
//!
//! The host may save the guest right after its first `Hello` and restore
//! that state for later runs. Two things make that safe:
//!
//! - [`snapshot_safe`]: the state may only be saved while no virtio device
//!   besides the control console has a driver bound, so nothing of the
//!   saving run's device configuration (9p mount tags, disk sizes, the
//!   NIC) is cached in the guest. The disk, 9p and network drivers are
//!   loaded on demand at `Setup`, after a restore, and read this run's.
//! - [`apply`]: every restored guest starts with the snapshot's kernel RNG
//!   state and clock; the host's `Resume` carries fresh entropy, credited
//!   and forced into the CRNG, and the host's wall clock.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::time::{clock_settime, ClockId};
use vmbuild_proto::{Resume, RESUME_ENTROPY_BYTES};

use crate::error::{InitError, Result};

/// Where the kernel lists virtio devices (each with a `driver` link once bound).
pub const VIRTIO_DEVICES: &str = "/sys/bus/virtio/devices";
/// The only driver that may be bound when the state is saved: the control
/// channel's.
const SAFE_DRIVERS: &[&str] = &["virtio_console"];

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])` (linux/random.h).
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)` (linux/random.h, Linux 4.17+).
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Whether every bound driver in `drivers` is one [`SAFE_DRIVERS`] allows.
pub fn only_safe_drivers<S: AsRef<str>>(drivers: &[S]) -> bool {
    drivers.iter().all(|d| SAFE_DRIVERS.contains(&d.as_ref()))
}

/// The drivers bound to the virtio devices under `dir` (one per bound
/// device; unbound devices are skipped).
pub fn bound_drivers(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("driver")).ok())
        .filter_map(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

/// Whether this guest's state may be saved now (see the module docs).
pub fn snapshot_safe() -> bool {
    only_safe_drivers(&bound_drivers(Path::new(VIRTIO_DEVICES)))
}

/// The `struct rand_pool_info` of `RNDADDENTROPY`: entropy count in bits,
/// buffer size in bytes, then the bytes, all credited.
pub fn rand_pool_info(entropy: &[u8]) -> Result<Vec<u8>> {
    if entropy.len() < RESUME_ENTROPY_BYTES {
        return Err(InitError::Invalid(format!(
            "Resume carries {} bytes of entropy, at least {RESUME_ENTROPY_BYTES} are needed",
            entropy.len()
        )));
    }
    let bytes = i32::try_from(entropy.len())
        .map_err(|_| InitError::Invalid("Resume carries too much entropy".into()))?;
    let bits = bytes.saturating_mul(8);
    let mut buf = Vec::with_capacity(8 + entropy.len());
    buf.extend_from_slice(&bits.to_ne_bytes());
    buf.extend_from_slice(&bytes.to_ne_bytes());
    buf.extend_from_slice(entropy);
    Ok(buf)
}

/// Renews what a restored guest shares with its snapshot: mixes the host's
/// entropy into the input pool with full credit, reseeds the CRNG from it
/// (so `/dev/urandom` and `getrandom` differ from every other restore),
/// and sets the wall clock to the host's.
pub fn apply(r: &Resume) -> Result<()> {
    let info = rand_pool_info(&r.entropy)?;
    let urandom = File::options()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| InitError::io("opening /dev/urandom to reseed", e))?;
    // SAFETY: both ioctls take the fd of /dev/urandom; RNDADDENTROPY reads
    // a rand_pool_info whose buf_size matches the bytes that follow it.
    let rc = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) };
    if rc != 0 {
        return Err(InitError::io(
            "adding the host's entropy (RNDADDENTROPY)",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above; RNDRESEEDCRNG takes no argument.
    let rc = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG as _, 0) };
    if rc != 0 {
        return Err(InitError::io(
            "reseeding the kernel's CRNG (RNDRESEEDCRNG)",
            std::io::Error::last_os_error(),
        ));
    }
    let secs = i64::try_from(r.unix_time_ns / 1_000_000_000)
        .map_err(|_| InitError::Invalid("Resume's clock is out of range".into()))?;
    let nanos = i64::try_from(r.unix_time_ns % 1_000_000_000).unwrap_or(0);
    let ts = nix::sys::time::TimeSpec::new(secs, nanos);
    clock_settime(ClockId::CLOCK_REALTIME, ts)
        .map_err(|e| InitError::io("setting the wall clock", std::io::Error::from(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_console_may_be_bound() {
        assert!(only_safe_drivers::<&str>(&[]));
        assert!(only_safe_drivers(&["virtio_console"]));
        assert!(!only_safe_drivers(&["virtio_console", "9pnet_virtio"]));
        assert!(!only_safe_drivers(&["virtio_blk"]));
    }

    #[test]
    fn bound_drivers_follow_the_driver_links() {
        let d = tempfile::tempdir().unwrap();
        let dev0 = d.path().join("virtio0");
        let dev1 = d.path().join("virtio1");
        std::fs::create_dir_all(&dev0).unwrap();
        std::fs::create_dir_all(&dev1).unwrap();
        std::os::unix::fs::symlink(
            "../../../bus/virtio/drivers/virtio_console",
            dev0.join("driver"),
        )
        .unwrap();
        assert_eq!(bound_drivers(d.path()), vec!["virtio_console".to_string()]);
        assert!(bound_drivers(&d.path().join("missing")).is_empty());
    }

    #[test]
    fn pool_info_credits_every_byte_and_refuses_too_little() {
        let b = rand_pool_info(&[1u8; 64]).unwrap();
        assert_eq!(&b[..4], &512i32.to_ne_bytes());
        assert_eq!(&b[4..8], &64i32.to_ne_bytes());
        assert_eq!(b.len(), 72);
        assert!(rand_pool_info(&[1u8; 16]).is_err());
    }
}
