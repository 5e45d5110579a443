//! The staging directory an export is unpacked into, next to
//! `--output-dir`, and its atomic swap into place.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{RenameFlags, CWD};
use rustix::io::Errno;

use super::{io_err, ExportError};

/// A fresh directory next to the output directory that an export is
/// unpacked into. Removed on drop unless [`commit`](Self::commit)ted.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    pub(super) committed: bool,
}

/// The absolute output directory, its parent and its final name.
fn output_parts(output_dir: &Path) -> Result<(PathBuf, PathBuf, OsString), ExportError> {
    let invalid = |reason: &str| ExportError::InvalidOutputDir {
        path: output_dir.to_path_buf(),
        reason: reason.into(),
    };
    let abs = std::path::absolute(output_dir).map_err(|e| {
        io_err(
            format!("resolving output directory {}", output_dir.display()),
            e,
        )
    })?;
    let name = abs
        .file_name()
        .ok_or_else(|| invalid("it must end in a directory name (not `/`, `.` or `..`)"))?;
    let name = name.to_os_string();
    let parent = abs
        .parent()
        .ok_or_else(|| invalid("it has no parent directory"))?
        .to_path_buf();
    Ok((abs, parent, name))
}

/// Refuses an output directory that is a symlink or not a directory.
fn check_output_dir(abs: &Path) -> Result<bool, ExportError> {
    match std::fs::symlink_metadata(abs) {
        Ok(m) if m.file_type().is_symlink() => Err(ExportError::OutputIsSymlink {
            path: abs.to_path_buf(),
        }),
        Ok(m) if !m.is_dir() => Err(ExportError::OutputNotDirectory {
            path: abs.to_path_buf(),
        }),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(
            format!("checking output directory {}", abs.display()),
            e,
        )),
    }
}

fn hidden_dir(parent: &Path, name: &OsStr, kind: &str) -> Result<PathBuf, ExportError> {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(format!(".vmbuild-{kind}-"));
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(parent)
        .map(tempfile::TempDir::keep)
        .map_err(|e| {
            io_err(
                format!("creating a {kind} directory in {}", parent.display()),
                e,
            )
        })
}

/// Creates a fresh `.<name>.vmbuild-partial-XXXX` directory next to
/// `output_dir` (same filesystem, so the final rename is atomic), creating
/// the parent if missing. Fails early if `output_dir` is a symlink or a
/// non-directory.
pub fn staging_dir(output_dir: &Path) -> Result<StagingDir, ExportError> {
    let (abs, parent, name) = output_parts(output_dir)?;
    check_output_dir(&abs)?;
    std::fs::create_dir_all(&parent).map_err(|e| {
        io_err(
            format!("creating the parent of output directory {}", abs.display()),
            e,
        )
    })?;
    let path = hidden_dir(&parent, &name, "partial")?;
    Ok(StagingDir {
        path,
        committed: false,
    })
}

impl StagingDir {
    /// Where to extract into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the staged outputs at `output_dir` (the same path given to
    /// [`staging_dir`]). An existing output directory is swapped out
    /// atomically (`renameat2(RENAME_EXCHANGE)`; on filesystems without it,
    /// renamed aside to `.<name>.vmbuild-old-XXXX` first) and then removed.
    /// A symlink or non-directory at `output_dir` is refused, not replaced.
    pub fn commit(mut self, output_dir: &Path) -> Result<(), ExportError> {
        let (abs, parent, name) = output_parts(output_dir)?;
        if self.path.parent() != Some(parent.as_path()) {
            return Err(ExportError::InvalidOutputDir {
                path: abs,
                reason: format!(
                    "the staging directory {} was made for another directory",
                    self.path.display()
                ),
            });
        }
        let ctx = || {
            format!(
                "moving the outputs from {} to {}",
                self.path.display(),
                abs.display()
            )
        };
        if !check_output_dir(&abs)? {
            std::fs::rename(&self.path, &abs).map_err(|e| io_err(ctx(), e))?;
            self.committed = true;
            return Ok(());
        }
        match rustix::fs::renameat_with(CWD, &self.path, CWD, &abs, RenameFlags::EXCHANGE) {
            Ok(()) => {
                // `self.path` now holds the previous outputs.
                self.committed = true;
                remove_old(&self.path);
                Ok(())
            }
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                let old = replace_by_renames(&self.path, &abs, &parent, &name)?;
                self.committed = true;
                remove_old(&old);
                Ok(())
            }
            Err(e) => Err(io_err(ctx(), e)),
        }
    }
}

/// The fallback when the filesystem cannot exchange two directories: move
/// `target` aside to `.<name>.vmbuild-old-XXXX`, move `staging` to `target`
/// (putting the old one back if that fails). Returns where the old one went.
pub(super) fn replace_by_renames(
    staging: &Path,
    target: &Path,
    parent: &Path,
    name: &OsStr,
) -> Result<PathBuf, ExportError> {
    let ctx = || {
        format!(
            "moving the outputs from {} to {}",
            staging.display(),
            target.display()
        )
    };
    let old = hidden_dir(parent, name, "old")?;
    // Replaces the empty placeholder `old` (a directory may be renamed onto an empty one).
    if let Err(e) = std::fs::rename(target, &old) {
        let _ = std::fs::remove_dir(&old);
        return Err(io_err(ctx(), e));
    }
    if let Err(e) = std::fs::rename(staging, target) {
        let _ = std::fs::rename(&old, target);
        return Err(io_err(ctx(), e));
    }
    Ok(old)
}

fn remove_old(path: &Path) {
    if let Err(e) = remove_tree(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove the previous outputs; delete them by hand");
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the partial outputs; delete them by hand");
            }
        }
    }
}

/// `remove_dir_all` that also copes with directories the build made
/// read-only (it never follows symlinks).
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let _ = std::fs::set_permissions(
            &dir,
            std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
        );
        if let Ok(list) = std::fs::read_dir(&dir) {
            stack.extend(list.flatten().map(|e| e.path()));
        }
    }
    std::fs::remove_dir_all(path)
}
