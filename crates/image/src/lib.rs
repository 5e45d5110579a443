//! Guest images for vmbuild, one module per concept:
//!
//! - [`kernel`]: kernel provisioning (the pinned Debian kernel, user
//!   kernels, the module closure, the pinned busybox);
//! - [`initramfs`]: the deterministic newc cpio writer and the cached
//!   initramfs;
//! - [`env`]: environment images, the root images vmbuild builds and
//!   caches from `environment.contents.packages`.
//!
//! Shared at the top: the cache root ([`cache_root`]), the error type and
//! atomic, build-once creation of cache entries.
//!
//! Cache layout under [`cache_root`]:
//!
//! ```text
//! kernels/<package>_<version>/   vmlinuz, vmlinux, lib/modules/<release>/, kernel.json
//! busybox/<package>_<version>/   bin/busybox, busybox.json
//! vmlinux/<sha256 of bzImage>    vmlinux extracted from a user bzImage
//! initramfs/<sha256>.cpio        initramfs archives, keyed by content
//! images/<key>/                  environment images (see [`env`])
//! ```

mod dirs;
pub mod env;
mod error;
pub mod initramfs;
pub mod kernel;
pub mod progress;
mod provision;

pub use dirs::{cache_root, cache_root_from};
pub use env::{
    ensure_env_image, list_images, prune_images, remove_image, validate_package_name, EnvImage,
    EnvSpec, ImageFormat,
};
pub use error::ImageError;
pub use initramfs::{
    build_initramfs, cpio, InitramfsContents, InitramfsSpec, FORMAT_VERSION, MODULES_LOAD,
};
pub use kernel::{
    busybox, busybox_applets, busybox_pin, bzimage, deb, decompress, guest_module_groups,
    guest_modules, kernel_pin, module_dir_candidates, modules, pinned_kernel_dir, resolve_kernel,
    resolve_kernel_with_progress, BusyboxPin, Kernel, KernelOrigin, KernelPin, KernelRequest,
};
pub use progress::Progress;
