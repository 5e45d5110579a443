//! SIGCHLD as a pollable fd (a self-pipe written by a signal handler) and
//! the reaper. As PID 1 the init adopts every orphan, so it must reap all
//! children, not just the command it started.
//!
//! A self-pipe rather than a signalfd: a signal handler is process-wide,
//! while a signalfd only sees signals that every thread blocks (which the
//! multi-threaded unit tests cannot guarantee).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

use crate::error::{InitError, Result};

/// Write end of the self-pipe, for the signal handler.
static WAKE_W: AtomicI32 = AtomicI32::new(-1);
static WATCH: OnceLock<ChildWatch> = OnceLock::new();
static INSTALL: Mutex<()> = Mutex::new(());

/// Becomes readable whenever a child changed state.
#[derive(Debug)]
pub struct ChildWatch {
    read: OwnedFd,
    _write: OwnedFd,
}

extern "C" fn on_sigchld(_: libc::c_int) {
    let saved = Errno::last_raw();
    let fd = WAKE_W.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so
        // a full pipe (already signalled) just drops this byte.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
    Errno::set_raw(saved);
}

impl ChildWatch {
    /// Installs the SIGCHLD handler once per process and returns the watch.
    pub fn install() -> Result<&'static ChildWatch> {
        let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = WATCH.get() {
            return Ok(w);
        }
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| InitError::sys("creating the SIGCHLD self-pipe", e))?;
        WAKE_W.store(write.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_sigchld),
            SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe { sigaction(Signal::SIGCHLD, &action) }
            .map_err(|e| InitError::sys("installing the SIGCHLD handler", e))?;
        Ok(WATCH.get_or_init(|| ChildWatch {
            read,
            _write: write,
        }))
    }

    /// The fd to poll for POLLIN.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Empties the self-pipe (call before reaping, so no wake-up is lost).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
    }
}

/// Reaps every child that has exited, without blocking. Returns the status
/// of `main` if it was among them; other pids (orphans) are discarded.
pub fn reap(main: Option<Pid>) -> Option<WaitStatus> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return found,
            Err(Errno::EINTR) => {}
            Err(_) => return found,
            Ok(st) => {
                if st.pid().is_some() && st.pid() == main {
                    found = Some(st);
                }
            }
        }
    }
}
