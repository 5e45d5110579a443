//! The interface between keeping images ([`super::ensure`]) and making
//! them ([`super::mmdebstrap`], or a test's fake): its own module so the
//! two depend on it and not on each other.

use std::collections::BTreeMap;
use std::path::Path;

use super::image::ImageFormat;
use super::spec::EnvSpec;
use crate::ImageError;

/// What a builder made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// The format of the image file it wrote.
    pub format: ImageFormat,
    /// Bytes used by the unpacked tree (for the record).
    pub rootfs_bytes: u64,
    /// Versions of the tools used, recorded in `image.json`.
    pub tools: BTreeMap<String, String>,
}

/// The step that turns a spec into an image file. [`super::MmdebstrapBuilder`] is
/// the real one; tests inject fakes.
pub trait EnvBuilder {
    /// Build `spec` (normalized, validated; cache key `key`) and write the
    /// image as `out/<format.file_name()>`. `out` is an empty directory on
    /// the cache's filesystem, renamed into place afterwards; anything else
    /// the builder leaves in it is kept, so scratch space must be removed.
    fn build(
        &self,
        spec: &EnvSpec,
        key: &str,
        out: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<BuildOutput, ImageError>;
}
