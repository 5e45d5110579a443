//! Warm start (docs/warm-start.md): a guest saved right after its init said
//! Hello, before any job, and restored instead of booting.
//!
//! - [`key`]: what a snapshot depends on, and its key (pure)
//! - [`files`]: the snapshot store under vmbuild's cache, its checks
//! - `super::warm`: saving from a cold boot and restoring, on a live VM

pub mod files;
pub mod key;

pub use files::{Saved, SnapshotInfo, Snapshots, MAX_SNAPSHOTS};
