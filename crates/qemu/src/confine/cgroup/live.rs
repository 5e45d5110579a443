//! Making and removing one VM's cgroup ([`super::CgroupPlan`]) on the
//! host.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CgroupPlan;

/// Why a VM's cgroup could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the VM's cgroup: {what} {}: {source}; run as root on a host with a writable cgroup hierarchy, or pass --unsafe-no-confinement (comparison only)", .path.display())]
pub struct CgroupError {
    /// What was being done (`mkdir`, `write`).
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// A VM's cgroup on the host; dropping it removes the VM's directories
/// (QEMU must be reaped first: a cgroup with a live task cannot go).
#[derive(Debug)]
pub struct Cgroup {
    plan: CgroupPlan,
}

impl Cgroup {
    /// Makes the directories and writes the limits of `plan`; on failure
    /// removes what it made.
    ///
    /// # Errors
    /// [`CgroupError`] naming the directory or file that failed.
    pub fn create(plan: CgroupPlan) -> Result<Cgroup, CgroupError> {
        let cg = Cgroup { plan };
        for d in &cg.plan.mkdirs {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && !cg.plan.remove.contains(d) => {}
                Err(source) => {
                    return Err(CgroupError {
                        what: "mkdir",
                        path: d.clone(),
                        source,
                    })
                }
            }
        }
        for d in cg
            .plan
            .mkdirs
            .iter()
            .filter(|d| !cg.plan.remove.contains(d))
        {
            sweep_stale(d, STALE_AFTER);
        }
        for w in &cg.plan.writes {
            match std::fs::write(&w.path, &w.value) {
                Ok(()) => {}
                Err(e) if w.optional && e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError {
                        what: "write",
                        path: w.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(cg)
    }

    /// The plan it was made from (limits, `cgroup.procs` files).
    pub fn plan(&self) -> &CgroupPlan {
        &self.plan
    }

    /// Whether the kernel killed a process of this cgroup for memory (v2
    /// `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`).
    pub fn oom_killed(&self) -> bool {
        self.plan.remove.iter().any(|d| {
            ["memory.events", "memory.oom_control"].iter().any(|f| {
                std::fs::read_to_string(d.join(f))
                    .map(|s| oom_kill_count(&s) > 0)
                    .unwrap_or(false)
            })
        })
    }
}

/// The `oom_kill N` count in a `memory.events` / `memory.oom_control` text.
pub fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.plan.remove {
            remove(d);
        }
    }
}

/// How old an empty VM cgroup must be before [`sweep_stale`] removes it:
/// a new one is empty only until its QEMU joins, seconds after it is made.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Removes the empty cgroups under `parent` older than `age`: those of
/// runs whose vmbuild was killed (SIGKILL) before it could remove them.
/// A cgroup with a task cannot be removed (EBUSY), so a running VM's stays
/// whatever its age.
pub fn sweep_stale(parent: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_dir)
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        if old && std::fs::remove_dir(e.path()).is_ok() {
            tracing::debug!("removed the stale cgroup {}", e.path().display());
        }
    }
}

/// rmdir, retrying briefly: the last task may still be leaving.
fn remove(dir: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc_ebusy()) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!("cannot remove the cgroup {}: {e}", dir.display());
                return;
            }
        }
    }
    tracing::warn!("cgroup {} still busy; left behind", dir.display());
}

fn libc_ebusy() -> i32 {
    rustix::io::Errno::BUSY.raw_os_error()
}
