//! Turning what a failed VM left behind (QEMU's log, the serial console,
//! a daemon's log, the last message) into one error that says what
//! happened and what to do. The run directory holding these files is
//! removed right after, so everything worth showing is copied into the
//! error here.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use vmbuild_proto::GuestMessage;

use crate::error::{RunError, VmFailureKind};

/// How long QEMU gets to finish exiting once its sockets broke, so its own
/// reason can be read from its log.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The last `lines` lines of a log file (empty if unreadable).
pub(crate) fn read_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    vmbuild_qemu::console::tail(&text, lines)
}

fn one_line(tail: &str) -> String {
    if tail.trim().is_empty() {
        "no output".to_string()
    } else {
        tail.trim().replace('\n', " | ")
    }
}

/// QEMU exited with `status` before the guest was up: its own reason is
/// the tail of its log (stderr).
pub(crate) fn start_failure(status: std::io::Result<ExitStatus>, qemu_log: &Path) -> RunError {
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("could not wait for it: {e}"),
    };
    RunError::QemuStartFailed {
        status,
        detail: one_line(&read_tail(qemu_log, 5)),
    }
}

/// Connecting to QEMU failed with `e` (a reset QMP socket, a handshake
/// error): when QEMU has exited, or exits within [`EXIT_GRACE`], that is
/// the real failure and its log says why; otherwise `e` with QEMU's log
/// tail added.
pub(crate) async fn connect_failure(
    e: RunError,
    qemu: &mut vmbuild_qemu::QemuProcess,
    qemu_log: &Path,
) -> RunError {
    match tokio::time::timeout(EXIT_GRACE, qemu.wait()).await {
        Ok(status) => start_failure(status, qemu_log),
        Err(_) => RunError::QemuStartFailed {
            status: "still running".into(),
            detail: format!("{e}; QEMU's output: {}", one_line(&read_tail(qemu_log, 5))),
        },
    }
}

/// Nothing came from the guest within `waited` while waiting for `what`.
pub(crate) fn unresponsive(
    what: &str,
    waited: Duration,
    console: &Path,
    qemu_log: &Path,
) -> RunError {
    let mut console_tail = read_tail(console, 20);
    let qemu_tail = read_tail(qemu_log, 5);
    if !qemu_tail.trim().is_empty() {
        console_tail.push_str("\n(QEMU) ");
        console_tail.push_str(qemu_tail.trim());
    }
    RunError::Vm {
        kind: VmFailureKind::Unresponsive,
        detail: format!(
            "no sign of {what} after {}s; the VM was stopped (a stuck guest init or kernel: see the console below; on a very slow host raise --boot-timeout)",
            waited.as_secs()
        ),
        console_tail,
    }
}

/// A virtiofsd the VM depends on exited while the VM ran.
pub(crate) fn daemon_died(
    tag: &str,
    pid: i32,
    status: std::io::Result<ExitStatus>,
    log: &Path,
) -> RunError {
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    };
    RunError::Vm {
        kind: VmFailureKind::HelperExited,
        detail: format!(
            "virtiofsd serving share {tag} (pid {pid}) exited ({status}) while the VM was running; the VM was stopped. virtiofsd's last output: {}",
            one_line(&read_tail(log, 5))
        ),
        console_tail: String::new(),
    }
}

/// The guest init sent `got` where `expected` belongs.
pub(crate) fn protocol_error(expected: &str, got: &GuestMessage) -> RunError {
    let got = match got {
        GuestMessage::Hello(_) => "Hello",
        GuestMessage::Ready(_) => "Ready",
        GuestMessage::Stdout(_) => "Stdout",
        GuestMessage::Stderr(_) => "Stderr",
        GuestMessage::Exited(_) => "Exited",
        GuestMessage::Fatal(_) => "Fatal",
        GuestMessage::Log(_) => "Log",
    };
    RunError::Vm {
        kind: VmFailureKind::Unexpected,
        detail: format!("guest init sent {got} where {expected} was expected (mismatched init? unset VMBUILD_INIT to use the one built into vmbuild)"),
        console_tail: String::new(),
    }
}

/// QEMU exited cleanly before the guest reported a result: the console says
/// whether it was a kernel panic, an init crash or the OOM killer.
pub(crate) fn from_console(console_log: &Path) -> RunError {
    let console = std::fs::read(console_log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let tail = vmbuild_qemu::console::tail(&console, 20);
    use vmbuild_qemu::console::GuestFailure as G;
    let (kind, detail) = match vmbuild_qemu::console::classify(&console) {
        Some(G::InitCrash(l)) => (VmFailureKind::InitCrash, l),
        Some(G::KernelPanic(l)) => (VmFailureKind::KernelPanic, l),
        Some(G::OutOfMemory(l)) => (VmFailureKind::OutOfMemory, l),
        None => (
            VmFailureKind::Unexpected,
            "QEMU exited before the guest reported a result".to_string(),
        ),
    };
    RunError::Vm {
        kind,
        detail,
        console_tail: tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn start_failure_carries_qemu_own_words_on_one_line() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("qemu.log");
        std::fs::write(&log, "warning: x\nqemu-system-x86_64: -device no-such-device: 'no-such-device' is not a valid device model name\n").unwrap();
        let e = start_failure(Ok(ExitStatus::from_raw(1 << 8)), &log).to_string();
        assert!(
            e.contains("is not a valid device model name") && e.contains("warning: x | qemu"),
            "{e}"
        );
        assert!(e.contains("exit status: 1"), "{e}");
        let e = start_failure(Ok(ExitStatus::from_raw(1 << 8)), &d.path().join("none")).to_string();
        assert!(e.contains("no output"), "{e}");
    }

    #[test]
    fn unresponsive_names_what_was_awaited_and_keeps_the_console() {
        let d = tempfile::tempdir().unwrap();
        let console = d.path().join("console.log");
        std::fs::write(&console, "booting\nstuck here\n").unwrap();
        let e = unresponsive(
            "the guest init's first message (Hello)",
            Duration::from_secs(7),
            &console,
            &d.path().join("q"),
        );
        assert_eq!(e.exit_code(), crate::error::EXIT_VM_FAILURE);
        let s = e.to_string();
        assert!(
            s.contains("first message (Hello) after 7s") && s.contains("--boot-timeout"),
            "{s}"
        );
        assert!(e.console_tail().is_some_and(|t| t.contains("stuck here")));
    }

    #[test]
    fn daemon_death_names_the_share_pid_status_and_log() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("v.log");
        std::fs::write(&log, "last words\n").unwrap();
        let e = daemon_died("vmbuild-cache", 42, Ok(ExitStatus::from_raw(9)), &log);
        assert_eq!(e.exit_code(), crate::error::EXIT_VM_FAILURE);
        let s = e.to_string();
        assert!(
            s.contains("vmbuild-cache")
                && s.contains("pid 42")
                && s.contains("signal: 9")
                && s.contains("last words"),
            "{s}"
        );
    }
}
