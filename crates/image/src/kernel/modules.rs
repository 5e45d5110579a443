//! Kernel modules: `.modinfo` parsing, a modules-directory index, and the
//! dependency closure of the modules the guest needs, in load order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;

use crate::error::io_err;
use crate::kernel::decompress::{self, Format};
use crate::ImageError;

/// Module names treat `-` and `_` alike; this is the canonical (`_`) form.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// What we need from a module's `.modinfo` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`, if present (normalized).
    pub name: Option<String>,
    /// `depends=`, normalized, empty entries dropped.
    pub depends: Vec<String>,
}

/// Parse the `.modinfo` section (NUL-separated `key=value`) of a module ELF.
pub fn parse_modinfo(elf: &[u8]) -> Result<ModInfo, String> {
    let section = match elf.get(4) {
        Some(2) if elf.starts_with(b"\x7fELF") => modinfo_section::<FileHeader64<Endianness>>(elf)?,
        Some(1) if elf.starts_with(b"\x7fELF") => modinfo_section::<FileHeader32<Endianness>>(elf)?,
        _ => return Err("not an ELF file".into()),
    };
    let mut info = ModInfo::default();
    for entry in section.split(|&b| b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some(v) = entry.strip_prefix("name=") {
            info.name = Some(normalize(v));
        } else if let Some(v) = entry.strip_prefix("depends=") {
            info.depends = v
                .split(',')
                .filter(|d| !d.is_empty())
                .map(normalize)
                .collect();
        }
    }
    Ok(info)
}

fn modinfo_section<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<&[u8], String> {
    let header = H::parse(data).map_err(|e| format!("bad ELF header: {e}"))?;
    let endian = header
        .endian()
        .map_err(|e| format!("bad ELF header: {e}"))?;
    let sections = header
        .sections(endian, data)
        .map_err(|e| format!("bad section table: {e}"))?;
    let (_, section) = sections
        .section_by_name(endian, b".modinfo")
        .ok_or("no .modinfo section")?;
    section
        .data(endian, data)
        .map_err(|e| format!("bad .modinfo section: {e}"))
}

/// Read a module file, decompressing `.ko.xz` / `.ko.gz` / `.ko.zst`.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ImageError> {
    let data = std::fs::read(path).map_err(io_err(format!("reading {}", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match Format::from_module_name(&name) {
        None => Ok(data),
        Some(fmt) => decompress::decompress(fmt, &data).map_err(|reason| ImageError::BadModule {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

/// The module name a file name stands for (`virtio_ring.ko.xz` -> `virtio_ring`).
fn module_name_of(file_name: &str) -> Option<String> {
    [".ko", ".ko.xz", ".ko.gz", ".ko.zst"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))
        .filter(|n| !n.is_empty())
        .map(normalize)
}

/// Module files and built-in modules of one `lib/modules/<release>` dir.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Index `dir`: every `*.ko[.xz|.gz|.zst]` under `kernel/` (then
    /// `extra/` and `updates/`, which override it), and `modules.builtin`.
    pub fn scan(dir: &Path) -> Result<ModuleIndex, ImageError> {
        if !dir.is_dir() {
            return Err(ImageError::Io {
                context: format!("kernel modules directory {}", dir.display()),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let mut files = BTreeMap::new();
        for sub in ["kernel", "extra", "updates"] {
            if dir.join(sub).is_dir() {
                walk(dir, Path::new(sub), &mut files)?;
            }
        }
        let builtin_path = dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => parse_builtin(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %builtin_path.display(), "no modules.builtin");
                BTreeSet::new()
            }
            Err(e) => return Err(io_err(format!("reading {}", builtin_path.display()))(e)),
        };
        Ok(ModuleIndex {
            dir: dir.to_path_buf(),
            files,
            builtin,
        })
    }

    /// Build an index from parts (for tests and callers with their own layout).
    pub fn from_parts(
        dir: PathBuf,
        files: BTreeMap<String, PathBuf>,
        builtin: BTreeSet<String>,
    ) -> ModuleIndex {
        ModuleIndex {
            dir,
            files,
            builtin,
        }
    }

    /// The indexed directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of module `name` relative to the directory, if it is a file.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files.get(&normalize(name)).map(PathBuf::as_path)
    }

    /// Whether `name` is listed in `modules.builtin`.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }
}

/// Module names from `modules.builtin` (`kernel/fs/ext4/ext4.ko` -> `ext4`).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| module_name_of(l.trim().rsplit('/').next()?))
        .collect()
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<(), ImageError> {
    let abs = root.join(rel);
    let rd = std::fs::read_dir(&abs).map_err(io_err(format!("listing {}", abs.display())))?;
    let mut entries = Vec::new();
    for e in rd {
        entries.push(e.map_err(io_err(format!("listing {}", abs.display())))?);
    }
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e
            .file_type()
            .map_err(io_err(format!("inspecting {}", e.path().display())))?;
        let rel_child = rel.join(e.file_name());
        if ft.is_dir() {
            walk(root, &rel_child, out)?;
        } else if let Some(name) = module_name_of(&e.file_name().to_string_lossy()) {
            out.insert(name, rel_child);
        }
    }
    Ok(())
}

/// How a module is satisfied, as seen by [`load_order`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provided {
    /// Built into the kernel: nothing to load.
    Builtin,
    /// A module file with these dependencies.
    File(Vec<String>),
}

/// The dependency closure of `wanted`, dependencies first (a module comes
/// after everything it depends on); built-in modules are left out. `lookup`
/// answers for one (normalized) name, `None` when the module is unknown.
/// Order is deterministic: `wanted` order, then `depends=` order.
pub fn load_order(
    wanted: &[String],
    dir: &Path,
    lookup: &mut dyn FnMut(&str) -> Result<Option<Provided>, ImageError>,
) -> Result<Vec<String>, ImageError> {
    #[derive(PartialEq)]
    enum State {
        Visiting,
        Done,
    }
    struct Walk<'a> {
        dir: &'a Path,
        lookup: &'a mut dyn FnMut(&str) -> Result<Option<Provided>, ImageError>,
        state: HashMap<String, State>,
        stack: Vec<String>,
        order: Vec<String>,
    }
    impl Walk<'_> {
        fn visit(&mut self, name: String, needed_by: Option<&str>) -> Result<(), ImageError> {
            match self.state.get(&name) {
                Some(State::Done) => return Ok(()),
                Some(State::Visiting) => {
                    let start = self.stack.iter().position(|n| *n == name).unwrap_or(0);
                    let mut chain = self.stack[start..].to_vec();
                    chain.push(name);
                    return Err(ImageError::ModuleCycle {
                        chain: chain.join(" -> "),
                    });
                }
                None => {}
            }
            let provided = (self.lookup)(&name)?.ok_or_else(|| ImageError::ModuleNotFound {
                module: name.clone(),
                needed_by: needed_by
                    .map(|n| format!(" (needed by {n})"))
                    .unwrap_or_default(),
                dir: self.dir.to_path_buf(),
            })?;
            match provided {
                Provided::Builtin => {
                    self.state.insert(name, State::Done);
                }
                Provided::File(deps) => {
                    self.state.insert(name.clone(), State::Visiting);
                    self.stack.push(name.clone());
                    for dep in deps {
                        self.visit(normalize(&dep), Some(&name))?;
                    }
                    self.stack.pop();
                    self.state.insert(name.clone(), State::Done);
                    self.order.push(name);
                }
            }
            Ok(())
        }
    }
    let mut walk = Walk {
        dir,
        lookup,
        state: HashMap::new(),
        stack: Vec::new(),
        order: Vec::new(),
    };
    for w in wanted {
        walk.visit(normalize(w), None)?;
    }
    Ok(walk.order)
}

/// One module file of a closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Normalized module name.
    pub name: String,
    /// Absolute path of the file on the host (possibly compressed).
    pub path: PathBuf,
    /// Path relative to the modules dir with any compression suffix
    /// dropped (`kernel/fs/9p/9p.ko`): where it goes in the guest.
    pub guest_relpath: PathBuf,
}

/// The module files to load for `wanted` from the modules dir `index`, in
/// dependency order. Errors name any module that is neither a file nor built in.
pub fn resolve_modules(
    index: &ModuleIndex,
    wanted: &[String],
) -> Result<Vec<ModuleFile>, ImageError> {
    let mut lookup = |name: &str| -> Result<Option<Provided>, ImageError> {
        if let Some(rel) = index.file(name) {
            let path = index.dir().join(rel);
            let data = read_module(&path)?;
            let info = parse_modinfo(&data).map_err(|reason| ImageError::BadModule {
                path: path.clone(),
                reason,
            })?;
            Ok(Some(Provided::File(info.depends)))
        } else if index.is_builtin(name) {
            Ok(Some(Provided::Builtin))
        } else {
            Ok(None)
        }
    };
    let order = load_order(wanted, index.dir(), &mut lookup)?;
    order
        .into_iter()
        .map(|name| {
            let rel = index.file(&name).map(Path::to_path_buf).unwrap_or_default();
            let guest_relpath = guest_relpath(&rel);
            Ok(ModuleFile {
                path: index.dir().join(&rel),
                name,
                guest_relpath,
            })
        })
        .collect()
}

fn guest_relpath(rel: &Path) -> PathBuf {
    let s = rel.to_string_lossy();
    for ext in [".xz", ".gz", ".zst"] {
        if let Some(stripped) = s.strip_suffix(ext) {
            if stripped.ends_with(".ko") {
                return PathBuf::from(stripped);
            }
        }
    }
    rel.to_path_buf()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::decompress::tests::{gzip, xz};

    /// A relocatable ELF with a `.modinfo` section, like a `.ko`.
    pub fn fake_ko(name: &str, depends: &[&str]) -> Vec<u8> {
        use object::write::Object;
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let sec = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        let info = format!(
            "license=GPL\0depends={}\0retpoline=Y\0name={name}\0vermagic=6.1.0 SMP\0",
            depends.join(",")
        );
        obj.append_section_data(sec, info.as_bytes(), 1);
        obj.write().unwrap()
    }

    fn graph(
        edges: &[(&str, &[&str])],
        builtin: &[&str],
    ) -> impl FnMut(&str) -> Result<Option<Provided>, ImageError> {
        let map: HashMap<String, Vec<String>> = edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect();
        let builtin: Vec<String> = builtin.iter().map(|s| s.to_string()).collect();
        move |name: &str| {
            Ok(if let Some(d) = map.get(name) {
                Some(Provided::File(d.clone()))
            } else if builtin.iter().any(|b| b == name) {
                Some(Provided::Builtin)
            } else {
                None
            })
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let mut g = graph(
            &[
                ("virtio_ring", &[]),
                ("virtio", &[]),
                ("virtio_mmio", &["virtio", "virtio_ring"]),
                ("virtio_console", &["virtio", "virtio_ring"]),
                ("9pnet", &[]),
                ("9pnet_virtio", &["9pnet", "virtio_ring", "virtio"]),
                ("9p", &["9pnet", "netfs", "fscache"]),
                ("fscache", &["netfs"]),
                ("netfs", &[]),
            ],
            &[],
        );
        let order = load_order(
            &names(&["virtio-mmio", "virtio_console", "9pnet_virtio", "9p"]),
            Path::new("/m"),
            &mut g,
        )
        .unwrap();
        assert_eq!(
            order,
            names(&[
                "virtio",
                "virtio_ring",
                "virtio_mmio",
                "virtio_console",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p"
            ])
        );
    }

    #[test]
    fn builtins_are_satisfied_without_files() {
        let mut g = graph(
            &[("ext4", &["jbd2", "mbcache", "crc16"]), ("jbd2", &[])],
            &["mbcache", "crc16"],
        );
        let order = load_order(&names(&["ext4", "crc16"]), Path::new("/m"), &mut g).unwrap();
        assert_eq!(order, names(&["jbd2", "ext4"]));
    }

    #[test]
    fn missing_module_error_names_it_the_dependent_and_the_dir() {
        let mut g = graph(&[("9p", &["netfs"])], &[]);
        let err = load_order(&names(&["9p"]), Path::new("/mods/6.1"), &mut g).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`netfs`") && msg.contains("needed by 9p") && msg.contains("/mods/6.1"),
            "{msg}"
        );
        let err = load_order(&names(&["nope"]), Path::new("/mods/6.1"), &mut g).unwrap_err();
        assert!(
            matches!(err, ImageError::ModuleNotFound { ref module, ref needed_by, .. } if module == "nope" && needed_by.is_empty())
        );
    }

    #[test]
    fn cycles_are_reported() {
        let mut g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])], &[]);
        let err = load_order(&names(&["a"]), Path::new("/m"), &mut g).unwrap_err();
        assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");
    }

    #[test]
    fn modinfo_is_parsed() {
        let info = parse_modinfo(&fake_ko("virtio-mmio", &["virtio", "virtio_ring"])).unwrap();
        assert_eq!(info.name.as_deref(), Some("virtio_mmio"));
        assert_eq!(info.depends, names(&["virtio", "virtio_ring"]));
        assert_eq!(
            parse_modinfo(&fake_ko("virtio", &[])).unwrap().depends,
            Vec::<String>::new()
        );
        assert!(parse_modinfo(b"not elf").is_err());
        let ko = fake_ko("x", &[]);
        assert!(parse_modinfo(&ko[..ko.len() / 2]).is_err());
    }

    #[test]
    fn builtin_list_is_parsed() {
        let b = parse_builtin("kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio-pci.ko\n\n");
        assert_eq!(
            b,
            ["ext4", "virtio_pci"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    /// A fake modules dir: compressed and plain modules, a builtin list.
    pub fn fake_modules_dir(root: &Path) -> PathBuf {
        let dir = root.join("lib/modules/6.9.1-test");
        let put = |rel: &str, data: Vec<u8>| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        put(
            "kernel/drivers/virtio/virtio_ring.ko",
            fake_ko("virtio_ring", &[]),
        );
        put(
            "kernel/drivers/virtio/virtio.ko.xz",
            xz(&fake_ko("virtio", &[])),
        );
        put(
            "kernel/drivers/virtio/virtio_mmio.ko.gz",
            gzip(&fake_ko("virtio_mmio", &["virtio", "virtio_ring"])),
        );
        put("kernel/fs/ext4/ext4.ko", fake_ko("ext4", &["crc16"]));
        put("kernel/unrelated/other.ko", fake_ko("other", &[]));
        put("modules.builtin", b"kernel/lib/crc16.ko\n".to_vec());
        dir
    }

    #[test]
    fn resolves_a_real_directory_with_compressed_modules() {
        let t = tempfile::tempdir().unwrap();
        let dir = fake_modules_dir(t.path());
        let index = ModuleIndex::scan(&dir).unwrap();
        let got = resolve_modules(&index, &names(&["virtio-mmio", "ext4"])).unwrap();
        let rels: Vec<String> = got
            .iter()
            .map(|m| m.guest_relpath.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            rels,
            [
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio_mmio.ko",
                "kernel/fs/ext4/ext4.ko",
            ]
        );
        assert_eq!(got[0].path, dir.join("kernel/drivers/virtio/virtio.ko.xz"));
        assert_eq!(read_module(&got[0].path).unwrap(), fake_ko("virtio", &[]));
        let err = resolve_modules(&index, &names(&["9p"])).unwrap_err();
        assert!(err.to_string().contains(&dir.display().to_string()));
    }
}
