//! The host side of `--cache-dir`: make sure it is a usable directory.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::CacheError;

/// Makes `path` ready to be shared as the cache and returns its canonical
/// absolute path (what QEMU and virtiofsd are given).
///
/// A missing directory is created with its parents. A path that exists but
/// is not a directory (or is a dangling symlink) is an error, as is one we
/// cannot create or inspect; the error says why. Nothing is ever skipped
/// silently. Commas need no special treatment here: the QEMU argv builder
/// escapes them.
pub fn prepare_cache_dir(path: &Path) -> Result<PathBuf, CacheError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(CacheError::NotADirectory {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // `metadata` follows symlinks: a link to nowhere also lands here.
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(CacheError::DanglingSymlink {
                    path: path.to_owned(),
                });
            }
            std::fs::create_dir_all(path).map_err(|source| CacheError::CreateDir {
                path: path.to_owned(),
                source,
            })?;
            tracing::info!(path = %path.display(), "created cache dir");
        }
        Err(e) if e.kind() == ErrorKind::NotADirectory => {
            // A parent component is a file.
            return Err(CacheError::CreateDir {
                path: path.to_owned(),
                source: e,
            });
        }
        Err(source) => {
            return Err(CacheError::Inaccessible {
                path: path.to_owned(),
                source,
            })
        }
    }
    std::fs::canonicalize(path).map_err(|source| CacheError::Inaccessible {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_missing_dir_with_parents_and_returns_canonical_path() {
        let tmp = tempfile::tempdir().unwrap();
        let wanted = tmp.path().join("a/b/cache");
        let got = prepare_cache_dir(&wanted).unwrap();
        assert!(wanted.is_dir());
        assert!(got.is_absolute());
        assert_eq!(got, std::fs::canonicalize(&wanted).unwrap());
    }

    #[test]
    fn existing_dir_is_kept_and_canonicalised() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("c")).unwrap();
        std::fs::write(tmp.path().join("c/keep"), b"x").unwrap();
        let dotted = tmp.path().join("c/../c/.");
        let got = prepare_cache_dir(&dotted).unwrap();
        assert_eq!(got, std::fs::canonicalize(tmp.path().join("c")).unwrap());
        assert!(got.join("keep").exists());
    }

    #[test]
    fn symlink_to_dir_resolves_to_target() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let got = prepare_cache_dir(&tmp.path().join("link")).unwrap();
        assert_eq!(got, std::fs::canonicalize(tmp.path().join("real")).unwrap());
    }

    #[test]
    fn file_is_rejected_with_one_line_message() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("x");
        std::fs::write(&file, b"").unwrap();
        let err = prepare_cache_dir(&file).unwrap_err();
        assert!(matches!(err, CacheError::NotADirectory { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "--cache-dir {} exists and is not a directory",
                file.display()
            )),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn dangling_symlink_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &link).unwrap();
        let err = prepare_cache_dir(&link).unwrap_err();
        assert!(matches!(err, CacheError::DanglingSymlink { .. }), "{err:?}");
        assert!(
            !tmp.path().join("nowhere").exists(),
            "must not create the target"
        );
    }

    #[test]
    fn parent_that_is_a_file_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        let err = prepare_cache_dir(&tmp.path().join("file/sub")).unwrap_err();
        assert!(matches!(err, CacheError::CreateDir { .. }), "{err:?}");
        assert!(
            err.to_string().contains("cannot create --cache-dir"),
            "{err}"
        );
    }

    #[test]
    fn unwritable_parent_gives_permission_denied() {
        // Root ignores directory permissions, so only meaningful as non-root.
        if rustix::process::geteuid().is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let err = prepare_cache_dir(&ro.join("cache")).unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("permission denied"),
            "{err}"
        );
    }
}
