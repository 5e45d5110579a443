//! Loading the kernel modules listed in `/etc/vmbuild/modules.load`
//! (absolute paths, dependencies first) with finit_module(2).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::error::{InitError, Result};

/// Where the initramfs lists its modules.
pub const MODULES_LOAD: &str = "/etc/vmbuild/modules.load";
/// Where the initramfs lists modules loaded on demand, one `<group>.load`
/// per filesystem type (and `net`), holding only what the boot set lacks.
pub const ON_DEMAND_DIR: &str = "/etc/vmbuild/modules.d";

/// Parses a modules.load text: one absolute path per line; blank lines and
/// lines starting with `#` are skipped, surrounding spaces trimmed.
pub fn parse_list(list_path: &Path, text: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with('/') {
            return Err(InitError::ModuleList {
                path: list_path.to_path_buf(),
                line: i + 1,
                reason: format!("'{line}' is not an absolute path"),
            });
        }
        out.push(PathBuf::from(line));
    }
    Ok(out)
}

/// Reads the list at `list_path`; a missing file means no modules.
pub fn read_list(list_path: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_to_string(list_path) {
        Ok(text) => parse_list(list_path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(InitError::io(format!("reading {}", list_path.display()), e)),
    }
}

/// Loads one module; already loaded (EEXIST) is success.
pub fn load(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| {
        let errno = e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO);
        InitError::Module {
            path: path.to_path_buf(),
            errno,
        }
    })?;
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(errno) => Err(InitError::Module {
            path: path.to_path_buf(),
            errno,
        }),
    }
}

/// Loads every module of the list in order; returns each with its load time.
pub fn load_all(list_path: &Path) -> Result<Vec<(PathBuf, Duration)>> {
    let mut out = Vec::new();
    for m in read_list(list_path)? {
        let t0 = Instant::now();
        load(&m)?;
        out.push((m, t0.elapsed()));
    }
    Ok(out)
}

/// Loads the on-demand group for filesystem type `fstype` from `dir`, if
/// the initramfs has one (a missing list means built in or not needed).
pub fn load_group(dir: &Path, fstype: &str) -> Result<Vec<(PathBuf, Duration)>> {
    if fstype.is_empty() || fstype.contains('/') || fstype.starts_with('.') {
        return Err(InitError::Invalid(format!(
            "bad module group name '{fstype}'"
        )));
    }
    load_all(&dir.join(format!("{fstype}.load")))
}

/// Loads the on-demand group `name` from [`ON_DEMAND_DIR`] and logs what
/// was loaded (nothing when the group is empty or already loaded).
pub fn load_group_logged(name: &str, log: &mut dyn FnMut(String)) -> Result<()> {
    let loaded = load_group(Path::new(ON_DEMAND_DIR), name)?;
    if !loaded.is_empty() {
        log(format!("{name}: {}", summary(&loaded)));
    }
    Ok(())
}

/// One log line: how many modules, the total time and the slowest three.
pub fn summary(loaded: &[(PathBuf, Duration)]) -> String {
    let total: Duration = loaded.iter().map(|(_, d)| *d).sum();
    let mut slow: Vec<_> = loaded.iter().collect();
    slow.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let slow: Vec<String> = slow
        .iter()
        .take(3)
        .map(|(p, d)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            format!("{name} {} us", d.as_micros())
        })
        .collect();
    format!(
        "loaded {} kernel modules in {} us (slowest: {})",
        loaded.len(),
        total.as_micros(),
        slow.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_in_order_skipping_blanks_and_comments() {
        let text = "# deps first\n/lib/modules/x/virtio_ring.ko\n\n  /lib/modules/x/virtio.ko  \n";
        let got = parse_list(Path::new("/l"), text).unwrap();
        assert_eq!(
            got,
            vec![
                PathBuf::from("/lib/modules/x/virtio_ring.ko"),
                PathBuf::from("/lib/modules/x/virtio.ko")
            ]
        );
    }

    #[test]
    fn relative_path_is_an_error_naming_the_line() {
        let e = parse_list(Path::new("/etc/l"), "/a.ko\nvirtio.ko\n").unwrap_err();
        assert!(matches!(e, InitError::ModuleList { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("virtio.ko"));
    }

    #[test]
    fn missing_list_means_no_modules() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            read_list(&d.path().join("nope")).unwrap(),
            Vec::<PathBuf>::new()
        );
        assert!(load_all(&d.path().join("nope")).unwrap().is_empty());
    }

    #[test]
    fn summary_names_the_slowest_first() {
        let ms = Duration::from_millis;
        let loaded = vec![
            (PathBuf::from("/m/a.ko"), ms(1)),
            (PathBuf::from("/m/b.ko"), ms(30)),
            (PathBuf::from("/m/c.ko"), ms(2)),
            (PathBuf::from("/m/d.ko"), ms(20)),
        ];
        assert_eq!(
            summary(&loaded),
            "loaded 4 kernel modules in 53000 us (slowest: b.ko 30000 us, d.ko 20000 us, c.ko 2000 us)"
        );
    }

    #[test]
    fn missing_module_file_is_an_error_naming_it() {
        let e = load(Path::new("/nonexistent/foo.ko")).unwrap_err();
        assert!(
            matches!(
                e,
                InitError::Module {
                    errno: Errno::ENOENT,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/nonexistent/foo.ko"));
    }

    #[test]
    fn group_names_cannot_leave_the_list_dir() {
        let d = tempfile::tempdir().unwrap();
        assert!(load_group(d.path(), "../etc").is_err());
        assert!(load_group(d.path(), "").is_err());
        // A filesystem without a list needs nothing loaded.
        assert!(load_group(d.path(), "9p").unwrap().is_empty());
    }
}
