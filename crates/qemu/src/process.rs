//! Supervising one QEMU process: own process group, dies with us, never
//! left behind.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::QemuError;

/// A running QEMU. Dropping it kills QEMU's process group and reaps QEMU.
///
/// QEMU runs in its own process group (so a Ctrl-C to our terminal does not
/// reach it and [`QemuProcess::kill`] gets anything it started), with stdin
/// from /dev/null and stdout+stderr in a log file, and on Linux with
/// `PR_SET_PDEATHSIG=SIGKILL`. PDEATHSIG fires when the *thread* that spawned
/// QEMU exits: spawn from a tokio worker or the main thread, not from
/// `spawn_blocking` (those threads are retired when idle).
#[derive(Debug)]
pub struct QemuProcess {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl QemuProcess {
    /// Starts `program args...` (args WITHOUT argv\[0\]), writing its stdout and
    /// stderr to `log` (created or truncated). Must run inside a tokio runtime.
    pub fn spawn(program: &Path, args: &[OsString], log: &Path) -> Result<Self, QemuError> {
        let log_err = |source| QemuError::LogFile {
            path: log.to_path_buf(),
            source,
        };
        let out = File::create(log).map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;

        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id();
            // SAFETY: the closure only makes async-signal-safe calls (prctl,
            // getppid) and builds io::Errors without allocating.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // We may have died between fork and prctl.
                    if libc::getppid() as u32 != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|source| QemuError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| QemuError::Spawn {
            program: program.to_path_buf(),
            source: std::io::Error::other("the process exited before its pid was read"),
        })?;
        tracing::debug!(pid, program = %program.display(), log = %log.display(), "spawned qemu");
        Ok(QemuProcess {
            child,
            pid,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// QEMU's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
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
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.child.wait().await?;
        self.status = Some(s);
        Ok(s)
    }

    /// QEMU's exit status if it has exited, without blocking.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// SIGKILLs QEMU's process group and reaps QEMU. Returns QEMU's status
    /// (the one it already had if it exited by itself).
    pub async fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            self.kill_group();
        }
        self.wait().await
    }

    /// SIGKILL to the group. Only while QEMU is unreaped: the group id stays
    /// reserved until then, so this cannot hit an unrelated group.
    fn kill_group(&self) {
        let Ok(pgid) = libc::pid_t::try_from(self.pid) else {
            return;
        };
        // SAFETY: plain syscall on a process group we created.
        let rc = unsafe { libc::killpg(pgid, libc::SIGKILL) };
        if rc != 0 {
            tracing::debug!(pid = self.pid, err = %std::io::Error::last_os_error(), "killpg");
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        self.kill_group();
        // SIGKILL is quick; reap here so no zombie outlives us. If it takes
        // longer, tokio's kill_on_drop orphan reaper finishes the job.
        for _ in 0..200 {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
        tracing::warn!(pid = self.pid, "qemu did not exit within 1 s of SIGKILL");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, log: &Path) -> QemuProcess {
        let args = vec![OsString::from("-c"), OsString::from(script)];
        QemuProcess::spawn(Path::new("/bin/sh"), &args, log).expect("spawn /bin/sh")
    }

    fn alive(pid: u32) -> bool {
        // A zombie would still answer kill(0); check /proc state on Linux.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
            Err(_) => false,
        }
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
    async fn runs_in_its_own_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = sh("sleep 30", &dir.path().join("log"));
        // SAFETY: getpgid on a pid we own.
        let pgid = unsafe { libc::getpgid(p.pid() as libc::pid_t) };
        assert_eq!(pgid as u32, p.pid());
        assert!(p.try_wait().expect("try_wait").is_none());
        p.kill().await.expect("kill");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn kill_takes_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let mut p = sh(&script, &dir.path().join("log"));
        let mut grandchild = None;
        for _ in 0..200 {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                grandchild = Some(pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grandchild = grandchild.expect("grandchild pid written");
        let st = p.kill().await.expect("kill");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        // The grandchild is reparented and reaped by init/subreaper; give it a moment.
        for _ in 0..200 {
            if !alive(grandchild) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("grandchild {grandchild} survived kill()");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn drop_kills_and_reaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = sh("sleep 30", &dir.path().join("log"));
        let pid = p.pid();
        assert!(alive(pid));
        drop(p);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "no zombie left"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = QemuProcess::spawn(Path::new("/nonexistent/qemu"), &[], &dir.path().join("log"))
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
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("/nonexistent/dir/qemu.log"), "{err}");
    }
}
