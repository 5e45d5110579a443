//! QMP against a real QEMU that has no guest at all (`-M none`): the host
//! listens, QEMU connects, we negotiate, query, and quit. QEMU must be
//! installed (it always is in CI).

use std::ffi::OsString;
use std::time::Duration;

use vmbuild_qemu::{accept_qmp, find_qemu, Arch, QemuProcess, QmpEvent};

#[tokio::test]
async fn qmp_query_status_and_quit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("qmp.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind qmp socket");
    let qemu = find_qemu(Arch::X86_64, None).expect("qemu-system-x86_64 must be installed");
    let mut chardev = OsString::from("socket,id=qmp,path=");
    chardev.push(vmbuild_qemu::escape_opt_value(sock.as_os_str()));
    let args: Vec<OsString> = [
        "-M",
        "none",
        "-display",
        "none",
        "-nodefaults",
        "-no-user-config",
        "-chardev",
    ]
    .iter()
    .map(OsString::from)
    .chain([chardev, "-mon".into(), "chardev=qmp,mode=control".into()])
    .collect();
    let mut proc =
        QemuProcess::spawn(&qemu, &args, &dir.path().join("qemu.log"), None).expect("spawn qemu");

    let mut qmp = tokio::time::timeout(Duration::from_secs(30), accept_qmp(&listener))
        .await
        .unwrap_or_else(|_| panic!("QEMU did not connect; log:\n{}", proc.read_log()))
        .expect("QMP handshake");

    // `-M none` has no CPUs to run but QEMU reports the VM as running.
    let running = qmp.query_status().await.expect("query-status");
    assert!(running, "a fresh -M none VM reports running");

    qmp.quit().await.expect("quit");
    let status = tokio::time::timeout(Duration::from_secs(30), proc.wait())
        .await
        .expect("QEMU exits after quit")
        .expect("wait");
    assert!(
        status.success(),
        "QEMU exit status {status}; log:\n{}",
        proc.read_log()
    );

    // QEMU announces its own shutdown, then closes the connection.
    let mut events = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), qmp.next_event()).await {
        events.push(e);
    }
    assert!(
        events.iter().any(|e| matches!(e, QmpEvent::Shutdown { guest: false, reason } if reason == "host-qmp-quit")),
        "events: {events:?}"
    );
}
