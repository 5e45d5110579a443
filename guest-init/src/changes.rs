//! What a build changed in an overlay mount, as a tar stream in OCI layer
//! form, for the host to apply to the volume after a successful build
//! (`persist=on-success`).
//!
//! The overlay's upper directory holds exactly the changes; they are turned
//! into tar entries as the OCI image-layer format describes them:
//!
//! - a new or changed file, directory or symlink: itself (mode, mtime,
//!   content or link target);
//! - a deleted entry (a 0:0 character device in the upper): an empty file
//!   `.wh.NAME` beside where it was;
//! - a directory that replaced a lower one (`trusted.overlay.opaque=y`): the
//!   directory, an empty `.wh..wh..opq` in it, then its entries;
//! - a directory renamed from the lower layer (`trusted.overlay.redirect`,
//!   kept by `redirect_dir=on`): it is made opaque and its whole merged
//!   content is written, since its files still live in the lower;
//! - hard links within the upper stay hard links.
//!
//! FIFOs, sockets and device nodes other than whiteouts are skipped with a
//! note on stderr. Owners are not recorded: the host applies its own.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vmbuild_proto::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Reads extended attribute `name` of `path` without following a symlink.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: `p` and `n` are NUL-terminated C strings that outlive the
    // call; `buf` is a live, writable allocation of exactly `buf.len()`
    // bytes, which is the size passed.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// What was skipped, for the caller to report.
#[derive(Debug, Default)]
pub struct Skipped(pub Vec<String>);

/// Writes the change stream of the overlay whose upper directory is
/// `upper` and whose merged view is `merged` to `out`.
pub fn write_changes<W: Write>(upper: &Path, merged: &Path, out: W) -> io::Result<Skipped> {
    let mut w = Walk {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        skipped: Skipped::default(),
    };
    w.tar.mode(tar::HeaderMode::Deterministic);
    w.dir_contents(upper, merged, Path::new(""), false)?;
    w.tar.into_inner()?.flush()?;
    Ok(w.skipped)
}

struct Walk<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of files with several links -> the first name written.
    links: HashMap<(u64, u64), PathBuf>,
    skipped: Skipped,
}

impl<W: Write> Walk<W> {
    fn header(m: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(m.mode() & 0o7777);
        h.set_mtime(m.mtime().max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h
    }

    fn empty_file(&mut self, rel: &Path) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        self.tar.append_data(&mut h, rel, io::empty())
    }

    /// Writes the entries of directory `dir` (at archive path `rel`). In
    /// `full` mode (under a renamed directory) every entry of the merged
    /// view is written and whiteouts do not occur.
    fn dir_contents(
        &mut self,
        dir: &Path,
        merged: &Path,
        rel: &Path,
        full: bool,
    ) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let (src, m_src, r) = (dir.join(&name), merged.join(&name), rel.join(&name));
            let m = fs::symlink_metadata(&src)?;
            if !full && is_whiteout(&m) {
                let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                self.empty_file(&rel.join(wh))?;
            } else if m.is_dir() {
                let redirected = !full && xattr(&src, "trusted.overlay.redirect").is_some();
                let opaque = redirected
                    || (!full && xattr(&src, "trusted.overlay.opaque").as_deref() == Some(b"y"));
                let mut h = Self::header(&m, tar::EntryType::Directory);
                self.tar.append_data(&mut h, &r, io::empty())?;
                if opaque {
                    self.empty_file(&r.join(OPAQUE_MARKER))?;
                }
                if redirected {
                    // Its files are still in the lower: take the merged view.
                    self.dir_contents(&m_src, &m_src, &r, true)?;
                } else {
                    self.dir_contents(&src, &m_src, &r, full)?;
                }
            } else if m.file_type().is_symlink() {
                let mut h = Self::header(&m, tar::EntryType::Symlink);
                self.tar.append_link(&mut h, &r, fs::read_link(&src)?)?;
            } else if m.is_file() {
                if m.nlink() > 1 {
                    if let Some(first) = self.links.get(&(m.dev(), m.ino())).cloned() {
                        let mut h = Self::header(&m, tar::EntryType::Link);
                        self.tar.append_link(&mut h, &r, first)?;
                        continue;
                    }
                    self.links.insert((m.dev(), m.ino()), r.clone());
                }
                let mut h = Self::header(&m, tar::EntryType::Regular);
                h.set_size(m.len());
                self.tar.append_data(&mut h, &r, fs::File::open(&src)?)?;
            } else {
                self.skipped.0.push(r.display().to_string());
            }
        }
        Ok(())
    }
}

/// The merged directory (mount point) of the overlay whose upper dir is
/// `upper`, from `/proc/mounts`-format text.
pub fn merged_dir(mounts: &str, upper: &Path) -> Option<PathBuf> {
    let want = format!("upperdir={}", upper.display());
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&"overlay") && f.get(3)?.split(',').any(|o| o == want))
            .then(|| PathBuf::from(f[1].replace("\\040", " ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tarball: &[u8]) -> Vec<(String, tar::EntryType, String)> {
        let mut a = tar::Archive::new(tarball);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let kind = e.header().entry_type();
                let mut body = String::new();
                if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
                    body = e.link_name().unwrap().unwrap().display().to_string();
                } else {
                    io::Read::read_to_string(&mut e, &mut body).unwrap();
                }
                (path, kind, body)
            })
            .collect()
    }

    #[test]
    fn files_dirs_links_and_hard_links_become_entries() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        fs::create_dir_all(up.join("pip/wheels")).unwrap();
        fs::write(up.join("pip/wheels/a.whl"), "wheel").unwrap();
        fs::hard_link(up.join("pip/wheels/a.whl"), up.join("pip/again.whl")).unwrap();
        std::os::unix::fs::symlink("wheels/a.whl", up.join("pip/latest")).unwrap();
        let mut out = Vec::new();
        let skipped = write_changes(up, up, &mut out).unwrap();
        assert!(skipped.0.is_empty());
        let e = entries(&out);
        let find = |p: &str| {
            e.iter()
                .find(|(n, _, _)| n.trim_end_matches('/') == p)
                .cloned()
        };
        assert_eq!(find("pip").unwrap().1, tar::EntryType::Directory);
        let again = find("pip/again.whl").unwrap();
        let wheel = find("pip/wheels/a.whl").unwrap();
        // Sorted order: again.whl comes first and carries the data.
        assert_eq!(
            (again.1, again.2.as_str()),
            (tar::EntryType::Regular, "wheel")
        );
        assert_eq!(
            (wheel.1, wheel.2.as_str()),
            (tar::EntryType::Link, "pip/again.whl")
        );
        assert_eq!(find("pip/latest").unwrap().2, "wheels/a.whl");
    }

    /// Sets a `trusted.*` xattr (root only, as the guest init is).
    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        // SAFETY: both C strings outlive the call; `value` is a live slice
        // of the length passed.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "lsetxattr {name}: {}", io::Error::last_os_error());
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_oci_markers() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        nix::sys::stat::mknod(
            &up.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        fs::create_dir(up.join("replaced")).unwrap();
        fs::write(up.join("replaced/new"), "n").unwrap();
        set_xattr(&up.join("replaced"), "trusted.overlay.opaque", b"y");
        let mut out = Vec::new();
        write_changes(up, up, &mut out).unwrap();
        let names: Vec<String> = entries(&out).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(
            names,
            [
                ".wh.gone",
                "replaced",
                "replaced/.wh..wh..opq",
                "replaced/new"
            ],
            "{names:?}"
        );
    }

    #[test]
    fn merged_dir_is_found_by_upperdir() {
        let m = "proc /proc proc rw 0 0\n\
                 overlay /var/cache/vmbuild overlay rw,lowerdir=/run/vmbuild/lower/c,upperdir=/run/vmbuild/rw/c/upper,workdir=/run/vmbuild/rw/c/work 0 0\n";
        assert_eq!(
            merged_dir(m, Path::new("/run/vmbuild/rw/c/upper")),
            Some(PathBuf::from("/var/cache/vmbuild"))
        );
        assert_eq!(merged_dir(m, Path::new("/run/vmbuild/rw/x/upper")), None);
    }
}
