//! Taking a volume for a build with BuildKit's sharing modes across
//! concurrent vmbuild processes on one host, with `flock(2)` on a lock file
//! beside each volume directory: the kernel drops the lock when the holder
//! exits, however it exits, so a crashed build never leaves a volume locked.
//!
//! | sharing   | lock on `<root>/<id>.lock`     | when held by another build          |
//! |-----------|--------------------------------|-------------------------------------|
//! | `shared`  | shared                         | only an exclusive holder blocks     |
//! | `locked`  | exclusive                      | wait                                |
//! | `private` | exclusive on `<id>` or a fork  | use a free fork `<id>~N`, or make one (empty, as BuildKit does) |
//!
//! Removers (`vmbuild cache rm|prune|clear`) take the lock exclusively, so
//! they never delete a volume a build holds.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::spec::Sharing;
use crate::CacheError;

/// Most private forks of one volume.
pub const MAX_FORKS: u32 = 64;

/// A volume directory held for a build; released when dropped.
#[derive(Debug)]
pub struct HeldVolume {
    /// The directory name under the root: `<id>` or a fork `<id>~N`.
    pub name: String,
    pub dir: PathBuf,
    _lock: File,
}

impl HeldVolume {
    /// Tries, without blocking, to make this hold exclusive (for a commit).
    /// `false` while other builds hold the volume. The kernel may drop the
    /// shared lock while converting: keep retrying until `true`.
    pub fn try_exclusive(&self) -> Result<bool, CacheError> {
        match flock(&self._lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(io(format!("locking {} for a commit", self.dir.display()))(
                e.into(),
            )),
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug)]
pub enum Acquired {
    Held(HeldVolume),
    /// Another process holds it; its pid when the kernel says.
    Busy {
        holder: Option<u32>,
    },
}

/// Wraps an I/O error as [`CacheError::Volume`] saying what was done.
pub(crate) fn io(what: String) -> impl FnOnce(std::io::Error) -> CacheError {
    move |source| CacheError::Volume { what, source }
}

fn open_lock(path: &Path) -> Result<File, CacheError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(format!("opening lock file {}", path.display())))
}

/// Whether the locked file `f` is still the one at `path`. `vmbuild cache
/// rm|prune` delete lock files while holding them, so a process that
/// waited on a deleted one must lock the new file instead.
fn still_linked(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Takes `op` on the lock file `path` (created if missing): `Some(file)`
/// when taken, `None` when a non-blocking `op` finds it held.
pub(crate) fn lock_file(path: &Path, op: FlockOperation) -> Result<Option<File>, CacheError> {
    loop {
        let f = open_lock(path)?;
        match flock(&f, op) {
            Ok(()) if still_linked(&f, path) => return Ok(Some(f)),
            Ok(()) => continue, // removed while we waited: lock the new one
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(io(format!("locking {}", path.display()))(e.into())),
        }
    }
}

/// Tries `op` without blocking: `Some(file)` when taken.
fn try_lock(path: &Path, op: FlockOperation) -> Result<Option<File>, CacheError> {
    lock_file(path, op)
}

/// `<root>/<name>.lock`: the lock file of volume (or fork) `name`.
pub(crate) fn lock_path(root: &Path, name: &str) -> PathBuf {
    root.join(format!("{name}.lock"))
}

/// Takes the lock, makes the directory, and records the use (the lock
/// file's mtime is the volume's last use).
fn held(root: &Path, name: &str, lock: File) -> Result<HeldVolume, CacheError> {
    let dir = root.join(name);
    // Dot names are lock-only (the lock of a `src=DIR` volume): no directory.
    if !name.starts_with('.') {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating volume {}", dir.display())))?;
    }
    let _ = lock.set_modified(std::time::SystemTime::now());
    Ok(HeldVolume {
        name: name.to_string(),
        dir,
        _lock: lock,
    })
}

/// One non-blocking attempt to take volume `id` under `root` (created if
/// missing) with `sharing`. `id` must be valid ([`super::valid_id`]).
pub fn acquire(root: &Path, id: &str, sharing: Sharing) -> Result<Acquired, CacheError> {
    std::fs::create_dir_all(root).map_err(io(format!("creating cache root {}", root.display())))?;
    let main = lock_path(root, id);
    let op = match sharing {
        Sharing::Shared => FlockOperation::NonBlockingLockShared,
        Sharing::Locked | Sharing::Private => FlockOperation::NonBlockingLockExclusive,
    };
    if let Some(lock) = try_lock(&main, op)? {
        return Ok(Acquired::Held(held(root, id, lock)?));
    }
    if sharing == Sharing::Private {
        for n in 1..=MAX_FORKS {
            let name = format!("{id}~{n}");
            if let Some(lock) = try_lock(&lock_path(root, &name), op)? {
                return Ok(Acquired::Held(held(root, &name, lock)?));
            }
        }
    }
    Ok(Acquired::Busy {
        holder: holder_pid(&main),
    })
}

/// The pid holding a `flock` on `path`, from `/proc/locks` (Linux).
pub fn holder_pid(path: &Path) -> Option<u32> {
    let meta = std::fs::metadata(path).ok()?;
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in_proc_locks(&text, meta.ino())
}

/// Parses `/proc/locks` lines (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`)
/// for a lock on inode `ino`; returns its pid.
pub fn holder_in_proc_locks(text: &str, ino: u64) -> Option<u32> {
    flocks_in_proc_locks(text, ino).first().map(|l| l.0)
}

/// Every `flock` held on inode `ino` per `/proc/locks` text: `(pid,
/// exclusive)`, blocked waiters left out. The pid is 0 when the holder is
/// in another pid namespace.
pub fn flocks_in_proc_locks(text: &str, ino: u64) -> Vec<(u32, bool)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "->" marks a blocked waiter, not a holder.
            if f.get(1) != Some(&"FLOCK") {
                return None;
            }
            let file_ino: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
            let pid = f.get(4)?.parse().ok()?;
            (file_ino == ino).then_some((pid, f.get(3) == Some(&"WRITE")))
        })
        .collect()
}

/// The `flock`s held on the lock file `path` now (see
/// [`flocks_in_proc_locks`]); none when it or `/proc/locks` is missing.
pub fn flocks_on(path: &Path) -> Vec<(u32, bool)> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    std::fs::read_to_string("/proc/locks")
        .map(|text| flocks_in_proc_locks(&text, meta.ino()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(a: Acquired) -> HeldVolume {
        match a {
            Acquired::Held(h) => h,
            Acquired::Busy { holder } => panic!("busy (held by {holder:?})"),
        }
    }

    #[test]
    fn shared_holders_coexist_and_exclude_a_locked_one() {
        let root = tempfile::tempdir().unwrap();
        let a = held(acquire(root.path(), "gomod", Sharing::Shared).unwrap());
        let b = held(acquire(root.path(), "gomod", Sharing::Shared).unwrap());
        assert_eq!(a.dir, b.dir);
        assert!(a.dir.is_dir());
        match acquire(root.path(), "gomod", Sharing::Locked).unwrap() {
            Acquired::Busy { holder } => assert_eq!(holder, Some(std::process::id())),
            Acquired::Held(_) => panic!("locked while shared holders exist"),
        }
        drop((a, b));
        held(acquire(root.path(), "gomod", Sharing::Locked).unwrap());
    }

    #[test]
    fn locked_is_one_at_a_time_and_released_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let a = held(acquire(root.path(), "apt", Sharing::Locked).unwrap());
        assert!(matches!(
            acquire(root.path(), "apt", Sharing::Locked).unwrap(),
            Acquired::Busy { .. }
        ));
        assert!(matches!(
            acquire(root.path(), "apt", Sharing::Shared).unwrap(),
            Acquired::Busy { .. }
        ));
        drop(a);
        held(acquire(root.path(), "apt", Sharing::Locked).unwrap());
    }

    #[test]
    fn private_uses_forks_and_reuses_a_free_one() {
        let root = tempfile::tempdir().unwrap();
        let a = held(acquire(root.path(), "npm", Sharing::Private).unwrap());
        let b = held(acquire(root.path(), "npm", Sharing::Private).unwrap());
        let c = held(acquire(root.path(), "npm", Sharing::Private).unwrap());
        assert_eq!(
            (a.name.as_str(), b.name.as_str(), c.name.as_str()),
            ("npm", "npm~1", "npm~2")
        );
        std::fs::write(b.dir.join("marker"), "b").unwrap();
        drop(b);
        let again = held(acquire(root.path(), "npm", Sharing::Private).unwrap());
        assert_eq!(again.name, "npm~1");
        assert_eq!(
            std::fs::read_to_string(again.dir.join("marker")).unwrap(),
            "b"
        );
    }

    #[test]
    fn proc_locks_lines_give_the_holder_not_a_waiter() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:777 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 99 fd:01:777 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 11 fd:01:778 0 EOF\n";
        assert_eq!(holder_in_proc_locks(text, 777), Some(4242));
        assert_eq!(holder_in_proc_locks(text, 778), None);
        assert_eq!(holder_in_proc_locks(text, 1), None);
        let shared =
            "1: FLOCK  ADVISORY  READ 5 fd:01:9 0 EOF\n2: FLOCK  ADVISORY  READ 6 fd:01:9 0 EOF\n";
        assert_eq!(flocks_in_proc_locks(shared, 9), [(5, false), (6, false)]);
        assert_eq!(flocks_in_proc_locks(text, 777), [(4242, true)]);
    }

    #[test]
    fn a_waiter_on_a_removed_lock_file_locks_the_new_one() {
        let root = tempfile::tempdir().unwrap();
        let path = lock_path(root.path(), "v");
        let remover = lock_file(&path, FlockOperation::LockExclusive)
            .unwrap()
            .unwrap();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            lock_file(&p, FlockOperation::LockExclusive)
                .unwrap()
                .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(200)); // let it block
        std::fs::remove_file(&path).unwrap();
        drop(remover);
        let got = waiter.join().unwrap();
        let now = std::fs::metadata(&path).expect("the waiter made a new lock file");
        assert_eq!(got.metadata().unwrap().ino(), now.ino());
    }
}
