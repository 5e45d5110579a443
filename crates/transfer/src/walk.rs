//! Listing a volume for export: every directory, regular file, symlink and
//! hard link under its root, depth first with each directory's names in
//! byte order, so the same tree always lists the same way. Symlinks are
//! never followed; sockets, fifos and device nodes are counted and left
//! out (a cache has no use for them, and an import would refuse them).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What an entry is in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A symlink and its target, verbatim.
    Symlink(Vec<u8>),
    /// A second (third...) name of a file listed earlier, by its path.
    HardLink(Vec<u8>),
}

/// One listed entry. `rel` is relative to the volume root without a
/// leading `./` (empty for the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rel: Vec<u8>,
    pub kind: Kind,
    /// Permission bits (`0o777`): setuid, setgid and sticky are not
    /// carried, as an import would strip them.
    pub mode: u32,
    /// Bytes of content (regular files; 0 otherwise).
    pub size: u64,
    pub mtime: i64,
    /// What changes when the entry changes, for the chunk fingerprint:
    /// mtime and ctime in ns, inode, device.
    pub stamp: [i64; 5],
    /// Names of the inode (hard links).
    pub nlink: u64,
}

impl Entry {
    /// The top-level name this entry is under (`""` for the root).
    pub fn top(&self) -> &[u8] {
        self.rel.split(|b| *b == b'/').next().unwrap_or(b"")
    }
}

/// A listed volume.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Sockets, fifos and device nodes left out.
    pub skipped: u64,
}

impl Listing {
    /// Bytes of file content.
    pub fn bytes(&self) -> u64 {
        content_bytes(&self.entries)
    }
}

/// Directories this deep are listed on worker threads (the levels above
/// are listed first, in order, to find them).
const SPLIT_DEPTH: usize = 2;

/// One place in the listing: an entry, or the subtree of the directory
/// listed just before it, listed on a worker thread.
enum Slot {
    Entry(Entry),
    Subtree(usize),
}

/// Bytes of file content in `entries` (hard links count once).
pub fn content_bytes(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.size).sum()
}

/// Lists `root` (which must be a directory, not a symlink to one). The
/// subtrees below [`SPLIT_DEPTH`] are listed in parallel (one thread per
/// core) and put back in order, so the listing is the same as a
/// sequential walk's.
pub fn list(root: &Path) -> std::io::Result<Listing> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut out = Listing::default();
    let mut slots = vec![Slot::Entry(entry(Vec::new(), &meta, Kind::Dir))];
    let mut tasks: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
    walk(root, &[], 0, &mut slots, &mut tasks, &mut out.skipped)?;
    let results = subtrees(&tasks)?;
    let mut results: Vec<Option<Listing>> = results.into_iter().map(Some).collect();
    for slot in slots {
        match slot {
            Slot::Entry(e) => out.entries.push(e),
            Slot::Subtree(i) => {
                if let Some(l) = results[i].take() {
                    out.entries.extend(l.entries);
                    out.skipped += l.skipped;
                }
            }
        }
    }
    // The first name of a multiply-linked file in listing order is the
    // file; the later ones are hard links to it.
    let mut seen: HashMap<(i64, i64), Vec<u8>> = HashMap::new();
    for e in &mut out.entries {
        if e.kind == Kind::File && e.nlink > 1 {
            match seen.get(&(e.stamp[3], e.stamp[2])) {
                Some(first) => {
                    e.kind = Kind::HardLink(first.clone());
                    e.size = 0;
                }
                None => {
                    seen.insert((e.stamp[3], e.stamp[2]), e.rel.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Lists each task's subtree, on one thread per core; results in order.
fn subtrees(tasks: &[(std::path::PathBuf, Vec<u8>)]) -> std::io::Result<Vec<Listing>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<std::io::Result<Listing>>>> =
        Mutex::new((0..tasks.len()).map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(tasks.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((dir, rel)) = tasks.get(i) else {
                    break;
                };
                let (mut slots, mut none, mut skipped) = (Vec::new(), Vec::new(), 0);
                let r = walk(dir, rel, usize::MAX, &mut slots, &mut none, &mut skipped).map(|()| {
                    let entries = slots
                        .into_iter()
                        .filter_map(|s| match s {
                            Slot::Entry(e) => Some(e),
                            Slot::Subtree(_) => None,
                        })
                        .collect();
                    Listing { entries, skipped }
                });
                if let Ok(mut d) = done.lock() {
                    d[i] = Some(r);
                }
            });
        }
    });
    done.into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("a listing thread stopped"))))
        .collect()
}

fn entry(rel: Vec<u8>, m: &std::fs::Metadata, kind: Kind) -> Entry {
    Entry {
        rel,
        size: if kind == Kind::File { m.len() } else { 0 },
        kind,
        mode: m.mode() & 0o777,
        mtime: m.mtime(),
        stamp: [
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            m.ino() as i64,
            m.dev() as i64,
            m.len() as i64,
        ],
        nlink: m.nlink(),
    }
}

/// Lists `dir` (at `rel` in the volume, `depth` levels down) into
/// `slots`, depth first with names in byte order; a directory at
/// [`SPLIT_DEPTH`] becomes a task for [`subtrees`] instead of being
/// descended.
fn walk(
    dir: &Path,
    prefix: &[u8],
    depth: usize,
    slots: &mut Vec<Slot>,
    tasks: &mut Vec<(std::path::PathBuf, Vec<u8>)>,
    skipped: &mut u64,
) -> std::io::Result<()> {
    // `DirEntry::metadata` stats relative to the open directory (no
    // symlink followed), cheaper than resolving each full path again.
    let mut items: Vec<(Vec<u8>, std::fs::DirEntry)> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.file_name().as_bytes().to_vec(), e)))
        .collect::<Result<_, _>>()?;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, item) in items {
        let path = dir.join(OsStr::from_bytes(&name));
        let m = item.metadata()?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            [prefix, b"/", &name].concat()
        };
        let ft = m.file_type();
        if ft.is_dir() {
            slots.push(Slot::Entry(entry(rel.clone(), &m, Kind::Dir)));
            if depth.saturating_add(1) == SPLIT_DEPTH {
                slots.push(Slot::Subtree(tasks.len()));
                tasks.push((path, rel));
            } else {
                walk(&path, &rel, depth.saturating_add(1), slots, tasks, skipped)?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)?.as_os_str().as_bytes().to_vec();
            slots.push(Slot::Entry(entry(rel, &m, Kind::Symlink(target))));
        } else if ft.is_file() {
            slots.push(Slot::Entry(entry(rel, &m, Kind::File)));
        } else {
            *skipped += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn rels(l: &Listing) -> Vec<String> {
        l.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.rel).into_owned())
            .collect()
    }

    #[test]
    fn lists_depth_first_in_byte_order_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("b/c")).unwrap();
        std::fs::write(r.join("b/c/f"), b"1234").unwrap();
        std::fs::write(r.join("a.txt"), b"xy").unwrap();
        std::fs::set_permissions(r.join("a.txt"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(r.join("a.txt"), r.join("z-link")).unwrap();
        symlink("/etc", r.join("b/etc")).unwrap();
        let l = list(r).unwrap();
        let rels = rels(&l);
        assert_eq!(rels, ["", "a.txt", "b", "b/c", "b/c/f", "b/etc", "z-link"]);
        assert_eq!(l.entries[1].mode, 0o755, "setuid is not carried");
        assert_eq!(l.entries[5].kind, Kind::Symlink(b"/etc".to_vec()));
        assert_eq!(l.entries[6].kind, Kind::HardLink(b"a.txt".to_vec()));
        assert_eq!(l.entries[6].size, 0);
        assert_eq!(l.bytes(), 6);
        assert_eq!(l.entries[4].top(), b"b");
        assert!(list(&r.join("a.txt")).is_err());
    }

    #[test]
    fn deep_trees_list_like_a_sequential_walk() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for p in ["a/b/c/d/e", "a/b2/x", "z/y/x/w"] {
            std::fs::create_dir_all(r.join(p)).unwrap();
            std::fs::write(r.join(p).join("f"), p).unwrap();
        }
        // A hard link whose first name is in a later parallel subtree than
        // a directory listed before it.
        std::fs::hard_link(r.join("z/y/x/w/f"), r.join("z/link")).unwrap();
        let l = list(r).unwrap();
        let rels = rels(&l);
        assert_eq!(
            rels,
            [
                "",
                "a",
                "a/b",
                "a/b/c",
                "a/b/c/d",
                "a/b/c/d/e",
                "a/b/c/d/e/f",
                "a/b2",
                "a/b2/x",
                "a/b2/x/f",
                "z",
                "z/link",
                "z/y",
                "z/y/x",
                "z/y/x/w",
                "z/y/x/w/f"
            ]
        );
        assert_eq!(l.entries[11].kind, Kind::File, "z/link comes first");
        assert_eq!(l.entries[15].kind, Kind::HardLink(b"z/link".to_vec()));
    }
}
