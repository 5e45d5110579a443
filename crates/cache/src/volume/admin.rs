//! `vmbuild cache clear|rm|prune`: removers take a volume's lock
//! exclusively (see [`super::lock`]), so they never delete files a build
//! holds; the kernel drops the lock of a crashed holder, so nothing stays
//! blocked.

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FlockOperation;
use vmbuild_store::{select_lru, Prunable};

use super::list::{list_volumes, parse_volume_name, Holder, Volume};
use super::lock::{flocks_on, io, lock_file, lock_path};
use super::usage::{usage, Usage};
use crate::CacheError;

fn held_error(name: &str, lock: &Path) -> CacheError {
    CacheError::VolumeHeld {
        name: name.to_string(),
        holder: Holder::from_flocks(&flocks_on(lock)).pid(),
    }
}

/// Volume `name`'s lock, held exclusively. With `wait`, a held lock is
/// waited for (after calling `on_wait` with the holder's pid); without, it
/// is [`CacheError::VolumeHeld`].
pub fn lock_exclusive(
    root: &Path,
    name: &str,
    wait: bool,
    on_wait: impl FnOnce(Option<u32>),
) -> Result<File, CacheError> {
    let path = lock_path(root, name);
    if let Some(f) = lock_file(&path, FlockOperation::NonBlockingLockExclusive)? {
        return Ok(f);
    }
    if !wait {
        return Err(held_error(name, &path));
    }
    on_wait(Holder::from_flocks(&flocks_on(&path)).pid());
    lock_file(&path, FlockOperation::LockExclusive)?.ok_or_else(|| held_error(name, &path))
}

/// A relative path inside a volume: no `..`, not absolute, not empty.
pub fn check_subpath(s: &str) -> Result<PathBuf, CacheError> {
    let bad = |why: &str| CacheError::BadSubpath {
        path: s.to_string(),
        why: why.to_string(),
    };
    let mut out = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(bad("'..' is not allowed; name a path inside the volume"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("must be relative to the volume (e.g. pip or go/pkg)"))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad(
            "names the whole volume; give no subpath to clear everything",
        ));
    }
    Ok(out)
}

/// Deletes `path` (a tree, a file or a symlink itself), if there.
fn remove_any(path: &Path) -> Result<(), CacheError> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// What [`clear_dir`] removed: each subpath (or each top-level entry) and
/// what it held; `None` when it was not there.
pub type Cleared = Vec<(String, Option<Usage>)>;

/// Empties `dir`, or deletes just `subpaths` in it (checked with
/// [`check_subpath`] first, all before anything is deleted). A subpath
/// through a symlink is refused: it could point out of `dir`. Takes no
/// lock: callers hold the volume's.
pub fn clear_dir(dir: &Path, subpaths: &[String]) -> Result<Cleared, CacheError> {
    let mut targets = Vec::new();
    for s in subpaths {
        let rel = check_subpath(s)?;
        let mut at = dir.to_path_buf();
        let mut parts = rel.components().peekable();
        while let Some(c) = parts.next() {
            at.push(c);
            let is_link = std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink());
            if is_link && parts.peek().is_some() {
                return Err(CacheError::BadSubpath {
                    path: s.clone(),
                    why: format!(
                        "goes through the symlink {}; name the symlink itself",
                        at.display()
                    ),
                });
            }
        }
        targets.push((s.clone(), at));
    }
    if subpaths.is_empty() {
        let rd = std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))?;
        for e in rd {
            let e = e.map_err(io(format!("listing {}", dir.display())))?;
            targets.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
        targets.sort();
    }
    let mut out = Vec::new();
    for (name, path) in targets {
        let held = std::fs::symlink_metadata(&path)
            .is_ok()
            .then(|| usage(&path))
            .transpose()
            .map_err(io(format!("measuring {}", path.display())))?;
        remove_any(&path)?;
        out.push((name, held));
    }
    Ok(out)
}

/// Deletes volume `name`'s directory, then its lock file, while the caller
/// holds that lock. The directory is renamed away first (`<name>#rm-PID`,
/// never a volume name), so it is gone at once.
fn delete_locked(root: &Path, name: &str, _lock: &File) -> Result<(), CacheError> {
    let dir = root.join(name);
    let doomed = root.join(format!("{name}#rm-{}", std::process::id()));
    match std::fs::rename(&dir, &doomed) {
        Ok(()) => remove_any(&doomed)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("moving {} away", dir.display()))(e)),
    }
    remove_any(&lock_path(root, name))
}

/// Names under `root` (directories or lock files) of volume `id` and its
/// forks, or of just the fork when `name` is `<id>~N`; sorted.
fn names_of(root: &Path, name: &str) -> Result<Vec<String>, CacheError> {
    let Some((id, fork)) = parse_volume_name(name) else {
        return Ok(Vec::new());
    };
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("listing cache root {}", root.display()))(e)),
    };
    let mut names = Vec::new();
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let n = file.strip_suffix(".lock").unwrap_or(&file);
        let ours = match parse_volume_name(n) {
            Some((i, f)) => i == id && (fork.is_none() || f == fork),
            None => false,
        };
        if ours && !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes volume `name` (`<id>`: with all its forks; `<id>~N`: that
/// fork) and the lock files, and returns the names removed. If a build
/// holds any of them nothing is removed: [`CacheError::VolumeHeld`].
pub fn remove_volume(root: &Path, name: &str) -> Result<Vec<String>, CacheError> {
    let names = names_of(root, name)?;
    if !names.iter().any(|n| root.join(n).is_dir()) {
        return Err(CacheError::NoSuchVolume {
            name: name.to_string(),
            root: root.to_path_buf(),
        });
    }
    let mut locks = Vec::new();
    for n in &names {
        match lock_file(
            &lock_path(root, n),
            FlockOperation::NonBlockingLockExclusive,
        )? {
            Some(l) => locks.push(l),
            None => return Err(held_error(n, &lock_path(root, n))),
        }
    }
    for (n, l) in names.iter().zip(&locks) {
        delete_locked(root, n, l)?;
    }
    Ok(names)
}

impl Prunable for Volume {
    fn last_used(&self) -> SystemTime {
        self.last_used
    }
    fn size(&self) -> u64 {
        self.usage.bytes
    }
    fn tie_break(&self) -> impl Ord + '_ {
        &self.name
    }
}

/// What [`prune`] did (or, dry, would do).
#[derive(Debug, Default)]
pub struct Pruned {
    /// Removed (or to be removed), least recently used first.
    pub removed: Vec<Volume>,
    /// Chosen by age or size but held by a build, so left alone; their
    /// [`Volume::holder`] says who holds them.
    pub held: Vec<Volume>,
}

/// Removes volumes and forks least recently used first: those not used
/// for longer than `older_than`, then more until the total is at most
/// `max_total` bytes (neither: every idle one). Every lock is probed
/// first, held volumes are never chosen (their size still counts), and
/// the free ones stay locked until removed. `dry_run` probes the same way
/// and removes nothing, so it names exactly what a real prune would now.
pub fn prune(
    root: &Path,
    now: SystemTime,
    older_than: Option<Duration>,
    max_total: Option<u64>,
    dry_run: bool,
) -> Result<Pruned, CacheError> {
    let all = list_volumes(root)?;
    let wanted = select_lru(&all, now, older_than, max_total);
    let (mut free, mut locks, mut held, mut held_bytes) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (i, v) in all.into_iter().enumerate() {
        match lock_file(&v.lock, FlockOperation::NonBlockingLockExclusive)? {
            Some(l) => {
                free.push(v);
                locks.push(l);
            }
            None => {
                held_bytes += v.usage.bytes;
                if wanted.contains(&i) {
                    let holder = Holder::from_flocks(&flocks_on(&v.lock));
                    held.push(Volume { holder, ..v });
                }
            }
        }
    }
    let max_free = max_total.map(|m| m.saturating_sub(held_bytes));
    let chosen = select_lru(&free, now, older_than, max_free);
    let mut removed = Vec::new();
    for i in chosen {
        if !dry_run {
            delete_locked(root, &free[i].name, &locks[i])?;
        }
        removed.push(free[i].clone());
    }
    Ok(Pruned { removed, held })
}

#[cfg(test)]
mod tests;
