//! [`Store`]: entries of one directory, keyed by name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::io_err;
use crate::{Lock, StoreError};

/// Name of the file written last into a complete entry.
pub const COMPLETE_MARKER: &str = ".complete";
/// File in an entry whose mtime is its last use ([`Store::touch`]).
pub const LAST_USED_FILE: &str = "last-used";

/// Whether `dir` is a complete entry.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

/// The entries of one directory (see the [crate docs](crate) for the
/// layout). Keys are single path components that contain no `#` and do not
/// start with `.`; they are used as given.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    is_key: fn(&str) -> bool,
    remove_tree: fn(&Path),
}

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The entry was deleted.
    Removed,
    /// Someone holds it (a user, a builder or another remover); left alone.
    Held,
    /// There was no such entry.
    Missing,
}

impl Store {
    /// The store in `dir` (created when first needed). Every name not
    /// starting with `.` is taken as a key; trees are removed with
    /// `remove_dir_all`.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            is_key: |name| !name.starts_with('.'),
            remove_tree,
        }
    }

    /// Only names for which `is_key` holds are keys: other directories are
    /// neither listed nor cleaned up.
    pub fn with_keys(self, is_key: fn(&str) -> bool) -> Store {
        Store { is_key, ..self }
    }

    /// Remove leftover trees with `remove` (for trees a plain
    /// `remove_dir_all` cannot delete, e.g. owned by subordinate uids).
    /// It logs its own failures.
    pub fn with_tree_remover(self, remove: fn(&Path)) -> Store {
        Store {
            remove_tree: remove,
            ..self
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry directory of `key` (whether or not it exists).
    pub fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The lock file of `key`.
    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!(".{key}.lock"))
    }

    /// Whether `key`'s entry is complete.
    pub fn is_complete(&self, key: &str) -> bool {
        is_complete(&self.entry(key))
    }

    /// The keys of all complete entries, sorted. No store directory yet
    /// means no entries.
    pub fn keys(&self) -> Result<Vec<String>, StoreError> {
        let listing = || io_err(format!("listing {}", self.dir.display()));
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(listing()(e)),
        };
        let mut keys = Vec::new();
        for entry in rd {
            let name = entry.map_err(listing())?.file_name();
            let name = name.to_string_lossy();
            if (self.is_key)(&name) && self.is_complete(&name) {
                keys.push(name.into_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Take `key`'s lock exclusively, waiting for its holders.
    pub fn lock(&self, key: &str) -> Result<Lock, StoreError> {
        Lock::exclusive(&self.lock_path(key))
    }

    /// Take `key`'s lock exclusively if nobody holds it; `None` when a
    /// user, builder or remover holds it.
    pub fn try_lock(&self, key: &str) -> Result<Option<Lock>, StoreError> {
        Lock::try_exclusive(&self.lock_path(key))
    }

    /// Hold `key`'s entry for use: a shared lock, so removal and pruning
    /// leave it alone until the returned lock is dropped. Waits while a
    /// builder or remover of `key` runs; `None` when there is no complete
    /// entry once the lock is held (never built, or removed meanwhile).
    pub fn hold(&self, key: &str) -> Result<Option<Lock>, StoreError> {
        let Some(lock) = Lock::shared(&self.lock_path(key))? else {
            return Ok(None);
        };
        Ok(self.is_complete(key).then_some(lock))
    }

    /// Make sure `key`'s entry exists and is complete, building it with
    /// `build` if not. `build` fills the (empty) directory it is given; the
    /// marker and the rename into place are done here. `Some(T)` when this
    /// call built it, `None` when it was already there (or another process
    /// built it while this one waited for the lock).
    pub fn ensure<T, E: From<StoreError>>(
        &self,
        key: &str,
        build: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let dir = self.entry(key);
        if is_complete(&dir) {
            return Ok(None);
        }
        let _lock = self.lock(key)?;
        if is_complete(&dir) {
            return Ok(None); // another process finished it while we waited
        }
        self.remove_stale_temps_of(key);
        if dir.exists() {
            tracing::warn!(dir = %dir.display(), "removing an incomplete cache entry");
            std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
        }
        let tmp = self.temp_dir_for(key)?;
        let built = build(tmp.path())?;
        write_file_synced(&tmp.path().join(COMPLETE_MARKER), b"")?;
        std::fs::rename(tmp.path(), &dir).map_err(io_err(format!(
            "moving {} to {}",
            tmp.path().display(),
            dir.display()
        )))?;
        Ok(Some(built))
    }

    /// Start building `key`'s entry unless someone else builds, holds or
    /// removes it right now (`None` then: never waits). The caller fills
    /// [`Building::dir`] and calls [`Building::commit`]; dropping the
    /// `Building` instead leaves no entry. An existing entry is replaced on
    /// commit (e.g. one found corrupt).
    pub fn try_begin(&self, key: &str) -> Result<Option<Building>, StoreError> {
        let Some(lock) = self.try_lock(key)? else {
            return Ok(None);
        };
        self.remove_stale_temps_of(key);
        let tmp = self.temp_dir_for(key)?;
        Ok(Some(Building {
            store: self.clone(),
            key: key.to_string(),
            tmp,
            lock,
        }))
    }

    /// A new temp dir for building `key`'s entry (removed when dropped).
    fn temp_dir_for(&self, key: &str) -> Result<tempfile::TempDir, StoreError> {
        tempfile::Builder::new()
            .prefix(&temp_prefix(key))
            .tempdir_in(&self.dir)
            .map_err(io_err(format!(
                "creating a temp dir in {}",
                self.dir.display()
            )))
    }

    /// Delete `key`'s entry unless someone holds it.
    pub fn remove(&self, key: &str) -> Result<Removal, StoreError> {
        let Some(lock) = self.try_lock(key)? else {
            return Ok(Removal::Held);
        };
        Ok(if self.delete(key, &lock)? {
            Removal::Removed
        } else {
            Removal::Missing
        })
    }

    /// Delete `key`'s entry, whose exclusive `lock` the caller holds. It is
    /// renamed out of the way first, so it disappears at once and a killed
    /// removal leaves only a stale temp dir. `false` when there was none.
    pub fn delete(&self, key: &str, _lock: &Lock) -> Result<bool, StoreError> {
        let dir = self.entry(key);
        let doomed = self
            .dir
            .join(format!("{}rm-{}", temp_prefix(key), std::process::id()));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(format!("moving {} away", dir.display()))(e)),
        }
        std::fs::remove_dir_all(&doomed)
            .map_err(io_err(format!("removing {}", doomed.display())))?;
        Ok(true)
    }

    /// Remove the `candidates` (in order) that nobody holds and return
    /// them; held ones are skipped. With `dry_run` nothing is removed, but
    /// the locks are probed the same way, so the result is what a real
    /// prune would remove now. A real prune first removes leftovers of
    /// killed builds and removals.
    pub fn prune<T>(
        &self,
        candidates: Vec<T>,
        key_of: impl Fn(&T) -> &str,
        dry_run: bool,
    ) -> Result<Vec<T>, StoreError> {
        if !dry_run {
            self.clean_stale_temps();
        }
        let mut pruned = Vec::new();
        for c in candidates {
            let key = key_of(&c);
            let Some(lock) = self.try_lock(key)? else {
                tracing::info!(key, "entry is in use; not pruning it");
                continue;
            };
            let gone = if dry_run {
                self.is_complete(key)
            } else {
                self.delete(key, &lock)?
            };
            if gone {
                pruned.push(c);
            }
        }
        Ok(pruned)
    }

    /// Remove temp dirs of builds or removals that were killed, for every
    /// key whose lock is free (a held lock means that build still runs).
    pub fn clean_stale_temps(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name
                .strip_prefix(".tmp-")
                .and_then(|r| r.split_once('#'))
                .map(|p| p.0)
            else {
                continue;
            };
            if !(self.is_key)(key) {
                continue;
            }
            match self.try_lock(key) {
                Ok(Some(_lock)) => {
                    let path = entry.path();
                    tracing::info!(path = %path.display(), "removing a stale temp dir");
                    (self.remove_tree)(&path);
                }
                Ok(None) => {} // its build is running
                Err(err) => tracing::warn!(%err, "cannot check a temp dir"),
            }
        }
    }

    /// Record a use of `key`'s entry now (the mtime of its
    /// [`LAST_USED_FILE`]).
    pub fn touch(&self, key: &str) -> Result<(), StoreError> {
        let path = self.entry(key).join(LAST_USED_FILE);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        f.set_modified(SystemTime::now())
            .map_err(io_err(format!("touching {}", path.display())))
    }

    /// Remove `.tmp-<key>#*` dirs left by a builder of `key` that was
    /// killed. Only called with the key's lock held: no live builder can
    /// own one.
    fn remove_stale_temps_of(&self, key: &str) {
        let prefix = temp_prefix(key);
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                tracing::info!(path = %e.path().display(), "removing a stale temp dir");
                (self.remove_tree)(&e.path());
            }
        }
    }
}

/// An entry being built by [`Store::try_begin`], with its lock held.
#[derive(Debug)]
pub struct Building {
    store: Store,
    key: String,
    tmp: tempfile::TempDir,
    lock: Lock,
}

impl Building {
    /// The directory to fill (renamed into place by [`Building::commit`]).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Marks the entry complete and moves it into place, replacing any
    /// previous entry of the key.
    pub fn commit(self) -> Result<(), StoreError> {
        write_file_synced(&self.tmp.path().join(COMPLETE_MARKER), b"")?;
        self.store.delete(&self.key, &self.lock)?;
        let dir = self.store.entry(&self.key);
        let tmp = self.tmp.keep();
        std::fs::rename(&tmp, &dir).map_err(io_err(format!(
            "moving {} to {}",
            tmp.display(),
            dir.display()
        )))
    }
}

/// Prefix of the temp dirs of `key`'s entry. Keys contain no `#`, so no
/// other key's prefix starts with this one.
fn temp_prefix(key: &str) -> String {
    format!(".tmp-{key}#")
}

/// The default tree remover: `remove_dir_all`, failures logged.
fn remove_tree(path: &Path) {
    if let Err(err) = std::fs::remove_dir_all(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %err, "cannot remove a stale temp dir");
        }
    }
}

fn write_file_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(io_err(format!("creating {}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests;
