//! Finding and preparing what a boot needs: the guest init binary, the
//! kernel, busybox and the initramfs (all cached by vmbuild-image).

use std::path::{Path, PathBuf};

use crate::error::RunError;
use crate::StartEvent;

/// The guest init a boot uses: the one built into vmbuild, or the file
/// `VMBUILD_INIT` names (for developers and tests).
#[derive(Debug, Clone)]
pub struct GuestInit {
    /// The static executable's bytes.
    pub bytes: std::borrow::Cow<'static, [u8]>,
    /// `None` for the embedded init, else the `VMBUILD_INIT` path.
    pub path: Option<PathBuf>,
}

impl GuestInit {
    /// The init built into this binary (see the vmbuild-embedded-init crate).
    pub fn embedded() -> GuestInit {
        GuestInit {
            bytes: std::borrow::Cow::Borrowed(vmbuild_embedded_init::INIT),
            path: None,
        }
    }

    /// Where it came from, for `vmbuild doctor`.
    pub fn describe(&self) -> String {
        match &self.path {
            None => format!(
                "built in (sha256 {})",
                &vmbuild_embedded_init::INIT_SHA256[..16]
            ),
            Some(p) => format!("{} (VMBUILD_INIT)", p.display()),
        }
    }
}

/// The init from an explicit path: it must be a static ELF executable (a
/// dynamically linked build, such as the one `cargo test` leaves in
/// `target/debug`, cannot run as the guest's PID 1). No fallback to the
/// embedded one: an explicit choice that does not work is an error.
pub fn init_from_path(path: &Path) -> Result<GuestInit, RunError> {
    let bad = |why: String| RunError::BadInit {
        path: path.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    match vmbuild_embedded_init::elf_needs_interpreter(&bytes) {
        Some(false) => Ok(GuestInit {
            bytes: bytes.into(),
            path: Some(path.to_path_buf()),
        }),
        Some(true) => Err(bad(
            "dynamically linked (the guest has no dynamic loader)".into()
        )),
        None => Err(bad("not an ELF64 executable".into())),
    }
}

/// `$VMBUILD_INIT` when set and not empty, else the embedded init.
pub fn locate_init() -> Result<GuestInit, RunError> {
    match std::env::var_os("VMBUILD_INIT").filter(|v| !v.is_empty()) {
        Some(p) => init_from_path(Path::new(&p)),
        None => Ok(GuestInit::embedded()),
    }
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
/// beyond hashing. `events` receives lines worth telling the user
/// ([`StartEvent::Notice`]) and the first-use download's progress
/// ([`StartEvent::Progress`]).
pub fn prepare(
    choice: &KernelChoice,
    events: &mut dyn FnMut(StartEvent<'_>),
) -> Result<BootAssets, RunError> {
    let init = locate_init()?;
    let cache_root = vmbuild_image::cache_root()?;
    let req = vmbuild_image::KernelRequest {
        kernel: choice.kernel.clone(),
        modules: choice.modules.clone(),
        cache_root: cache_root.clone(),
    };
    // Both sinks are the one `events`, never called into each other.
    let shared = std::cell::RefCell::new(&mut *events);
    let kernel = vmbuild_image::resolve_kernel_with_progress(
        &req,
        &mut |l| (shared.borrow_mut())(StartEvent::Notice(l)),
        &mut |p| (shared.borrow_mut())(StartEvent::Progress(p)),
    )?;
    let busybox = vmbuild_image::busybox(&cache_root, &mut |l| events(StartEvent::Notice(l)))?;
    let modules = vmbuild_image::guest_modules()?;
    let on_demand = vmbuild_image::guest_module_groups()?;
    let applets = vmbuild_image::busybox_applets(&busybox);
    let spec = vmbuild_image::InitramfsSpec {
        init: &init.bytes,
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
    fn an_explicit_init_must_exist_and_be_static() {
        let d = tempfile::tempdir().unwrap();
        let (missing, good) = (d.path().join("m"), d.path().join("s"));
        // A real static init (the embedded one) and a real dynamic ELF
        // (this test binary).
        std::fs::write(&good, vmbuild_embedded_init::INIT).unwrap();
        let dynamic = std::env::current_exe().unwrap();
        let init = init_from_path(&good).unwrap();
        assert_eq!(init.path.as_deref(), Some(good.as_path()));
        assert_eq!(&*init.bytes, vmbuild_embedded_init::INIT);
        let err = init_from_path(&dynamic).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        let err = init_from_path(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn the_embedded_init_is_described_by_its_hash() {
        let e = GuestInit::embedded();
        assert!(
            e.describe().starts_with("built in (sha256 "),
            "{}",
            e.describe()
        );
        assert!(!e.bytes.is_empty());
    }
}
