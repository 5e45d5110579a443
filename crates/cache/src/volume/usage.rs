//! How much a directory holds: apparent sizes of its files (like
//! `du --apparent-size`, hard links counted once, symlinks not followed),
//! in all and per top-level entry.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes and files (everything but directories) under a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of the files' apparent sizes.
    pub bytes: u64,
    /// Number of non-directories.
    pub files: u64,
}

/// One top-level entry of a directory and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuEntry {
    /// Its name in the directory (`pip`, `npm`, ...).
    pub name: String,
    /// What it holds (a file: itself).
    pub usage: Usage,
}

/// What `path` holds (a file: itself; missing: nothing). Entries that
/// vanish while it is walked (a build deleting files) are skipped.
pub fn usage(path: &Path) -> std::io::Result<Usage> {
    let mut u = Usage::default();
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            let rd = match std::fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                stack.push(e?.path());
            }
        } else if meta.nlink() <= 1 || seen.insert((meta.dev(), meta.ino())) {
            u.bytes += meta.len();
            u.files += 1;
        }
    }
    Ok(u)
}

/// The top-level entries of `dir` with what each holds, largest first
/// (then by name).
pub fn du_entries(dir: &Path) -> std::io::Result<Vec<DuEntry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        out.push(DuEntry {
            name: e.file_name().to_string_lossy().into_owned(),
            usage: usage(&e.path())?,
        });
    }
    out.sort_by(|a, b| {
        b.usage
            .bytes
            .cmp(&a.usage.bytes)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// `512 B`, `3.0 KiB`, `412 MiB`, `1.2 GiB`: one decimal below 10.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_per_entry_largest_first_links_once_symlinks_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("pip/http")).unwrap();
        std::fs::write(p.join("pip/http/a"), vec![0u8; 3000]).unwrap();
        std::fs::hard_link(p.join("pip/http/a"), p.join("pip/a-again")).unwrap();
        std::fs::create_dir(p.join("npm")).unwrap();
        std::fs::write(p.join("npm/x"), vec![0u8; 5000]).unwrap();
        std::fs::write(p.join("npm/y"), vec![0u8; 10]).unwrap();
        std::fs::write(p.join("top"), b"abc").unwrap();
        // A symlink out of the tree counts as a link, not as its target.
        std::os::unix::fs::symlink("/usr", p.join("gomodcache")).unwrap();
        let du = du_entries(p).unwrap();
        let got: Vec<(&str, u64, u64)> = du
            .iter()
            .map(|e| (e.name.as_str(), e.usage.bytes, e.usage.files))
            .collect();
        assert_eq!(
            got,
            [
                ("npm", 5010, 2),
                ("pip", 3000, 1),
                ("gomodcache", 4, 1),
                ("top", 3, 1)
            ]
        );
        assert_eq!(
            usage(p).unwrap(),
            Usage {
                bytes: 8017,
                files: 5
            }
        );
        assert_eq!(usage(&p.join("missing")).unwrap(), Usage::default());
    }
}
