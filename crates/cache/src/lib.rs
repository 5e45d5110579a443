//! The shared cache of vmbuild, host side.
//!
//! A host directory (`--cache-dir`) is shared into the guest at
//! [`vmbuild_proto::GUEST_CACHE_DIR`] (alias [`vmbuild_proto::GUEST_CACHE_ALIAS`]),
//! either as read-only 9p with a guest overlay (writes discarded, the
//! default) or as read-write virtiofs (`QEMU_USE_VIRTIOFS=1`, writes
//! persist). This crate:
//!
//! - prepares the host directory ([`prepare_cache_dir`]),
//! - resolves the sharing mode ([`resolve_mode`], [`describe`]),
//! - owns cache policy for the VM plan: what is shared, how and where it
//!   appears in the guest ([`CacheShare`], [`SharedDir`]), which
//!   per-language variables and symlinks point tools into it
//!   ([`env_layers`], [`links_for`], [`cache_env_defaults`],
//!   [`symlink_defaults`], [`docs_table`]),
//! - re-exports virtiofsd lookup and supervision ([`virtiofsd`]), which live
//!   next to QEMU in `vmbuild_qemu::virtiofsd` (a VM device backend).

mod dir;
mod docs_table;
mod env_defaults;
mod error;
mod mode;
mod share;
mod symlink_setup;
pub mod volume;

pub use dir::prepare_cache_dir;
pub use docs_table::docs_table;
pub use env_defaults::{cache_env_defaults, symlink_defaults, EnvDefault, SymlinkDefault};
pub use error::CacheError;
pub use mode::{describe, resolve_mode, resolve_mode_from_env, USE_VIRTIOFS_ENV};
pub use share::{env_layers, links_for, CacheShare, SharedDir};
pub use symlink_setup::applicable_symlinks;
pub use virtiofsd::Virtiofsd;
pub use vmbuild_proto::{CacheMode, GUEST_CACHE_ALIAS, GUEST_CACHE_DIR, GUEST_HOME};
pub use vmbuild_qemu::virtiofsd;
