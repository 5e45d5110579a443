//! Installing busybox's applet symlinks when the initramfs carries only
//! `/bin/busybox` (a rootfs image brings its own /bin/sh and skips this).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{InitError, Result};
use crate::mounts::mkdir_p;

/// Directories `busybox --install -s` writes links into (it does not
/// create them itself).
const APPLET_DIRS: &[&str] = &["/bin", "/sbin", "/usr/bin", "/usr/sbin"];

/// What to do at boot, decided from what exists.
pub fn needs_install(busybox: &Path, sh: &Path) -> bool {
    busybox.exists() && sh.symlink_metadata().is_err()
}

/// Runs `busybox --install -s` when `busybox` exists and `sh` does not;
/// returns how long it took, or `None` when nothing had to be done.
pub fn install_if_needed(busybox: &Path, sh: &Path) -> Result<Option<Duration>> {
    if !needs_install(busybox, sh) {
        return Ok(None);
    }
    let t0 = Instant::now();
    for d in APPLET_DIRS {
        mkdir_p(Path::new(d))?;
    }
    let status = Command::new(busybox)
        .args(["--install", "-s"])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| InitError::io(format!("running {} --install -s", busybox.display()), e))?;
    if !status.success() {
        return Err(InitError::Invalid(format!(
            "{} --install -s failed ({status}); the initramfs's busybox is broken",
            busybox.display()
        )));
    }
    Ok(Some(t0.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_only_when_busybox_present_and_sh_missing() {
        let d = tempfile::tempdir().unwrap();
        let bb = d.path().join("busybox");
        let sh = d.path().join("sh");
        assert!(!needs_install(&bb, &sh), "no busybox: nothing to do");
        std::fs::write(&bb, b"").unwrap();
        assert!(needs_install(&bb, &sh));
        // A dangling symlink counts as present: busybox would fail on it.
        std::os::unix::fs::symlink("/nonexistent", &sh).unwrap();
        assert!(!needs_install(&bb, &sh));
    }
}
