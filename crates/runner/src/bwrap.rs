//! The bubblewrap runner: the same steps as the VM runner, in a
//! [bubblewrap](https://github.com/containers/bubblewrap) sandbox on the
//! host, for hosts without QEMU (`--runner bubblewrap`).
//!
//! What a command sees (kept as close to the VM as bubblewrap allows):
//! - `/home/build`: a private read-write copy of the source directory
//!   ([`crate::copy`]), with `out/` in it; `HOME` comes in the command's env.
//! - The cache directory, if any, bind-mounted **read-write** at
//!   `/var/cache/vmbuild`, with `/var/cache/melange` a symlink to it, as in
//!   melange's bubblewrap runner. There is no overlay mode here: writes to
//!   the cache persist on the host.
//! - Cache volumes (`--cache`, a pipeline's `cache:`) bind-mounted
//!   **read-write** at their targets, writes persisting, even under a
//!   read-only host path such as `/root` ([`mirror`] says how).
//! - The rest of the host's filesystem **read-only**. The root is a tmpfs
//!   (remounted read-only) onto which every top-level host entry is
//!   bind-mounted read-only and every top-level symlink recreated, so host
//!   toolchains in `/usr`, `/opt`, `/usr/local`, ... work. This is done
//!   entry by entry rather than with `--ro-bind / /` so that the paths the
//!   sandbox owns need not exist on the host and host mounts under `/run`,
//!   `/tmp` and `/home` (user FUSE mounts, sockets, other users' homes) are
//!   never bound at all.
//! - Fresh `/dev`, `/proc`; empty tmpfs `/tmp`, `/var/tmp` (sticky, 1777)
//!   and `/run`; an empty `/home` around `/home/build`.
//! - No network: every namespace is unshared (`--unshare-all`), network
//!   included; there is only a loopback interface. (The VM runner has no
//!   network either.)
//! - No capabilities (`--cap-drop ALL`): when vmbuild runs as root the
//!   command is uid 0 but cannot remount the read-only host paths writable.
//! - Exactly the environment in [`CommandSpec::env`] (bubblewrap itself
//!   always sets `PWD`; `/usr/bin/env -u PWD` removes it again, and also
//!   gives the shell's 127 / 126 for a command that is missing or not
//!   executable), its cwd (created if missing), stdin `/dev/null`.
//!
//! A command ends on its exit status, not on EOF of its pipes: bubblewrap
//! runs it as PID 2 of a new PID namespace whose PID 1 is bubblewrap's
//! init; when the command exits bubblewrap exits, its init gets SIGKILL
//! (`--die-with-parent`), and the kernel kills everything left in the
//! namespace. We wait for that init to be gone before returning, so no
//! process of the command outlives [`Sandbox::run`].
//!
//! Limitation: bubblewrap reports a command killed by signal N as exit code
//! 128 + N (it cannot pass a signal on), so [`ExitInfo::signal`] is only set
//! when bubblewrap itself was killed; `ExitInfo::shell_code` is the same
//! either way.

mod args;
mod mirror;
mod tty;
pub(crate) mod volumes;

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, Interest};
use tokio::net::unix::pipe;
use vmbuild_proc::{Child, Output, Signal};
use vmbuild_proto::{CommandSpec, ExitInfo};

use crate::error::RunError;
use crate::features::{Feature, RunnerKind};
use crate::output::OutputSink;
use crate::stop::Stopper;
use args::{invocation, parse_status, setup_failed, Invocation, VolumeBind, ENV_SHIM};
use mirror::{list_host_dir, mirror_host_root};
use vmbuild_cache::SharedDir;

/// fds bubblewrap gets its options and reports its status on.
const ARGS_FD: i32 = 3;
const STATUS_FD: i32 = 4;
/// Largest output chunk passed to the sink at once.
const CHUNK: usize = 64 * 1024;
/// How long the sandbox's PID 1 may take to die once bubblewrap is gone.
const TEARDOWN_GRACE: Duration = Duration::from_secs(5);
/// Bound on reading what is left in the pipes after everything exited.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
const DURING: &str = "while running the command";

/// Where the sandbox comes from; the CLI fills this from its flags.
#[derive(Debug, Clone)]
pub struct BwrapOptions {
    /// The `bwrap` binary; `None`: `bwrap` on `PATH`.
    pub bwrap: Option<PathBuf>,
    /// Copied to the workspace, which the commands see as `/home/build`
    /// (`None`: an empty workspace, as `vmbuild run` has).
    pub source_dir: Option<PathBuf>,
    /// Bound read-write at `/var/cache/vmbuild` (already validated, absolute).
    pub cache_dir: Option<PathBuf>,
    /// Cache volumes (held by the caller): each host directory bound
    /// read-write at its target, its `root_mode` applied to the host
    /// directory (an `owner` is refused); tag and cache mode are unused.
    pub volumes: Vec<SharedDir>,
    /// Guest directories under `/home/build` to create in the workspace
    /// (a build's output directory per package); others are ignored.
    pub mkdirs: Vec<String>,
}

/// A workspace and the bubblewrap setup to run commands in it, one at a time.
#[derive(Debug)]
pub struct Sandbox {
    bwrap: PathBuf,
    /// Read-only binds of the host root (computed once, at start).
    mirror: Vec<OsString>,
    cache_dir: Option<PathBuf>,
    volumes: Vec<VolumeBind>,
    workspace: tempfile::TempDir,
}

impl Sandbox {
    /// Finds `bwrap` and copies the source directory into a new workspace
    /// (blocking: call it from `spawn_blocking` for big trees).
    pub fn start(opts: &BwrapOptions) -> Result<Sandbox, RunError> {
        let bwrap = find_bwrap(opts.bwrap.as_deref())?;
        if !Path::new(ENV_SHIM).is_file() {
            return Err(RunError::MissingTool {
                tool: ENV_SHIM.into(),
                at: None,
                install: "the bubblewrap runner needs it to give commands their exact environment; apt-get install coreutils".into(),
            });
        }
        if let Some(c) = &opts.cache_dir {
            volumes::existing_dir("--cache-dir", c)?;
        }
        let volumes = volumes::prepare(&opts.volumes)?;
        let targets: Vec<&str> = volumes.iter().map(|v| v.target.as_str()).collect();
        let mirror = mirror_host_root(&|dir| list_host_dir(dir), &targets)?;
        let workspace = make_workspace(opts.source_dir.as_deref(), &opts.mkdirs)?;
        Ok(Sandbox {
            bwrap,
            mirror,
            cache_dir: opts.cache_dir.clone(),
            volumes,
            workspace,
        })
    }

    /// The host directory the commands see as `/home/build`.
    pub fn workspace(&self) -> &Path {
        self.workspace.path()
    }

    /// Removes the workspace (making read-only directories writable first
    /// if a plain removal fails).
    pub async fn finish(self) {
        let Sandbox { workspace, .. } = self;
        remove_workspace(workspace).await;
    }

    /// How bubblewrap runs `cmd` in this sandbox (its binds, environment and
    /// working directory). A command that asks for a user is refused: only
    /// the invoking user is mapped here, and a step that asked for a user
    /// never runs as root.
    pub(crate) fn invocation(&self, cmd: &CommandSpec) -> Result<Invocation, RunError> {
        if cmd.user.is_some() {
            return Err(RunError::Unsupported {
                runner: RunnerKind::Bubblewrap,
                feature: Feature::RunAs,
            });
        }
        invocation(
            &self.mirror,
            self.workspace.path(),
            self.cache_dir.as_deref(),
            &self.volumes,
            cmd,
        )
    }

    /// Runs one command to its exit status, streaming its output to `sink`.
    /// On timeout or interrupt (`stop`) the whole sandbox is killed and the
    /// stopper's error returned.
    pub async fn run(
        &mut self,
        cmd: &CommandSpec,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        if cmd.argv.is_empty() {
            return Ok(empty_command(sink));
        }
        let inv = self.invocation(cmd)?;
        let started_us = boottime_us();
        let mut run = Running::spawn(&self.bwrap, &inv)?;
        let result = run.supervise(sink, stop).await;
        let ended_us = boottime_us();
        let (status, stderr_tail) = result?;
        let report = parse_status(&run.status_buf);
        match report.exit_code {
            Some(code) => Ok(ExitInfo {
                code: Some(code),
                signal: None,
                started_us,
                ended_us,
                oom: None,
            }),
            None => match status.signal() {
                Some(sig) => Ok(ExitInfo {
                    code: None,
                    signal: Some(sig),
                    started_us,
                    ended_us,
                    oom: None,
                }),
                None => Err(setup_failed(&status, &stderr_tail)),
            },
        }
    }
}

/// Finds the `bwrap` binary: the given path or name, else `bwrap` on `PATH`.
pub fn find_bwrap(explicit: Option<&Path>) -> Result<PathBuf, RunError> {
    match explicit {
        Some(p) => which::which(p).map_err(|_| RunError::MissingTool {
            tool: "bubblewrap (bwrap)".into(),
            at: Some(p.to_path_buf()),
            install: "apt-get install bubblewrap, or give the path of an installed bwrap".into(),
        }),
        None => which::which("bwrap").map_err(|_| RunError::MissingTool {
            tool: "bubblewrap (bwrap)".into(),
            at: None,
            install: "apt-get install bubblewrap".into(),
        }),
    }
}

/// A private workspace for the commands' `/home/build`: a copy of `source`
/// (none: empty) with `out/` and the `mkdirs` under `/home/build` made in
/// it (others, and any with `..`, ignored). Blocking.
pub(crate) fn make_workspace(
    source: Option<&Path>,
    mkdirs: &[String],
) -> Result<tempfile::TempDir, RunError> {
    let workspace = tempfile::Builder::new()
        .prefix("vmbuild-ws-")
        .tempdir()
        .map_err(|e| {
            RunError::io(
                format!("creating a workspace in {}", std::env::temp_dir().display()),
                e,
            )
        })?;
    if let Some(source) = source {
        let started = Instant::now();
        let stats = crate::copy::copy_tree(source, workspace.path())?;
        tracing::debug!(?stats, elapsed = ?started.elapsed(), workspace = %workspace.path().display(), "copied the source");
    }
    let home = vmbuild_proto::GUEST_HOME;
    let wanted = mkdirs.iter().filter_map(|m| {
        m.strip_prefix(home)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.split('/').any(|c| c == ".."))
    });
    for rel in std::iter::once("out").chain(wanted) {
        let dir = workspace.path().join(rel);
        fs::create_dir_all(&dir)
            .map_err(|e| RunError::io(format!("creating {}", dir.display()), e))?;
    }
    Ok(workspace)
}

/// Removes a workspace (making read-only directories writable first if a
/// plain removal fails); a failure is only logged.
pub(crate) async fn remove_workspace(workspace: tempfile::TempDir) {
    let path = workspace.path().to_path_buf();
    let removed = tokio::task::spawn_blocking(move || match workspace.close() {
        Ok(()) => Ok(()),
        Err(_) => crate::copy::remove_tree(&path),
    })
    .await;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("could not remove the workspace: {e}"),
        Err(e) => tracing::warn!("could not remove the workspace: {e}"),
    }
}

/// What running an empty command line gives under every runner: the
/// shell's 127 and a message on stderr.
pub(crate) fn empty_command(sink: &mut dyn OutputSink) -> ExitInfo {
    let now = boottime_us();
    sink.stderr(b"vmbuild: empty command line\n");
    ExitInfo {
        code: Some(127),
        signal: None,
        started_us: now,
        ended_us: now,
        oom: None,
    }
}

/// CLOCK_BOOTTIME in microseconds, the clock the guest init reports in.
pub(crate) fn boottime_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64) * 1_000_000 + (t.tv_nsec as u64) / 1_000
}

/// One live bubblewrap process and what we read from it.
struct Running {
    /// bubblewrap itself, with piped stdout and stderr.
    child: Child,
    status_rx: Option<pipe::Receiver>,
    status_buf: Vec<u8>,
    /// pidfd of the sandbox's PID 1, once bubblewrap has told us its PID.
    init: Option<OwnedFd>,
}

impl Running {
    fn spawn(bwrap: &Path, inv: &Invocation) -> Result<Running, RunError> {
        let args_file = inv.options_file()?;
        let (status_r, status_w) =
            std::io::pipe().map_err(|e| RunError::io("creating bubblewrap's status pipe", e))?;
        let status_rx = pipe::Receiver::from_owned_fd(OwnedFd::from(status_r))
            .map_err(|e| RunError::io("watching bubblewrap's status pipe", e))?;

        let mut cmd = std::process::Command::new(bwrap);
        cmd.arg("--args")
            .arg(ARGS_FD.to_string())
            .arg("--json-status-fd")
            .arg(STATUS_FD.to_string())
            .args(&inv.argv)
            .env_clear();
        let fds = [
            (args_file.as_raw_fd(), ARGS_FD),
            (status_w.as_raw_fd(), STATUS_FD),
        ];
        // SAFETY: the hook runs in the forked child before exec; place_fds
        // makes only async-signal-safe syscalls (fcntl, dup2, close_range,
        // getrlimit) on plain integers it was given by value, and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(move || place_fds(&fds));
        }
        // Note: --die-with-parent ties bubblewrap to the thread that spawns
        // it (PR_SET_PDEATHSIG); tokio's worker threads live as long as the
        // runtime, so do not call `run` from a short-lived blocking thread.
        // Its own process group (a terminal's Ctrl-C reaches only us, and
        // we can kill bubblewrap's whole group), killed and reaped on drop.
        let child = Child::spawn(cmd, Output::Piped, Signal::KILL).map_err(|e| {
            RunError::io(
                format!("starting bubblewrap ({})", bwrap.display()),
                e.into_io_error(),
            )
        })?;
        // Our copies of the write end and the options file must close now.
        drop((args_file, status_w));
        Ok(Running {
            child,
            status_rx: Some(status_rx),
            status_buf: Vec::new(),
            init: None,
        })
    }

    /// Streams output until bubblewrap exits (or `stop` fires: then kills
    /// everything), waits for the sandbox to be gone and drains the pipes.
    /// Returns bubblewrap's exit status and the tail of its stderr.
    async fn supervise(
        &mut self,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<(std::process::ExitStatus, Vec<u8>), RunError> {
        let missing = || {
            RunError::io(
                "watching bubblewrap's output",
                std::io::Error::other("its pipes were not set up"),
            )
        };
        let watch = |fd: OwnedFd| {
            pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| RunError::io("watching bubblewrap's output pipes", e))
        };
        let mut out = watch(self.child.take_stdout().ok_or_else(missing)?.into())?;
        let mut err = watch(self.child.take_stderr().ok_or_else(missing)?.into())?;
        let mut tail = Tail::default();
        let (mut out_buf, mut err_buf, mut st_buf) =
            (vec![0u8; CHUNK], vec![0u8; CHUNK], [0u8; 4096]);
        let (mut out_open, mut err_open) = (true, true);
        let status = loop {
            tokio::select! {
                biased;
                e = stop.fired(DURING) => {
                    self.abort().await;
                    return Err(e);
                }
                r = out.read(&mut out_buf), if out_open => match r {
                    Ok(n) if n > 0 => sink.stdout(&out_buf[..n]),
                    _ => out_open = false,
                },
                r = err.read(&mut err_buf), if err_open => match r {
                    Ok(n) if n > 0 => {
                        sink.stderr(&err_buf[..n]);
                        tail.push(&err_buf[..n]);
                    }
                    _ => err_open = false,
                },
                r = read_opt(&mut self.status_rx, &mut st_buf), if self.status_rx.is_some() => match r {
                    Ok(n) if n > 0 => {
                        self.status_buf.extend_from_slice(&st_buf[..n]);
                        self.watch_init();
                    }
                    _ => self.status_rx = None,
                },
                s = self.child.wait() => break s.map_err(|e| RunError::io("waiting for bubblewrap", e))?,
            }
        };
        // bubblewrap is gone; its status pipe has no other writer.
        if let Some(rx) = self.status_rx.as_mut() {
            let rest = tokio::time::timeout(DRAIN_GRACE, async {
                while let Ok(n) = rx.read(&mut st_buf).await {
                    if n == 0 {
                        break;
                    }
                    self.status_buf.extend_from_slice(&st_buf[..n]);
                }
            });
            let _ = rest.await;
        }
        self.watch_init();
        self.await_init_exit().await;
        // Nothing in the sandbox is left to write: read what is buffered.
        let _ = tokio::time::timeout(DRAIN_GRACE, async {
            if out_open {
                drain(&mut out, &mut out_buf, |b| sink.stdout(b)).await;
            }
            if err_open {
                drain(&mut err, &mut err_buf, |b| {
                    sink.stderr(b);
                    tail.push(b);
                })
                .await;
            }
        })
        .await;
        Ok((status, tail.bytes))
    }

    /// Opens a pidfd on the sandbox's PID 1 as soon as its PID is known.
    fn watch_init(&mut self) {
        if self.init.is_some() {
            return;
        }
        let Some(pid) = parse_status(&self.status_buf).child_pid else {
            return;
        };
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            return;
        };
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => self.init = Some(fd),
            // Already gone (fine) or no pidfd on this kernel: then
            // --die-with-parent alone tears the sandbox down.
            Err(e) => tracing::debug!(%e, "cannot watch the sandbox's PID 1"),
        }
    }

    /// Waits until the sandbox's PID 1 has exited (which the kernel lets
    /// happen only after every other process in its namespace is gone);
    /// kills it if it lingers.
    async fn await_init_exit(&mut self) {
        let Some(fd) = self.init.take() else { return };
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open (and the
        // same file description) until the AsyncFd is dropped.
        let Ok(afd) = (unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }) else {
            return;
        };
        if tokio::time::timeout(TEARDOWN_GRACE, afd.readable())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!("the sandbox outlived bubblewrap by {TEARDOWN_GRACE:?}; killing it");
        let _ = rustix::process::pidfd_send_signal(afd.get_ref(), Signal::KILL);
        let _ = tokio::time::timeout(TEARDOWN_GRACE, afd.readable()).await;
    }

    /// Kills the sandbox (its PID 1 takes every process in it along) and
    /// bubblewrap's process group, and reaps them.
    async fn abort(&mut self) {
        // Pick up a PID bubblewrap already wrote: a direct non-blocking read,
        // as the reactor may not have seen the pipe become readable yet.
        if let Some(rx) = self.status_rx.as_ref() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rustix::io::read(rx.as_fd(), &mut buf) {
                if n == 0 {
                    break;
                }
                self.status_buf.extend_from_slice(&buf[..n]);
            }
        }
        self.watch_init();
        if let Some(fd) = &self.init {
            let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
        }
        let _ = self.child.signal_group(Signal::KILL);
        let _ = self.child.kill().await;
        self.await_init_exit().await;
    }
}

/// In the forked child: puts each fd at its target number, inheritable,
/// and marks every other fd above them close-on-exec, so nothing our
/// process inherited (a CI runner's or make's fds) leaks into the sandbox.
fn place_fds<const N: usize>(fds: &[(i32, i32); N]) -> std::io::Result<()> {
    // Move them out of the way first, so one's target cannot clobber the other.
    let mut high = [0; N];
    for (i, (fd, _)) in fds.iter().enumerate() {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers and touches no
        // memory; `fd` is open (the parent keeps it alive until spawn returns).
        high[i] = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10) };
        if high[i] < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (i, (_, target)) in fds.iter().enumerate() {
        // SAFETY: dup2 takes integers and touches no memory; the target
        // numbers belong to no Rust object in this freshly forked child.
        if unsafe { libc::dup2(high[i], *target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let first = fds.iter().map(|(_, t)| *t).max().unwrap_or(2) + 1;
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC takes integers and only
    // sets close-on-exec flags; it closes nothing (Linux 5.11+, else ENOSYS).
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Older kernels: one fd at a time, up to the fd limit.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into `lim`, a live, properly
        // aligned local of exactly that type.
        let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur.min(65_536) as i32
        } else {
            1024
        };
        for fd in first..max {
            // SAFETY: F_GETFD/F_SETFD on a possibly-closed fd just fail with EBADF.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
    Ok(())
}

async fn read_opt(rx: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> std::io::Result<usize> {
    match rx.as_mut() {
        Some(rx) => rx.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn drain<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], mut put: impl FnMut(&[u8])) {
    while let Ok(n) = r.read(buf).await {
        if n == 0 {
            break;
        }
        put(&buf[..n]);
    }
}

/// The last few KiB of bubblewrap's stderr, for the setup-failure message.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    const MAX: usize = 4096;
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        if self.bytes.len() > Self::MAX {
            self.bytes.drain(..self.bytes.len() - Self::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        t.push(&[b'a'; 4000]);
        t.push(&[b'b'; 200]);
        assert_eq!(t.bytes.len(), Tail::MAX);
        assert!(t.bytes.ends_with(&[b'b'; 200]) && t.bytes[0] == b'a');
    }

    #[test]
    fn explicit_bwrap_path_that_does_not_exist_is_a_clear_error() {
        let e = find_bwrap(Some(Path::new("/nonexistent/bwrap")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bubblewrap (bwrap) not found at /nonexistent/bwrap")
                && e.contains("apt-get install bubblewrap"),
            "{e}"
        );
    }
}
