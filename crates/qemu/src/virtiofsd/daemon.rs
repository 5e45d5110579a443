//! Running virtiofsd: start it, wait for its socket while watching it,
//! stop it, and leave nothing behind.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Pid;
use vmbuild_proc::{Child, Output, ProcError, Signal};

use crate::virtiofsd::procs::{has_member_in_new_pid_ns, other_group_members};
use crate::virtiofsd::VirtiofsdError;
use crate::virtiofsd::{
    build_args, default_sandbox, find_virtiofsd_on_host, probe, Flavor, VirtiofsdArgs,
};

/// How long [`Virtiofsd::start`] waits for the socket.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Virtiofsd::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(5);
const TAIL_LINES: usize = 20;

/// A running virtiofsd, in its own process group (a [`vmbuild_proc::Child`]).
///
/// Stop it with [`Virtiofsd::stop`]; dropping it also stops it (blocking for
/// at most ~0.5 s, then SIGKILL). Either way the process group is killed and reaped and
/// the socket removed. On Linux the daemon also gets SIGKILL if the thread
/// that started it dies (PDEATHSIG), so start it from a thread that lives as
/// long as the VM (a tokio worker or the main thread, not `spawn_blocking`).
#[derive(Debug)]
pub struct Virtiofsd {
    child: Option<Child>,
    pid: Pid,
    flavor: Flavor,
    socket_path: PathBuf,
    log_path: PathBuf,
}

/// The `--rlimit-nofile` virtiofsd gets from this process (see
/// `args::nofile_for`): how many inodes of a share it can hold open.
pub fn nofile_limit() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    crate::virtiofsd::args::nofile_for(can_raise_limits(), hard)
}

/// Whether this process may raise a hard rlimit (`CAP_SYS_RESOURCE`; root
/// in a container may lack it).
fn can_raise_limits() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false)
}

/// Raises the child's descriptor limit to `n` before exec when it is
/// above the current hard limit and we may ([`can_raise_limits`]);
/// virtiofsd then only lowers or keeps it.
fn raise_nofile(cmd: &mut std::process::Command, n: u64) {
    use std::os::unix::process::CommandExt;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    if !can_raise_limits() || hard.is_none_or(|h| h >= n) {
        return;
    }
    // SAFETY: the hook makes one prlimit syscall on a copied integer.
    unsafe {
        cmd.pre_exec(move || {
            let lim = rustix::process::Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            Ok(rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                lim,
            )?)
        });
    }
}

impl Virtiofsd {
    /// Starts `binary` sharing `shared_dir` on `socket_path`, with the
    /// safest sandbox for this flavour and user (see
    /// [`default_sandbox`]), and waits up to [`SOCKET_TIMEOUT`] for the
    /// socket. Its stdout and stderr go to `log_path` (truncated).
    pub async fn start(
        binary: &Path,
        flavor: Flavor,
        shared_dir: &Path,
        socket_path: &Path,
        log_path: &Path,
    ) -> Result<Virtiofsd, VirtiofsdError> {
        let args = Self::default_args(binary, flavor, shared_dir, socket_path)?;
        Self::start_with(binary, flavor, &args, log_path, SOCKET_TIMEOUT).await
    }

    /// Finds virtiofsd the usual way ([`find_virtiofsd_on_host`]), tells
    /// its flavour ([`probe`]) and [`start`](Virtiofsd::start)s it.
    pub async fn start_found(
        shared_dir: &Path,
        socket_path: &Path,
        log_path: &Path,
    ) -> Result<Virtiofsd, VirtiofsdError> {
        Self::start_found_in(shared_dir, socket_path, log_path, &[]).await
    }

    /// [`Virtiofsd::start_found`], with the daemon (and the sandboxed
    /// worker it forks) in the cgroups of `cgroup_procs` (`cgroup.procs`
    /// files: its VM's), so it counts against the VM's memory and pids
    /// limits.
    pub async fn start_found_in(
        shared_dir: &Path,
        socket_path: &Path,
        log_path: &Path,
        cgroup_procs: &[PathBuf],
    ) -> Result<Virtiofsd, VirtiofsdError> {
        let binary = find_virtiofsd_on_host()?;
        let info = probe(&binary).await?;
        let args = Self::default_args(&binary, info.flavor, shared_dir, socket_path)?;
        Self::spawn(
            &binary,
            info.flavor,
            &args,
            log_path,
            SOCKET_TIMEOUT,
            cgroup_procs,
        )
        .await
    }

    /// [`Virtiofsd::start`] with an explicit sandbox and socket timeout.
    pub async fn start_with(
        binary: &Path,
        flavor: Flavor,
        args: &VirtiofsdArgs,
        log_path: &Path,
        timeout: Duration,
    ) -> Result<Virtiofsd, VirtiofsdError> {
        Self::spawn(binary, flavor, args, log_path, timeout, &[]).await
    }

    /// The arguments for sharing `shared_dir` on `socket_path`: the
    /// safest sandbox for `flavor` and this user ([`default_sandbox`]) and
    /// [`nofile_limit`].
    fn default_args(
        binary: &Path,
        flavor: Flavor,
        shared_dir: &Path,
        socket_path: &Path,
    ) -> Result<VirtiofsdArgs, VirtiofsdError> {
        let root = rustix::process::geteuid().is_root();
        let sandbox =
            default_sandbox(flavor, root).ok_or_else(|| VirtiofsdError::CFlavorNeedsRoot {
                binary: binary.to_owned(),
            })?;
        Ok(VirtiofsdArgs {
            socket_path: socket_path.to_owned(),
            shared_dir: shared_dir.to_owned(),
            sandbox,
            rlimit_nofile: nofile_limit(),
        })
    }

    async fn spawn(
        binary: &Path,
        flavor: Flavor,
        args: &VirtiofsdArgs,
        log_path: &Path,
        timeout: Duration,
        cgroup_procs: &[PathBuf],
    ) -> Result<Virtiofsd, VirtiofsdError> {
        let argv = build_args(flavor, args)?;
        let socket = &args.socket_path;
        if std::fs::symlink_metadata(socket).is_ok() {
            return Err(VirtiofsdError::SocketExists {
                path: socket.clone(),
            });
        }
        let mut cmd = std::process::Command::new(binary);
        cmd.args(&argv);
        raise_nofile(&mut cmd, args.rlimit_nofile);
        vmbuild_proc::confine::join_cgroups(&mut cmd, cgroup_procs)
            .map_err(|e| VirtiofsdError::Cgroup(e.to_string()))?;
        let child = Child::spawn(cmd, Output::Log(log_path.to_owned()), Signal::KILL).map_err(
            |e| match e {
                ProcError::LogFile { path, source } => VirtiofsdError::Log { path, source },
                ProcError::Spawn { source, .. } => VirtiofsdError::Spawn {
                    binary: binary.to_owned(),
                    source,
                },
            },
        )?;
        let pid = child.pid();
        tracing::info!(
            pid = pid.as_raw_pid(),
            binary = %binary.display(),
            %flavor,
            sandbox = %args.sandbox,
            socket = %socket.display(),
            "started virtiofsd"
        );
        if flavor == Flavor::Rust {
            tracing::warn!("{}", crate::virtiofsd::LOCKS_NOT_SHARED);
        }
        let mut me = Virtiofsd {
            child: Some(child),
            pid,
            flavor,
            socket_path: socket.clone(),
            log_path: log_path.to_owned(),
        };
        // The Rust flavour creates its socket and then forks its sandboxed
        // worker; stopping it between the two would orphan the worker, so
        // it is ready only once the worker exists too.
        let needs_worker = cfg!(target_os = "linux")
            && flavor == Flavor::Rust
            && args.sandbox == crate::virtiofsd::Sandbox::Namespace;
        me.wait_until_ready(binary, timeout, needs_worker).await?;
        Ok(me)
    }

    async fn wait_until_ready(
        &mut self,
        binary: &Path,
        timeout: Duration,
        needs_worker: bool,
    ) -> Result<(), VirtiofsdError> {
        let started = Instant::now();
        loop {
            let status = match self.child.as_mut() {
                Some(c) => c.try_wait().map_err(|source| VirtiofsdError::Supervise {
                    pid: self.pid.as_raw_pid(),
                    source,
                })?,
                None => None,
            };
            if let Some(status) = status {
                self.child = None;
                self.cleanup_files();
                return Err(VirtiofsdError::EarlyExit {
                    binary: binary.to_owned(),
                    status: status.to_string(),
                    socket: self.socket_path.clone(),
                    log: self.log_path.clone(),
                    log_tail: read_tail(&self.log_path),
                });
            }
            if is_socket(&self.socket_path) && (!needs_worker || has_member_in_new_pid_ns(self.pid))
            {
                tracing::debug!(elapsed = ?started.elapsed(), "virtiofsd is ready");
                return Ok(());
            }
            if started.elapsed() >= timeout {
                self.stop().await?;
                return Err(VirtiofsdError::SocketTimeout {
                    binary: binary.to_owned(),
                    socket: self.socket_path.clone(),
                    timeout,
                    log: self.log_path.clone(),
                    log_tail: read_tail(&self.log_path),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the daemon exits by itself or is killed; pending forever
    /// once it was stopped. Cancel-safe: the exit status is kept for
    /// [`Virtiofsd::stop`].
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_pid()
    }

    /// The vhost-user socket to give QEMU.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops it: SIGTERM to the daemon's forked workers first (so the
    /// leader reaps them and exits by itself), then, if the leader is still
    /// there, SIGTERM to the whole process group; SIGKILL after
    /// [`STOP_GRACE`]. Reaps it and removes the socket. Safe to call twice
    /// and after the daemon exited by itself (it does once QEMU disconnects).
    pub async fn stop(&mut self) -> Result<(), VirtiofsdError> {
        if let Some(mut child) = self.child.take() {
            let pid = self.pid.as_raw_pid();
            let supervise = |source| VirtiofsdError::Supervise { pid, source };
            if child.try_wait().map_err(supervise)?.is_none() {
                let mut done = false;
                if term_workers(self.pid) {
                    done = tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok();
                }
                if !done {
                    signal_group(&child, Signal::TERM);
                    if tokio::time::timeout(STOP_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        tracing::warn!(pid, "virtiofsd ignored SIGTERM; killing it");
                        signal_group(&child, Signal::KILL);
                    }
                }
                child.wait().await.map_err(supervise)?;
            }
            // Whatever is left in the group goes too.
            signal_group(&child, Signal::KILL);
            tracing::debug!(pid, "virtiofsd stopped");
        }
        self.cleanup_files();
        Ok(())
    }

    /// Removes the socket and the pid file QEMU's C virtiofsd leaves in
    /// `/var/run/virtiofsd` (only if it holds our pid).
    fn cleanup_files(&self) {
        match std::fs::remove_file(&self.socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(socket = %self.socket_path.display(), error = %e, "cannot remove virtiofsd socket")
            }
        }
        if self.flavor == Flavor::LegacyC {
            if let Some(pidfile) = c_pid_file(&self.socket_path) {
                let ours = std::fs::read_to_string(&pidfile)
                    .map(|s| s.trim() == self.pid.as_raw_pid().to_string())
                    .unwrap_or(false);
                if ours {
                    let _ = std::fs::remove_file(&pidfile);
                }
            }
        }
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let exited = |c: &mut Child| !matches!(c.try_wait(), Ok(None));
            let wait_up_to = |c: &mut Child, d: Duration| {
                let deadline = Instant::now() + d;
                while !exited(c) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                exited(c)
            };
            if !exited(&mut child) {
                let done =
                    term_workers(self.pid) && wait_up_to(&mut child, Duration::from_millis(250));
                if !done {
                    signal_group(&child, Signal::TERM);
                    wait_up_to(&mut child, Duration::from_millis(250));
                }
            }
            signal_group(&child, Signal::KILL);
            // Dropping the child reaps it (waiting up to 1 s after SIGKILL).
            drop(child);
        }
        self.cleanup_files();
    }
}

/// SIGTERM to the group's members other than the leader; true if any.
fn term_workers(pgid: Pid) -> bool {
    let workers = other_group_members(pgid);
    for w in &workers {
        let _ = rustix::process::kill_process(*w, Signal::TERM);
    }
    !workers.is_empty()
}

fn signal_group(child: &Child, sig: Signal) {
    if let Err(e) = child.signal_group(sig) {
        tracing::warn!(pgid = child.pid().as_raw_pid(), ?sig, error = %e, "cannot signal virtiofsd");
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

/// `/var/run/virtiofsd/<socket path with / as .>.pid`, as QEMU 7.2 names it.
fn c_pid_file(socket: &Path) -> Option<PathBuf> {
    let s = socket.to_str()?;
    Some(PathBuf::from(format!(
        "/var/run/virtiofsd/{}.pid",
        s.replace('/', ".")
    )))
}

fn read_tail(log: &Path) -> String {
    match std::fs::read(log) {
        Ok(bytes) => tail_lines(&String::from_utf8_lossy(&bytes), TAIL_LINES),
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

/// The last `n` non-empty lines of `text`, or a note that it is empty.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(log is empty)".to_owned();
    }
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\n\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\n", 5), "a");
        assert_eq!(tail_lines("", 5), "(log is empty)");
        assert_eq!(tail_lines("\n \n", 5), "(log is empty)");
    }

    #[test]
    fn c_pid_file_name() {
        assert_eq!(
            c_pid_file(Path::new("/tmp/vfsprobe/pidtest.sock")).unwrap(),
            Path::new("/var/run/virtiofsd/.tmp.vfsprobe.pidtest.sock.pid")
        );
    }
}
