//! Confining QEMU for one VM (docs/security.md): probe the QEMU binary,
//! decide its uid, kept capability, sandbox, cgroup and rlimits
//! (`vmbuild_qemu::confine::decide`, pure), then prepare what the
//! unprivileged QEMU must open — the run dir, its sockets and the console
//! log — and make the VM's cgroup.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::options::VmOptions;
use vmbuild_proc::Confinement;
use vmbuild_proto::CacheMode;
use vmbuild_qemu::confine::cgroup::live::Cgroup;
use vmbuild_qemu::confine::probe::{self, QemuProbe};
use vmbuild_qemu::confine::{self as qc, ConfinePlan, QemuUser, VmNeeds};
use vmbuild_qemu::Accel;

use crate::error::RunError;

/// QEMU's confinement for one VM, ready to spawn with. Field order is
/// drop order: the cgroup goes after QEMU (held by the `Vm`) is reaped.
#[derive(Debug)]
pub struct Confined {
    pub plan: ConfinePlan,
    pub probe: QemuProbe,
    /// What QEMU's child side applies; `None` when unconfined.
    pub child: Option<Confinement>,
    pub cgroup: Option<Cgroup>,
}

impl Confined {
    /// The uid QEMU runs as when vmbuild drops to one.
    fn dropped_to(&self) -> Option<(u32, u32)> {
        match self.plan.user {
            QemuUser::Dropped { uid, gid, .. } => Some((uid, gid)),
            _ => None,
        }
    }

    /// The `cgroup.procs` files of the VM's cgroup (none without one):
    /// what QEMU and its virtiofsd daemons join.
    pub fn cgroup_procs(&self) -> Vec<std::path::PathBuf> {
        self.cgroup
            .as_ref()
            .map(|c| c.plan().procs.clone())
            .unwrap_or_default()
    }

    /// Gives QEMU's uid a socket another process made (virtiofsd's).
    ///
    /// # Errors
    /// What `chown` says.
    pub fn hand_over(&self, path: &Path) -> Result<(), RunError> {
        match self.dropped_to() {
            Some((uid, gid)) => chown(path, uid, gid),
            None => Ok(()),
        }
    }
}

/// Probes `qemu` (cached) and decides its confinement for the VM of
/// `opts` under `accel`, whose files QEMU must read are `boot_files`.
pub fn decide(
    qemu: &Path,
    opts: &VmOptions,
    accel: Accel,
    boot_files: &[&Path],
) -> (QemuProbe, ConfinePlan) {
    // A binary that cannot say its version gets no sandbox (and is not
    // cached); if it is no QEMU at all, its own start error says so next.
    let found = probe::probe(qemu, probe::default_cache_dir().as_deref()).unwrap_or_else(|why| {
        tracing::debug!(%why, "QEMU probe failed; no seccomp sandbox");
        QemuProbe {
            version: vmbuild_qemu::QemuVersion::new(0, 0, 0),
            sandbox: false,
            sandbox_error: Some(why),
        }
    });
    let facts = qc::facts::gather(&found);
    let restrict_host = opts.restrict_host && opts.network == vmbuild_qemu::Network::User;
    let (uid, gid, _) = match (&facts.restricted_account, restrict_host) {
        (Some(a), true) => a.clone(),
        _ => facts.account.clone(),
    };
    let shares = &opts.shares;
    let read_search = if shares.iter().any(|s| s.mode == CacheMode::Overlay) {
        Some("read-only 9p export".to_string())
    } else {
        boot_files
            .iter()
            .find(|f| !readable_by(f, uid, gid))
            .map(|f| format!("{} is not readable by uid {uid}", f.display()))
    };
    let needs = VmNeeds {
        memory_mib: opts.memory_mib,
        accel,
        read_search,
        memfd: shares.iter().any(|s| s.mode == CacheMode::Virtiofs),
        disk_bytes: opts.disk_bytes.unwrap_or(0),
        restrict_host,
    };
    let plan = qc::decide(&facts, &needs, opts.unconfined);
    (found, plan)
}

/// Prepares the run dir for QEMU's uid and makes the VM's cgroup (named
/// after the run dir, so it is unique): the run dir `root:GID 0710`,
/// the sockets QEMU connects to and the console log it writes owned by
/// QEMU's uid, mode 0600, and so is the scratch disk.
///
/// # Errors
/// [`RunError::Io`] when a chown/chmod fails, [`RunError::Cgroup`] when the
/// cgroup cannot be made.
pub fn prepare(
    probe: QemuProbe,
    plan: ConfinePlan,
    rundir: &Path,
    sockets: &[&Path],
    console_log: &Path,
    scratch: Option<&Path>,
) -> Result<Confined, RunError> {
    let mut confined = Confined {
        plan,
        probe,
        child: None,
        cgroup: None,
    };
    if let Some((uid, gid)) = confined.dropped_to() {
        chown(rundir, 0, gid)?;
        chmod(rundir, 0o710)?;
        for s in sockets {
            chown(s, uid, gid)?;
            chmod(s, 0o600)?;
        }
        hand_over_console_log(console_log, uid, gid)?;
        if let Some(f) = scratch {
            chown(f, uid, gid)?;
            chmod(f, 0o600)?;
        }
    }
    if let Some((layout, limits)) = &confined.plan.cgroup {
        let name = rundir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("vmbuild-{}", std::process::id()));
        let cg = Cgroup::create(qc::cgroup::plan(layout, &name, *limits))?;
        confined.cgroup = Some(cg);
    }
    confined.child = confined.plan.confinement(confined.cgroup_procs());
    Ok(confined)
}

/// Creates (or truncates) the console log and gives it to QEMU's uid,
/// through one descriptor: it may be a user's `--console-log` path outside
/// the private run dir, so a symlink there is refused rather than followed
/// (no chown of whatever it points to).
fn hand_over_console_log(path: &Path, uid: u32, gid: u32) -> Result<(), RunError> {
    use rustix::fs::{Mode, OFlags};
    let err = |e: rustix::io::Errno| {
        RunError::io(
            format!(
                "cannot create the console log {} for QEMU's uid {uid} (a symlink there is refused)",
                path.display()
            ),
            e.into(),
        )
    };
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o600)).map_err(err)?;
    rustix::fs::fchown(
        &fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(err)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(err)
}

/// Whether `uid`/`gid` (no supplementary groups) may read `path` by its
/// mode bits: search on every ancestor, read on the file. ACLs are not
/// looked at, so a file an ACL opens counts as unreadable (QEMU then keeps
/// `CAP_DAC_READ_SEARCH`: the safe side for the run, not the strict one).
pub fn readable_by(path: &Path, uid: u32, gid: u32) -> bool {
    let allowed = |p: &Path, bits: u32| {
        std::fs::metadata(p).is_ok_and(|m| {
            let mode = m.mode();
            let shift = if m.uid() == uid {
                6
            } else if m.gid() == gid {
                3
            } else {
                0
            };
            (mode >> shift) & bits == bits
        })
    };
    let Ok(abs) = std::fs::canonicalize(path) else {
        return false;
    };
    abs.ancestors().skip(1).all(|d| allowed(d, 0o1)) && allowed(&abs, 0o4)
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), RunError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
        RunError::io(
            format!("cannot hand {} to QEMU's uid {uid}", path.display()),
            e,
        )
    })
}

fn chmod(path: &Path, mode: u32) -> Result<(), RunError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| RunError::io(format!("cannot chmod {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_log_is_handed_over_but_a_symlink_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        std::fs::write(&log, "old").unwrap();
        hand_over_console_log(&log, 64_012, 64_012).unwrap();
        let md = std::fs::metadata(&log).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.len(), md.mode() & 0o777),
            (64_012, 64_012, 0, 0o600)
        );
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = d.path().join("link.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = hand_over_console_log(&link, 64_012, 64_012)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symlink"), "{e}");
        let md = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            (md.uid(), std::fs::read_to_string(&victim).unwrap().as_str()),
            (0, "keep")
        );
    }

    #[test]
    fn readability_follows_mode_bits_along_the_path() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let me = rustix::process::geteuid().as_raw();
        let other = if me == 64_012 { 64_013 } else { 64_012 };
        assert!(readable_by(&f, other, other));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!readable_by(&f, other, other), "file not readable");
        assert!(readable_by(&f, me, 0), "owner reads 0600");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!readable_by(&f, other, other), "directory not searchable");
        assert!(!readable_by(&d.path().join("missing"), other, other));
    }
}
