//! [`Confinement`]: what a helper process (QEMU) gives up between `fork`
//! and `exec` — the credentials and capabilities it runs with, its rlimits,
//! its cgroups, `PR_SET_NO_NEW_PRIVS`, and every inherited descriptor
//! beyond stdin/stdout/stderr.
//!
//! Everything is decided and opened in the parent ([`install`]); the hook
//! that runs in the forked child makes raw syscalls only (the `caps` crate's
//! calls allocate only when they fail, and then the spawn fails anyway).
//!
//! The order in the child matters:
//! 1. join the cgroups (writing `0` to each `cgroup.procs`, opened by the
//!    parent) while still privileged enough to write them;
//! 2. set the rlimits;
//! 3. as root: drop the bounding set to the kept capabilities (needs
//!    `CAP_SETPCAP` in the effective set, which a uid change clears), set
//!    `PR_SET_KEEPCAPS` when a capability is kept, then `setgroups`,
//!    `setresgid`, `setresuid`;
//! 4. inheritable, effective and permitted sets = the kept capabilities,
//!    ambient = the kept capabilities (so they survive `exec` of a plain
//!    binary), everything else cleared;
//! 5. `PR_SET_NO_NEW_PRIVS`;
//! 6. every descriptor from 3 up marked close-on-exec.
//!
//! A uid change clears the parent-death signal, so [`crate::Child::spawn`]
//! (which sets it in its own hook, registered after this one) must be
//! called after [`install`].

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

pub use caps::Capability;
pub use rustix::process::Resource;

/// The user and groups a confined process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
    /// Supplementary groups (e.g. `/dev/kvm`'s group); empty for none.
    pub groups: Vec<u32>,
}

/// What a child gives up before `exec`. See the module docs for the order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Confinement {
    /// Switch to these ids (only possible when the parent is root);
    /// `None`: keep the parent's.
    pub ids: Option<Ids>,
    /// Capabilities the child keeps (permitted, effective, inheritable and
    /// ambient). Only honoured together with `ids` when the parent is
    /// root; an unprivileged parent has none to give.
    pub keep: Vec<Capability>,
    /// Soft = hard limit for each resource. With [`Resource::Fsize`] the
    /// child also ignores SIGXFSZ: a write past the limit fails (EFBIG).
    pub rlimits: Vec<(Resource, u64)>,
    /// `cgroup.procs` files the child joins (v1: one per controller
    /// hierarchy; v2: one).
    pub cgroup_procs: Vec<PathBuf>,
}

/// Why a [`Confinement`] could not be prepared in the parent.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A `cgroup.procs` file could not be opened for writing.
    #[error("cannot open {} to put the process in its cgroup: {source}; run as root or pass no cgroup", .path.display())]
    Cgroup {
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// What `open` said.
        #[source]
        source: io::Error,
    },
    /// The running kernel's capabilities could not be read.
    #[error("cannot read the capability bounding set: {0}")]
    Caps(String),
}

/// Adds the confinement hook to `cmd`. Call before [`crate::Child::spawn`].
///
/// # Errors
/// [`ConfineError::Cgroup`] if a `cgroup.procs` file cannot be opened,
/// [`ConfineError::Caps`] if the bounding set cannot be read.
pub fn install(cmd: &mut Command, c: &Confinement) -> Result<(), ConfineError> {
    let cgroups = open_procs(&c.cgroup_procs)?;
    let root = rustix::process::geteuid().is_root();
    let ids = if root { c.ids.clone() } else { None };
    let keep: caps::CapsHashSet = if ids.is_some() {
        c.keep.iter().copied().collect()
    } else {
        caps::CapsHashSet::new()
    };
    // Bounding-set entries to drop, computed here: the child must not
    // allocate. An unprivileged parent cannot drop them (no CAP_SETPCAP).
    let bounding_drop: Vec<Capability> = if root {
        caps::read(None, caps::CapSet::Bounding)
            .map_err(|e| ConfineError::Caps(e.to_string()))?
            .into_iter()
            .filter(|cap| !keep.contains(cap))
            .collect()
    } else {
        Vec::new()
    };
    let groups: Vec<libc::gid_t> = ids.as_ref().map(|i| i.groups.clone()).unwrap_or_default();
    let rlimits = c.rlimits.clone();
    // Past RLIMIT_FSIZE a write fails with EFBIG instead of killing the
    // program with SIGXFSZ (an ignored signal stays ignored across exec).
    let ignore_xfsz = rlimits.iter().any(|(r, _)| *r == Resource::Fsize);
    // SAFETY: the hook runs in the forked child before exec. It only makes
    // syscalls (write, prlimit, prctl, setgroups/setres[ug]id, capget/
    // capset, close_range/fcntl) on data prepared above; it takes no lock
    // and allocates nothing on success (the caps crate formats a message
    // only on failure, after which exec is abandoned).
    unsafe {
        cmd.pre_exec(move || {
            for fd in &cgroups {
                join_cgroup(fd)?;
            }
            if ignore_xfsz {
                // signal() with SIG_IGN is async-signal-safe.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            for (res, limit) in &rlimits {
                rustix::process::setrlimit(
                    *res,
                    rustix::process::Rlimit {
                        current: Some(*limit),
                        maximum: Some(*limit),
                    },
                )?;
            }
            if let Some(ids) = &ids {
                for cap in &bounding_drop {
                    caps::drop(None, caps::CapSet::Bounding, *cap).map_err(caps_err)?;
                }
                switch_ids(ids, &groups, !keep.is_empty())?;
            }
            set_caps(&keep)?;
            no_new_privs()?;
            cloexec_from_3();
            Ok(())
        });
    }
    Ok(())
}

/// Adds only the cgroup part of a [`Confinement`] to `cmd`: the child
/// joins the cgroups of `procs` (`cgroup.procs` files) before `exec`, and
/// keeps its ids, capabilities and limits. For a helper that confines
/// itself (virtiofsd's own sandbox needs its capabilities) but must count
/// against its VM's memory and pids limits.
///
/// # Errors
/// [`ConfineError::Cgroup`] if a `cgroup.procs` file cannot be opened.
pub fn join_cgroups(cmd: &mut Command, procs: &[PathBuf]) -> Result<(), ConfineError> {
    let cgroups = open_procs(procs)?;
    if cgroups.is_empty() {
        return Ok(());
    }
    // SAFETY: the hook only writes one byte to descriptors opened above.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &cgroups {
                join_cgroup(fd)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// Opens each `cgroup.procs` file for writing, in the parent.
fn open_procs(procs: &[PathBuf]) -> Result<Vec<OwnedFd>, ConfineError> {
    procs
        .iter()
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .map(OwnedFd::from)
                .map_err(|source| ConfineError::Cgroup {
                    path: p.clone(),
                    source,
                })
        })
        .collect()
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `fd`
/// (`0` means "the writer", in v1 and v2 alike).
fn join_cgroup(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: writes one byte from a static buffer to an fd we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setgroups`, `setresgid`, `setresuid` as raw syscalls: this thread is
/// the only one in the child, and libc's wrappers would try to signal
/// threads that were not forked.
fn switch_ids(ids: &Ids, groups: &[libc::gid_t], keep_caps: bool) -> io::Result<()> {
    if keep_caps {
        prctl(libc::PR_SET_KEEPCAPS, 1)?;
    }
    // SAFETY: raw syscalls with plain integer arguments and a pointer to a
    // live slice of gids of the given length.
    let failed = unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setresgid, ids.gid, ids.gid, ids.gid) != 0
            || libc::syscall(libc::SYS_setresuid, ids.uid, ids.uid, ids.uid) != 0
    };
    if failed {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Inheritable, effective, permitted and ambient sets = `keep`; nothing
/// else. Lowering is always allowed, so this works unprivileged too.
fn set_caps(keep: &caps::CapsHashSet) -> io::Result<()> {
    use caps::CapSet;
    caps::clear(None, CapSet::Ambient).map_err(caps_err)?;
    caps::set(None, CapSet::Inheritable, keep).map_err(caps_err)?;
    caps::set(None, CapSet::Effective, keep).map_err(caps_err)?;
    caps::set(None, CapSet::Permitted, keep).map_err(caps_err)?;
    for cap in keep {
        caps::raise(None, CapSet::Ambient, *cap).map_err(caps_err)?;
    }
    Ok(())
}

fn no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(option, arg, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Marks every descriptor from 3 up close-on-exec, so the program gets
/// only stdin, stdout and stderr (std's own exec-error pipe already is).
fn cloexec_from_3() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with integer arguments; it only changes flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.11: flag them one by one up to the soft limit.
    // SAFETY: getdtablesize and fcntl take and return integers.
    let max = unsafe { libc::getdtablesize() }.clamp(3, 65_536);
    for fd in 3..max {
        // SAFETY: as above; unknown fds fail with EBADF, which is fine.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The caps crate's errors carry only a message; the errno is lost, so
/// this reports EPERM (what a refused capability change returns).
fn caps_err(_e: caps::errors::CapsError) -> io::Error {
    io::Error::from_raw_os_error(libc::EPERM)
}

#[cfg(test)]
mod tests;
