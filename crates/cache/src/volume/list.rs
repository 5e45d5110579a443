//! What is under a cache root: every volume directory `<id>/` and private
//! fork `<id>~N/`, with its size, last use (the mtime of its lock file
//! `<id>.lock`) and who holds it now (`/proc/locks`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::lock::{flocks_on, io, lock_path};
use super::spec::valid_id;
use super::usage::{usage, Usage};
use crate::CacheError;

/// Who holds a volume's lock now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: it may be cleared, removed or pruned.
    Idle,
    /// Builds with `sharing=shared`: their pids (0: in another pid
    /// namespace).
    Shared(Vec<u32>),
    /// One build with `sharing=locked` or `private`, or a remover: its pid
    /// (0: in another pid namespace).
    Exclusive(u32),
}

impl Holder {
    /// From the `(pid, exclusive)` locks on a lock file.
    pub fn from_flocks(locks: &[(u32, bool)]) -> Holder {
        match locks.iter().find(|l| l.1) {
            Some(&(pid, _)) => Holder::Exclusive(pid),
            None if locks.is_empty() => Holder::Idle,
            None => Holder::Shared(locks.iter().map(|l| l.0).collect()),
        }
    }

    /// A pid holding it, for messages (`None`: idle or unknown).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Holder::Idle => None,
            Holder::Shared(p) => p.first().copied(),
            Holder::Exclusive(p) => Some(*p),
        }
        .filter(|p| *p != 0)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pids = |p: &[u32]| {
            p.iter()
                .map(|p| if *p == 0 { "?".into() } else { p.to_string() })
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Holder::Idle => f.write_str("idle"),
            Holder::Shared(p) => write!(f, "shared by pid {}", pids(p)),
            Holder::Exclusive(p) => write!(f, "exclusive by pid {}", pids(&[*p])),
        }
    }
}

/// One volume directory (or fork) under the cache root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Its directory name: `<id>` or `<id>~N`.
    pub name: String,
    /// The volume id (`<id>` for a fork too).
    pub id: String,
    /// `Some(N)` for the private fork `<id>~N`.
    pub fork: Option<u32>,
    /// `<root>/<name>`.
    pub path: PathBuf,
    /// `<root>/<name>.lock`.
    pub lock: PathBuf,
    /// What it holds.
    pub usage: Usage,
    /// The lock file's mtime (set each time a build takes it), else the
    /// directory's.
    pub last_used: SystemTime,
    /// Who holds it now.
    pub holder: Holder,
}

/// `<id>` -> `(id, None)`, `<id>~N` -> `(id, Some(N))`; `None` for names
/// that are no volume's.
pub fn parse_volume_name(name: &str) -> Option<(&str, Option<u32>)> {
    match name.split_once('~') {
        None => valid_id(name).then_some((name, None)),
        Some((id, n)) => {
            let num = n
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0 && v.to_string() == n)?;
            valid_id(id).then_some((id, Some(num)))
        }
    }
}

/// Reads volume `name` under `root`; `None` when it has no directory.
pub fn read_volume(root: &Path, name: &str) -> Result<Option<Volume>, CacheError> {
    let Some((id, fork)) = parse_volume_name(name) else {
        return Ok(None);
    };
    let path = root.join(name);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    let lock = lock_path(root, name);
    let last_used = std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .or_else(|_| meta.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Some(Volume {
        name: name.to_string(),
        id: id.to_string(),
        fork,
        usage: usage(&path).map_err(io(format!("measuring {}", path.display())))?,
        holder: Holder::from_flocks(&flocks_on(&lock)),
        path,
        lock,
        last_used,
    }))
}

/// Every volume and fork under `root`, by id, each id's forks after it in
/// order. No root yet means none.
pub fn list_volumes(root: &Path) -> Result<Vec<Volume>, CacheError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("listing cache root {}", root.display()))(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io(format!("listing cache root {}", root.display())))?;
        if let Some(v) = read_volume(root, &e.file_name().to_string_lossy())? {
            out.push(v);
        }
    }
    out.sort_by(|a, b| (&a.id, a.fork).cmp(&(&b.id, b.fork)));
    Ok(out)
}

/// Volume `name` (`<id>` or `<id>~N`) under `root`, or
/// [`CacheError::NoSuchVolume`].
pub fn find_volume(root: &Path, name: &str) -> Result<Volume, CacheError> {
    read_volume(root, name)?.ok_or_else(|| CacheError::NoSuchVolume {
        name: name.to_string(),
        root: root.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{acquire, Acquired, Sharing};

    #[test]
    fn names_of_volumes_and_forks() {
        assert_eq!(parse_volume_name("npm"), Some(("npm", None)));
        assert_eq!(parse_volume_name("npm~2"), Some(("npm", Some(2))));
        for bad in ["npm~0", "npm~02", "npm~x", "~1", "a~1~2", "a/b", "..", ""] {
            assert_eq!(parse_volume_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_volumes_forks_sizes_and_holders() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let Acquired::Held(a) = acquire(r, "npm", Sharing::Private).unwrap() else {
            panic!("busy")
        };
        let Acquired::Held(fork) = acquire(r, "npm", Sharing::Private).unwrap() else {
            panic!("busy")
        };
        std::fs::write(fork.dir.join("f"), vec![1u8; 1234]).unwrap();
        drop(fork);
        std::fs::create_dir(r.join("pip")).unwrap(); // no lock file yet
        std::fs::write(r.join("stray-file"), b"x").unwrap();
        std::fs::write(r.join(".src-0123.lock"), b"").unwrap();
        let vols = list_volumes(r).unwrap();
        let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["npm", "npm~1", "pip"]);
        assert_eq!(vols[0].holder, Holder::Exclusive(std::process::id()));
        assert_eq!(vols[1].holder, Holder::Idle);
        assert_eq!((vols[1].fork, vols[1].usage.bytes), (Some(1), 1234));
        drop(a);
        assert!(matches!(
            find_volume(r, "nope"),
            Err(CacheError::NoSuchVolume { .. })
        ));
        let Acquired::Held(s) = acquire(r, "pip", Sharing::Shared).unwrap() else {
            panic!("busy")
        };
        let pip = find_volume(r, "pip").unwrap();
        assert_eq!(pip.holder, Holder::Shared(vec![std::process::id()]));
        assert_eq!(pip.holder.pid(), Some(std::process::id()));
        drop(s);
    }
}
