//! An interactive shell in the sandbox (`--interactive`): bubblewrap runs
//! the command on a new host pty, the same mounts, environment and working
//! directory as a step; the user's terminal is in raw mode meanwhile and
//! the pty's output is written to stdout.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
use tokio::io::unix::AsyncFd;
use vmbuild_proto::{CommandSpec, ExitInfo, WindowSize};

use super::{boottime_us, place_fds, Sandbox, ARGS_FD, CHUNK};
use crate::error::RunError;
use crate::stop::Stopper;
use crate::terminal::{self, Input, RawMode, Resizes};

/// Most output read from the pty after bubblewrap exited.
const DRAIN_LIMIT: usize = 1024 * 1024;

fn winsize(s: WindowSize) -> Winsize {
    Winsize {
        ws_row: s.rows,
        ws_col: s.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new pty: the master (non-blocking) and the slave.
fn open_pty(size: WindowSize) -> Result<(OwnedFd, OwnedFd), RunError> {
    let err =
        |e: rustix::io::Errno| RunError::io("opening a pseudo-terminal for the shell", e.into());
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(err)?;
    grantpt(&master).map_err(err)?;
    unlockpt(&master).map_err(err)?;
    let name: CString = ptsname(&master, Vec::new()).map_err(err)?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(err)?;
    tcsetwinsize(&master, winsize(size)).map_err(err)?;
    rustix::io::ioctl_fionbio(&master, true).map_err(err)?;
    Ok((master, slave))
}

impl Sandbox {
    /// Runs `cmd` as a step would run (same binds, environment, working
    /// directory) but on a new pty that is its controlling terminal, relayed
    /// to the user's terminal (stdin must be one), until it exits; its
    /// status. The terminal is restored however this ends; on `stop` the
    /// sandbox is killed.
    pub async fn run_tty(
        &mut self,
        cmd: &CommandSpec,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        let mut inv = self.invocation(cmd)?;
        // --new-session would take the shell out of the pty's session: no
        // job control, and Ctrl-C would reach bubblewrap instead of the
        // shell. The pty is the shell's own, so TIOCSTI (what the option
        // guards against) can only type into the shell itself.
        inv.options.retain(|o| o != "--new-session");
        let args_file = inv.options_file()?;

        let raw = RawMode::enter()?;
        let (master, slave) = open_pty(terminal::window_size())?;
        let stdio = |fd: &OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| RunError::io("duplicating the pty", e))
        };
        let mut c = std::process::Command::new(&self.bwrap);
        c.arg("--args")
            .arg(ARGS_FD.to_string())
            .args(&inv.argv)
            .env_clear()
            .stdin(stdio(&slave)?)
            .stdout(stdio(&slave)?)
            .stderr(stdio(&slave)?);
        let fds = [(args_file.as_raw_fd(), ARGS_FD)];
        // SAFETY: the hook runs in the forked child before exec; place_fds,
        // setsid(2) and ioctl(2) are async-signal-safe and take plain
        // integers. The new session takes the pty (fd 0) as its terminal.
        unsafe {
            c.pre_exec(move || {
                place_fds(&fds)?;
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started_us = boottime_us();
        let mut child = tokio::process::Command::from(c)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                RunError::io(format!("starting bubblewrap ({})", self.bwrap.display()), e)
            })?;
        drop((slave, args_file));
        let result = relay(&mut child, master, stop).await;
        drop(raw);
        let status = match result {
            Ok(s) => s,
            Err(e) => {
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) of bubblewrap's own session (it is
                    // its leader); --die-with-parent ends the rest.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                let _ = child.wait().await;
                return Err(e);
            }
        };
        Ok(ExitInfo {
            code: status.code(),
            signal: status.signal(),
            started_us,
            ended_us: boottime_us(),
            oom: None,
        })
    }
}

/// Moves bytes between the user's terminal and the pty until bubblewrap
/// exits, then drains what is left; bubblewrap's exit status (the
/// command's code).
async fn relay(
    child: &mut tokio::process::Child,
    master: OwnedFd,
    stop: &Stopper,
) -> Result<std::process::ExitStatus, RunError> {
    // SAFETY: the AsyncFd owns `master` (an OwnedFd): it stays open and
    // the same descriptor until the AsyncFd is dropped.
    let master = unsafe { AsyncFd::register(master) }
        .map_err(|e| RunError::io("watching the pty", e.into()))?;
    let mut input = Input::start()?;
    let mut resizes = Resizes::watch();
    let mut buf = vec![0u8; CHUNK];
    let mut open = true;
    let status = loop {
        tokio::select! {
            e = stop.fired("in the interactive shell") => return Err(e),
            r = master.readable(), if open => {
                let mut guard = r.map_err(|e| RunError::io("watching the pty", e))?;
                match guard.try_io(|fd| read(fd.get_ref(), &mut buf)) {
                    Ok(Ok(0)) | Ok(Err(_)) => open = false,
                    Ok(Ok(n)) => terminal::write_out(&buf[..n]),
                    Err(_would_block) => {}
                }
            }
            b = input.recv() => write_all(&master, &b).await?,
            s = resizes.next() => {
                let _ = tcsetwinsize(master.get_ref(), winsize(s));
            }
            s = child.wait() => break s.map_err(|e| RunError::io("waiting for bubblewrap", e))?,
        }
    };
    // Whatever the shell wrote last (EIO once no process has the pty open).
    let mut total = 0;
    while open && total < DRAIN_LIMIT {
        match read(master.get_ref(), &mut buf) {
            Ok(n) if n > 0 => {
                terminal::write_out(&buf[..n]);
                total += n;
            }
            _ => break,
        }
    }
    Ok(status)
}

fn read(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    match rustix::io::read(fd, buf) {
        Ok(n) => Ok(n),
        // No process has the slave open any more.
        Err(rustix::io::Errno::IO) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Writes all of `bytes` to the pty, waiting while it is full.
async fn write_all(master: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> Result<(), RunError> {
    while !bytes.is_empty() {
        let mut guard = master
            .writable()
            .await
            .map_err(|e| RunError::io("writing to the pty", e))?;
        match guard.try_io(|fd| rustix::io::write(fd.get_ref(), bytes).map_err(Into::into)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            // The shell closed its terminal: the input has nowhere to go.
            Ok(Err(_)) => return Ok(()),
            Err(_would_block) => {}
        }
    }
    Ok(())
}
