//! `flock`s on lock files: exclusive for builders and removers, shared for
//! users of an entry. The kernel releases them when the holder exits.

use std::fs::File;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::io_err;
use crate::StoreError;

/// A `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Take the lock on `path` exclusively (creating the file and its
    /// directory if needed), waiting for other holders.
    pub fn exclusive(path: &Path) -> Result<Lock, StoreError> {
        let file = open_creating_dir(path)?;
        if !try_flock(&file, path, FlockOperation::NonBlockingLockExclusive)? {
            tracing::info!(lock = %path.display(), "another vmbuild is preparing this; waiting");
            lock(&file, path, FlockOperation::LockExclusive)?;
        }
        Ok(Lock { _file: file })
    }

    /// Take the lock on `path` exclusively if nobody holds it (creating the
    /// file and its directory if needed); `None` when it is held.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>, StoreError> {
        let file = open_creating_dir(path)?;
        Ok(
            try_flock(&file, path, FlockOperation::NonBlockingLockExclusive)?
                .then_some(Lock { _file: file }),
        )
    }

    /// Take the lock on `path` shared, waiting while an exclusive holder
    /// runs. `None` when the lock file's directory does not exist (so
    /// there is nothing to hold).
    pub fn shared(path: &Path) -> Result<Option<Lock>, StoreError> {
        let file = match open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("opening lock file {}", path.display()))(e)),
        };
        lock(&file, path, FlockOperation::LockShared)?;
        Ok(Some(Lock { _file: file }))
    }
}

/// Opens (creating) a lock file.
fn open(path: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

fn open_creating_dir(path: &Path) -> Result<File, StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    open(path).map_err(io_err(format!("opening lock file {}", path.display())))
}

/// A blocking `flock`.
fn lock(file: &File, path: &Path, op: FlockOperation) -> Result<(), StoreError> {
    flock(file, op).map_err(|e| StoreError::Io {
        context: format!("locking {}", path.display()),
        source: e.into(),
    })
}

/// A non-blocking `flock`: `false` when another holder has it.
fn try_flock(file: &File, path: &Path, op: FlockOperation) -> Result<bool, StoreError> {
    match flock(file, op) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(StoreError::Io {
            context: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub").join(".k.lock");
        assert!(
            Lock::shared(&p).unwrap().is_none(),
            "no directory, nothing to hold"
        );
        let held = Lock::exclusive(&p).unwrap();
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        let a = Lock::shared(&p).unwrap().unwrap();
        let b = Lock::shared(&p).unwrap().unwrap();
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop((a, b));
        assert!(Lock::try_exclusive(&p).unwrap().is_some());
    }
}
