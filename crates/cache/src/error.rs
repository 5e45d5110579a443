//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while preparing the cache directory or
/// resolving its mode (virtiofsd has its own
/// [`VirtiofsdError`](crate::virtiofsd::VirtiofsdError)).
///
/// Every message says what was being done, on what, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// `--cache-dir` names something that is not a directory.
    #[error("--cache-dir {} exists and is not a directory; pass a directory (it is created if missing)", .path.display())]
    NotADirectory { path: PathBuf },

    /// `--cache-dir` is a symlink whose target does not exist.
    #[error("--cache-dir {} is a symlink to a missing target; create the target directory or pass another path", .path.display())]
    DanglingSymlink { path: PathBuf },

    /// `--cache-dir` could not be inspected (e.g. a parent is not searchable).
    #[error("cannot access --cache-dir {}: {source}; check the permissions of the path and its parents", .path.display())]
    Inaccessible {
        path: PathBuf,
        source: std::io::Error,
    },

    /// `--cache-dir` was missing and could not be created.
    #[error("cannot create --cache-dir {}: {source}; create it yourself or pick a location you can write to", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A volume, its lock or the cache root could not be used.
    #[error("{what}: {source}; check the cache root (--cache-root, VMBUILD_CACHE_ROOT) and its permissions")]
    Volume {
        what: String,
        source: std::io::Error,
    },

    /// `vmbuild cache` was given a volume that is not under the cache root.
    #[error("no cache volume {name:?} under {}; see `vmbuild cache ls` (or pass --cache-root)", .root.display())]
    NoSuchVolume { name: String, root: PathBuf },

    /// A volume a remover needs is held by a build.
    #[error("cache volume {name} is in use by {}; wait for that build to finish (or stop it) and retry", .holder.map_or("another process".to_string(), |p| format!("pid {p}")))]
    VolumeHeld { name: String, holder: Option<u32> },

    /// A subpath to clear that could leave the volume.
    #[error("subpath {path:?}: {why}")]
    BadSubpath { path: String, why: String },

    /// `QEMU_USE_VIRTIOFS` has a value we do not understand.
    #[error("QEMU_USE_VIRTIOFS={value:?} is not understood; use 1, true or yes for read-write virtiofs, or 0, false, no or leave it unset for read-only 9p + overlay")]
    BadVirtiofsEnv { value: String },
}
