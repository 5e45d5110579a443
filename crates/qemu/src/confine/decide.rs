//! The confinement decision: host facts and the VM's needs in, what QEMU
//! runs with out ([`ConfinePlan`]). Pure; `vmbuild doctor` prints
//! [`ConfinePlan::summary`].

use std::path::PathBuf;

use vmbuild_proc::confine::{Capability, Resource};
use vmbuild_proc::{Confinement, Ids};

use super::cgroup::{CgroupLayout, Limits};
use crate::argv::Accel;

/// QEMU's open-file limit: the 9p server closes idle descriptors of its
/// own above about 3/4 of it, so a guest walking a big cache does not hit it.
pub const NOFILE: u64 = 4096;
/// The process (thread) limit of the unprivileged uid, shared by every VM
/// running as it; each VM's own is its cgroup's [`PIDS`].
pub const NPROC: u64 = 4096;
/// Processes and threads in one VM's cgroup (QEMU runs 4-70 threads:
/// vCPUs, RCU, I/O and 9p worker pools).
pub const PIDS: u32 = 256;
/// The most any file QEMU writes may grow to (`RLIMIT_FSIZE`): the console
/// log and QEMU's own log, which a guest can flood. The limit covers every
/// file QEMU writes, so it is raised to the guest memory size with a
/// virtiofs share (guest RAM is then a memfd) and to the scratch disk's
/// size with one — the console log is then bounded by that instead.
pub const FILE_MAX: u64 = 64 << 20;
/// QEMU's own memory besides the guest's, under KVM/HVF.
pub const OVERHEAD_MIB: u64 = 256;
/// Under TCG QEMU also keeps a translation cache of up to 1 GiB.
pub const TCG_CODE_CACHE_MIB: u64 = 1024;

/// Who QEMU runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuUser {
    /// vmbuild is not root: QEMU runs as the caller, with no capabilities.
    Caller { uid: u32 },
    /// vmbuild is root: QEMU runs as this unprivileged account.
    Dropped {
        uid: u32,
        gid: u32,
        /// The account's name; `None` for the unused fallback id.
        name: Option<String>,
        /// Supplementary groups (`/dev/kvm`'s under KVM).
        groups: Vec<u32>,
    },
    /// `--unsafe-no-confinement`: as vmbuild itself, nothing given up.
    Unconfined,
}

/// What was found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfineFacts {
    pub euid: u32,
    /// `(uid, gid, name)` from [`super::user::choose`].
    pub account: (u32, u32, Option<String>),
    /// QEMU accepted the seccomp sandbox ([`super::probe`]).
    pub sandbox: bool,
    /// Why not, in QEMU's words.
    pub sandbox_error: Option<String>,
    /// A writable cgroup hierarchy with memory and pids, or why none.
    pub cgroups: Result<CgroupLayout, String>,
    /// The group owning `/dev/kvm`.
    pub kvm_gid: Option<u32>,
    /// The account for `--network user,restrict-host`
    /// ([`super::user::choose_restricted`]).
    pub restricted_account: Option<(u32, u32, Option<String>)>,
}

/// What this VM needs from QEMU's confinement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNeeds {
    pub memory_mib: u32,
    pub accel: Accel,
    /// Why QEMU must keep `CAP_DAC_READ_SEARCH` (it serves a read-only 9p
    /// export whose files may be root-only, or a boot file is not readable
    /// by its uid); `None` when it need not.
    pub read_search: Option<String>,
    /// Guest RAM is a memfd (virtiofs shares need it).
    pub memfd: bool,
    /// The scratch disk's size (0: none); QEMU writes it, so the file
    /// size limit must allow it.
    pub disk_bytes: u64,
    /// `--network user,restrict-host`: QEMU's connections to the host
    /// itself are rejected by a firewall rule on its (own) uid.
    pub restrict_host: bool,
}

/// What QEMU runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinePlan {
    pub user: QemuUser,
    /// QEMU keeps `CAP_DAC_READ_SEARCH`, and why.
    pub keep_read_search: Option<String>,
    pub sandbox: bool,
    /// The VM's cgroup hierarchy and limits, if it gets one.
    pub cgroup: Option<(CgroupLayout, Limits)>,
    pub rlimits: Vec<(Resource, u64)>,
    /// What is not in effect, and why.
    pub notes: Vec<String>,
    /// The uid whose traffic to the host the firewall must reject
    /// (`--network user,restrict-host`).
    pub firewall_uid: Option<u32>,
    /// Why this VM cannot be started as asked.
    pub refused: Option<String>,
}

/// The memory limit of a VM's cgroup: the guest's plus QEMU's overhead.
pub fn memory_limit_bytes(memory_mib: u32, accel: Accel) -> u64 {
    let extra = match accel {
        Accel::Tcg => OVERHEAD_MIB + TCG_CODE_CACHE_MIB,
        Accel::Kvm | Accel::Hvf => OVERHEAD_MIB,
    };
    (u64::from(memory_mib) + extra) << 20
}

/// Decides QEMU's confinement. `unconfined`: the unsafe opt-out, for
/// benchmarks only.
pub fn decide(facts: &ConfineFacts, needs: &VmNeeds, unconfined: bool) -> ConfinePlan {
    if unconfined {
        return ConfinePlan {
            user: QemuUser::Unconfined,
            keep_read_search: None,
            sandbox: false,
            cgroup: None,
            rlimits: Vec::new(),
            notes: vec![
                "--unsafe-no-confinement: QEMU runs with all of vmbuild's privileges".into(),
            ],
            firewall_uid: None,
            refused: needs.restrict_host.then(|| {
                "--network user,restrict-host relies on QEMU's confinement (its own uid); drop --unsafe-no-confinement".into()
            }),
        };
    }
    let mut notes = Vec::new();
    let root = facts.euid == 0;
    let mut refused = None;
    let account = if needs.restrict_host {
        if !root {
            refused = Some("--network user,restrict-host needs vmbuild to run as root (a host firewall rule on QEMU's own uid); use --network none, or user without restrict-host".to_string());
        }
        facts.restricted_account.clone().unwrap_or_else(|| {
            refused.get_or_insert_with(|| format!(
                "--network user,restrict-host: uid {} is taken by another account; create `useradd --system {}` for it",
                super::user::RESTRICTED_FALLBACK_ID,
                super::user::RESTRICTED_NAME
            ));
            facts.account.clone()
        })
    } else {
        facts.account.clone()
    };
    let (user, keep_read_search) = if root {
        let (uid, gid, name) = account;
        let groups = match (needs.accel, facts.kvm_gid) {
            (Accel::Kvm, Some(g)) => vec![g],
            _ => Vec::new(),
        };
        (
            QemuUser::Dropped {
                uid,
                gid,
                name,
                groups,
            },
            needs.read_search.clone(),
        )
    } else {
        (QemuUser::Caller { uid: facts.euid }, None)
    };
    if !facts.sandbox {
        notes.push(format!(
            "no seccomp sandbox: this QEMU refuses it ({}); install a QEMU built with seccomp",
            facts.sandbox_error.as_deref().unwrap_or("unknown reason")
        ));
    }
    let cgroup = match (&facts.cgroups, root) {
        (Ok(layout), true) => Some((
            layout.clone(),
            Limits {
                memory_bytes: memory_limit_bytes(needs.memory_mib, needs.accel),
                pids: PIDS,
            },
        )),
        (Ok(_), false) => {
            notes.push("no cgroup: vmbuild is not root".into());
            None
        }
        (Err(why), _) => {
            notes.push(format!("no cgroup: {why}"));
            None
        }
    };
    let memfd = if needs.memfd {
        u64::from(needs.memory_mib) << 20
    } else {
        0
    };
    let fsize = FILE_MAX.max(memfd).max(needs.disk_bytes);
    let mut rlimits = vec![
        (Resource::Nofile, NOFILE),
        (Resource::Core, 0),
        (Resource::Fsize, fsize),
    ];
    if root {
        rlimits.push((Resource::Nproc, NPROC));
    }
    let firewall_uid = match (&user, needs.restrict_host) {
        (QemuUser::Dropped { uid, .. }, true) => Some(*uid),
        _ => None,
    };
    ConfinePlan {
        user,
        keep_read_search,
        sandbox: facts.sandbox,
        cgroup,
        rlimits,
        notes,
        firewall_uid,
        refused,
    }
}

impl ConfinePlan {
    /// The [`Confinement`] for QEMU's child side, joining `cgroup_procs`;
    /// `None` when unconfined.
    pub fn confinement(&self, cgroup_procs: Vec<PathBuf>) -> Option<Confinement> {
        let ids = match &self.user {
            QemuUser::Unconfined => return None,
            QemuUser::Caller { .. } => None,
            QemuUser::Dropped {
                uid, gid, groups, ..
            } => Some(Ids {
                uid: *uid,
                gid: *gid,
                groups: groups.clone(),
            }),
        };
        let keep = if self.keep_read_search.is_some() {
            vec![Capability::CAP_DAC_READ_SEARCH]
        } else {
            Vec::new()
        };
        Some(Confinement {
            ids,
            keep,
            rlimits: self.rlimits.clone(),
            cgroup_procs,
        })
    }

    /// One line, e.g. `uid 64012 (vmbuild), keeps CAP_DAC_READ_SEARCH
    /// (read-only 9p export), seccomp sandbox, cgroup v1 memory 2.3G pids
    /// 256, nofile 4096, nproc 4096, core 0`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match &self.user {
            QemuUser::Unconfined => {
                return "UNCONFINED (--unsafe-no-confinement): all of vmbuild's privileges".into()
            }
            QemuUser::Caller { uid } => parts.push(format!("uid {uid} (vmbuild's own user)")),
            QemuUser::Dropped { uid, name, .. } => parts.push(match name {
                Some(n) => format!("uid {uid} ({n})"),
                None => format!("uid {uid} (unused id; `useradd --system vmbuild` to name it)"),
            }),
        }
        parts.push(match &self.keep_read_search {
            Some(why) => format!("keeps only CAP_DAC_READ_SEARCH ({why})"),
            None => "no capabilities".into(),
        });
        parts.push(
            if self.sandbox {
                "seccomp sandbox"
            } else {
                "NO seccomp sandbox"
            }
            .into(),
        );
        parts.push(match &self.cgroup {
            Some((layout, l)) => format!(
                "cgroup {} memory {} pids {}",
                layout.version(),
                human(l.memory_bytes),
                l.pids
            ),
            None => "no cgroup".into(),
        });
        if self.firewall_uid.is_some() {
            parts.push("host services unreachable (firewall)".into());
        }
        for (res, v) in &self.rlimits {
            let name = match res {
                Resource::Nofile => "nofile",
                Resource::Nproc => "nproc",
                Resource::Core => "core",
                Resource::Fsize => "files up to",
                _ => "rlimit",
            };
            parts.push(match res {
                Resource::Fsize => format!("{name} {}", human(*v)),
                _ => format!("{name} {v}"),
            });
        }
        parts.join(", ")
    }
}

/// `1.2G`, `768M`.
fn human(bytes: u64) -> String {
    let mib = bytes >> 20;
    if mib >= 1024 {
        format!("{:.1}G", mib as f64 / 1024.0)
    } else {
        format!("{mib}M")
    }
}

#[cfg(test)]
mod tests;
