//! Gathering [`ConfineFacts`] on this host (the only impure part of the
//! decision): euid, the account, the QEMU probe, the cgroup hierarchy and
//! whether it is writable, `/dev/kvm`'s group.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::cgroup::{self, CgroupLayout};
use super::probe::QemuProbe;
use super::ConfineFacts;

/// The facts for a QEMU already probed.
pub fn gather(probe: &QemuProbe) -> ConfineFacts {
    ConfineFacts {
        euid: rustix::process::geteuid().as_raw(),
        account: super::user::choose_on_host(),
        sandbox: probe.sandbox,
        sandbox_error: probe.sandbox_error.clone(),
        cgroups: host_cgroups(),
        kvm_gid: std::fs::metadata("/dev/kvm").ok().map(|m| m.gid()),
        restricted_account: super::user::choose_restricted_on_host(),
    }
}

/// This host's hierarchy with memory and pids, if vmbuild can make
/// cgroups in it; else why not.
pub fn host_cgroups() -> Result<CgroupLayout, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let layout = cgroup::detect(&mountinfo, |p| {
        std::fs::read_to_string(p.join("cgroup.controllers")).ok()
    })
    .ok_or("no cgroup hierarchy with the memory and pids controllers is mounted")?;
    let roots: Vec<&Path> = match &layout {
        CgroupLayout::V1 { memory, pids } => vec![memory, pids],
        CgroupLayout::V2 { root } => vec![root],
    };
    for r in roots {
        if rustix::fs::access(r, rustix::fs::Access::WRITE_OK).is_err() {
            return Err(format!(
                "{} ({}) is not writable by vmbuild; run as root on the host (not in a container without cgroup delegation)",
                r.display(),
                layout.version()
            ));
        }
    }
    Ok(layout)
}
