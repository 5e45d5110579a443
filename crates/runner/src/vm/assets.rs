//! Finding and preparing what a boot needs: the guest init binary, the
//! kernel, busybox and the initramfs (all cached by vmbuild-image).

use std::path::{Path, PathBuf};

use crate::error::RunError;

/// Where to look for the static guest init, in order: `$VMBUILD_INIT`, then
/// beside the running executable (installed layout), then the places
/// `scripts/build-init.sh` leaves it in a checkout (`target/vmbuild-init`
/// seen from `target/{debug,release}/` and from `target/*/deps/`).
pub fn init_candidates(env_init: Option<PathBuf>, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = env_init {
        c.push(p);
        // An explicit choice is the only candidate: no silent fallback.
        return c;
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        c.push(dir.join("vmbuild-init"));
        c.push(dir.join("../lib/vmbuild/vmbuild-init"));
        c.push(dir.join("../vmbuild-init"));
    }
    c
}

/// Whether `elf` is an ELF64 executable with a `PT_INTERP` program header,
/// i.e. needs a dynamic loader the initramfs does not have. `None` when it
/// is not a (complete) ELF64 little-endian file.
pub fn elf_needs_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if p_type == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// The first candidate that is a static ELF executable, or an error listing
/// every place checked (a dynamically linked build, such as the one `cargo
/// test` leaves in `target/debug`, cannot run as the guest's PID 1).
pub fn find_init(candidates: Vec<PathBuf>) -> Result<PathBuf, RunError> {
    let mut checked = Vec::new();
    for p in candidates {
        let Ok(bytes) = std::fs::read(&p) else {
            checked.push(p);
            continue;
        };
        match elf_needs_interpreter(&bytes) {
            Some(false) => return Ok(p),
            Some(true) => {
                tracing::debug!(path = %p.display(), "skipping a dynamically linked guest init");
                checked.push(PathBuf::from(format!(
                    "{} (dynamically linked)",
                    p.display()
                )));
            }
            None => checked.push(PathBuf::from(format!(
                "{} (not an ELF64 executable)",
                p.display()
            ))),
        }
    }
    Err(RunError::InitNotFound { checked })
}

/// Finds the init using the real environment.
pub fn locate_init() -> Result<PathBuf, RunError> {
    let env = std::env::var_os("VMBUILD_INIT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let exe = std::env::current_exe().ok();
    find_init(init_candidates(env, exe.as_deref()))
}

/// Everything a boot needs on disk.
#[derive(Debug, Clone)]
pub struct BootAssets {
    pub kernel: vmbuild_image::Kernel,
    pub initramfs: PathBuf,
}

impl BootAssets {
    /// The two files QEMU boots.
    pub fn boot_files(&self) -> super::plan::BootFiles {
        super::plan::BootFiles {
            kernel: self.kernel.image.clone(),
            initrd: self.initramfs.clone(),
        }
    }
}

/// Where the user's kernel comes from (`--kernel`, `VMBUILD_KERNEL`).
#[derive(Debug, Clone, Default)]
pub struct KernelChoice {
    pub kernel: Option<PathBuf>,
    pub modules: Option<PathBuf>,
}

/// Resolves (fetching on first use) the kernel and busybox, and builds the
/// initramfs; every piece is cached by content so a warm call does no work
/// beyond hashing. `notice` receives lines worth telling the user.
pub fn prepare(
    choice: &KernelChoice,
    notice: &mut dyn FnMut(&str),
) -> Result<BootAssets, RunError> {
    let init = locate_init()?;
    let cache_root = vmbuild_image::cache_root()?;
    let req = vmbuild_image::KernelRequest {
        kernel: choice.kernel.clone(),
        modules: choice.modules.clone(),
        cache_root: cache_root.clone(),
    };
    let kernel = vmbuild_image::resolve_kernel(&req, notice)?;
    let busybox = vmbuild_image::busybox(&cache_root, notice)?;
    let modules = vmbuild_image::guest_modules()?;
    let on_demand = vmbuild_image::guest_module_groups()?;
    let applets = vmbuild_image::busybox_applets(&busybox);
    let spec = vmbuild_image::InitramfsSpec {
        init: &init,
        busybox: Some(&busybox),
        kernel: &kernel,
        modules: &modules,
        on_demand: &on_demand,
        applets: &applets,
    };
    let initramfs = vmbuild_image::build_initramfs(&spec, &cache_root)?;
    Ok(BootAssets { kernel, initramfs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_init_is_the_only_candidate() {
        let c = init_candidates(Some("/x/init".into()), Some(Path::new("/usr/bin/vmbuild")));
        assert_eq!(c, vec![PathBuf::from("/x/init")]);
    }

    #[test]
    fn checkout_and_install_layouts_are_searched_in_order() {
        let c = init_candidates(None, Some(Path::new("/r/target/debug/vmbuild")));
        assert_eq!(c[0], PathBuf::from("/r/target/debug/vmbuild-init"));
        assert!(c.contains(&PathBuf::from("/r/target/debug/../vmbuild-init")));
    }

    /// A minimal ELF64 header with one program header of type `p_type`.
    fn elf_with_phdr(p_type: u32) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&p_type.to_le_bytes());
        e
    }

    #[test]
    fn tells_static_from_dynamic_elf() {
        assert_eq!(elf_needs_interpreter(&elf_with_phdr(1)), Some(false));
        assert_eq!(elf_needs_interpreter(&elf_with_phdr(3)), Some(true));
        assert_eq!(elf_needs_interpreter(b"#!/bin/sh\n"), None);
        let mut truncated = elf_with_phdr(3);
        truncated.truncate(66);
        assert_eq!(elf_needs_interpreter(&truncated), None);
    }

    #[test]
    fn finds_first_static_init_skipping_missing_and_dynamic() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        let dynamic = d.path().join("dynamic");
        let good = d.path().join("static");
        std::fs::write(&dynamic, elf_with_phdr(3)).unwrap();
        std::fs::write(&good, elf_with_phdr(1)).unwrap();
        let found = find_init(vec![missing.clone(), dynamic.clone(), good.clone()]).unwrap();
        assert_eq!(found, good);
        let err = find_init(vec![missing.clone(), dynamic])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("(dynamically linked)"), "{err}");
    }
}
