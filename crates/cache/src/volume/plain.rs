//! `vmbuild cache prune --dir DIR`: pruning a plain cache directory (a
//! `--cache-dir`), whose top-level entries (`pip/`, `npm/`, `gomodcache/`)
//! are what gets removed, least recently used first. An entry's last use
//! is the newest modification time anywhere in it (a plain directory has
//! no lock files to stamp). Links are never followed, and nothing is
//! locked: make sure no build uses the directory.

use std::path::Path;
use std::time::{Duration, SystemTime};

use vmbuild_store::{select_lru, Prunable};

use crate::CacheError;

/// One top-level entry of a plain cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainEntry {
    pub name: String,
    /// Apparent size in bytes (hard links once).
    pub bytes: u64,
    /// Newest modification time in it.
    pub last_used: SystemTime,
}

impl Prunable for PlainEntry {
    fn last_used(&self) -> SystemTime {
        self.last_used
    }
    fn size(&self) -> u64 {
        self.bytes
    }
    fn tie_break(&self) -> impl Ord + '_ {
        &self.name
    }
}

fn newest_mtime(path: &Path) -> std::io::Result<SystemTime> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut newest = meta.modified()?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path)? {
            newest = newest.max(newest_mtime(&e?.path())?);
        }
    }
    Ok(newest)
}

fn err(what: String) -> impl FnOnce(std::io::Error) -> CacheError {
    move |source| CacheError::Volume { what, source }
}

/// The top-level entries of `dir` with their size and last use.
pub fn plain_entries(dir: &Path) -> Result<Vec<PlainEntry>, CacheError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err(format!("listing {}", dir.display())))? {
        let e = e.map_err(err(format!("listing {}", dir.display())))?;
        let path = e.path();
        let what = || format!("measuring {}", path.display());
        out.push(PlainEntry {
            name: e.file_name().to_string_lossy().into_owned(),
            bytes: super::usage(&path).map_err(err(what()))?.bytes,
            last_used: newest_mtime(&path).map_err(err(what()))?,
        });
    }
    Ok(out)
}

/// Removes the top-level entries of `dir` not used for longer than
/// `older_than`, then more, least recently used first, until the total is
/// at most `max_total` bytes. `dry_run` removes nothing and returns the
/// same list a real run would.
pub fn prune_plain(
    dir: &Path,
    now: SystemTime,
    older_than: Option<Duration>,
    max_total: Option<u64>,
    dry_run: bool,
) -> Result<Vec<PlainEntry>, CacheError> {
    let all = plain_entries(dir)?;
    let chosen = select_lru(&all, now, older_than, max_total);
    let mut removed = Vec::new();
    for i in chosen {
        let e = &all[i];
        if !dry_run {
            let path = dir.join(&e.name);
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            // remove_dir_all does not follow symlinks inside the tree.
            let r = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.map_err(err(format!("removing {}", path.display())))?;
        }
        removed.push(e.clone());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, name: &str, bytes: usize, age_days: u64) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("blob");
        std::fs::write(&f, vec![0u8; bytes]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_days * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        std::fs::File::open(&d).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn least_recently_used_entries_go_and_the_dry_run_agrees() {
        let d = tempfile::tempdir().unwrap();
        entry(d.path(), "pip", 3000, 40);
        entry(d.path(), "npm", 2000, 10);
        entry(d.path(), "gomodcache", 1000, 1);
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        let now = SystemTime::now();
        let dry = prune_plain(
            d.path(),
            now,
            Some(Duration::from_secs(30 * 86_400)),
            Some(1500),
            true,
        )
        .unwrap();
        let names = |v: &[PlainEntry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert!(d.path().join("pip").exists(), "the dry run removed nothing");
        let real = prune_plain(
            d.path(),
            now,
            Some(Duration::from_secs(30 * 86_400)),
            Some(1500),
            false,
        )
        .unwrap();
        assert_eq!(names(&dry), names(&real));
        assert_eq!(
            names(&real),
            ["pip", "npm"],
            "older than 30 days, then LRU until <= 1500 bytes"
        );
        assert!(!d.path().join("pip").exists() && !d.path().join("npm").exists());
        assert!(d.path().join("gomodcache").exists());
        assert!(
            Path::new("/etc/hostname").exists() || Path::new("/etc").is_dir(),
            "a link's target is never touched"
        );
    }
}
