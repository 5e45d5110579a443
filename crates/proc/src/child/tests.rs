use std::io::Read;
use std::os::unix::process::ExitStatusExt;

use super::*;

fn sh(script: &str, output: Output) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    Child::spawn(cmd, output, Signal::KILL).expect("spawn /bin/sh")
}

fn alive(pid: i32) -> bool {
    // A zombie would still answer kill(0); look at its /proc state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
        Err(_) => false,
    }
}

async fn read_pid_file(path: &Path) -> i32 {
    for _ in 0..200 {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} was not written", path.display());
}

/// A shell (the group leader) waiting for a `sleep` it started, and the
/// sleep's pid.
async fn with_grandchild() -> (Child, i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let c = sh(&script, Output::Piped);
    let grandchild = read_pid_file(&pidfile).await;
    (c, grandchild)
}

async fn gone_soon(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn log_output_and_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("out.log");
    let mut c = sh(
        "echo out; echo err >&2; read x; exit 3",
        Output::Log(log.clone()),
    );
    assert_eq!(c.log_path(), Some(log.as_path()));
    let st = c.wait().await.expect("wait");
    assert_eq!(
        st.code(),
        Some(3),
        "stdin must be /dev/null so read returns"
    );
    assert_eq!(c.try_wait().expect("try_wait"), Some(st));
    assert_eq!(c.wait().await.expect("second wait"), st);
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "out\nerr\n");
}

#[test]
fn piped_output_and_blocking_wait() {
    let mut c = sh("echo out; echo err >&2; exit 4", Output::Piped);
    assert_eq!(c.log_path(), None);
    let (mut out, mut err) = (String::new(), String::new());
    c.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    c.take_stderr()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(c.take_stdout().is_none());
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(c.wait_blocking().expect("wait").code(), Some(4));
}

#[tokio::test]
async fn runs_in_its_own_process_group() {
    let mut c = sh("sleep 30", Output::Piped);
    let pgid = rustix::process::getpgid(Some(c.pid())).expect("getpgid");
    assert_eq!(pgid, c.pid());
    assert_ne!(pgid, rustix::process::getpgrp());
    assert!(c.try_wait().expect("try_wait").is_none());
    c.kill().await.expect("kill");
}

#[tokio::test]
async fn kill_takes_the_whole_group() {
    let (mut c, grandchild) = with_grandchild().await;
    let st = c.kill().await.expect("kill");
    assert_eq!(st.signal(), Some(Signal::KILL.as_raw()));
    // The grandchild is reparented and reaped by init or a subreaper.
    assert!(
        gone_soon(grandchild).await,
        "grandchild {grandchild} survived kill()"
    );
}

#[tokio::test]
async fn signal_group_reaches_every_member() {
    let (mut c, grandchild) = with_grandchild().await;
    c.signal_group(Signal::TERM).expect("signal");
    let st = c.wait().await.expect("wait");
    assert_eq!(st.signal(), Some(Signal::TERM.as_raw()));
    assert!(
        gone_soon(grandchild).await,
        "grandchild {grandchild} survived SIGTERM"
    );
    c.signal_group(Signal::TERM)
        .expect("an empty group is not an error");
}

#[test]
fn drop_kills_and_reaps() {
    let c = sh("sleep 30", Output::Piped);
    let pid = c.pid().as_raw_pid();
    assert!(alive(pid));
    drop(c);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "no zombie left"
    );
}

#[test]
fn dies_with_the_thread_that_spawned_it() {
    let mut c = std::thread::spawn(|| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("sleep 30");
        Child::spawn(cmd, Output::Piped, Signal::TERM).expect("spawn")
    })
    .join()
    .expect("spawning thread");
    // The spawning thread is gone: PDEATHSIG has been sent.
    let st = c.wait_blocking().expect("wait");
    assert_eq!(st.signal(), Some(Signal::TERM.as_raw()));
}

#[test]
fn missing_program_is_a_spawn_error() {
    let err = Child::spawn(
        Command::new("/nonexistent/tool"),
        Output::Piped,
        Signal::KILL,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("cannot start /nonexistent/tool"), "{err}");
}

#[test]
fn unwritable_log_is_a_log_error() {
    let log = PathBuf::from("/nonexistent/dir/x.log");
    let err = Child::spawn(Command::new("/bin/true"), Output::Log(log), Signal::KILL).err();
    assert!(
        matches!(&err, Some(ProcError::LogFile { path, .. }) if path == Path::new("/nonexistent/dir/x.log")),
        "{err:?}"
    );
}
