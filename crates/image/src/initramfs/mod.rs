//! The guest initramfs: init, optional busybox, and the kernel modules the
//! guest needs, as an uncompressed newc cpio cached by content hash under
//! `<cache_root>/initramfs/<sha256>.cpio`.
//!
//! Layout (the guest init relies on it):
//!
//! ```text
//! /init                              the guest init binary (0755)
//! /bin/busybox                       when given (0755)
//! /lib/modules/<release>/<relpath>   each module of the closure, uncompressed
//! /etc/vmbuild/modules.load          one absolute guest path per line, dependency order
//! /etc/vmbuild/modules.d/<fs>.load   modules loaded right before mounting a <fs>
//!                                    (same format; only what the boot set lacks)
//! /<applet path> -> /bin/busybox     busybox applet symlinks, when the list is known
//! /dev /proc /sys /run /etc /root /home (0755), /tmp (1777)
//! ```
//!
//! Loading a module costs 20-60 ms under TCG, so the boot set is only what
//! the control channel needs; filesystem modules load on demand.

mod build;
pub mod cpio;

pub use build::{build_initramfs, InitramfsContents, InitramfsSpec, FORMAT_VERSION, MODULES_LOAD};
