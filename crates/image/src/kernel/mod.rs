//! Kernel provisioning: the pinned Debian kernel (fetched with apt,
//! unpacked, its uncompressed PVH vmlinux extracted), user kernels given
//! with `--kernel`, the kernel-module dependency closure, and the pinned
//! static busybox that is provisioned the same way.
//!
//! Cache layout under [`crate::cache_root`]:
//!
//! ```text
//! kernels/<package>_<version>/   vmlinuz, vmlinux, lib/modules/<release>/, kernel.json
//! busybox/<package>_<version>/   bin/busybox, busybox.json
//! vmlinux/<sha256 of bzImage>    vmlinux extracted from a user bzImage
//! ```

mod busybox;
pub mod bzimage;
pub mod deb;
pub mod decompress;
mod image;
pub mod modules;
mod pins;
mod resolve;
mod user;

pub use busybox::{busybox, busybox_applets};
pub use image::{Kernel, KernelOrigin};
pub use pins::{
    busybox_pin, guest_module_groups, guest_modules, kernel_pin, BusyboxPin, KernelPin,
};
pub use resolve::{pinned_kernel_dir, resolve_kernel, resolve_kernel_with_progress, KernelRequest};
pub use user::module_dir_candidates;
