//! The way out. PID 1 must never return (the kernel panics when init exits)
//! and must never hang: every error ends here, says why on the console and
//! on the control port, syncs and powers the VM off.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;
use vmbuild_proto::Message as _;

use nix::sys::reboot::{reboot, RebootMode};
use vmbuild_proto::GuestMessage;

/// The control port's fd once it is open, so the fatal path can report.
static PORT_FD: AtomicI32 = AtomicI32::new(-1);
/// Set on the first call of [`fatal`]; a second (nested) failure goes
/// straight to power-off.
static IN_FATAL: AtomicBool = AtomicBool::new(false);

/// kmsg refuses records longer than about 1 KiB.
const KMSG_MAX: usize = 900;
/// How long the fatal path keeps trying to hand its message to the host.
const PORT_WRITE_BUDGET: Duration = Duration::from_secs(2);

/// Registers the control port so [`fatal`] can send `Fatal` on it.
pub fn set_port_fd(fd: RawFd) {
    PORT_FD.store(fd, Ordering::SeqCst);
}

/// Writes one line to the kernel log (`/dev/kmsg`) at the given syslog
/// level, or to fd 2 (the console) when kmsg cannot be written.
pub fn console(level: u8, msg: &str) {
    let mut line = format!("<{level}>vmbuild-init: {msg}");
    if line.len() > KMSG_MAX {
        let mut cut = KMSG_MAX;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line.push('\n');
    let to_kmsg = OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if to_kmsg.is_err() {
        let text = format!("vmbuild-init: {msg}\n");
        // fd 2 is the console (std_fds makes sure it is open).
        // SAFETY: fd 2 is open for the life of the process and owned by no
        // Rust object; ManuallyDrop keeps this File from closing it, so the
        // borrow ends without taking ownership.
        let mut err = ManuallyDrop::new(unsafe { File::from_raw_fd(2) });
        let _ = err.write_all(text.as_bytes());
    }
}

/// Reports `msg` on the console and the control port, then powers off.
pub fn fatal(msg: &str) -> ! {
    if IN_FATAL.swap(true, Ordering::SeqCst) {
        console(
            2,
            &format!("fatal (while handling another fatal error): {msg}"),
        );
        power_off();
    }
    console(2, &format!("fatal: {msg}"));
    let fd = PORT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        send_fatal(fd, msg);
    }
    power_off();
}

/// Sends `Fatal(msg)` without ever blocking for long: a blocking write to
/// the port waits while the host does not drain it, so a helper thread
/// writes and we wait for it at most [`PORT_WRITE_BUDGET`].
fn send_fatal(fd: RawFd, msg: &str) {
    let mut buf = Vec::new();
    if GuestMessage::Fatal(msg.to_string())
        .write_to(&mut buf)
        .is_err()
    {
        return;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new()
        .name("fatal-report".into())
        .spawn(move || {
            // SAFETY: fd is the open control port; ManuallyDrop keeps it open.
            let mut port = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            let _ = port.write_all(&buf);
            let _ = done_tx.send(());
        });
    if writer.is_ok() {
        let _ = done_rx.recv_timeout(PORT_WRITE_BUDGET);
    }
}

/// Syncs and powers off. Never returns: if power-off is refused it tries a
/// reboot (QEMU runs with -no-reboot, so that ends the VM too), then sleeps.
/// Outside PID 1 (never the case in a VM) it just exits.
pub fn power_off() -> ! {
    nix::unistd::sync();
    if std::process::id() != 1 {
        std::process::exit(1);
    }
    let _ = reboot(RebootMode::RB_POWER_OFF);
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Makes a panic take the fatal path instead of unwinding out of PID 1.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        fatal(&format!("init panicked{at}: {what}"));
    }));
}
