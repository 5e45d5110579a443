//! These run the real hook in a real child, as root (the test suite runs as
//! root; an unprivileged run fails the first assertion with why).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;

use super::*;
use crate::{Child, Output, Signal};

const UID: u32 = 64_012;

fn assert_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests drop privileges and need root"
    );
}

/// Runs `sh -c script` confined as `c`; returns (exit code, stdout).
async fn run(c: &Confinement, script: &str) -> (i32, String) {
    run_with(Some(c), script).await
}

/// Runs `sh -c script`, confined when `c` is given.
async fn run_with(c: Option<&Confinement>, script: &str) -> (i32, String) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    if let Some(c) = c {
        install(&mut cmd, c).expect("install");
    }
    let mut child = Child::spawn(cmd, Output::Piped, Signal::KILL).expect("spawn");
    let mut out = String::new();
    child
        .take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let st = child.wait().await.expect("wait");
    (st.code().unwrap_or(-1), out)
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("{key} not in {status}"))
}

fn dropped(keep: Vec<Capability>) -> Confinement {
    Confinement {
        ids: Some(Ids {
            uid: UID,
            gid: UID,
            groups: vec![],
        }),
        keep,
        rlimits: vec![(Resource::Nofile, 64), (Resource::Core, 0)],
        cgroup_procs: vec![],
    }
}

#[tokio::test]
async fn drops_to_the_uid_keeping_only_dac_read_search_as_ambient() {
    assert_root();
    let c = dropped(vec![Capability::CAP_DAC_READ_SEARCH]);
    let (code, st) = run(&c, "cat /proc/self/status; ulimit -n; ulimit -c").await;
    assert_eq!(code, 0, "{st}");
    assert!(
        status_field(&st, "Uid:").starts_with("64012\t64012\t64012"),
        "{st}"
    );
    assert!(
        status_field(&st, "Gid:").starts_with("64012\t64012\t64012"),
        "{st}"
    );
    assert_eq!(status_field(&st, "Groups:"), "");
    // CAP_DAC_READ_SEARCH is bit 2; `cat` got it through the ambient set.
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:", "CapBnd:"] {
        assert_eq!(status_field(&st, set), "0000000000000004", "{set} in {st}");
    }
    assert_eq!(status_field(&st, "NoNewPrivs:"), "1");
    let tail: Vec<&str> = st.lines().rev().take(2).collect();
    assert_eq!(tail, ["0", "64"], "core and nofile limits: {st}");
}

#[tokio::test]
async fn without_kept_capabilities_every_set_is_empty() {
    assert_root();
    let (code, st) = run(&dropped(vec![]), "cat /proc/self/status").await;
    assert_eq!(code, 0, "{st}");
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:", "CapBnd:"] {
        assert_eq!(status_field(&st, set), "0000000000000000", "{set} in {st}");
    }
}

#[tokio::test]
async fn dac_read_search_reads_a_root_only_file_and_nothing_else_can() {
    assert_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "root only\n").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let script = format!("cat {0}; echo x >> {0}", secret.display());
    let (code, out) = run(&dropped(vec![Capability::CAP_DAC_READ_SEARCH]), &script).await;
    assert_eq!(
        (code, out.as_str()),
        (2, "root only\n"),
        "reads, cannot write"
    );
    let (code, out) = run(&dropped(vec![]), &script).await;
    assert_ne!(code, 0);
    assert_eq!(out, "");
}

#[tokio::test]
async fn inherited_descriptors_do_not_reach_the_program() {
    let file = tempfile::tempfile().expect("tempfile");
    // SAFETY: dup of an fd we own; the result is owned by `leak` below.
    let raw = unsafe { libc::dup(file.as_raw_fd()) };
    assert!(raw > 2);
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let leak = unsafe { OwnedFd::from_raw_fd(raw) };
    let script = format!("test -e /proc/$$/fd/{raw} && echo open || echo closed");
    let (_, plain) = run_with(None, &script).await;
    assert_eq!(
        plain, "open\n",
        "a dup()ed fd is inherited without the hook"
    );
    let (_, confined) = run(&Confinement::default(), &script).await;
    assert_eq!(confined, "closed\n");
    drop(leak);
}

#[tokio::test]
async fn joins_the_cgroup_before_dropping() {
    assert_root();
    let base = Path::new("/sys/fs/cgroup/pids");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    let cg = base.join(format!("vmbuild-proc-test-{}", std::process::id()));
    std::fs::create_dir(&cg).expect("mkdir cgroup");
    let mut c = dropped(vec![]);
    c.cgroup_procs = vec![cg.join("cgroup.procs")];
    let (code, out) = run(&c, "cat /proc/self/cgroup").await;
    let name = cg.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_dir(&cg).expect("rmdir cgroup");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("/{name}\n")), "{out}");
}

#[test]
fn an_unopenable_cgroup_is_named() {
    let mut cmd = Command::new("/bin/true");
    let c = Confinement {
        cgroup_procs: vec![PathBuf::from("/nonexistent/cg/cgroup.procs")],
        ..Confinement::default()
    };
    let e = install(&mut cmd, &c).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/cg/cgroup.procs"), "{e}");
}

#[test]
fn the_parent_death_signal_survives_the_uid_change() {
    assert_root();
    let mut c = std::thread::spawn(|| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("sleep 30");
        install(&mut cmd, &dropped(vec![])).expect("install");
        Child::spawn(cmd, Output::Piped, Signal::TERM).expect("spawn")
    })
    .join()
    .expect("spawning thread");
    // A uid change clears PDEATHSIG; Child::spawn sets it after our hook.
    let st = std::os::unix::process::ExitStatusExt::signal(&c.wait_blocking().expect("wait"));
    assert_eq!(st, Some(Signal::TERM.as_raw()));
}

#[tokio::test]
async fn a_file_size_limit_stops_writes_without_killing_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("big");
    let c = Confinement {
        rlimits: vec![(Resource::Fsize, 1000)],
        ..Confinement::default()
    };
    let script = format!("head -c 5000 /dev/zero > {}; echo head=$?", f.display());
    let (code, out) = run(&c, &script).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "head=1\n"),
        "head fails, not killed"
    );
    assert_eq!(std::fs::metadata(&f).expect("file").len(), 1000);
}
