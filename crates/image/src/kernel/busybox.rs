//! The pinned static busybox, provisioned into the cache like the kernel.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::kernel::deb::{self, AptTools, DebPin, Fallback, FetchedDeb};
use crate::kernel::pins;
use crate::kernel::resolve::entry_name;
use crate::provision::{ensure_dir, is_complete, write_atomic};
use crate::ImageError;

#[derive(Debug, Serialize, Deserialize)]
struct BusyboxRecord {
    fetched: FetchedDeb,
}

/// Path of the pinned static busybox binary, downloading it into
/// `<cache_root>/busybox/<package>_<version>/bin/busybox` on first use.
/// `notice` gets the fallback notice when the pinned version is gone.
pub fn busybox(cache_root: &Path, notice: &mut dyn FnMut(&str)) -> Result<PathBuf, ImageError> {
    let pin = pins::busybox_pin()?;
    let dir = cache_root
        .join("busybox")
        .join(entry_name(&pin.package, &pin.version));
    if !is_complete(&dir) {
        let tools = AptTools::find(&pin.package)?;
        ensure_dir(&dir, |tmp| build_entry(tmp, &tools, &pin, notice))?;
    }
    let bin = dir.join("bin/busybox");
    if !bin.is_file() {
        return Err(ImageError::BadCacheEntry {
            path: dir,
            reason: "bin/busybox is missing".into(),
        });
    }
    Ok(bin)
}

/// The applet paths of `busybox` (`usr/bin/env`, `bin/sh`, ...), so the
/// initramfs can carry the symlinks instead of the guest running
/// `busybox --install -s` at every boot (~35 ms under TCG). Listed once by
/// running `busybox --list-full` on the host and kept beside the binary as
/// `applets.txt`; empty when it cannot run here (e.g. a macOS host), in
/// which case the guest init installs the links itself.
pub fn busybox_applets(busybox: &Path) -> Vec<String> {
    let Some(list) = busybox
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("applets.txt"))
    else {
        return Vec::new();
    };
    if let Ok(text) = std::fs::read_to_string(&list) {
        return parse_applets(&text);
    }
    let out = match std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
    {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            tracing::debug!(status = %o.status, "busybox --list-full failed; the guest will install applets");
            return Vec::new();
        }
        Err(e) => {
            tracing::debug!(
                "cannot run busybox on this host ({e}); the guest will install applets"
            );
            return Vec::new();
        }
    };
    let applets = parse_applets(&String::from_utf8_lossy(&out));
    if !applets.is_empty() {
        if let Err(e) = write_atomic(&list, applets.join("\n").as_bytes()) {
            tracing::debug!("could not cache the applet list: {e}");
        }
    }
    applets
}

/// One relative applet path per line; anything odd is dropped.
pub fn parse_applets(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('/')
                && l.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
                && l.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_string)
        .collect()
}

fn build_entry(
    out: &Path,
    tools: &AptTools,
    pin: &pins::BusyboxPin,
    notice: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let (fetched, root) = deb::fetch_into_entry(
        tools,
        DebPin {
            package: &pin.package,
            version: &pin.version,
            sha256: &pin.sha256,
        },
        Fallback::Candidate,
        out,
        notice,
        &mut crate::progress::ignore,
    )?;
    let src = root.join(&pin.binary);
    let head = std::fs::read(&src)
        .map(|d| d.get(..4).map(<[u8]>::to_vec))
        .unwrap_or_default();
    if head.as_deref() != Some(b"\x7fELF") {
        return Err(ImageError::BadPackage {
            package: fetched.package,
            version: fetched.version,
            reason: format!("{} is missing or not an ELF binary", pin.binary),
        });
    }
    std::fs::create_dir_all(out.join("bin"))
        .map_err(io_err(format!("creating {}/bin", out.display())))?;
    let dst = out.join("bin/busybox");
    std::fs::rename(&src, &dst).map_err(io_err(format!(
        "moving {} to {}",
        src.display(),
        dst.display()
    )))?;
    deb::remove_scratch(out)?;
    let json =
        serde_json::to_vec_pretty(&BusyboxRecord { fetched }).map_err(|e| ImageError::Io {
            context: "serializing busybox.json".into(),
            source: std::io::Error::other(e),
        })?;
    write_atomic(&out.join("busybox.json"), &json)
}

#[cfg(test)]
mod applet_tests {
    use super::*;

    #[test]
    fn applet_list_keeps_only_safe_relative_paths() {
        let got =
            parse_applets("bin/sh\nusr/bin/env\n\n/abs/x\n../escape\nbin//x\nbin/a b\nsbin/init\n");
        assert_eq!(got, ["bin/sh", "usr/bin/env", "sbin/init"]);
    }

    #[test]
    fn applets_are_listed_once_and_cached() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("busybox");
        std::fs::write(&fake, "#!/bin/sh\nprintf 'bin/sh\\nusr/bin/env\\n'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(busybox_applets(&fake), ["bin/sh", "usr/bin/env"]);
        // Cached: the binary is no longer asked.
        std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
        assert_eq!(busybox_applets(&fake), ["bin/sh", "usr/bin/env"]);
    }
}
