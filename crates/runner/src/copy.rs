//! Copying the source directory into a private workspace (and removing it
//! again), for the bubblewrap runner: the build gets a writable
//! `/home/build` while the source stays untouched.
//!
//! The copy keeps what a build can observe: symlinks are copied as symlinks
//! (never followed), file and directory modes (exec bits, setuid, sticky),
//! access and modification times to the nanosecond, and hard links (two
//! names of one inode in the source are two names of one inode in the
//! copy). It does not keep owners (the copy belongs to whoever runs
//! vmbuild, so a build running as that user can write it), extended
//! attributes or ACLs. Sockets, FIFOs and device nodes are skipped with a
//! debug log: a build cannot use a host socket or device anyway.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

use crate::error::RunError;

/// What [`copy_tree`] copied, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    /// Names made as hard links to an inode already copied.
    pub hard_links: u64,
    /// Sockets, FIFOs and devices left out.
    pub skipped: u64,
    /// Bytes of regular-file content copied.
    pub bytes: u64,
}

/// Copies the contents of directory `src` into the existing directory
/// `dst`, then gives `dst` the mode and times of `src`. `src` itself may
/// be a symlink to a directory; nothing below it is followed. If `dst`
/// lies inside `src` it is left out of the copy.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats, RunError> {
    let root = fs::metadata(src).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => RunError::SourceDir {
            path: src.to_path_buf(),
            why: "does not exist; pass an existing directory as --source-dir".into(),
        },
        _ => RunError::io(format!("reading the source directory {}", src.display()), e),
    })?;
    if !root.is_dir() {
        return Err(RunError::SourceDir {
            path: src.to_path_buf(),
            why: "is not a directory; pass a directory as --source-dir".into(),
        });
    }
    let dst_meta = fs::metadata(dst)
        .map_err(|e| RunError::io(format!("reading the workspace {}", dst.display()), e))?;
    let mut copier = Copier {
        stats: CopyStats::default(),
        links: HashMap::new(),
        dst_root: (dst_meta.dev(), dst_meta.ino()),
    };
    copier.copy_dir_contents(src, dst)?;
    finish_dir(&root, dst)?;
    Ok(copier.stats)
}

struct Copier {
    stats: CopyStats,
    /// (device, inode) of multiply-linked source files -> their copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// The destination, so that a destination inside the source is skipped.
    dst_root: (u64, u64),
}

impl Copier {
    fn copy_dir_contents(&mut self, src: &Path, dst: &Path) -> Result<(), RunError> {
        let entries =
            fs::read_dir(src).map_err(|e| RunError::io(format!("listing {}", src.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RunError::io(format!("listing {}", src.display()), e))?;
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let meta = fs::symlink_metadata(&from)
                .map_err(|e| RunError::io(format!("reading {}", from.display()), e))?;
            self.copy_entry(&from, &to, &meta)?;
        }
        Ok(())
    }

    fn copy_entry(&mut self, from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), RunError> {
        let ft = meta.file_type();
        let failed = |what: &str, e: io::Error| {
            RunError::io(
                format!("copying {} to {} ({what})", from.display(), to.display()),
                e,
            )
        };
        if ft.is_dir() {
            if (meta.dev(), meta.ino()) == self.dst_root {
                tracing::debug!(path = %from.display(), "not copying the workspace into itself");
                return Ok(());
            }
            fs::create_dir(to).map_err(|e| failed("mkdir", e))?;
            self.copy_dir_contents(from, to)?;
            finish_dir(meta, to)?;
            self.stats.dirs += 1;
        } else if ft.is_symlink() {
            let target = fs::read_link(from).map_err(|e| failed("readlink", e))?;
            std::os::unix::fs::symlink(&target, to).map_err(|e| failed("symlink", e))?;
            set_times(meta, to).map_err(|e| failed("setting times", e))?;
            self.stats.symlinks += 1;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&key) {
                    fs::hard_link(first, to).map_err(|e| failed("hard link", e))?;
                    self.stats.hard_links += 1;
                    return Ok(());
                }
            }
            // Copies the content and the mode (std applies the mode with fchmod, so the umask does not apply).
            self.stats.bytes += fs::copy(from, to).map_err(|e| failed("content", e))?;
            set_times(meta, to).map_err(|e| failed("setting times", e))?;
            if meta.nlink() > 1 {
                self.links.insert(key, to.to_path_buf());
            }
            self.stats.files += 1;
        } else {
            tracing::debug!(path = %from.display(), kind = ?ft, "skipping a socket, FIFO or device in the source");
            self.stats.skipped += 1;
        }
        Ok(())
    }
}

/// Mode and times of a directory, applied once its contents are in place
/// (a read-only source directory still gets filled; adding entries would
/// change its mtime again).
fn finish_dir(meta: &fs::Metadata, to: &Path) -> Result<(), RunError> {
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| RunError::io(format!("setting the mode of {}", to.display()), e))?;
    set_times(meta, to)
        .map_err(|e| RunError::io(format!("setting the times of {}", to.display()), e))
}

/// Access and modification times of `meta` onto `to`, not following a symlink.
fn set_times(meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Removes `path` and everything below it, first making directories
/// writable if a plain removal fails (builds leave read-only directories
/// behind, e.g. Go's module cache, which a non-root user cannot empty).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            tracing::debug!(path = %path.display(), error = %first, "retrying removal after making directories writable");
            make_dirs_writable(path);
            fs::remove_dir_all(path)
        }
    }
}

/// Adds owner rwx to every directory under `path` (best effort; symlinks
/// are not followed).
pub fn make_dirs_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    if meta.mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(
            path,
            fs::Permissions::from_mode((meta.mode() | 0o700) & 0o7777),
        );
    }
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;

    fn mtime(p: &Path) -> (i64, i64) {
        let m = fs::symlink_metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    }

    fn set_mtime(p: &Path, sec: i64, nsec: i64) {
        let t = Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        rustix::fs::utimensat(
            CWD,
            p,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn keeps_symlinks_modes_times_and_hard_links() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("bin")).unwrap();
        fs::create_dir_all(s.join("share/doc")).unwrap();
        fs::write(s.join("share/data.txt"), "data\n").unwrap();
        fs::write(s.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(s.join("bin/tool"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::hard_link(s.join("bin/tool"), s.join("share/tool-again")).unwrap();
        symlink("../share/data.txt", s.join("bin/data-link")).unwrap();
        symlink("/nonexistent/target", s.join("dangling")).unwrap();
        set_mtime(&s.join("share/data.txt"), 1_000_000_000, 123_456_789);
        set_mtime(&s.join("bin/data-link"), 1_100_000_000, 5);
        set_mtime(&s.join("share/doc"), 1_200_000_000, 0);
        fs::set_permissions(s.join("share/doc"), fs::Permissions::from_mode(0o750)).unwrap();

        let dst = tempfile::tempdir().unwrap();
        let d = dst.path();
        let stats = copy_tree(s, d).unwrap();
        assert_eq!(
            (
                stats.dirs,
                stats.files,
                stats.symlinks,
                stats.hard_links,
                stats.skipped
            ),
            (3, 2, 2, 1, 0),
            "{stats:?}"
        );

        assert_eq!(
            fs::read_to_string(d.join("share/data.txt")).unwrap(),
            "data\n"
        );
        assert_eq!(
            fs::read_link(d.join("bin/data-link")).unwrap(),
            PathBuf::from("../share/data.txt")
        );
        assert!(fs::symlink_metadata(d.join("bin/data-link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_link(d.join("dangling")).unwrap(),
            PathBuf::from("/nonexistent/target")
        );
        assert_eq!(mode(&d.join("bin/tool")), 0o751);
        assert_eq!(mode(&d.join("share/doc")), 0o750);
        assert_eq!(
            mtime(&d.join("share/data.txt")),
            (1_000_000_000, 123_456_789)
        );
        assert_eq!(
            mtime(&d.join("bin/data-link")),
            (1_100_000_000, 5),
            "symlink's own mtime"
        );
        assert_eq!(
            mtime(&d.join("share/doc")),
            (1_200_000_000, 0),
            "dir mtime set after filling it"
        );
        let a = fs::metadata(d.join("bin/tool")).unwrap();
        let b = fs::metadata(d.join("share/tool-again")).unwrap();
        assert_eq!(
            (a.ino(), a.nlink()),
            (b.ino(), 2),
            "hard link kept in the copy"
        );
        assert_ne!(
            a.ino(),
            fs::metadata(s.join("bin/tool")).unwrap().ino(),
            "a copy, not a link to the source"
        );
    }

    #[test]
    fn root_gets_source_mode_and_time() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), "x").unwrap();
        fs::set_permissions(src.path(), fs::Permissions::from_mode(0o751)).unwrap();
        set_mtime(src.path(), 1_300_000_000, 7);
        let dst = tempfile::tempdir().unwrap();
        assert_ne!(mode(dst.path()), 0o751);
        copy_tree(src.path(), dst.path()).unwrap();
        assert_eq!(mode(dst.path()), 0o751);
        assert_eq!(mtime(dst.path()), (1_300_000_000, 7));
    }

    #[test]
    fn read_only_source_dirs_are_filled_then_made_read_only() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("ro")).unwrap();
        fs::write(src.path().join("ro/f"), "x").unwrap();
        fs::set_permissions(src.path().join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        copy_tree(src.path(), dst.path()).unwrap();
        assert_eq!(fs::read_to_string(dst.path().join("ro/f")).unwrap(), "x");
        assert_eq!(mode(&dst.path().join("ro")), 0o555);
        fs::set_permissions(src.path().join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
        remove_tree(dst.path()).unwrap();
        assert!(!dst.path().exists());
    }

    #[test]
    fn sockets_are_skipped() {
        let src = tempfile::tempdir().unwrap();
        let _l = UnixListener::bind(src.path().join("sock")).unwrap();
        fs::write(src.path().join("f"), "x").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let stats = copy_tree(src.path(), dst.path()).unwrap();
        assert_eq!((stats.files, stats.skipped), (1, 1));
        assert!(fs::symlink_metadata(dst.path().join("sock")).is_err());
    }

    #[test]
    fn destination_inside_the_source_is_not_copied_into_itself() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), "x").unwrap();
        let dst = src.path().join("ws");
        fs::create_dir(&dst).unwrap();
        copy_tree(src.path(), &dst).unwrap();
        assert!(dst.join("f").is_file());
        assert!(!dst.join("ws").exists());
    }

    #[test]
    fn a_file_as_source_is_refused_with_advice() {
        let src = tempfile::NamedTempFile::new().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let e = copy_tree(src.path(), dst.path()).unwrap_err().to_string();
        assert!(
            e.contains("not a directory") && e.contains("--source-dir"),
            "{e}"
        );
    }

    #[test]
    fn make_dirs_writable_adds_owner_rwx_below() {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("a/b");
        fs::create_dir_all(&inner).unwrap();
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o555)).unwrap();
        make_dirs_writable(d.path());
        assert_eq!(mode(&d.path().join("a")), 0o755);
        assert_eq!(mode(&inner), 0o700);
    }
}
