//! Overlay mounts: building their options, trying option sets the kernel
//! may refuse, and making the upper root look like the lower one. Shared by
//! the share mounts (`setup.rs`) and the image root (`sysroot.rs`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;

use crate::error::{InitError, Result};

/// Extra overlay options tried first. `redirect_dir=on` lets rename(2)
/// move a directory that comes from the lower layer (without it the kernel
/// answers EXDEV, which rustup, conda and Python's `os.rename` do not
/// handle); it needs `index=off` or a lower that supports file handles, and
/// 9p does not, so `index=off` goes with it. No inode-number games
/// (`xino=off`): not useful for a throw-away upper.
pub const OVERLAY_EXTRA: &str = "redirect_dir=on,xino=off,index=off";
/// Tried when [`OVERLAY_EXTRA`] is refused: directory renames still work.
pub const OVERLAY_REDIRECT_ONLY: &str = "redirect_dir=on";

/// The overlay option strings to try in order, and a note for each saying
/// what the mount got.
pub fn overlay_attempts(
    lower: &Path,
    upper: &Path,
    work: &Path,
) -> Result<Vec<(String, &'static str)>> {
    Ok(vec![
        (overlay_options(lower, upper, work, OVERLAY_EXTRA)?, OVERLAY_EXTRA),
        (
            overlay_options(lower, upper, work, OVERLAY_REDIRECT_ONLY)?,
            "redirect_dir=on (xino=off,index=off refused)",
        ),
        (
            overlay_options(lower, upper, work, "")?,
            "no extra options (redirect_dir=on refused: renaming a lower directory fails with EXDEV)",
        ),
    ])
}

/// Overlay mount options; paths that the option parser would split are
/// refused.
pub fn overlay_options(lower: &Path, upper: &Path, work: &Path, extra: &str) -> Result<String> {
    let mut parts = Vec::new();
    for (key, p) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
        let s = p.to_str().filter(|s| !s.contains([',', ':', '\\']));
        let Some(s) = s else {
            return Err(InitError::Invalid(format!(
                "overlay {key} {} has ',', ':' or '\\'",
                p.display()
            )));
        };
        parts.push(format!("{key}={s}"));
    }
    if !extra.is_empty() {
        parts.push(extra.to_string());
    }
    Ok(parts.join(","))
}

/// Tries each option string in turn while the kernel answers EINVAL;
/// returns the index of the one that worked, or the last error.
pub fn first_accepted(
    options: &[String],
    mut try_one: impl FnMut(&str) -> Result<()>,
) -> Result<usize> {
    let mut last = None;
    for (i, o) in options.iter().enumerate() {
        match try_one(o) {
            Ok(()) => return Ok(i),
            Err(
                e @ InitError::Mount {
                    errno: Errno::EINVAL,
                    ..
                },
            ) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| InitError::Invalid("no mount options to try".into())))
}

/// Gives `upper`'s root the mode and owner of `lower`'s root, so the merged
/// directory looks like the host's.
pub fn copy_root_owner(lower: &Path, upper: &Path) -> Result<()> {
    let meta = std::fs::metadata(lower)
        .map_err(|e| InitError::io(format!("stat {}", lower.display()), e))?;
    std::fs::set_permissions(upper, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| InitError::io(format!("chmod {}", upper.display()), e))?;
    std::os::unix::fs::chown(upper, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| InitError::io(format!("chown {}", upper.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_accepted_retries_only_on_einval() {
        let opts = vec!["a".to_string(), "b".to_string()];
        let mount_err = |errno| InitError::Mount {
            fstype: "t".into(),
            device: "s".into(),
            target: "/t".into(),
            options: "a".into(),
            errno,
        };
        let mut tried = Vec::new();
        let got = first_accepted(&opts, |o| {
            tried.push(o.to_string());
            if o == "a" {
                Err(mount_err(Errno::EINVAL))
            } else {
                Ok(())
            }
        });
        assert_eq!(got.unwrap(), 1);
        assert_eq!(tried, ["a", "b"]);
        let got = first_accepted(&opts, |_| Err(mount_err(Errno::ENOENT)));
        assert!(matches!(
            got,
            Err(InitError::Mount {
                errno: Errno::ENOENT,
                ..
            })
        ));
        let got = first_accepted(&opts, |_| Err(mount_err(Errno::EINVAL)));
        assert!(matches!(
            got,
            Err(InitError::Mount {
                errno: Errno::EINVAL,
                ..
            })
        ));
    }

    #[test]
    fn upper_root_takes_lower_mode() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("l"), d.path().join("u"));
        std::fs::create_dir(&lower).unwrap();
        std::fs::create_dir(&upper).unwrap();
        std::fs::set_permissions(&lower, std::fs::Permissions::from_mode(0o2750)).unwrap();
        copy_root_owner(&lower, &upper).unwrap();
        assert_eq!(std::fs::metadata(&upper).unwrap().mode() & 0o7777, 0o2750);
    }
}
