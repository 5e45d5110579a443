//! Atomic, concurrency-safe creation of cache entries and files.
//!
//! An entry is built once under a lock and renamed into place complete
//! (see [`vmbuild_store`]), so a second process waits and then finds the
//! finished entry instead of downloading again. Single files are written
//! to a temp file and renamed over their place.

use std::io::Write;
use std::path::Path;

use vmbuild_store::Store;

use crate::error::io_err;
use crate::ImageError;

pub use vmbuild_store::is_complete;

/// Make sure the cache directory `dir` exists and is complete, building it
/// with `build` if not: [`Store::ensure`] on the store `dir` is in. `build`
/// fills the (empty) directory it is given; the marker and rename are done
/// there. Returns `Some(T)` when this call built it, `None` when it was
/// already there.
pub fn ensure_dir<T>(
    dir: &Path,
    build: impl FnOnce(&Path) -> Result<T, ImageError>,
) -> Result<Option<T>, ImageError> {
    let (parent, name) = split(dir)?;
    Store::new(parent).ensure(&name, build)
}

/// Write `data` to `path` atomically: a temp file in the same directory,
/// fsynced, then renamed over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let (parent, name) = split(path)?;
    std::fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{name}-"))
        .tempfile_in(parent)
        .map_err(io_err(format!(
            "creating a temp file in {}",
            parent.display()
        )))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io_err(format!("writing {}", tmp.path().display())))?;
    tmp.persist(path).map_err(|e| ImageError::Io {
        context: format!("renaming into {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

fn split(path: &Path) -> Result<(&Path, String), ImageError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_string_lossy().into_owned())),
        _ => Err(ImageError::Io {
            context: format!("{} is not a usable cache path", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        }),
    }
}

/// Creates `dir` and its parents, and makes `dir` mode 0755.
///
/// # Errors
/// [`ImageError::Io`] naming the directory.
pub(crate) fn mkdir_0755(dir: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("setting permissions of {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub").join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
