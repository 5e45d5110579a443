//! Guest images for vmbuild: the pinned Debian kernel (fetched with apt,
//! unpacked, its uncompressed PVH vmlinux extracted), user kernels, the
//! kernel-module dependency closure, a deterministic newc cpio writer and
//! the cached initramfs.
//!
//! Cache layout under [`cache_root`]:
//!
//! ```text
//! kernels/<package>_<version>/   vmlinuz, vmlinux, lib/modules/<release>/, kernel.json
//! busybox/<package>_<version>/   bin/busybox, busybox.json
//! vmlinux/<sha256 of bzImage>    vmlinux extracted from a user bzImage
//! initramfs/<sha256>.cpio        initramfs archives, keyed by content
//! images/<key>/                  environment images (see [`rootfs`])
//! ```

mod busybox;
pub mod bzimage;
pub mod cpio;
pub mod deb;
pub mod decompress;
mod dirs;
mod error;
mod initramfs;
mod kernel;
mod kernel_image;
pub mod modules;
mod pins;
mod provision;
pub mod rootfs;
mod user_kernel;

pub use busybox::{busybox, busybox_applets};
pub use dirs::{cache_root, cache_root_from};
pub use error::ImageError;
pub use initramfs::{
    build_initramfs, InitramfsContents, InitramfsSpec, FORMAT_VERSION, MODULES_LOAD,
};
pub use kernel::{pinned_kernel_dir, resolve_kernel, KernelRequest};
pub use kernel_image::{Kernel, KernelOrigin};
pub use pins::{
    busybox_pin, guest_module_groups, guest_modules, kernel_pin, BusyboxPin, KernelPin,
};
pub use rootfs::{
    ensure_env_image, list_images, prune_images, remove_image, validate_package_name, EnvImage,
    EnvSpec, ImageFormat,
};
pub use user_kernel::module_dir_candidates;
