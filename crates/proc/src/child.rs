//! [`Child`]: spawn, watch, signal, wait for and clean up one helper process.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};

/// How often [`Child::wait`] looks when the kernel has no pidfd (pre-5.3).
const POLL: Duration = Duration::from_millis(10);
/// How long dropping a running [`Child`] waits for it after SIGKILL.
const DROP_REAP: Duration = Duration::from_secs(1);

/// Where a child's stdout and stderr go (its stdin is always `/dev/null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Both into this file, created or truncated; see [`Child::log_path`].
    Log(PathBuf),
    /// Each into its own pipe; take the read ends with
    /// [`Child::take_stdout`] and [`Child::take_stderr`].
    Piped,
}

/// Why a child could not be started. Callers wrap it in their own error
/// with what the program is for.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The [`Output::Log`] file could not be created (or its fd duplicated).
    #[error("cannot create the log file {}: {source}", .path.display())]
    LogFile {
        /// The log file asked for.
        path: PathBuf,
        /// What `open`/`dup` said.
        #[source]
        source: io::Error,
    },
    /// `fork`/`exec` failed: no such program, not executable, or the
    /// parent-death setup failed in the child.
    #[error("cannot start {}: {source}", .program.display())]
    Spawn {
        /// The program as given to the [`Command`].
        program: PathBuf,
        /// What `spawn` said.
        #[source]
        source: io::Error,
    },
}

impl ProcError {
    /// The underlying OS error, for callers that give their own context.
    pub fn into_io_error(self) -> io::Error {
        match self {
            ProcError::LogFile { source, .. } | ProcError::Spawn { source, .. } => source,
        }
    }
}

/// How [`Child::wait`] learns that the child exited.
#[derive(Debug)]
enum ExitWatch {
    /// A pidfd not yet registered with the tokio reactor.
    #[cfg(target_os = "linux")]
    Pidfd(std::os::fd::OwnedFd),
    /// A pidfd the reactor watches; readable once the child has exited.
    #[cfg(target_os = "linux")]
    Registered(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    /// No pidfd: poll `try_wait` every [`POLL`].
    Poll,
}

/// A running (or exited, not yet dropped) child process in its own process
/// group. See the crate docs for what [`Child::spawn`] sets up.
///
/// Dropping it while the child runs SIGKILLs the child's process group and
/// reaps the child, blocking for at most about 1 s.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    pid: Pid,
    log: Option<PathBuf>,
    status: Option<ExitStatus>,
    exit: ExitWatch,
}

impl Child {
    /// Starts `cmd` (program, args, env and cwd as the caller set them, and
    /// any `pre_exec` hooks of its own) with stdin from `/dev/null`, its
    /// output as `output` says, in a new process group, and, on Linux,
    /// with `death_signal` sent to it when the spawning thread dies.
    ///
    /// Does not need a tokio runtime; [`Child::wait`] does.
    ///
    /// # Errors
    /// [`ProcError::LogFile`] if the log cannot be created,
    /// [`ProcError::Spawn`] if the program cannot be started.
    pub fn spawn(
        mut cmd: Command,
        output: Output,
        death_signal: Signal,
    ) -> Result<Child, ProcError> {
        let program = PathBuf::from(cmd.get_program());
        let log = match output {
            Output::Log(path) => {
                let log_err = |source| ProcError::LogFile {
                    path: path.clone(),
                    source,
                };
                let out = File::create(&path).map_err(log_err)?;
                let err = out.try_clone().map_err(log_err)?;
                cmd.stdout(out).stderr(err);
                Some(path)
            }
            Output::Piped => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                None
            }
        };
        cmd.stdin(Stdio::null()).process_group(0);
        set_death_signal(&mut cmd, death_signal);
        let inner = cmd.spawn().map_err(|source| ProcError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = Pid::from_child(&inner);
        tracing::debug!(pid = pid.as_raw_pid(), program = %program.display(), log = ?log, "spawned");
        Ok(Child {
            inner,
            pid,
            log,
            status: None,
            exit: exit_watch(pid),
        })
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The log file of an [`Output::Log`] child; `None` for [`Output::Piped`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The read end of the child's stdout pipe ([`Output::Piped`]), once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.inner.stdout.take()
    }

    /// The read end of the child's stderr pipe ([`Output::Piped`]), once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.inner.stderr.take()
    }

    /// The child's exit status if it has exited (reaping it), without
    /// blocking.
    ///
    /// # Errors
    /// What `waitpid` reports (e.g. `ECHILD` if someone else reaped it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.inner.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits for the child to exit and reaps it. Cancel-safe; once it has
    /// exited, returns the same status every time. Needs a tokio runtime
    /// with IO and time enabled.
    ///
    /// # Errors
    /// What `waitpid` or the reactor report.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            self.until_exit_event().await?;
        }
    }

    /// Blocks the calling thread until the child exits, and reaps it.
    ///
    /// # Errors
    /// What `waitpid` reports.
    pub fn wait_blocking(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.inner.wait()?;
        self.status = Some(s);
        Ok(s)
    }

    /// Sends `sig` to the child's whole process group. A group that is gone
    /// already is not an error.
    ///
    /// The group id cannot be reused while the child is unreaped or any
    /// other member lives, so this reaches only what the child started.
    ///
    /// # Errors
    /// What `kill(2)` reports other than `ESRCH`.
    pub fn signal_group(&self, sig: Signal) -> io::Result<()> {
        match rustix::process::kill_process_group(self.pid, sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// SIGKILLs the child's process group (if the child is still running)
    /// and reaps the child. Returns its status (the one it already had if
    /// it exited by itself).
    ///
    /// # Errors
    /// What `waitpid` or the reactor report.
    pub async fn kill(&mut self) -> io::Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            self.kill_running_group();
        }
        self.wait().await
    }

    /// SIGKILL to the group, logging a failure (there is nothing else to do).
    fn kill_running_group(&self) {
        if let Err(e) = self.signal_group(Signal::KILL) {
            tracing::debug!(pid = self.pid.as_raw_pid(), err = %e, "killpg");
        }
    }

    /// Returns once the child may have exited.
    async fn until_exit_event(&mut self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use tokio::io::unix::AsyncFd;
            use tokio::io::Interest;
            if matches!(self.exit, ExitWatch::Pidfd(_)) {
                if let ExitWatch::Pidfd(fd) = std::mem::replace(&mut self.exit, ExitWatch::Poll) {
                    // SAFETY: the AsyncFd takes the OwnedFd, which stays open
                    // (and the same file description) until the AsyncFd is
                    // dropped; nothing else closes or dups it.
                    let registered =
                        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
                    match registered {
                        Ok(afd) => self.exit = ExitWatch::Registered(afd),
                        Err(e) => tracing::debug!(err = %e, "cannot watch a pidfd; polling"),
                    }
                }
            }
            if let ExitWatch::Registered(afd) = &self.exit {
                // A pidfd turns readable when the process exits and stays
                // so; the caller's try_wait then reaps it.
                let _ready = afd.readable().await?;
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        self.kill_running_group();
        // SIGKILL is quick; reap here so no zombie outlives us.
        let step = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        while waited < DROP_REAP {
            match self.inner.try_wait() {
                Ok(None) => std::thread::sleep(step),
                Ok(Some(_)) | Err(_) => return,
            }
            waited += step;
        }
        tracing::warn!(
            pid = self.pid.as_raw_pid(),
            "child did not exit within {DROP_REAP:?} of SIGKILL"
        );
    }
}

/// A pidfd for `pid` where the kernel has them, else polling.
fn exit_watch(pid: Pid) -> ExitWatch {
    #[cfg(target_os = "linux")]
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => return ExitWatch::Pidfd(fd),
        Err(e) => tracing::debug!(err = %e, "no pidfd; polling for the child's exit"),
    }
    let _ = pid;
    ExitWatch::Poll
}

/// In the child: `PR_SET_PDEATHSIG`, then exit at once (spawn fails with
/// `ESRCH`) if the parent already died between `fork` and `prctl`.
#[cfg(target_os = "linux")]
fn set_death_signal(cmd: &mut Command, sig: Signal) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed: it makes two raw syscalls (prctl,
    // getppid) through rustix, touches no locks and allocates nothing (an
    // io::Error made from an errno is not boxed).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(sig))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_death_signal(_cmd: &mut Command, _sig: Signal) {}

#[cfg(test)]
mod tests;
