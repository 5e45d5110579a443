//! A cached environment image: its on-disk entry and metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::spec::EnvSpec;
use crate::ImageError;

/// Metadata file in an entry.
pub const META_FILE: &str = "image.json";
/// File whose mtime is the entry's last use.
pub use vmbuild_store::LAST_USED_FILE;

/// The filesystem an image is packed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// EROFS, lz4hc-compressed (preferred: smaller, read-only by design).
    Erofs,
    /// ext4 without a journal, used when `mkfs.erofs` is missing.
    Ext4,
}

impl ImageFormat {
    /// The image's file name in its entry: `rootfs.erofs` / `rootfs.ext4`.
    pub fn file_name(self) -> &'static str {
        match self {
            ImageFormat::Erofs => "rootfs.erofs",
            ImageFormat::Ext4 => "rootfs.ext4",
        }
    }

    /// The filesystem type to mount it with (`mount -t`).
    pub fn fs_type(self) -> &'static str {
        match self {
            ImageFormat::Erofs => "erofs",
            ImageFormat::Ext4 => "ext4",
        }
    }
}

/// A built environment image in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvImage {
    /// The image file (attach it read-only).
    pub path: PathBuf,
    /// Its filesystem.
    pub format: ImageFormat,
    /// The cache key ([`EnvSpec::key`]).
    pub key: String,
    /// Size of the image file in bytes.
    pub size: u64,
    /// What it contains (normalized).
    pub spec: EnvSpec,
    /// When it was built.
    pub created: SystemTime,
    /// When it was last returned by `ensure_env_image` (or built).
    pub last_used: SystemTime,
}

impl EnvImage {
    /// The first 12 characters of the key, as shown to users.
    pub fn short_key(&self) -> &str {
        short(&self.key)
    }
}

/// The first 12 characters of a key.
pub(crate) fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// Contents of `image.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// [`super::spec::RECIPE_VERSION`] it was built with.
    pub recipe: u32,
    /// The cache key.
    pub key: String,
    /// The normalized spec.
    pub spec: EnvSpec,
    /// The image's filesystem.
    pub format: ImageFormat,
    /// Build time, seconds since the epoch.
    pub created: u64,
    /// Seconds the build took.
    pub build_seconds: f64,
    /// Bytes used by the unpacked root filesystem.
    pub rootfs_bytes: u64,
    /// Size of the image file.
    pub image_bytes: u64,
    /// Versions of the tools used (`mmdebstrap`, `mkfs`).
    pub tools: BTreeMap<String, String>,
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Read the complete entry `dir` into an [`EnvImage`].
pub(crate) fn read_entry(dir: &Path) -> Result<EnvImage, ImageError> {
    let damaged = |reason: String| ImageError::BadCacheEntry {
        path: dir.to_path_buf(),
        reason,
    };
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path)
        .map_err(|e| damaged(format!("cannot read {META_FILE}: {e}")))?;
    let meta: ImageMeta =
        serde_json::from_str(&text).map_err(|e| damaged(format!("invalid {META_FILE}: {e}")))?;
    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    if dir_name.as_deref() != Some(meta.key.as_str()) {
        return Err(damaged(format!(
            "{META_FILE} is for key {}, not this directory",
            meta.key
        )));
    }
    let path = dir.join(meta.format.file_name());
    let size = std::fs::metadata(&path)
        .map_err(|e| damaged(format!("no image file {}: {e}", path.display())))?
        .len();
    let created = from_unix_secs(meta.created);
    let last_used = std::fs::metadata(dir.join(LAST_USED_FILE))
        .and_then(|m| m.modified())
        .unwrap_or(created);
    Ok(EnvImage {
        path,
        format: meta.format,
        key: meta.key,
        size,
        spec: meta.spec,
        created,
        last_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!(ImageFormat::Erofs.file_name(), "rootfs.erofs");
        assert_eq!(ImageFormat::Ext4.file_name(), "rootfs.ext4");
        assert_eq!(ImageFormat::Erofs.fs_type(), "erofs");
        assert_eq!(
            serde_json::to_string(&ImageFormat::Ext4).unwrap(),
            "\"ext4\""
        );
    }

    #[test]
    fn short_key() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
