//! Applying a change stream (an OCI-style layer: files, `.wh.NAME`
//! whiteouts, `.wh..wh..opq` opaque markers) that was unpacked into a
//! staging directory by the hardened extractor onto a cache volume, for
//! `persist=on-success`.
//!
//! The staging tree is already safe (no `..`, no device nodes, no setuid,
//! nothing written through a link). The volume may hold anything earlier
//! builds left, symlinks included, so on its side every directory is
//! entered with `openat(O_NOFOLLOW | O_DIRECTORY)` from the volume root's
//! fd and every change is one `*at` call on a name in such a directory:
//! nothing is ever followed, so nothing outside the volume changes. Each
//! file and symlink lands with `renameat` from the staging directory (on the
//! same filesystem), so a reader sees the old file or the new one, never a
//! half-written one; hard links made by the build stay hard links.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::{io_err, ExportError};
use vmbuild_proto::{OPAQUE_MARKER, WHITEOUT_PREFIX};

/// What an apply did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Files and symlinks put in place.
    pub written: u64,
    /// Entries removed (whiteouts, replaced directories, cleared opaque dirs).
    pub removed: u64,
    /// Directories created or updated.
    pub dirs: u64,
}

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn show(name: &OsStr) -> String {
    super::printable(&name.to_string_lossy())
}

fn open_dir(at: impl AsFd, name: &OsStr, what: &str) -> Result<OwnedFd, ExportError> {
    rustix::fs::openat(at, name, DIR, Mode::empty())
        .map_err(|e| io_err(format!("opening {what} {}", show(name)), e))
}

fn names(dir: &OwnedFd) -> Result<Vec<OsString>, ExportError> {
    let mut out = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir).map_err(|e| io_err("listing a directory", e))?;
    while let Some(e) = d.read() {
        let e = e.map_err(|e| io_err("listing a directory", e))?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            out.push(n.to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

fn kind_at(dir: impl AsFd, name: &OsStr) -> Result<Option<FileType>, ExportError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err(format!("checking {}", show(name)), e)),
    }
}

/// Removes `name` in `dir` whatever it is, never following a link.
fn remove_at(dir: &OwnedFd, name: &OsStr, report: &mut ApplyReport) -> Result<(), ExportError> {
    match kind_at(dir, name)? {
        None => return Ok(()),
        Some(FileType::Directory) => {
            let sub = open_dir(dir, name, "directory")?;
            for n in names(&sub)? {
                remove_at(&sub, &n, report)?;
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()),
    }
    .map_err(|e| io_err(format!("removing {}", show(name)), e))?;
    report.removed += 1;
    Ok(())
}

/// Applies the staged tree `stage` onto `volume` (both existing
/// directories, on one filesystem). Staged files are moved, not copied:
/// the staging tree is consumed.
pub fn apply_changes(
    stage: &std::path::Path,
    volume: &std::path::Path,
) -> Result<ApplyReport, ExportError> {
    let s = rustix::fs::openat(CWD, stage, DIR, Mode::empty())
        .map_err(|e| io_err(format!("opening staged changes {}", stage.display()), e))?;
    let v = rustix::fs::openat(CWD, volume, DIR, Mode::empty())
        .map_err(|e| io_err(format!("opening volume {}", volume.display()), e))?;
    let mut report = ApplyReport::default();
    apply_dir(&s, &v, &mut report)?;
    Ok(report)
}

fn apply_dir(stage: &OwnedFd, vol: &OwnedFd, report: &mut ApplyReport) -> Result<(), ExportError> {
    let entries = names(stage)?;
    if entries.iter().any(|n| n == OPAQUE_MARKER) {
        for n in names(vol)? {
            remove_at(vol, &n, report)?;
        }
    }
    for name in entries {
        if name == OPAQUE_MARKER {
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let hidden = OsStr::from_bytes(hidden);
            if !hidden.is_empty() && hidden != "." && hidden != ".." {
                remove_at(vol, hidden, report)?;
            }
            continue;
        }
        match kind_at(stage, &name)? {
            Some(FileType::Directory) => {
                match kind_at(vol, &name)? {
                    Some(FileType::Directory) => {}
                    Some(_) => {
                        remove_at(vol, &name, report)?;
                        mkdir(vol, &name)?;
                    }
                    None => mkdir(vol, &name)?,
                }
                let (s, v) = (
                    open_dir(stage, &name, "staged directory")?,
                    open_dir(vol, &name, "volume directory")?,
                );
                apply_dir(&s, &v, report)?;
                let st = rustix::fs::fstat(&s).map_err(|e| io_err("reading a staged mode", e))?;
                rustix::fs::fchmod(&v, Mode::from_raw_mode(st.st_mode & 0o777))
                    .map_err(|e| io_err(format!("setting the mode of {}", show(&name)), e))?;
                report.dirs += 1;
            }
            Some(_) => {
                if kind_at(vol, &name)? == Some(FileType::Directory) {
                    remove_at(vol, &name, report)?;
                }
                rustix::fs::renameat(stage, &name, vol, &name)
                    .map_err(|e| io_err(format!("putting {} in place", show(&name)), e))?;
                report.written += 1;
            }
            None => {}
        }
    }
    Ok(())
}

fn mkdir(dir: &OwnedFd, name: &OsStr) -> Result<(), ExportError> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
        .map_err(|e| io_err(format!("creating directory {}", show(name)), e))
}

#[cfg(test)]
mod tests;
