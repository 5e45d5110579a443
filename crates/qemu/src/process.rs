//! Supervising one QEMU process: own process group, dies with us, never
//! left behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use vmbuild_proc::{Child, Confinement, Output, ProcError, Signal};

use crate::QemuError;

/// A running QEMU. Dropping it kills QEMU's process group and reaps QEMU.
///
/// QEMU is a [`vmbuild_proc::Child`]: its own process group (so a Ctrl-C to
/// our terminal does not reach it and [`QemuProcess::kill`] gets anything it
/// started), stdin from /dev/null, stdout+stderr in a log file, and on Linux
/// `PR_SET_PDEATHSIG=SIGKILL`. PDEATHSIG fires when the *thread* that spawned
/// QEMU exits: spawn from a tokio worker or the main thread, not from
/// `spawn_blocking` (those threads are retired when idle).
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    log: PathBuf,
}

impl QemuProcess {
    /// Starts `program args...` (args WITHOUT argv\[0\]), writing its stdout and
    /// stderr to `log` (created or truncated), confined as `confine` says
    /// (uid, capabilities, rlimits, cgroup; see `vmbuild_proc::confine`).
    /// [`QemuProcess::wait`] and [`QemuProcess::kill`] need a tokio runtime.
    ///
    /// # Errors
    /// [`QemuError::LogFile`] if `log` cannot be created,
    /// [`QemuError::Spawn`] if `program` cannot be started or confined.
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        log: &Path,
        confine: Option<&Confinement>,
    ) -> Result<Self, QemuError> {
        Self::spawn_passing(program, args, log, confine, None)
    }

    /// [`QemuProcess::spawn`], with `pass` (when given) open in QEMU as
    /// descriptor [`crate::INCOMING_FD`] and no other descriptor beyond
    /// stdin, stdout and stderr (e.g. a saved state for `-incoming fd:3`).
    ///
    /// # Errors
    /// As [`QemuProcess::spawn`].
    pub fn spawn_passing(
        program: &Path,
        args: &[OsString],
        log: &Path,
        confine: Option<&Confinement>,
        pass: Option<&std::os::fd::OwnedFd>,
    ) -> Result<Self, QemuError> {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args);
        if let Some(c) = confine {
            vmbuild_proc::confine::install(&mut cmd, c).map_err(|e| QemuError::Spawn {
                program: program.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        if let Some(fd) = pass {
            pass_as(&mut cmd, fd, crate::INCOMING_FD);
        }
        let child = Child::spawn(cmd, Output::Log(log.to_path_buf()), Signal::KILL).map_err(
            |e| match e {
                ProcError::LogFile { path, source } => QemuError::LogFile { path, source },
                ProcError::Spawn { program, source } => QemuError::Spawn { program, source },
            },
        )?;
        tracing::debug!(pid = child.pid().as_raw_pid(), program = %program.display(), log = %log.display(), "spawned qemu");
        Ok(QemuProcess {
            child,
            log: log.to_path_buf(),
        })
    }

    /// QEMU's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.pid().as_raw_pid().unsigned_abs()
    }

    /// Where QEMU's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// QEMU's stdout+stderr so far (lossy UTF-8; empty if unreadable).
    pub fn read_log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits for QEMU to exit (and reaps it). Cancel-safe; may be called
    /// again after QEMU exited (returns the same status).
    ///
    /// # Errors
    /// What `waitpid` or the tokio reactor report.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// QEMU's exit status if it has exited, without blocking.
    ///
    /// # Errors
    /// What `waitpid` reports.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// SIGKILLs QEMU's process group and reaps QEMU. Returns QEMU's status
    /// (the one it already had if it exited by itself).
    ///
    /// # Errors
    /// What `waitpid` or the tokio reactor report.
    pub async fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.child.kill().await
    }
}

/// Makes `fd` descriptor `target` in the child, inheritable across exec.
/// Runs after the confinement hook (which marks everything from 3 up
/// close-on-exec), so it is the one descriptor QEMU inherits.
fn pass_as(cmd: &mut std::process::Command, fd: &std::os::fd::OwnedFd, target: i32) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let src = fd.as_raw_fd();
    // SAFETY: the hook runs in the forked child before exec and only makes
    // the dup2/fcntl syscalls on integers; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if src == target {
                if libc::fcntl(target, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(src, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, log: &Path) -> QemuProcess {
        let args = vec![OsString::from("-c"), OsString::from(script)];
        QemuProcess::spawn(Path::new("/bin/sh"), &args, log, None).expect("spawn /bin/sh")
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_status_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("qemu.log");
        let mut p = sh("echo out; echo err >&2; read x; exit 3", &log);
        let st = p.wait().await.expect("wait");
        assert_eq!(
            st.code(),
            Some(3),
            "stdin must be /dev/null so read returns"
        );
        assert_eq!(p.try_wait().expect("try_wait"), Some(st));
        assert_eq!(p.read_log(), "out\nerr\n");
    }

    #[tokio::test]
    async fn a_passed_descriptor_is_open_as_fd_3_and_others_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("state");
        std::fs::write(&data, "saved-state").expect("write");
        let fd = std::os::fd::OwnedFd::from(std::fs::File::open(&data).expect("open"));
        // Another descriptor of ours that must not leak into the child.
        let _other = std::fs::File::open(&data).expect("open");
        let log = dir.path().join("log");
        let args = vec![
            OsString::from("-c"),
            OsString::from("cat <&3; ls /proc/self/fd | wc -l"),
        ];
        let confine = Confinement::default();
        let mut p = QemuProcess::spawn_passing(
            Path::new("/bin/sh"),
            &args,
            &log,
            Some(&confine),
            Some(&fd),
        )
        .expect("spawn");
        assert!(p.wait().await.expect("wait").success());
        // cat's output, then ls's fds: 0, 1, 2, 3 and the one ls opens.
        assert_eq!(p.read_log(), "saved-state5\n");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = QemuProcess::spawn(
            Path::new("/nonexistent/qemu"),
            &[],
            &dir.path().join("log"),
            None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("/nonexistent/qemu"), "{err}");
    }

    #[tokio::test]
    async fn unwritable_log_is_reported() {
        let err = QemuProcess::spawn(
            Path::new("/bin/true"),
            &[],
            Path::new("/nonexistent/dir/qemu.log"),
            None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("/nonexistent/dir/qemu.log"), "{err}");
    }
}
