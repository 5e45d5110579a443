//! `vmbuild snapshot ls | prune`: the warm-start snapshots
//! (docs/warm-start.md). Saving and restoring are automatic; this lists
//! them and frees their space.

use anyhow::{Context, Result};
use vmbuild_runner::vm::snapshot::Snapshots;

use crate::cli::SnapshotCommand;
use crate::human::{ago, human_size};

pub fn snapshot(cmd: SnapshotCommand) -> Result<()> {
    let dir = crate::runner_setup::snapshot_store(false)
        .context("no cache root: set XDG_CACHE_HOME or HOME, or VMBUILD_SNAPSHOTS")?;
    let store = Snapshots::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    match cmd {
        SnapshotCommand::Ls => {
            println!(
                "{:<12}  {:>10}  {:<10}  MACHINE",
                "SNAPSHOT", "SIZE", "LAST USED"
            );
            for s in store.list() {
                println!(
                    "{:<12}  {:>10}  {:<10}  {}",
                    &s.key[..12.min(s.key.len())],
                    human_size(s.bytes),
                    ago(s.last_used),
                    s.machine
                );
            }
        }
        SnapshotCommand::Prune { keep } => {
            let removed = store.prune_to(keep);
            for k in &removed {
                println!("removed {k}");
            }
            let left = store.keys().len();
            if left > keep {
                println!("{} in use by a running vmbuild, kept", left - keep);
            }
        }
    }
    Ok(())
}
