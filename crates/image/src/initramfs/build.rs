//! Building the initramfs archive (see the [module docs](super) for its
//! layout) and caching it by content hash.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::initramfs::cpio::CpioWriter;
use crate::kernel::modules::{read_module, resolve_modules, ModuleIndex};
use crate::kernel::Kernel;
use crate::provision::write_atomic;
use crate::ImageError;

/// Bumped whenever the layout or the writer changes, so old cached
/// archives are not reused.
pub const FORMAT_VERSION: &str = "vmbuild-initramfs-v1";

/// Where the module load list lives in the guest.
pub const MODULES_LOAD: &str = "/etc/vmbuild/modules.load";

/// Where the on-demand module lists live in the guest (`<group>.load`).
pub const MODULES_ON_DEMAND_DIR: &str = "/etc/vmbuild/modules.d";

/// What goes into an initramfs.
#[derive(Debug, Clone, Copy)]
pub struct InitramfsSpec<'a> {
    /// The guest init binary (static), installed as `/init`.
    pub init: &'a [u8],
    /// A static busybox, installed as `/bin/busybox`.
    pub busybox: Option<&'a Path>,
    /// The kernel the initramfs is for (release and modules dir).
    pub kernel: &'a Kernel,
    /// Modules to load at boot; their dependency closure is added.
    pub modules: &'a [String],
    /// Groups of modules loaded on demand (group name = filesystem type).
    pub on_demand: &'a [(String, Vec<String>)],
    /// Busybox applet paths (e.g. `usr/bin/env`) to symlink to `/bin/busybox`.
    pub applets: &'a [String],
}

/// `(absolute guest path, uncompressed bytes)` of one module file.
pub type ModuleFile = (String, Vec<u8>);

/// The resolved contents of an initramfs (all bytes in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsContents {
    /// `/init`.
    pub init: Vec<u8>,
    /// `/bin/busybox`.
    pub busybox: Option<Vec<u8>>,
    /// Kernel release.
    pub release: String,
    /// `(absolute guest path, uncompressed bytes)` in load order.
    pub modules: Vec<ModuleFile>,
    /// On-demand groups: name and their modules not already in `modules`.
    pub groups: Vec<(String, Vec<ModuleFile>)>,
    /// Applet symlink paths (relative, no leading `/`).
    pub applets: Vec<String>,
}

const DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("proc", 0o755),
    ("sys", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
    ("etc", 0o755),
    ("etc/vmbuild", 0o755),
    ("root", 0o755),
    ("home", 0o755),
    ("bin", 0o755),
];

impl InitramfsContents {
    /// Read the files `spec` names and resolve the module closure.
    pub fn collect(spec: &InitramfsSpec<'_>) -> Result<InitramfsContents, ImageError> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(io_err(format!("reading the {what} {}", p.display())))
        };
        let init = spec.init.to_vec();
        let busybox = spec.busybox.map(|p| read(p, "busybox")).transpose()?;
        let release = spec.kernel.release.clone();
        let mut modules = Vec::new();
        let mut groups = Vec::new();
        let wanted_any =
            !spec.modules.is_empty() || spec.on_demand.iter().any(|(_, m)| !m.is_empty());
        if wanted_any {
            let dir = spec.kernel.modules_dir.as_deref().ok_or_else(|| {
                let mut all: Vec<String> = spec.modules.to_vec();
                all.extend(spec.on_demand.iter().flat_map(|(_, m)| m.iter().cloned()));
                ImageError::ModulesDirMissing {
                    release: release.clone(),
                    modules: all.join(", "),
                }
            })?;
            let index = ModuleIndex::scan(dir)?;
            let resolve = |names: &[String]| -> Result<Vec<ModuleFile>, ImageError> {
                resolve_modules(&index, names)?
                    .into_iter()
                    .map(|m| {
                        let guest = format!(
                            "/lib/modules/{release}/{}",
                            m.guest_relpath.to_string_lossy()
                        );
                        Ok((guest, read_module(&m.path)?))
                    })
                    .collect()
            };
            modules = resolve(spec.modules)?;
            for (name, wanted) in spec.on_demand {
                let extra: Vec<_> = resolve(wanted)?
                    .into_iter()
                    .filter(|(p, _)| !modules.iter().any(|(b, _)| b == p))
                    .collect();
                groups.push((name.clone(), extra));
            }
        }
        let applets = spec
            .applets
            .iter()
            .map(|a| a.trim_start_matches('/').to_string())
            .filter(|a| {
                !a.is_empty() && a != "bin/busybox" && !a.split('/').any(|c| c == ".." || c == ".")
            })
            .collect();
        Ok(InitramfsContents {
            init,
            busybox,
            release,
            modules,
            groups,
            applets,
        })
    }

    /// Content hash (hex sha256) over the format version and every input.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(FORMAT_VERSION.as_bytes());
        field(&self.init);
        match &self.busybox {
            Some(b) => {
                field(b"busybox");
                field(b);
            }
            None => field(b"no-busybox"),
        }
        field(self.release.as_bytes());
        for (path, data) in &self.modules {
            field(path.as_bytes());
            field(data);
        }
        for (name, mods) in &self.groups {
            field(b"group");
            field(name.as_bytes());
            for (path, data) in mods {
                field(path.as_bytes());
                field(data);
            }
        }
        for a in &self.applets {
            field(b"applet");
            field(a.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The `modules.load` text: one guest path per line.
    pub fn modules_load(&self) -> String {
        self.modules.iter().map(|(p, _)| format!("{p}\n")).collect()
    }

    /// The cpio archive bytes.
    pub fn to_cpio(&self) -> std::io::Result<Vec<u8>> {
        let size: usize = self.init.len()
            + self.busybox.as_ref().map_or(0, Vec::len)
            + self
                .modules
                .iter()
                .map(|(_, d)| d.len() + 256)
                .sum::<usize>()
            + 4096;
        let mut w = CpioWriter::new(Vec::with_capacity(size));
        for (dir, perm) in DIRS {
            w.dir(dir, *perm)?;
        }
        w.file("init", 0o755, &self.init)?;
        if let Some(b) = &self.busybox {
            w.file("bin/busybox", 0o755, b)?;
        }
        let mut written = std::collections::HashSet::new();
        let all = self
            .modules
            .iter()
            .chain(self.groups.iter().flat_map(|(_, m)| m.iter()));
        for (path, data) in all {
            if written.insert(path.as_str()) {
                w.file(path, 0o644, data)?;
            }
        }
        w.file(MODULES_LOAD, 0o644, self.modules_load().as_bytes())?;
        for (name, mods) in &self.groups {
            let list: String = mods.iter().map(|(p, _)| format!("{p}\n")).collect();
            w.file(
                &format!("{MODULES_ON_DEMAND_DIR}/{name}.load"),
                0o644,
                list.as_bytes(),
            )?;
        }
        if self.busybox.is_some() {
            for a in &self.applets {
                w.symlink(a, "/bin/busybox")?;
            }
        }
        w.finish()
    }
}

/// Build (or reuse) the initramfs for `spec`, cached as
/// `<cache_root>/initramfs/<sha256>.cpio`; returns its path.
pub fn build_initramfs(spec: &InitramfsSpec<'_>, cache_root: &Path) -> Result<PathBuf, ImageError> {
    let contents = InitramfsContents::collect(spec)?;
    let out = cache_root
        .join("initramfs")
        .join(format!("{}.cpio", contents.hash()));
    if out.is_file() {
        tracing::debug!(path = %out.display(), "initramfs cached");
        return Ok(out);
    }
    let bytes = contents
        .to_cpio()
        .map_err(io_err(format!("building the initramfs {}", out.display())))?;
    write_atomic(&out, &bytes)?;
    tracing::info!(path = %out.display(), bytes = bytes.len(), modules = contents.modules.len(), "initramfs built");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initramfs::cpio::tests::parse;
    use crate::kernel::modules::tests::{fake_ko, fake_modules_dir};
    use crate::kernel::KernelOrigin;

    fn kernel(modules_dir: Option<PathBuf>) -> Kernel {
        Kernel {
            image: PathBuf::from("/k/vmlinux"),
            release: "6.9.1-test".into(),
            modules_dir,
            origin: KernelOrigin::User {
                path: "/k/vmlinux".into(),
            },
        }
    }

    struct Fixture {
        t: tempfile::TempDir,
        init: Vec<u8>,
        bb: PathBuf,
        kernel: Kernel,
    }

    fn fixture() -> Fixture {
        let t = tempfile::tempdir().unwrap();
        let mods = fake_modules_dir(t.path());
        let (init, bb) = (b"\x7fELF init".to_vec(), t.path().join("busybox"));
        std::fs::write(&bb, b"\x7fELF busybox").unwrap();
        Fixture {
            init,
            bb,
            kernel: kernel(Some(mods)),
            t,
        }
    }

    fn wanted() -> Vec<String> {
        vec!["virtio_mmio".into(), "ext4".into()]
    }

    #[test]
    fn layout_matches_what_the_guest_init_expects() {
        let f = fixture();
        let w = wanted();
        let spec = InitramfsSpec {
            init: &f.init,
            busybox: Some(&f.bb),
            kernel: &f.kernel,
            modules: &w,
            on_demand: &[],
            applets: &[],
        };
        let path = build_initramfs(&spec, &f.t.path().join("cache")).unwrap();
        let entries = parse(&std::fs::read(&path).unwrap());
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        assert_eq!(get("init").mode, 0o100755);
        assert_eq!(get("init").data, b"\x7fELF init");
        assert_eq!(get("bin/busybox").mode, 0o100755);
        assert_eq!(get("tmp").mode, 0o041777);
        for d in ["dev", "proc", "sys", "run", "etc", "root", "home"] {
            assert_eq!(get(d).mode, 0o040755, "{d}");
        }
        let virtio = get("lib/modules/6.9.1-test/kernel/drivers/virtio/virtio.ko");
        assert_eq!(
            virtio.data,
            fake_ko("virtio", &[]),
            "modules are stored uncompressed"
        );
        let load = String::from_utf8(get("etc/vmbuild/modules.load").data.clone()).unwrap();
        assert_eq!(
            load,
            "/lib/modules/6.9.1-test/kernel/drivers/virtio/virtio.ko\n\
             /lib/modules/6.9.1-test/kernel/drivers/virtio/virtio_ring.ko\n\
             /lib/modules/6.9.1-test/kernel/drivers/virtio/virtio_mmio.ko\n\
             /lib/modules/6.9.1-test/kernel/fs/ext4/ext4.ko\n"
        );
        for line in load.lines() {
            assert!(
                entries.iter().any(|e| format!("/{}", e.name) == line),
                "{line} not in archive"
            );
        }
        assert!(!entries.iter().any(|e| e.name.contains("other.ko")));
    }

    #[test]
    fn cached_by_content_and_rebuilt_on_change() {
        let f = fixture();
        let cache = f.t.path().join("cache");
        let w = wanted();
        let spec = InitramfsSpec {
            init: &f.init,
            busybox: Some(&f.bb),
            kernel: &f.kernel,
            modules: &w,
            on_demand: &[],
            applets: &[],
        };
        let a = build_initramfs(&spec, &cache).unwrap();
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        assert_eq!(build_initramfs(&spec, &cache).unwrap(), a);
        assert_eq!(
            std::fs::metadata(&a).unwrap().modified().unwrap(),
            mtime,
            "not rewritten"
        );

        let spec = InitramfsSpec {
            init: b"\x7fELF init v2",
            ..spec
        };
        let b = build_initramfs(&spec, &cache).unwrap();
        assert_ne!(a, b);

        let no_bb = InitramfsSpec {
            busybox: None,
            ..spec
        };
        let c = build_initramfs(&no_bb, &cache).unwrap();
        assert_ne!(b, c);
        assert!(!parse(&std::fs::read(&c).unwrap())
            .iter()
            .any(|e| e.name == "bin/busybox"));

        // A module file changing changes the hash.
        let ext4 = f
            .kernel
            .modules_dir
            .as_ref()
            .unwrap()
            .join("kernel/fs/ext4/ext4.ko");
        std::fs::write(&ext4, fake_ko("ext4", &[])).unwrap();
        assert_ne!(build_initramfs(&spec, &cache).unwrap(), b);
    }

    #[test]
    fn same_inputs_same_bytes() {
        let f = fixture();
        let w = wanted();
        let spec = InitramfsSpec {
            init: &f.init,
            busybox: Some(&f.bb),
            kernel: &f.kernel,
            modules: &w,
            on_demand: &[],
            applets: &[],
        };
        let a = InitramfsContents::collect(&spec).unwrap();
        let b = InitramfsContents::collect(&spec).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.to_cpio().unwrap(), b.to_cpio().unwrap());
    }

    #[test]
    fn modules_without_a_modules_dir_or_missing_module_are_errors() {
        let f = fixture();
        let w = wanted();
        let k = kernel(None);
        let spec = InitramfsSpec {
            init: &f.init,
            busybox: None,
            kernel: &k,
            modules: &w,
            on_demand: &[],
            applets: &[],
        };
        let err = build_initramfs(&spec, f.t.path()).unwrap_err();
        assert!(matches!(err, ImageError::ModulesDirMissing { .. }), "{err}");
        // No modules wanted: fine without a modules dir.
        let spec = InitramfsSpec {
            modules: &[],
            ..spec
        };
        let p = build_initramfs(&spec, f.t.path()).unwrap();
        let entries = parse(&std::fs::read(p).unwrap());
        assert!(entries
            .iter()
            .any(|e| e.name == "etc/vmbuild/modules.load" && e.data.is_empty()));

        let w = vec!["virtiofs".to_string()];
        let spec = InitramfsSpec {
            init: &f.init,
            busybox: None,
            kernel: &f.kernel,
            modules: &w,
            on_demand: &[],
            applets: &[],
        };
        let err = build_initramfs(&spec, f.t.path()).unwrap_err().to_string();
        assert!(err.contains("`virtiofs`"), "{err}");
    }
}
