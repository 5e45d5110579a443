//! Removing build trees, which may belong to subordinate uids when
//! mmdebstrap ran unprivileged. Used by the builder for its scratch tree and
//! by the store for a killed build's leftovers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::pack::find_tool;
use super::run::run_streaming;

/// Remove a build tree, through mmdebstrap's unshare helper first when it
/// belongs to subordinate uids (`helper` given). Failures are logged.
pub(crate) fn remove_tree(path: &Path, helper: Option<&Path>) {
    if !path.exists() {
        return;
    }
    if let Some(h) = helper {
        let args: Vec<OsString> = vec![
            "--unshare-helper".into(),
            "rm".into(),
            "-rf".into(),
            path.into(),
        ];
        if let Err(e) = run_streaming(h, &args, &mut |_| {}) {
            tracing::warn!(%e, "cannot run the unshare helper to remove a build tree");
        }
    }
    if let Err(err) = std::fs::remove_dir_all(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %err, "cannot remove a build tree");
        }
    }
}

/// The helper to use for removing stale trees: mmdebstrap when not root.
pub(crate) fn cleanup_helper() -> Option<PathBuf> {
    if rustix::process::geteuid().is_root() {
        None
    } else {
        find_tool("mmdebstrap")
    }
}
