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
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Lists `root` (which must be a directory, not a symlink to one).
pub fn list(root: &Path) -> std::io::Result<Listing> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut out = Listing::default();
    let mut seen: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    out.entries.push(entry(Vec::new(), &meta, Kind::Dir));
    walk(root, &[], &mut out, &mut seen)?;
    Ok(out)
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
    }
}

fn walk(
    dir: &Path,
    prefix: &[u8],
    out: &mut Listing,
    seen: &mut HashMap<(u64, u64), Vec<u8>>,
) -> std::io::Result<()> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = dir.join(OsStr::from_bytes(&name));
        let m = std::fs::symlink_metadata(&path)?;
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            [prefix, b"/", &name].concat()
        };
        let ft = m.file_type();
        if ft.is_dir() {
            out.entries.push(entry(rel.clone(), &m, Kind::Dir));
            walk(&path, &rel, out, seen)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)?.as_os_str().as_bytes().to_vec();
            out.entries.push(entry(rel, &m, Kind::Symlink(target)));
        } else if ft.is_file() {
            let kind = if m.nlink() > 1 {
                match seen.get(&(m.dev(), m.ino())) {
                    Some(first) => Kind::HardLink(first.clone()),
                    None => {
                        seen.insert((m.dev(), m.ino()), rel.clone());
                        Kind::File
                    }
                }
            } else {
                Kind::File
            };
            out.entries.push(entry(rel, &m, kind));
        } else {
            out.skipped += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

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
        let rels: Vec<String> = l
            .entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.rel).into_owned())
            .collect();
        assert_eq!(rels, ["", "a.txt", "b", "b/c", "b/c/f", "b/etc", "z-link"]);
        assert_eq!(l.entries[1].mode, 0o755, "setuid is not carried");
        assert_eq!(l.entries[5].kind, Kind::Symlink(b"/etc".to_vec()));
        assert_eq!(l.entries[6].kind, Kind::HardLink(b"a.txt".to_vec()));
        assert_eq!(l.entries[6].size, 0);
        assert_eq!(l.bytes(), 6);
        assert_eq!(l.entries[4].top(), b"b");
        assert!(list(&r.join("a.txt")).is_err());
    }
}
