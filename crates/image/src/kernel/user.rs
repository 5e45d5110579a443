//! Kernels passed by the user (`--kernel PATH`): format and release
//! detection, PVH vmlinux extraction (cached by the bzImage's hash), and
//! finding the matching modules directory.

use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::kernel::bzimage::{self, Extraction, KernelFormat};
use crate::kernel::image::{corrupt, no_pvh_notice, sha256, Kernel, KernelOrigin};
use crate::provision::write_atomic;
use crate::ImageError;

pub(crate) fn user_kernel(
    path: &Path,
    modules: Option<&Path>,
    cache_root: &Path,
    notice: &mut dyn FnMut(&str),
) -> Result<Kernel, ImageError> {
    let path =
        std::path::absolute(path).map_err(io_err(format!("resolving {}", path.display())))?;
    let data = std::fs::read(&path).map_err(io_err(format!(
        "reading the kernel {} (from --kernel / VMBUILD_KERNEL)",
        path.display()
    )))?;
    let not_kernel = || ImageError::NotAKernel { path: path.clone() };
    let (image, release) = match bzimage::detect(&data).ok_or_else(not_kernel)? {
        KernelFormat::BzImage => {
            let release = bzimage::bzimage_release(&data).map_err(|e| corrupt(&path, e))?;
            (bootable_image(&path, &data, cache_root, notice)?, release)
        }
        KernelFormat::Elf => {
            let release = bzimage::elf_release(&data).ok_or_else(not_kernel)?;
            if !bzimage::has_pvh_note(&data).map_err(|e| corrupt(&path, e))? {
                return Err(ImageError::NoPvhNote { path });
            }
            (path.clone(), release)
        }
    };
    let modules_dir = match modules {
        Some(dir) if dir.is_dir() => dir.to_path_buf(),
        Some(dir) => {
            return Err(ImageError::NoModulesDir {
                kernel: path,
                release,
                looked_in: format!("{} (not a directory)", dir.display()),
            })
        }
        None => {
            let candidates = module_dir_candidates(&path, &release);
            match candidates.iter().find(|d| d.is_dir()) {
                Some(d) => d.clone(),
                None => {
                    let looked_in: Vec<String> =
                        candidates.iter().map(|d| d.display().to_string()).collect();
                    return Err(ImageError::NoModulesDir {
                        kernel: path,
                        release,
                        looked_in: looked_in.join(", "),
                    });
                }
            }
        }
    };
    Ok(Kernel {
        image,
        release,
        modules_dir: Some(modules_dir),
        origin: KernelOrigin::User { path },
    })
}

/// Where the modules of a kernel at `kernel` may be: next to it when it is
/// `<root>/boot/<file>`, then the host's `/lib/modules/<release>`.
pub fn module_dir_candidates(kernel: &Path, release: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(boot) = kernel.parent() {
        if boot.file_name().is_some_and(|n| n == "boot") {
            if let Some(root) = boot.parent() {
                out.push(root.join("lib/modules").join(release));
                out.push(root.join("usr/lib/modules").join(release));
            }
        }
    }
    let host = Path::new("/lib/modules").join(release);
    if !out.contains(&host) {
        out.push(host);
    }
    out
}

/// For a user bzImage: the cached PVH vmlinux extracted from it, or the
/// bzImage itself (with a notice) when that is not possible.
fn bootable_image(
    path: &Path,
    data: &[u8],
    cache_root: &Path,
    notice: &mut dyn FnMut(&str),
) -> Result<PathBuf, ImageError> {
    let dir = cache_root.join("vmlinux");
    let cached = dir.join(sha256(data));
    let no_pvh = cached.with_extension("no-pvh");
    if cached.is_file() {
        return Ok(cached);
    }
    if let Ok(why) = std::fs::read_to_string(&no_pvh) {
        notice(&no_pvh_notice(path, &why));
        return Ok(path.to_path_buf());
    }
    match bzimage::extract_pvh_vmlinux(data).map_err(|e| corrupt(path, e))? {
        Extraction::Pvh(elf) => {
            write_atomic(&cached, &elf)?;
            Ok(cached)
        }
        Extraction::NotBootable(why) => {
            write_atomic(&no_pvh, why.as_bytes())?;
            notice(&no_pvh_notice(path, &why));
            Ok(path.to_path_buf())
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::bzimage::tests::{fake_bzimage, fake_vmlinux};
    use crate::kernel::decompress::tests::xz;
    use crate::kernel::{resolve_kernel, KernelRequest};

    const BANNER: &[u8] = b"\0Linux version 6.9.1-test (me@x) #1 SMP\0";

    fn req(kernel: &Path, modules: Option<PathBuf>, cache: &Path) -> KernelRequest {
        KernelRequest {
            kernel: Some(kernel.to_path_buf()),
            modules,
            cache_root: cache.to_path_buf(),
        }
    }

    /// `<root>/boot/vmlinuz-6.9.1-test` + `<root>/lib/modules/6.9.1-test`.
    fn fake_root(root: &Path, bz: &[u8]) -> PathBuf {
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::create_dir_all(root.join("lib/modules/6.9.1-test/kernel")).unwrap();
        let k = root.join("boot/vmlinuz-6.9.1-test");
        std::fs::write(&k, bz).unwrap();
        k
    }

    #[test]
    fn user_bzimage_gets_cached_pvh_vmlinux_and_sibling_modules() {
        let t = tempfile::tempdir().unwrap();
        let elf = fake_vmlinux(b"Xen", 18, BANNER);
        let k = fake_root(
            &t.path().join("root"),
            &fake_bzimage(&xz(&elf), "6.9.1-test (x) #1"),
        );
        let cache = t.path().join("cache");
        let mut notices = Vec::new();
        let got =
            resolve_kernel(&req(&k, None, &cache), &mut |n| notices.push(n.to_string())).unwrap();
        assert_eq!(got.release, "6.9.1-test");
        assert!(got.image.starts_with(cache.join("vmlinux")));
        assert_eq!(std::fs::read(&got.image).unwrap(), elf);
        assert_eq!(
            got.modules_dir,
            Some(t.path().join("root/lib/modules/6.9.1-test"))
        );
        assert_eq!(got.origin, KernelOrigin::User { path: k.clone() });
        assert!(notices.is_empty(), "{notices:?}");
        // Second call: same cached file.
        let again = resolve_kernel(&req(&k, None, &cache), &mut |_| {}).unwrap();
        assert_eq!(again.image, got.image);
    }

    #[test]
    fn user_bzimage_without_pvh_boots_as_is_with_notice() {
        let t = tempfile::tempdir().unwrap();
        let elf = fake_vmlinux(b"GNU", 1, BANNER);
        let k = fake_root(
            &t.path().join("root"),
            &fake_bzimage(&xz(&elf), "6.9.1-test (x)"),
        );
        let cache = t.path().join("cache");
        for _ in 0..2 {
            let mut notices = Vec::new();
            let got = resolve_kernel(&req(&k, None, &cache), &mut |n| notices.push(n.to_string()))
                .unwrap();
            assert_eq!(got.image, k);
            assert_eq!(notices.len(), 1);
            assert!(notices[0].contains("PVH"), "{}", notices[0]);
        }
    }

    #[test]
    fn user_elf_needs_pvh_note_and_banner() {
        let t = tempfile::tempdir().unwrap();
        let mods = t.path().join("mods");
        std::fs::create_dir(&mods).unwrap();
        let good = t.path().join("vmlinux");
        std::fs::write(&good, fake_vmlinux(b"Xen", 18, BANNER)).unwrap();
        let got = resolve_kernel(&req(&good, Some(mods.clone()), t.path()), &mut |_| {}).unwrap();
        assert_eq!(
            (got.image.as_path(), got.release.as_str()),
            (good.as_path(), "6.9.1-test")
        );
        assert_eq!(got.modules_dir, Some(mods.clone()));

        let no_pvh = t.path().join("vmlinux2");
        std::fs::write(&no_pvh, fake_vmlinux(b"GNU", 1, BANNER)).unwrap();
        let err =
            resolve_kernel(&req(&no_pvh, Some(mods.clone()), t.path()), &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::NoPvhNote { .. }), "{err}");

        let not_kernel = t.path().join("prog");
        std::fs::write(&not_kernel, fake_vmlinux(b"Xen", 18, b"")).unwrap();
        let err = resolve_kernel(&req(&not_kernel, Some(mods), t.path()), &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::NotAKernel { .. }), "{err}");
    }

    #[test]
    fn garbage_and_truncated_kernels_are_one_line_errors() {
        let t = tempfile::tempdir().unwrap();
        let junk = t.path().join("junk");
        std::fs::write(&junk, vec![0x5au8; 5000]).unwrap();
        let err = resolve_kernel(&req(&junk, None, t.path()), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("is not a Linux kernel image (bzImage or ELF vmlinux)"),
            "{err}"
        );
        assert!(!err.contains('\n'));

        let elf = fake_vmlinux(b"Xen", 18, BANNER);
        let big: Vec<u8> = [
            elf,
            (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ]
        .concat();
        let bz = fake_bzimage(&xz(&big), "6.9.1-test (x)");
        let half = fake_root(&t.path().join("root"), &bz[..bz.len() / 2]);
        let err = resolve_kernel(&req(&half, None, t.path()), &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::CorruptKernel { .. }), "{err}");
    }

    #[test]
    fn missing_modules_dir_says_what_to_pass() {
        let t = tempfile::tempdir().unwrap();
        let k = t.path().join("vmlinux");
        std::fs::write(
            &k,
            fake_vmlinux(
                b"Xen",
                18,
                b"\0Linux version 0.0.0-nowhere-vmbuild-test x\0",
            ),
        )
        .unwrap();
        let err = resolve_kernel(&req(&k, None, t.path()), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--kernel-modules DIR")
                && err.contains("/lib/modules/0.0.0-nowhere-vmbuild-test"),
            "{err}"
        );
        let err = resolve_kernel(&req(&k, Some(t.path().join("nope")), t.path()), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn module_dir_candidates_follow_boot_layout() {
        let c = module_dir_candidates(Path::new("/srv/root/boot/vmlinuz-6.1"), "6.1");
        assert_eq!(
            c,
            [
                PathBuf::from("/srv/root/lib/modules/6.1"),
                PathBuf::from("/srv/root/usr/lib/modules/6.1"),
                PathBuf::from("/lib/modules/6.1"),
            ]
        );
        let c = module_dir_candidates(Path::new("/tmp/bzImage"), "6.1");
        assert_eq!(c, [PathBuf::from("/lib/modules/6.1")]);
    }
}
