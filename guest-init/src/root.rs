//! Where commands run: the initramfs itself, or an environment image
//! mounted at `/sysroot` (they are chrooted there). Guest paths (what the
//! host sends, what commands see) are mapped to the init's own view here,
//! resolving symlinks the way the kernel does inside the chroot: an
//! absolute link in the image (`/var/run -> /run`, Debian's alternatives)
//! points into the image, never into the initramfs.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::error::{InitError, Result};
use crate::pathsearch::{probe_fs, Probe};

/// Linux gives up after 40 symlinks in one lookup (ELOOP); so do we.
const MAX_LINKS: usize = 40;

/// The root directory commands see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRoot {
    base: PathBuf,
}

impl GuestRoot {
    /// The initramfs: guest paths are the init's own paths.
    pub fn initramfs() -> Self {
        Self {
            base: PathBuf::from("/"),
        }
    }

    /// A root filesystem mounted at `base` (absolute).
    pub fn at(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// The directory to chroot into before exec, `None` for the initramfs.
    pub fn chroot_dir(&self) -> Option<&Path> {
        (self.base != Path::new("/")).then_some(self.base.as_path())
    }

    /// The init's path for `guest`, following every symlink inside the root
    /// (the last component too). Missing components are kept literally, so
    /// the result can be created with `mkdir -p`.
    pub fn host(&self, guest: &Path) -> Result<PathBuf> {
        self.map(guest, true)
    }

    /// Like [`GuestRoot::host`] but the last component is not followed: for
    /// a link about to be inspected or created.
    pub fn host_nofollow(&self, guest: &Path) -> Result<PathBuf> {
        self.map(guest, false)
    }

    /// What `guest` is, seen from inside the root (for `PATH` lookups).
    pub fn probe(&self, guest: &Path) -> Probe {
        match self.host(guest) {
            Ok(p) => probe_fs(&p),
            Err(_) => Probe::Missing,
        }
    }

    fn map(&self, guest: &Path, follow_last: bool) -> Result<PathBuf> {
        if self.chroot_dir().is_none() {
            return Ok(guest.to_path_buf());
        }
        resolve_in_root(&self.base, guest, follow_last)
    }
}

/// Resolves `guest` under `base` as if `base` were `/`: absolute symlink
/// targets restart at `base`, `..` never climbs above it. Components that
/// do not exist are appended as they are.
pub fn resolve_in_root(base: &Path, guest: &Path, follow_last: bool) -> Result<PathBuf> {
    let mut todo: VecDeque<OsString> = parts(guest).collect();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            done.pop();
            continue;
        }
        let mut here = base.to_path_buf();
        here.extend(&done);
        here.push(&part);
        let is_link = here
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if !is_link || (todo.is_empty() && !follow_last) {
            done.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(InitError::sys(
                format!(
                    "resolving {} inside {}: more than {MAX_LINKS} symlinks",
                    guest.display(),
                    base.display()
                ),
                Errno::ELOOP,
            ));
        }
        let target = std::fs::read_link(&here)
            .map_err(|e| InitError::io(format!("reading the link {}", here.display()), e))?;
        if target.is_absolute() {
            done.clear();
        }
        for p in parts(&target).collect::<Vec<_>>().into_iter().rev() {
            todo.push_front(p);
        }
    }
    let mut out = base.to_path_buf();
    out.extend(&done);
    Ok(out)
}

/// The names and `..`s of a path (`/` and `.` dropped).
fn parts(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A Debian-like tree: merged /usr, absolute alternatives links.
    fn image() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["usr/bin", "etc/alternatives", "run", "var"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("usr/bin/mawk"), b"").unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/etc/alternatives/awk", r.join("usr/bin/awk")).unwrap();
        symlink("/usr/bin/mawk", r.join("etc/alternatives/awk")).unwrap();
        symlink("/run", r.join("var/run")).unwrap();
        symlink("../../../../..", r.join("usr/bin/up")).unwrap();
        symlink("loop-b", r.join("loop-a")).unwrap();
        symlink("loop-a", r.join("loop-b")).unwrap();
        d
    }

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let d = image();
        let root = GuestRoot::at(d.path());
        assert_eq!(
            root.host(Path::new("/bin/awk")).unwrap(),
            d.path().join("usr/bin/mawk")
        );
        assert_eq!(
            root.host(Path::new("/var/run/lock/x")).unwrap(),
            d.path().join("run/lock/x"),
            "missing components are kept for mkdir -p"
        );
        assert_eq!(root.probe(Path::new("/bin/awk")), Probe::NotExecutable);
        assert_eq!(root.probe(Path::new("/bin/nope")), Probe::Missing);
    }

    #[test]
    fn dotdot_and_relative_links_cannot_climb_out() {
        let d = image();
        let root = GuestRoot::at(d.path());
        assert_eq!(
            root.host(Path::new("/../../etc/alternatives")).unwrap(),
            d.path().join("etc/alternatives")
        );
        assert_eq!(
            root.host(Path::new("/usr/bin/up/etc")).unwrap(),
            d.path().join("etc")
        );
    }

    #[test]
    fn nofollow_keeps_the_last_link_but_follows_parents() {
        let d = image();
        let root = GuestRoot::at(d.path());
        assert_eq!(
            root.host_nofollow(Path::new("/bin/awk")).unwrap(),
            d.path().join("usr/bin/awk")
        );
        assert_eq!(
            root.host_nofollow(Path::new("/var/run")).unwrap(),
            d.path().join("var/run")
        );
    }

    #[test]
    fn link_loops_are_eloop() {
        let d = image();
        let e = GuestRoot::at(d.path())
            .host(Path::new("/loop-a/x"))
            .unwrap_err();
        assert!(
            matches!(
                e,
                InitError::Sys {
                    errno: Errno::ELOOP,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn the_initramfs_root_maps_paths_to_themselves() {
        let root = GuestRoot::initramfs();
        assert_eq!(root.chroot_dir(), None);
        assert_eq!(
            root.host(Path::new("/var/run/x")).unwrap(),
            Path::new("/var/run/x")
        );
        assert_eq!(
            GuestRoot::at("/sysroot").chroot_dir(),
            Some(Path::new("/sysroot"))
        );
    }
}
