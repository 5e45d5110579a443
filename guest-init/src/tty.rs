//! Running one command on a pseudo-terminal (`RunTty`, for
//! `vmbuild build --interactive`): the command gets a new pty as its
//! stdin, stdout, stderr and controlling terminal, in a session of its
//! own; what it writes goes to the host as `Stdout` frames, what the host
//! sends as `Stdin` is written to the pty, `Resize` sets its size. It ends
//! on the command's exit status, like [`crate::exec::run`].

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use vmbuild_proto::{ExitInfo, GuestMessage, HostMessage, TtyRun, WindowSize};

use crate::children::{reap, ChildWatch};
use crate::clock::boottime_us;
use crate::error::{InitError, Result};
use crate::exec::{self, Prepared, CHUNK};
use crate::port::Port;
use crate::root::GuestRoot;

/// Most typed bytes held for the pty while the command does not read them;
/// past it, further input is dropped (a terminal's own buffer is ~4 KiB).
const PENDING_LIMIT: usize = 1024 * 1024;
/// After the command exited, read at most this much more of its output.
const DRAIN_LIMIT: usize = 1024 * 1024;
/// Re-check for exited children at least this often.
const POLL_MS: u16 = 1000;

/// Runs `req` in `root` on a new pty, relaying through `port`, until the
/// command exits; returns its status (the caller sends `Exited`). Host
/// messages other than `Stdin` and `Resize` while it runs are a protocol
/// error; the host hanging up ends the command (the pty closes: SIGHUP).
pub fn run(
    req: &TtyRun,
    root: &GuestRoot,
    watch: &ChildWatch,
    port: &mut Port,
) -> Result<ExitInfo> {
    watch.drain();
    reap(None);
    let mut send = |m: GuestMessage| port.send(&m);
    let mut cmd = match exec::prepare(&req.command, root, &mut send)? {
        Prepared::Spawn(c) => c,
        Prepared::Refused(info) => return Ok(info),
    };
    let (master, slave) = open_pty(req.size)?;
    let stdio = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(|e| InitError::io("duplicating the pty", e))
    };
    cmd.stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?);
    drop(slave);
    // SAFETY: ioctl(2) is async-signal-safe. This runs after `prepare`'s
    // hook, which ended with setsid(): the new session takes fd 0, the pty,
    // as its controlling terminal, so Ctrl-C typed on the host reaches the
    // command's foreground job as SIGINT.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started_us = boottime_us();
    let argv0 = req.command.argv[0].clone();
    let pid = match exec::spawn(cmd, &argv0, &mut send)? {
        Ok(pid) => pid,
        Err(refused) => return Ok(refused),
    };
    let status = relay(pid, &master, watch, port)?;
    exec::exit_info(status, started_us, None)
}

/// A new pty of `size`: the master (non-blocking) and the slave, both
/// close-on-exec from the start.
fn open_pty(size: WindowSize) -> Result<(OwnedFd, OwnedFd)> {
    let err = |e| InitError::sys("opening a pseudo-terminal", e);
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(err)?;
    grantpt(&master).map_err(err)?;
    unlockpt(&master).map_err(err)?;
    let name = ptsname_r(&master).map_err(err)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err)?;
    let master = OwnedFd::from(master);
    // SAFETY: TIOCSWINSZ reads one `struct winsize` we own.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize(size)) } != 0 {
        return Err(err(Errno::last()));
    }
    Ok((master, slave))
}

fn winsize(s: WindowSize) -> Winsize {
    Winsize {
        ws_row: s.rows,
        ws_col: s.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Moves bytes between the pty and the port until `pid` exits, then drains
/// what it left in the pty.
fn relay(pid: Pid, master: &OwnedFd, watch: &ChildWatch, port: &mut Port) -> Result<WaitStatus> {
    let mut buf = vec![0u8; CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    let mut host_open = true;
    loop {
        let (child_event, out_ready, in_ready, can_write) = {
            let port_fd = port.as_raw_fd();
            // SAFETY: the port's fd stays open for the whole call (the Port
            // outlives this borrow, which ends before the port is used).
            let port_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(port_fd) };
            let mut master_flags = PollFlags::POLLIN;
            if !pending.is_empty() {
                master_flags |= PollFlags::POLLOUT;
            }
            let mut pfds = vec![
                PollFd::new(watch.fd(), PollFlags::POLLIN),
                PollFd::new(master.as_fd(), master_flags),
            ];
            if host_open {
                pfds.push(PollFd::new(port_fd, PollFlags::POLLIN));
            }
            match poll(&mut pfds, PollTimeout::from(POLL_MS)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(InitError::sys("poll on the pty and the port", e)),
            }
            let r = |i: usize| {
                pfds.get(i)
                    .and_then(PollFd::revents)
                    .unwrap_or(PollFlags::empty())
            };
            let quiet = (0..pfds.len()).all(|i| r(i).is_empty());
            (
                quiet || !r(0).is_empty(),
                r(1).intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
                !r(2).is_empty(),
                r(1).contains(PollFlags::POLLOUT),
            )
        };
        if out_ready {
            read_some(master, &mut buf, port)?;
        }
        if can_write {
            write_some(master, &mut pending)?;
        }
        if in_ready {
            match port.recv()? {
                Some(HostMessage::Stdin(b)) => {
                    if pending.len() + b.len() <= PENDING_LIMIT {
                        pending.extend_from_slice(&b);
                        write_some(master, &mut pending)?;
                    }
                }
                Some(HostMessage::Resize(s)) => {
                    // SAFETY: TIOCSWINSZ reads one `struct winsize` we own.
                    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize(s)) };
                }
                // The host is gone: closing the pty hangs the command up.
                None => host_open = false,
                Some(other) => {
                    return Err(InitError::Invalid(format!(
                        "the host sent {other:?} while a terminal command runs"
                    )))
                }
            }
        }
        if child_event {
            watch.drain();
            if let Some(st) = reap(Some(pid)) {
                let mut total = 0;
                while total < DRAIN_LIMIT {
                    match read_some(master, &mut buf, port)? {
                        0 => break,
                        n => total += n,
                    }
                }
                return Ok(st);
            }
        }
        if !host_open {
            // Without a host nobody reads the output nor types: hang up.
            // SAFETY: kill(2) on the command's session leader.
            unsafe { libc::kill(pid.as_raw(), libc::SIGHUP) };
        }
    }
}

/// One non-blocking read of the pty, sent as a `Stdout` frame. Returns the
/// bytes read (0: none now, or the pty is closed: EIO once every slave fd
/// is gone).
fn read_some(master: &OwnedFd, buf: &mut [u8], port: &mut Port) -> Result<usize> {
    loop {
        return match nix::unistd::read(master, buf) {
            Ok(0) | Err(Errno::EAGAIN) | Err(Errno::EIO) => Ok(0),
            Ok(n) => {
                port.send(&GuestMessage::Stdout(buf[..n].to_vec()))?;
                Ok(n)
            }
            Err(Errno::EINTR) => continue,
            Err(e) => Err(InitError::sys("reading the pty", e)),
        };
    }
}

/// Writes as much of `pending` to the pty as it takes now.
fn write_some(master: &OwnedFd, pending: &mut Vec<u8>) -> Result<()> {
    while !pending.is_empty() {
        match nix::unistd::write(master, pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(()),
            // The command closed its terminal: its input has nowhere to go.
            Err(Errno::EIO) => {
                pending.clear();
                return Ok(());
            }
            Err(e) => return Err(InitError::sys("writing to the pty", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::net::UnixStream;
    use vmbuild_proto::{CommandSpec, Message};

    /// Runs `sh -i`-like commands on a pty with a socket for a port, feeding
    /// `input` as one `Stdin` frame; returns the status and the output.
    fn run_on_pty(script: &str, input: &[u8], size: WindowSize) -> (ExitInfo, Vec<u8>) {
        run_with_frames(script, &[HostMessage::Stdin(input.to_vec())], size)
    }

    /// [`run_on_pty`] with any host frames sent first, in order.
    fn run_with_frames(
        script: &str,
        frames: &[HostMessage],
        size: WindowSize,
    ) -> (ExitInfo, Vec<u8>) {
        let _g = exec::tests_serial();
        let (a, mut host) = UnixStream::pair().unwrap();
        let mut port = Port::from_file(File::from(OwnedFd::from(a)), "/x".into());
        for f in frames {
            f.write_to(&mut host).unwrap();
        }
        let req = TtyRun {
            command: CommandSpec {
                argv: vec!["sh".into(), "-c".into(), script.into()],
                env: vec![
                    ("PATH".into(), "/usr/bin:/bin".into()),
                    ("STEP_VAR".into(), "from-the-step".into()),
                ],
                cwd: "/tmp".into(),
                binds: Vec::new(),
                user: None,
            },
            size,
        };
        let watch = ChildWatch::install().unwrap();
        let info = run(&req, &GuestRoot::initramfs(), watch, &mut port).unwrap();
        drop(port);
        let mut out = Vec::new();
        while let Some(m) = GuestMessage::read_from(&mut host).unwrap() {
            match m {
                GuestMessage::Stdout(b) => out.extend(b),
                other => panic!("unexpected {other:?}"),
            }
        }
        (info, out)
    }

    #[test]
    fn the_command_reads_typed_input_from_its_controlling_terminal() {
        let (info, out) = run_on_pty(
            "test -t 0 && test -t 1 && echo tty-ok; read line; echo \"got $line in $PWD with $STEP_VAR\"; exit 3",
            b"hello\n",
            WindowSize::default(),
        );
        let text = String::from_utf8_lossy(&out);
        assert_eq!(info.code, Some(3), "{text}");
        assert!(text.contains("tty-ok"), "{text}");
        assert!(
            text.contains("got hello in /tmp with from-the-step"),
            "{text}"
        );
    }

    #[test]
    fn the_pty_has_the_size_the_host_sent() {
        let (info, out) = run_on_pty(
            "stty size",
            b"",
            WindowSize {
                rows: 33,
                cols: 111,
            },
        );
        let text = String::from_utf8_lossy(&out);
        assert_eq!(info.code, Some(0), "{text}");
        assert!(text.contains("33 111"), "{text}");
    }

    #[test]
    fn a_resize_from_the_host_reaches_the_pty() {
        // The command waits for a line typed after the resize, then asks.
        let (info, out) = run_with_frames(
            "read go; stty size",
            &[
                HostMessage::Resize(WindowSize { rows: 44, cols: 99 }),
                HostMessage::Stdin(b"go\n".to_vec()),
            ],
            WindowSize::default(),
        );
        let text = String::from_utf8_lossy(&out);
        assert_eq!(info.code, Some(0), "{text}");
        assert!(text.contains("44 99"), "{text}");
    }

    #[test]
    fn ctrl_c_typed_interrupts_the_foreground_command() {
        // ^C (0x03) on the terminal is SIGINT for its foreground job (`exec`:
        // no moment when a forked sleep could miss it).
        let (info, out) = run_on_pty("exec sleep 20", b"\x03", WindowSize::default());
        assert_eq!(
            info.signal,
            Some(libc::SIGINT),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}
