//! A keyed store of cache directories, shared by everything vmbuild caches
//! as whole directories (kernels, busybox, environment images; next, named
//! cache volumes).
//!
//! A [`Store`] is one directory holding one entry per key:
//!
//! ```text
//! <dir>/<key>/          an entry; complete once `.complete` is in it
//! <dir>/.<key>.lock     flock: exclusive for builders and removers of
//!                       <key>, shared while a user holds the entry
//! <dir>/.tmp-<key>#*    a build or removal in progress, or a killed one's
//!                       leftovers (removed once the lock is free)
//! ```
//!
//! - [`Store::ensure`] builds an entry once: concurrent callers (threads or
//!   processes) wait on the lock and then find it complete. A build fills a
//!   temp dir that is renamed into place after the marker is written, so a
//!   failed or killed build leaves no entry.
//! - [`Store::hold`] takes the lock shared for as long as an entry is used;
//!   [`Store::remove`] and [`Store::prune`] skip held entries instead of
//!   deleting them under their user, and `prune` with `dry_run` reports
//!   exactly what a real prune would remove.
//! - Locks are `flock`s, so the kernel releases them when their holder
//!   dies: nothing is left "locked" by a killed process.
//! - [`select_lru`] picks what a prune removes, least recently used first,
//!   by age and total size, for anything [`Prunable`].

mod error;
mod lock;
mod lru;
mod store;

pub use error::StoreError;
pub use lock::Lock;
pub use lru::{select_lru, Prunable};
pub use store::{is_complete, Building, Removal, Store, COMPLETE_MARKER, LAST_USED_FILE};
