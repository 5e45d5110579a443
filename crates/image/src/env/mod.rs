//! Environment images: the root images vmbuild builds and caches itself.
//! Each is a Debian root filesystem with the packages a pipeline asks for
//! (`environment.contents.packages`), built once with mmdebstrap, packed
//! read-only (EROFS, or ext4 without erofs-utils) and booted by many builds
//! (the guest mounts it with a tmpfs overlay). `vmbuild image ls | build |
//! rm | prune` manages them.
//!
//! Names: an *environment image* is what this module builds and caches; a
//! *root image* is any erofs/ext4 file the guest runs commands in: an
//! environment image, or the user's own given with `--rootfs` (see
//! `vmbuild_runner::RootImage`).
//!
//! Layout, keyed by [`EnvSpec::key`]:
//!
//! ```text
//! <cache_root>/images/<key>/       rootfs.erofs | rootfs.ext4
//!                                  image.json   spec, format, created, sizes, tool versions
//!                                  last-used    its mtime is the last use (for prune)
//!                                  .complete    written last
//! <cache_root>/images/.<key>.lock  serializes builders and removers of <key>;
//!                                  builds using <key> hold it shared
//! <cache_root>/images/.tmp-<key>#* a build in progress (or a killed one's leftovers)
//! ```
//!
//! How the tree is built: see [`MmdebstrapBuilder`].

mod build_tree;
mod builder;
mod ensure;
mod image;
mod in_use;
mod mmdebstrap;
mod pack;
mod prune;
mod run;
mod spec;
mod store;

pub use builder::{BuildOutput, EnvBuilder};
pub use ensure::{ensure_env_image, ensure_env_image_with};
pub use image::{EnvImage, ImageFormat, ImageMeta, LAST_USED_FILE, META_FILE};
pub use in_use::{ensure_env_image_in_use, ensure_env_image_in_use_with, find_image_in_use, InUse};
pub use mmdebstrap::{
    customize_hook, error_summary, mmdebstrap_args, parse_unknown_packages, MmdebstrapBuilder,
    HOSTNAME, MOUNT_POINTS, SLIM_DPKG_OPTIONS,
};
pub use pack::{erofs_args, ext4_args, ext4_size, tree_usage, uuid_from_key, Packer, TreeUsage};
pub use prune::select_prune;
pub use spec::{
    debian_architecture, host_architecture, validate_package_name, EnvSpec, DEFAULT_SUITE,
    RECIPE_VERSION,
};
pub use store::{find_image, images_dir, list_images, prune_images, remove_image};
