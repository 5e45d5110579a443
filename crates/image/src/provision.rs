//! Atomic, concurrency-safe creation of cache entries.
//!
//! An entry is built in a temp dir next to its final place, completed with a
//! marker file written last, then renamed into place. A lock file (`flock`)
//! serializes builders of the same entry, so a second process waits and then
//! finds the finished entry instead of downloading again.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::io_err;
use crate::ImageError;

/// Name of the file written last into a complete cache directory.
pub const COMPLETE_MARKER: &str = ".complete";

/// Whether `dir` is a complete cache entry.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

/// Opens (creating) a lock file; locks are taken on the returned file.
pub(crate) fn open_lock_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// An exclusive `flock` on a lock file, released on drop.
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Take the lock on `path` (created if needed), waiting for other holders.
    pub fn acquire(path: &Path) -> Result<Lock, ImageError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let file = open_lock_file(path)
            .map_err(io_err(format!("opening lock file {}", path.display())))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::info!(lock = %path.display(), "another vmbuild is preparing this; waiting");
            flock(&file, FlockOperation::LockExclusive).map_err(|e| ImageError::Io {
                context: format!("locking {}", path.display()),
                source: e.into(),
            })?;
        }
        Ok(Lock { _file: file })
    }
}

/// Make sure the cache directory `dir` exists and is complete, building it
/// with `build` if not. `build` fills the (empty) directory it is given;
/// the marker and rename are done here. Returns `Some(T)` when this call
/// built it, `None` when it was already there.
pub fn ensure_dir<T>(
    dir: &Path,
    build: impl FnOnce(&Path) -> Result<T, ImageError>,
) -> Result<Option<T>, ImageError> {
    if is_complete(dir) {
        return Ok(None);
    }
    let (parent, name) = split(dir)?;
    let _lock = Lock::acquire(&parent.join(format!(".{name}.lock")))?;
    if is_complete(dir) {
        return Ok(None); // another process finished it while we waited
    }
    remove_stale_temps(parent, &name);
    if dir.exists() {
        tracing::warn!(dir = %dir.display(), "removing an incomplete cache entry");
        std::fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))?;
    }
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(&name))
        .tempdir_in(parent)
        .map_err(io_err(format!(
            "creating a temp dir in {}",
            parent.display()
        )))?;
    let built = build(tmp.path())?;
    write_file_synced(&tmp.path().join(COMPLETE_MARKER), b"")?;
    std::fs::rename(tmp.path(), dir).map_err(io_err(format!(
        "moving {} to {}",
        tmp.path().display(),
        dir.display()
    )))?;
    Ok(Some(built))
}

/// Prefix of an entry's build dir. Debian package names and versions
/// cannot contain `#`, so no other entry's prefix starts with this one.
fn temp_prefix(name: &str) -> String {
    format!(".tmp-{name}#")
}

/// Remove `.tmp-<name>#*` dirs left by a builder that was killed. Only
/// called with the entry's lock held: no live builder can own one.
fn remove_stale_temps(parent: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(path = %e.path().display(), "removing a stale temp dir");
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), %err, "cannot remove stale temp dir");
            }
        }
    }
}

/// Write `data` to `path` atomically: a temp file in the same directory,
/// fsynced, then renamed over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let (parent, name) = split(path)?;
    std::fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{name}-"))
        .tempfile_in(parent)
        .map_err(io_err(format!(
            "creating a temp file in {}",
            parent.display()
        )))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io_err(format!("writing {}", tmp.path().display())))?;
    tmp.persist(path).map_err(|e| ImageError::Io {
        context: format!("renaming into {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

fn write_file_synced(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let mut f = File::create(path).map_err(io_err(format!("creating {}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", path.display())))
}

fn split(path: &Path) -> Result<(&Path, String), ImageError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_string_lossy().into_owned())),
        _ => Err(ImageError::Io {
            context: format!("{} is not a usable cache path", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        }),
    }
}

/// Creates `dir` and its parents, and makes `dir` mode 0755.
///
/// # Errors
/// [`ImageError::Io`] naming the directory.
pub(crate) fn mkdir_0755(dir: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("setting permissions of {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn builds_once_then_reuses() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("kernels").join("k_1");
        let first = ensure_dir(&dir, |d| {
            std::fs::write(d.join("f"), "x").unwrap();
            Ok(7)
        })
        .unwrap();
        assert_eq!(first, Some(7));
        assert!(is_complete(&dir));
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "x");
        let second =
            ensure_dir(&dir, |_| -> Result<i32, ImageError> { panic!("rebuilt") }).unwrap();
        assert_eq!(second, None);
    }

    #[test]
    fn failed_build_leaves_nothing_and_incomplete_dir_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("e");
        let r = ensure_dir(&dir, |d| -> Result<(), ImageError> {
            std::fs::write(d.join("half"), "x").unwrap();
            Err(ImageError::NoCacheDir)
        });
        assert!(r.is_err());
        assert!(!dir.exists());
        let leftovers: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let stale = t.path().join(".tmp-e#killed");
        std::fs::create_dir(&stale).unwrap(); // a builder killed mid-way
        let unrelated = t.path().join(".tmp-e-2#xyz"); // entry "e-2"
        std::fs::create_dir(&unrelated).unwrap();
        std::fs::create_dir(&dir).unwrap(); // e.g. from an older, crashed version
        std::fs::write(dir.join("stale"), "x").unwrap();
        ensure_dir(&dir, |d| {
            std::fs::write(d.join("new"), "y").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(dir.join("new").exists() && !dir.join("stale").exists());
        assert!(!stale.exists() && unrelated.exists());
    }

    #[test]
    fn concurrent_builders_build_once() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("e");
        let builds = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (dir, builds) = (dir.clone(), builds.clone());
                std::thread::spawn(move || {
                    ensure_dir(&dir, |d| {
                        builds.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        std::fs::write(d.join("f"), "x").unwrap();
                        Ok(())
                    })
                    .unwrap();
                    assert!(dir.join("f").exists());
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn write_atomic_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub").join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
