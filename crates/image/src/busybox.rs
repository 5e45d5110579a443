//! The pinned static busybox, provisioned into the cache like the kernel.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deb::{self, AptTools, DebPin, Fallback, FetchedDeb};
use crate::error::io_err;
use crate::kernel::{entry_name, mkdir_0755};
use crate::pins;
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

fn build_entry(
    out: &Path,
    tools: &AptTools,
    pin: &pins::BusyboxPin,
    notice: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let download = out.join("download");
    let root = out.join("root");
    mkdir_0755(&download)?;
    let fetched = deb::fetch_deb(
        tools,
        DebPin {
            package: &pin.package,
            version: &pin.version,
            sha256: &pin.sha256,
        },
        Fallback::Candidate,
        &download,
        &root,
        notice,
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
    for scratch in [&download, &root] {
        std::fs::remove_dir_all(scratch)
            .map_err(io_err(format!("removing {}", scratch.display())))?;
    }
    let json =
        serde_json::to_vec_pretty(&BusyboxRecord { fetched }).map_err(|e| ImageError::Io {
            context: "serializing busybox.json".into(),
            source: std::io::Error::other(e),
        })?;
    write_atomic(&out.join("busybox.json"), &json)
}
