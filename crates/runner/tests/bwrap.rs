//! The bubblewrap runner against a real `bwrap` (installed in CI by
//! scripts/setup.sh): exit codes, streams, environment, cwd, filesystem
//! view, background processes, timeouts and cleanup.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vmbuild_proto::{CommandSpec, ExitInfo};
use vmbuild_runner::bwrap::{BwrapOptions, Sandbox};
use vmbuild_runner::{BufferSink, RunError, Stopper};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn spec(argv: &[&str], cwd: &str) -> CommandSpec {
    CommandSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), "/home/build".into()),
        ],
        cwd: cwd.into(),
        binds: Vec::new(),
        user: None,
    }
}

fn sh(script: &str) -> CommandSpec {
    spec(&["sh", "-c", script], "/home/build")
}

struct Fixture {
    sandbox: Sandbox,
    _source: tempfile::TempDir,
    cache: tempfile::TempDir,
}

fn fixture_with(fill: impl FnOnce(&Path)) -> Fixture {
    let source = tempfile::tempdir().unwrap();
    fill(source.path());
    let cache = tempfile::tempdir().unwrap();
    let opts = BwrapOptions {
        bwrap: None,
        source_dir: Some(source.path().to_path_buf()),
        cache_dir: Some(cache.path().to_path_buf()),
        volumes: Vec::new(),
        mkdirs: Vec::new(),
    };
    let sandbox = Sandbox::start(&opts).expect("bubblewrap must be installed (scripts/setup.sh)");
    Fixture {
        sandbox,
        _source: source,
        cache,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

async fn run(sb: &mut Sandbox, cmd: &CommandSpec) -> (ExitInfo, String, String) {
    let mut sink = BufferSink::default();
    let info = sb
        .run(cmd, &mut sink, &Stopper::never())
        .await
        .expect("run");
    (
        info,
        String::from_utf8_lossy(&sink.stdout).into_owned(),
        String::from_utf8_lossy(&sink.stderr).into_owned(),
    )
}

/// Processes whose command line contains `marker` or that see the
/// workspace `ws` mounted (its name shows in their mountinfo: the
/// sandbox's init and everything in the sandbox).
fn processes_mentioning(marker: &str, ws: &Path) -> Vec<String> {
    let ws_name = ws.file_name().unwrap().to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let mounts = fs::read_to_string(e.path().join("mountinfo")).unwrap_or_default();
        if cmdline.contains(marker) || mounts.contains(&ws_name) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

#[tokio::test]
async fn exit_code_and_separate_streams() {
    let mut f = fixture();
    let (info, out, err) = run(
        &mut f.sandbox,
        &sh("echo out1; echo err1 >&2; echo out2; exit 3"),
    )
    .await;
    assert_eq!((info.code, info.signal), (Some(3), None));
    assert_eq!(out, "out1\nout2\n");
    assert_eq!(err, "err1\n");
    assert!(info.ended_us >= info.started_us && info.started_us > 0);
    let (info, out, _) = run(&mut f.sandbox, &sh("echo ok")).await;
    assert_eq!(
        (info.code, out.as_str()),
        (Some(0), "ok\n"),
        "the sandbox runs several commands"
    );
    f.sandbox.finish().await;
}

#[tokio::test]
async fn environment_is_exactly_the_given_one() {
    let mut f = fixture();
    let mut cmd = spec(&["env"], "/home/build");
    cmd.env.push(("FOO".into(), "bar baz=qux".into()));
    let (info, out, _) = run(&mut f.sandbox, &cmd).await;
    assert_eq!(info.code, Some(0));
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(
        got,
        [
            "FOO=bar baz=qux",
            "HOME=/home/build",
            &format!("PATH={PATH}")[..]
        ]
    );
    f.sandbox.finish().await;
}

#[tokio::test]
async fn cwd_is_used_and_created() {
    let mut f = fixture();
    let (info, out, _) = run(&mut f.sandbox, &spec(&["pwd", "-P"], "/home/build/sub/dir")).await;
    assert_eq!(
        (info.code, out.as_str()),
        (Some(0), "/home/build/sub/dir\n")
    );
    assert!(
        f.sandbox.workspace().join("sub/dir").is_dir(),
        "created in the workspace"
    );
    let (info, out, _) = run(&mut f.sandbox, &spec(&["pwd", "-P"], "/tmp/scratch")).await;
    assert_eq!((info.code, out.as_str()), (Some(0), "/tmp/scratch\n"));
    f.sandbox.finish().await;
}

#[tokio::test]
async fn missing_command_is_127_and_not_executable_126() {
    let mut f = fixture_with(|s| fs::write(s.join("not-exec"), "echo hi\n").unwrap());
    let (info, _, err) = run(
        &mut f.sandbox,
        &spec(&["no-such-command-xyz"], "/home/build"),
    )
    .await;
    assert_eq!(info.code, Some(127));
    assert!(
        err.contains("no-such-command-xyz") && err.contains("No such file"),
        "{err}"
    );
    let (info, _, err) = run(&mut f.sandbox, &spec(&["./not-exec"], "/home/build")).await;
    assert_eq!(info.code, Some(126), "{err}");
    f.sandbox.finish().await;
}

#[tokio::test]
async fn killed_by_a_signal_reports_the_shell_code() {
    let mut f = fixture();
    let (info, _, _) = run(&mut f.sandbox, &sh("kill -9 $$")).await;
    // bubblewrap passes signal deaths on as 128 + N (see the module docs).
    assert_eq!(info.shell_code(), 137);
    f.sandbox.finish().await;
}

#[tokio::test]
async fn a_background_process_neither_hangs_the_step_nor_survives_it() {
    let mut f = fixture();
    let marker = "vmbuild-bg-marker-1";
    let t = Instant::now();
    let (info, out, _) = run(
        &mut f.sandbox,
        &sh(&format!("sh -c 'sleep 300; : {marker}' & echo started")),
    )
    .await;
    assert_eq!((info.code, out.as_str()), (Some(0), "started\n"));
    // Promptly: the sandbox dies with bubblewrap, no grace period expires.
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    let left = processes_mentioning(marker, f.sandbox.workspace());
    assert!(left.is_empty(), "left behind: {left:?}");
    f.sandbox.finish().await;
}

#[tokio::test]
async fn timeout_kills_everything_and_returns_the_stoppers_error() {
    let mut f = fixture();
    let marker = "vmbuild-timeout-marker-2";
    let (_tx, rx) = watch::channel(false);
    let stop = Stopper::new(Some(Duration::from_millis(1500)), rx);
    let mut sink = BufferSink::default();
    let script = format!("sh -c 'sleep 300; : {marker}' & echo started; sleep 300; : {marker}");
    let t = Instant::now();
    let r = f.sandbox.run(&sh(&script), &mut sink, &stop).await;
    assert!(matches!(r, Err(RunError::Timeout { .. })), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        String::from_utf8_lossy(&sink.stdout),
        "started\n",
        "output before the timeout was streamed"
    );
    let left = processes_mentioning(marker, f.sandbox.workspace());
    assert!(left.is_empty(), "left behind: {left:?}");
    f.sandbox.finish().await;
}

#[tokio::test]
async fn interrupt_stops_the_command() {
    let mut f = fixture();
    let marker = "vmbuild-interrupt-marker-3";
    let (tx, rx) = watch::channel(false);
    let stop = Stopper::new(None, rx);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = tx.send(true);
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let r = f
        .sandbox
        .run(
            &sh(&format!("sleep 300; : {marker}")),
            &mut BufferSink::default(),
            &stop,
        )
        .await;
    assert!(matches!(r, Err(RunError::Interrupted)), "{r:?}");
    let left = processes_mentioning(marker, f.sandbox.workspace());
    assert!(left.is_empty(), "left behind: {left:?}");
    f.sandbox.finish().await;
}

#[tokio::test]
async fn an_interrupt_already_set_stops_before_anything_is_left() {
    let mut f = fixture();
    let marker = "vmbuild-early-marker-4";
    let (_tx, rx) = watch::channel(true);
    let stop = Stopper::new(None, rx);
    let r = f
        .sandbox
        .run(
            &sh(&format!("sleep 300; : {marker}")),
            &mut BufferSink::default(),
            &stop,
        )
        .await;
    assert!(matches!(r, Err(RunError::Interrupted)), "{r:?}");
    let left = processes_mentioning(marker, f.sandbox.workspace());
    assert!(left.is_empty(), "left behind: {left:?}");
    f.sandbox.finish().await;
}

#[tokio::test]
async fn large_output_arrives_complete_even_when_the_command_exits_at_once() {
    let mut f = fixture();
    let (info, out, err) = run(
        &mut f.sandbox,
        &sh("head -c 3000000 /dev/zero | tr '\\0' x; head -c 200000 /dev/zero | tr '\\0' y >&2"),
    )
    .await;
    assert_eq!(info.code, Some(0));
    assert_eq!((out.len(), err.len()), (3_000_000, 200_000));
    assert!(out.bytes().all(|b| b == b'x') && err.bytes().all(|b| b == b'y'));
    f.sandbox.finish().await;
}

#[tokio::test]
async fn cache_and_workspace_are_writable_and_the_host_is_read_only() {
    let mut f = fixture();
    let script = "echo cached > /var/cache/vmbuild/a && cat /var/cache/melange/a && \
                  echo built > /home/build/out/result && echo tmp > /tmp/t && echo vt > /var/tmp/t";
    let (info, out, err) = run(&mut f.sandbox, &sh(script)).await;
    assert_eq!((info.code, out.as_str()), (Some(0), "cached\n"), "{err}");
    assert_eq!(
        fs::read_to_string(f.cache.path().join("a")).unwrap(),
        "cached\n",
        "cache writes persist"
    );
    assert_eq!(
        fs::read_to_string(f.sandbox.workspace().join("out/result")).unwrap(),
        "built\n"
    );

    for target in [
        "/usr/vmbuild-bwrap-test",
        "/etc/vmbuild-bwrap-test",
        "/vmbuild-bwrap-test",
        "/var/lib/vmbuild-bwrap-test",
    ] {
        let (info, _, err) = run(&mut f.sandbox, &sh(&format!("echo x > {target}"))).await;
        assert_ne!(info.code, Some(0), "writing {target} must fail");
        assert!(err.contains("Read-only file system"), "{target}: {err}");
        assert!(!Path::new(target).exists());
    }
    let (info, _, _) = run(&mut f.sandbox, &sh("mount -o remount,rw /usr")).await;
    assert_ne!(
        info.code,
        Some(0),
        "no capability to remount the host writable"
    );
    f.sandbox.finish().await;
}

#[tokio::test]
async fn host_homes_runtime_dirs_and_network_are_not_visible() {
    let mut f = fixture();
    let (info, out, _) = run(&mut f.sandbox, &sh("ls -A /home; ls -A /run; ls -A /tmp")).await;
    assert_eq!(
        (info.code, out.as_str()),
        (Some(0), "build\n"),
        "only the workspace in /home, empty /run and /tmp"
    );
    let (_, out, _) = run(&mut f.sandbox, &sh("cat /proc/net/dev")).await;
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(i, _)| i.trim())
        .collect();
    assert_eq!(ifaces, ["lo"], "no network but loopback: {out}");
    // Nothing but stdio is inherited.
    let (_, out, _) = run(&mut f.sandbox, &sh("ls /proc/$$/fd")).await;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
    f.sandbox.finish().await;
}

const MTIME: i64 = 1_234_567_890;

#[tokio::test]
async fn workspace_copy_keeps_symlink_exec_bit_hard_link_and_mtime() {
    let mut f = fixture_with(|s| {
        fs::create_dir(s.join("bin")).unwrap();
        fs::write(s.join("bin/tool"), "#!/bin/sh\necho tool ran\n").unwrap();
        fs::set_permissions(s.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::hard_link(s.join("bin/tool"), s.join("tool-again")).unwrap();
        fs::write(s.join("data.txt"), "data\n").unwrap();
        std::os::unix::fs::symlink("../data.txt", s.join("bin/data-link")).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(s.join("data.txt"))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(MTIME as u64))
            .unwrap();
    });
    let script = "cd /home/build && bin/tool && cat bin/data-link && readlink bin/data-link && \
                  stat -c '%h %i' bin/tool && stat -c '%h %i' tool-again && stat -c %Y data.txt";
    let (info, out, err) = run(&mut f.sandbox, &sh(script)).await;
    assert_eq!(info.code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["tool ran", "data", "../data.txt"]);
    assert_eq!(lines[3], lines[4], "one inode, two names");
    assert!(lines[3].starts_with("2 "), "{out}");
    assert_eq!(lines[5], MTIME.to_string());
    let ws = f.sandbox.workspace().to_path_buf();
    assert_eq!(
        fs::metadata(ws.join("bin/tool")).unwrap().mode() & 0o777,
        0o755
    );
    assert!(ws.join("out").is_dir(), "out/ exists");
    f.sandbox.finish().await;
}

#[tokio::test]
async fn finish_removes_the_workspace_even_with_read_only_dirs() {
    let mut f = fixture_with(|s| fs::write(s.join("f"), "x").unwrap());
    let (info, _, _) = run(
        &mut f.sandbox,
        &sh("mkdir -p ro/sub && touch ro/sub/f && chmod 555 ro/sub ro"),
    )
    .await;
    assert_eq!(info.code, Some(0));
    let ws: PathBuf = f.sandbox.workspace().to_path_buf();
    assert!(ws.join("ro/sub/f").exists());
    f.sandbox.finish().await;
    assert!(!ws.exists(), "workspace removed");
}

#[tokio::test]
async fn a_sandbox_setup_failure_is_an_error_naming_bwraps_message() {
    let mut f = fixture();
    let r = f
        .sandbox
        .run(
            &spec(&["true"], "/usr/no/such/dir"),
            &mut BufferSink::default(),
            &Stopper::never(),
        )
        .await;
    let e = r.expect_err("a cwd that cannot be created on the read-only host fails the setup");
    assert!(matches!(e, RunError::SandboxStartFailed { .. }), "{e:?}");
    let s = e.to_string();
    assert!(
        s.contains("bubblewrap could not start the command") && s.contains("bwrap:"),
        "{s}"
    );
    f.sandbox.finish().await;
}

#[test]
fn missing_bwrap_binary_is_a_clear_error() {
    let source = tempfile::tempdir().unwrap();
    for bwrap in ["/nonexistent/bwrap", "bwrap-not-installed-anywhere"] {
        let opts = BwrapOptions {
            bwrap: Some(bwrap.into()),
            source_dir: Some(source.path().into()),
            cache_dir: None,
            volumes: Vec::new(),
            mkdirs: Vec::new(),
        };
        let e = Sandbox::start(&opts)
            .expect_err("no such bwrap")
            .to_string();
        assert!(
            e.contains("bubblewrap (bwrap) not found") && e.contains("apt-get install bubblewrap"),
            "{e}"
        );
    }
}

#[test]
fn a_missing_source_dir_is_a_clear_error() {
    let opts = BwrapOptions {
        bwrap: None,
        source_dir: Some("/nonexistent/src".into()),
        cache_dir: None,
        volumes: Vec::new(),
        mkdirs: Vec::new(),
    };
    let e = Sandbox::start(&opts).expect_err("no source").to_string();
    assert!(
        e.contains("/nonexistent/src does not exist") && e.contains("--source-dir"),
        "{e}"
    );
}

#[test]
fn the_workspace_has_the_output_dirs_asked_for() {
    let source = tempfile::tempdir().unwrap();
    let opts = BwrapOptions {
        bwrap: None,
        source_dir: Some(source.path().into()),
        cache_dir: None,
        volumes: Vec::new(),
        mkdirs: vec![
            "/home/build/out".into(),
            "/home/build/out/pkg-dev".into(),
            "/etc/not-in-the-workspace".into(),
            "/home/build/../escape".into(),
        ],
    };
    let sandbox = Sandbox::start(&opts).expect("bubblewrap must be installed (scripts/setup.sh)");
    let w = sandbox.workspace();
    assert!(w.join("out/pkg-dev").is_dir());
    assert!(!w.join("etc").exists() && !w.join("../escape").exists());
}
