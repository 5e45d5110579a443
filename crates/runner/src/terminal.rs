//! The user's terminal during an interactive shell (`--interactive`): raw
//! mode for the duration (always restored), typed bytes read on a thread
//! of their own, the window size, and the shell's output written back.
//!
//! Raw mode turns off the line discipline's signals and echo, so Ctrl-C
//! is the byte 0x03 for the shell's terminal (in the guest, or a host pty
//! for bubblewrap), not SIGINT for vmbuild.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};
use tokio::sync::mpsc;
use vmbuild_proto::{WindowSize, STDIN_CHUNK};

use crate::error::RunError;

/// How often the input thread looks whether it should stop.
const INPUT_POLL: Duration = Duration::from_millis(100);

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Whether stdin is a terminal (an interactive shell needs one).
pub fn stdin_is_terminal() -> bool {
    rustix::termios::isatty(stdin_fd())
}

/// The size of the terminal on stdin (else stdout), or 24x80 when
/// neither says (a size of 0 is taken as unknown, too).
pub fn window_size() -> WindowSize {
    // SAFETY: fd 1 stays open for the life of the process.
    let stdout = unsafe { BorrowedFd::borrow_raw(1) };
    [stdin_fd(), stdout]
        .into_iter()
        .find_map(|fd| tcgetwinsize(fd).ok())
        .filter(|w| w.ws_row > 0 && w.ws_col > 0)
        .map_or_else(WindowSize::default, |w| WindowSize {
            rows: w.ws_row,
            cols: w.ws_col,
        })
}

/// The terminal on stdin in raw mode until dropped, which restores the
/// settings it had (on every path: error, timeout, interrupt, panic).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode (typed-ahead input is kept, not
    /// flushed). Fails when stdin is not a terminal.
    pub fn enter() -> Result<RawMode, RunError> {
        let fd = stdin_fd();
        let saved = tcgetattr(fd).map_err(|e| {
            RunError::io(
                "reading the terminal's settings for the interactive shell (is stdin a terminal?)",
                e.into(),
            )
        })?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(fd, OptionalActions::Now, &raw).map_err(|e| {
            RunError::io(
                "putting the terminal in raw mode for the interactive shell",
                e.into(),
            )
        })?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(e) = tcsetattr(stdin_fd(), OptionalActions::Now, &self.saved) {
            tracing::warn!("could not restore the terminal's settings: {e}; run `stty sane`");
        }
    }
}

/// Bytes typed on stdin, read on a thread of their own (reads of a
/// terminal block, and tokio's stdin would keep a read pending after the
/// shell is gone, eating the next keystrokes). The thread polls, so it
/// stops within `INPUT_POLL` (100 ms) of the drop and reads nothing after it.
pub struct Input {
    rx: mpsc::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Input {
    /// Starts reading stdin in chunks of at most [`STDIN_CHUNK`] bytes.
    pub fn start() -> Result<Input, RunError> {
        let (tx, rx) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vmbuild-tty-input".into())
            .spawn(move || read_loop(&tx, &flag))
            .map_err(|e| RunError::io("starting the terminal input thread", e))?;
        Ok(Input {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// The next chunk typed; `None` once stdin is at its end (then never
    /// resolves again: the shell keeps running until it exits).
    pub async fn recv(&mut self) -> Vec<u8> {
        match self.rx.recv().await {
            Some(b) => b,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(tx: &mpsc::Sender<Vec<u8>>, stop: &AtomicBool) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let fd = stdin_fd();
    let mut buf = vec![0u8; STDIN_CHUNK];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: INPUT_POLL.as_nanos() as _,
    };
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        match rustix::io::read(fd.as_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Writes the shell's output to stdout as it comes (a closed stdout is
/// ignored: the shell still ends with its exit status).
pub fn write_out(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(bytes).and_then(|()| o.flush());
}

/// SIGWINCH as a stream of new sizes; `None` when it cannot be watched
/// (then the shell keeps its first size).
pub struct Resizes(Option<tokio::signal::unix::Signal>);

impl Resizes {
    pub fn watch() -> Resizes {
        Resizes(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok())
    }

    /// The terminal's size after its next change.
    pub async fn next(&mut self) -> WindowSize {
        let changed = match self.0.as_mut() {
            Some(s) => s.recv().await.is_some(),
            None => false,
        };
        if !changed {
            // No SIGWINCH to watch (or its stream ended): never again.
            self.0 = None;
            return std::future::pending().await;
        }
        window_size()
    }
}
