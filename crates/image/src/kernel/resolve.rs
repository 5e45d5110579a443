//! The guest kernel: a user-supplied image, or the pinned Debian kernel
//! provisioned into the cache. Where the kernel allows it, QEMU gets the
//! uncompressed ELF vmlinux (booted through its PVH note), which skips the
//! in-guest XZ decompression (~2.5 s under TCG).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::kernel::bzimage::{self, Extraction};
use crate::kernel::deb::{self, AptTools, DebPin, Fallback};
use crate::kernel::image::{corrupt, no_pvh_notice, sha256, Kernel, KernelOrigin};
use crate::kernel::pins;
use crate::provision::{ensure_dir, is_complete, write_atomic};
use crate::{ImageError, Progress};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRequest {
    /// `--kernel PATH`: a bzImage or an ELF vmlinux; `None` = the pinned kernel.
    pub kernel: Option<PathBuf>,
    /// `--kernel-modules DIR`: the kernel's `lib/modules/<release>`.
    pub modules: Option<PathBuf>,
    /// vmbuild's cache root (see [`crate::cache_root`]).
    pub cache_root: PathBuf,
}

/// Subtrees of `kernel/` dropped from the cached modules: hardware a microVM
/// never has. Saves ~150 MB of the ~390 MB tree.
const PRUNED_MODULE_DIRS: &[&str] = &[
    "sound",
    "drivers/gpu",
    "drivers/media",
    "drivers/net/wireless",
    "drivers/net/ethernet",
    "drivers/infiniband",
    "drivers/staging",
    "drivers/iio",
    "drivers/comedi",
    "drivers/bluetooth",
    "net/wireless",
    "net/mac80211",
    "net/bluetooth",
];

const RECORD: &str = "kernel.json";

/// What `<cache_root>/kernels/<entry>/kernel.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KernelRecord {
    origin: KernelOrigin,
    release: String,
    deb_sha256: String,
    vmlinuz_sha256: String,
    /// `None` when the kernel cannot be booted through PVH.
    vmlinux_sha256: Option<String>,
    /// Why there is no vmlinux, if there is none.
    no_pvh_reason: Option<String>,
    pruned_module_dirs: Vec<String>,
}

/// Find or provision the kernel `req` asks for. `notice` gets user-facing
/// messages (fallback to a non-pinned kernel, no PVH boot possible).
pub fn resolve_kernel(
    req: &KernelRequest,
    notice: &mut dyn FnMut(&str),
) -> Result<Kernel, ImageError> {
    resolve_kernel_with_progress(req, notice, &mut crate::progress::ignore)
}

/// [`resolve_kernel`], telling `progress` how a first-use download and
/// unpacking of the pinned kernel goes.
pub fn resolve_kernel_with_progress(
    req: &KernelRequest,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Kernel, ImageError> {
    match &req.kernel {
        Some(path) => {
            crate::kernel::user::user_kernel(path, req.modules.as_deref(), &req.cache_root, notice)
        }
        None => {
            let mut kernel = pinned_kernel(&req.cache_root, notice, progress)?;
            if let Some(dir) = &req.modules {
                kernel.modules_dir = Some(checked_modules_dir(dir, &kernel)?);
            }
            Ok(kernel)
        }
    }
}

fn checked_modules_dir(dir: &Path, kernel: &Kernel) -> Result<PathBuf, ImageError> {
    if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(ImageError::NoModulesDir {
            kernel: kernel.image.clone(),
            release: kernel.release.clone(),
            looked_in: format!("{} (not a directory)", dir.display()),
        })
    }
}

/// Debian versions may carry an epoch (`1:1.35`); keep file names portable.
pub(crate) fn entry_name(package: &str, version: &str) -> String {
    format!("{package}_{}", version.replace(':', "%3a"))
}

/// Where the pinned kernel lives in the cache, and whether it is complete
/// there (fetched and unpacked) — without fetching anything.
pub fn pinned_kernel_dir(cache_root: &Path) -> Result<(PathBuf, bool), ImageError> {
    let pin = pins::kernel_pin()?;
    let dir = cache_root
        .join("kernels")
        .join(entry_name(&pin.package, &pin.version));
    let complete = is_complete(&dir);
    Ok((dir, complete))
}

fn pinned_kernel(
    cache_root: &Path,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Kernel, ImageError> {
    let pin = pins::kernel_pin()?;
    let (dir, complete) = pinned_kernel_dir(cache_root)?;
    if !complete {
        let tools = AptTools::find(&pin.package)?;
        let started = std::time::Instant::now();
        ensure_dir(&dir, |tmp| {
            build_kernel_entry(tmp, &tools, &pin, notice, progress)
        })?;
        tracing::info!(dir = %dir.display(), elapsed = ?started.elapsed(), "kernel provisioned");
    }
    load_entry(&dir)
}

fn load_entry(dir: &Path) -> Result<Kernel, ImageError> {
    let path = dir.join(RECORD);
    let bad = |reason: String| ImageError::BadCacheEntry {
        path: dir.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let rec: KernelRecord =
        serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let image = if rec.vmlinux_sha256.is_some() {
        dir.join("vmlinux")
    } else {
        dir.join("vmlinuz")
    };
    let modules_dir = dir.join("lib/modules").join(&rec.release);
    for p in [&image, &modules_dir] {
        if !p.exists() {
            return Err(bad(format!("{} is missing", p.display())));
        }
    }
    if let KernelOrigin::Fallback { package, version } = &rec.origin {
        tracing::warn!(%package, %version, "using the fallback kernel (the pinned one was gone)");
    }
    Ok(Kernel {
        image,
        release: rec.release,
        modules_dir: Some(modules_dir),
        origin: rec.origin,
    })
}

/// Fill `out` (empty, inside the cache) with the pinned kernel.
fn build_kernel_entry(
    out: &Path,
    tools: &AptTools,
    pin: &pins::KernelPin,
    notice: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), ImageError> {
    let (fetched, root) = deb::fetch_into_entry(
        tools,
        DebPin {
            package: &pin.package,
            version: &pin.version,
            sha256: &pin.sha256,
        },
        Fallback::DependencyOf(&pin.fallback_depends_of),
        out,
        notice,
        progress,
    )?;
    let bad_package = |reason: String| ImageError::BadPackage {
        package: fetched.package.clone(),
        version: fetched.version.clone(),
        reason,
    };

    let (vmlinuz_src, release) = find_vmlinuz(&root.join("boot")).map_err(bad_package)?;
    let modules_src = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|d| d.is_dir())
        .ok_or_else(|| bad_package(format!("no lib/modules/{release} directory")))?;
    let vmlinuz = out.join("vmlinuz");
    rename(&vmlinuz_src, &vmlinuz)?;
    let modules_dir = out.join("lib/modules").join(&release);
    std::fs::create_dir_all(out.join("lib/modules")).map_err(io_err(format!(
        "creating {}",
        out.join("lib/modules").display()
    )))?;
    rename(&modules_src, &modules_dir)?;
    let mut pruned = Vec::new();
    for sub in PRUNED_MODULE_DIRS {
        let p = modules_dir.join("kernel").join(sub);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(io_err(format!("removing {}", p.display())))?;
            pruned.push(sub.to_string());
        }
    }
    deb::remove_scratch(out)?;

    let data = std::fs::read(&vmlinuz).map_err(io_err(format!("reading {}", vmlinuz.display())))?;
    let header_release = bzimage::bzimage_release(&data).map_err(|e| corrupt(&vmlinuz, e))?;
    if header_release != release {
        tracing::warn!(%header_release, %release, "bzImage header release differs from its file name");
    }
    progress(Progress::Begin {
        what: "decompressing the kernel's vmlinux",
        total: None,
    });
    let extracted = bzimage::extract_pvh_vmlinux(&data);
    progress(Progress::End);
    let (vmlinux_sha256, no_pvh_reason) = match extracted.map_err(|e| corrupt(&vmlinuz, e))? {
        Extraction::Pvh(elf) => {
            write_atomic(&out.join("vmlinux"), &elf)?;
            (Some(sha256(&elf)), None)
        }
        Extraction::NotBootable(why) => {
            notice(&no_pvh_notice(&vmlinuz, &why));
            (None, Some(why))
        }
    };
    let origin = if fetched.pinned {
        KernelOrigin::Pinned {
            package: fetched.package.clone(),
            version: fetched.version.clone(),
        }
    } else {
        KernelOrigin::Fallback {
            package: fetched.package.clone(),
            version: fetched.version.clone(),
        }
    };
    let record = KernelRecord {
        origin,
        release,
        deb_sha256: fetched.sha256.clone(),
        vmlinuz_sha256: sha256(&data),
        vmlinux_sha256,
        no_pvh_reason,
        pruned_module_dirs: pruned,
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| ImageError::Io {
        context: "serializing kernel.json".into(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&out.join(RECORD), &json)
}

/// The single `vmlinuz-<release>` in a package's `boot/`.
fn find_vmlinuz(boot: &Path) -> Result<(PathBuf, String), String> {
    let rd = std::fs::read_dir(boot).map_err(|e| format!("no boot/ directory: {e}"))?;
    let mut found = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rel) = name.strip_prefix("vmlinuz-") {
            found.push((e.path(), rel.to_string()));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!("expected one boot/vmlinuz-*, found {n}")),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::rename(from, to).map_err(io_err(format!(
        "moving {} to {}",
        from.display(),
        to.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioned_pinned_kernel_is_reused_without_apt() {
        let t = tempfile::tempdir().unwrap();
        let pin = pins::kernel_pin().unwrap();
        let dir = t
            .path()
            .join("kernels")
            .join(entry_name(&pin.package, &pin.version));
        std::fs::create_dir_all(dir.join("lib/modules/6.9.1-test")).unwrap();
        std::fs::write(dir.join("vmlinux"), b"elf").unwrap();
        let rec = KernelRecord {
            origin: KernelOrigin::Fallback {
                package: "linux-image-9".into(),
                version: "9.1".into(),
            },
            release: "6.9.1-test".into(),
            deb_sha256: "d".into(),
            vmlinuz_sha256: "z".into(),
            vmlinux_sha256: Some("x".into()),
            no_pvh_reason: None,
            pruned_module_dirs: vec![],
        };
        std::fs::write(dir.join(RECORD), serde_json::to_vec(&rec).unwrap()).unwrap();
        let request = KernelRequest {
            kernel: None,
            modules: None,
            cache_root: t.path().to_path_buf(),
        };
        // Not complete yet: would provision (and needs apt). Complete: reused as is.
        std::fs::write(dir.join(vmbuild_store::COMPLETE_MARKER), b"").unwrap();
        let got = resolve_kernel(&request, &mut |n| panic!("unexpected notice {n}")).unwrap();
        assert_eq!(got.image, dir.join("vmlinux"));
        assert_eq!(got.release, "6.9.1-test");
        assert_eq!(got.modules_dir, Some(dir.join("lib/modules/6.9.1-test")));
        assert_eq!(got.origin, rec.origin);

        let other = t.path().join("mods");
        std::fs::create_dir(&other).unwrap();
        let with_modules = KernelRequest {
            modules: Some(other.clone()),
            ..request.clone()
        };
        assert_eq!(
            resolve_kernel(&with_modules, &mut |_| {})
                .unwrap()
                .modules_dir,
            Some(other)
        );

        std::fs::remove_file(dir.join("vmlinux")).unwrap();
        let err = resolve_kernel(&request, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::BadCacheEntry { .. }), "{err}");
    }

    #[test]
    fn entry_names_escape_epochs() {
        assert_eq!(
            entry_name("busybox-static", "1:1.35.0-4"),
            "busybox-static_1%3a1.35.0-4"
        );
    }
}
