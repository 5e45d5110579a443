//! The API filesystems every VM gets (/proc, /sys, /dev, /tmp, /run ...),
//! the /dev symlinks programs expect, and the mount(2) wrapper shared with
//! `setup`.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::error::{InitError, Result};

/// One API filesystem mounted at boot.
#[derive(Debug, Clone, Copy)]
pub struct EarlyMount {
    pub fstype: &'static str,
    pub target: &'static str,
    pub flags: MsFlags,
    pub options: &'static str,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// Mounted in this order; later targets live inside earlier ones.
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        fstype: "proc",
        target: "/proc",
        flags: NOSUID_NODEV_NOEXEC,
        options: "",
    },
    EarlyMount {
        fstype: "sysfs",
        target: "/sys",
        flags: NOSUID_NODEV_NOEXEC,
        options: "",
    },
    EarlyMount {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        options: "mode=0755",
    },
    EarlyMount {
        fstype: "devpts",
        target: "/dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        options: "ptmxmode=0666,newinstance",
    },
    EarlyMount {
        fstype: "tmpfs",
        target: "/dev/shm",
        flags: NOSUID_NODEV,
        options: "mode=1777",
    },
    EarlyMount {
        fstype: "tmpfs",
        target: "/tmp",
        flags: NOSUID_NODEV,
        options: "mode=1777",
    },
    EarlyMount {
        fstype: "tmpfs",
        target: "/run",
        flags: NOSUID_NODEV,
        options: "mode=0755",
    },
];

/// Symlinks created in /dev once /proc is mounted.
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// `mkdir -p` with mode 0755.
pub fn mkdir_p(path: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| InitError::io(format!("creating directory {}", path.display()), e))
}

/// mount(2) with an error that names the filesystem, target and options.
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    options: &str,
) -> Result<()> {
    let data = (!options.is_empty()).then_some(options);
    mount(Some(source), target, Some(fstype), flags, data).map_err(|errno| InitError::Mount {
        fstype: fstype.into(),
        device: source.into(),
        target: target.display().to_string(),
        options: options.into(),
        errno,
    })
}

/// Mounts [`EARLY_MOUNTS`] (an already mounted target, EBUSY, is fine),
/// makes sure fds 0-2 are open, and creates [`DEV_LINKS`].
pub fn mount_early() -> Result<()> {
    for m in EARLY_MOUNTS {
        let target = Path::new(m.target);
        mkdir_p(target)?;
        match mount_fs(m.fstype, target, m.fstype, m.flags, m.options) {
            Err(InitError::Mount {
                errno: Errno::EBUSY,
                ..
            })
            | Ok(()) => {}
            Err(e) => return Err(e),
        }
        if m.target == "/dev" {
            ensure_std_fds();
        }
    }
    for (link, to) in DEV_LINKS {
        match std::os::unix::fs::symlink(to, link) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(InitError::io(format!("creating symlink {link} -> {to}"), e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The kernel starts init without fds 0-2 when the initramfs has no
/// /dev/console. Fill any gap with /dev/console (or /dev/null) so that no
/// later file (the control port!) lands on 0, 1 or 2.
fn ensure_std_fds() {
    for fd in 0..=2 {
        // SAFETY: fcntl(F_GETFD) takes an integer and only reads the
        // descriptor table; an unused number just fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        for dev in [c"/dev/console", c"/dev/null"] {
            // SAFETY: `dev` is a NUL-terminated C string literal that lives
            // for the whole call; open(2) only reads it.
            let got = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
            if got < 0 {
                continue;
            }
            if got != fd {
                // SAFETY: `got` was just opened here and is owned by nobody
                // else; dup2 puts it on `fd`, which is free (F_GETFD said
                // so), and close drops the now-duplicate `got`. No Rust
                // object owns either number.
                unsafe {
                    libc::dup2(got, fd);
                    libc::close(got);
                }
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_mounts_come_parent_first() {
        for (i, m) in EARLY_MOUNTS.iter().enumerate() {
            for later in &EARLY_MOUNTS[i + 1..] {
                assert!(
                    !m.target.starts_with(&format!("{}/", later.target)),
                    "{} must come after {}",
                    m.target,
                    later.target
                );
            }
        }
        let tmp = EARLY_MOUNTS
            .iter()
            .find(|m| m.target == "/tmp")
            .map(|m| m.options);
        assert_eq!(tmp, Some("mode=1777"));
    }

    #[test]
    fn mkdir_p_creates_nested_dirs_with_0755() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c");
        mkdir_p(&p).unwrap();
        mkdir_p(&p).unwrap(); // idempotent
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        // umask may only remove bits.
        assert_eq!(mode & !0o755, 0);
        assert!(p.is_dir());
    }

    #[test]
    fn mount_error_names_target_options_and_errno() {
        let d = tempfile::tempdir().unwrap();
        let e = mount_fs("nope", d.path(), "no-such-fs-type", MsFlags::empty(), "a=b").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("no-such-fs-type") && s.contains("'a=b'"), "{s}");
        assert!(s.contains(&d.path().display().to_string()), "{s}");
        assert!(matches!(e, InitError::Mount { .. }));
    }
}
