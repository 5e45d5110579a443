//! Running one command: spawn it in its own session with exactly the
//! environment the host sent, stream stdout and stderr as they come, and
//! end on its exit status (not on EOF: a background process may keep the
//! pipes open forever).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::WaitStatus;
use nix::unistd::{pipe2, Pid};
use vmbuild_proto::{CommandSpec, ExitInfo, FrameError, GuestMessage};

use crate::children::{reap, ChildWatch};
use crate::clock::boottime_us;
use crate::error::{InitError, Result};
use crate::mounts::mkdir_p;
use crate::pathsearch::{env_path, resolve};
use crate::root::GuestRoot;

/// Largest output chunk read (and sent) at once.
pub const CHUNK: usize = 64 * 1024;
/// After the command exited, read at most this much more per pipe: a
/// background process writing without pause must not keep us here.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
/// Safety net: re-check for exited children at least this often even if a
/// wake-up were lost.
const POLL_MS: u16 = 1000;

/// Where output and the final status go (the control port in the VM).
pub type Sink<'a> = dyn FnMut(GuestMessage) -> Result<(), FrameError> + 'a;

/// Runs `spec` to completion inside `root` (chrooted there unless it is the
/// initramfs), sending `Stdout`/`Stderr` frames to `sink`, and returns its
/// exit status (the caller sends `Exited`). `argv[0]` and the working
/// directory are guest paths, looked up inside `root`. A command that
/// cannot be started is reported the shell way: a message on stderr and
/// 127 (not found) or 126 (cannot execute).
pub fn run(
    spec: &CommandSpec,
    root: &GuestRoot,
    watch: &ChildWatch,
    sink: &mut Sink<'_>,
) -> Result<ExitInfo> {
    watch.drain();
    reap(None);
    let mut cmd = match prepare(spec, root, sink)? {
        Prepared::Spawn(c) => c,
        Prepared::Refused(info) => return Ok(info),
    };
    let (out_r, out_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| InitError::sys("creating the stdout pipe", e))?;
    let (err_r, err_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| InitError::sys("creating the stderr pipe", e))?;
    for r in [&out_r, &err_r] {
        fcntl(r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| InitError::sys("setting O_NONBLOCK", e))?;
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let oom = crate::oom::OomWatch::start();
    let started_us = boottime_us();
    let pid = match spawn(cmd, &spec.argv[0], sink)? {
        Ok(pid) => pid,
        Err(refused) => return Ok(refused),
    };
    let status = pump(pid, [out_r, err_r], watch, sink)?;
    exit_info(status, started_us, oom.finish())
}

/// A command ready to spawn (stdio still to choose), or the refusal
/// already reported on the sink.
pub enum Prepared {
    Spawn(Command),
    Refused(ExitInfo),
}

/// Everything [`run`] does before choosing the command's stdio: makes the
/// working directory, resolves `argv[0]`, and sets up (after fork) the
/// step's binds, the chroot, the working directory, the user's ids and a
/// new session (`setsid`), in that order. Problems with the spec itself
/// (no argv, a missing program, a bad path) are [`Prepared::Refused`] with
/// the shell's message and code; errors are the init's own failures.
pub fn prepare(spec: &CommandSpec, root: &GuestRoot, sink: &mut Sink<'_>) -> Result<Prepared> {
    let refused = |sink: &mut Sink<'_>, code, msg| refuse(sink, code, msg).map(Prepared::Refused);
    let Some(argv0) = spec.argv.first() else {
        return refused(sink, 127, "vmbuild-init: empty command line\n".into());
    };
    let cwd = Path::new(&spec.cwd);
    let made = root.host(cwd).and_then(|at| {
        let missing = missing_dirs(&at);
        mkdir_p(&at)?;
        // A directory made for a command that runs as a user belongs to
        // that user, as if the command had made it itself.
        if let Some(u) = &spec.user {
            for d in &missing {
                std::os::unix::fs::lchown(d, Some(u.uid), Some(u.gid))
                    .map_err(|e| InitError::io(format!("chown of {}", d.display()), e))?;
            }
        }
        Ok(())
    });
    if let Err(e) = made {
        return refused(sink, 126, format!("vmbuild-init: {e}\n"));
    }
    let program = match resolve(argv0, env_path(&spec.env), cwd, |p| root.probe(p)) {
        Ok(p) => p,
        Err(errno) => return refused(sink, exit_code_for(errno), spawn_message(argv0, errno)),
    };
    let to_c = |p: &Path| CString::new(p.as_os_str().as_bytes());
    let (Ok(c_cwd), Ok(c_root)) = (to_c(cwd), root.chroot_dir().map(to_c).transpose()) else {
        return refused(
            sink,
            126,
            "vmbuild-init: a path contains a NUL byte\n".into(),
        );
    };
    // Step-level volumes: mount points made now (before fork), the binds
    // themselves in the child's own mount namespace, so only it sees them.
    let mut binds = Vec::new();
    for b in &spec.binds {
        let paths = root
            .host(Path::new(&b.source))
            .and_then(|s| root.host(Path::new(&b.target)).map(|t| (s, t)));
        let (src, dst) = match paths {
            Ok(p) => p,
            Err(e) => return refused(sink, 126, format!("vmbuild-init: {e}\n")),
        };
        if let Err(e) = mkdir_p(&dst) {
            return refused(sink, 126, format!("vmbuild-init: {e}\n"));
        }
        match (to_c(&src), to_c(&dst)) {
            (Ok(s), Ok(d)) => binds.push((s, d)),
            _ => {
                return refused(
                    sink,
                    126,
                    "vmbuild-init: a bind path contains a NUL byte\n".into(),
                )
            }
        }
    }
    let ids = spec.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone()));
    let mut cmd = Command::new(&program);
    cmd.arg0(argv0)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    // chroot first, then chdir: the program and cwd are paths in the root.
    // SAFETY: unshare(2), mount(2), chroot(2), chdir(2), setgroups(2),
    // setgid(2), setuid(2) and setsid(2) are async-signal-safe syscalls and
    // every string and id list was allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            if !binds.is_empty() {
                // A mount namespace of its own, private so nothing propagates
                // back, then each bind.
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let slash = c"/";
                let flags = libc::MS_REC | libc::MS_PRIVATE;
                let null = std::ptr::null();
                if libc::mount(null, slash.as_ptr(), null, flags, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (s, d) in &binds {
                    let bind = libc::MS_BIND | libc::MS_REC;
                    if libc::mount(s.as_ptr(), d.as_ptr(), null, bind, std::ptr::null()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            if let Some(r) = &c_root {
                if libc::chroot(r.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::chdir(c_cwd.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Drop root last, after everything that needs it: supplementary
            // groups first (setgroups needs root), then the gid, then the uid.
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::setsid();
            Ok(())
        });
    }
    Ok(Prepared::Spawn(cmd))
}

/// Spawns `cmd` (from [`prepare`], stdio chosen) and hands it to the
/// reaper: its pid, or the shell-style refusal when it could not start.
/// The command (and so the parent's copies of its stdio) is dropped.
pub fn spawn(
    mut cmd: Command,
    argv0: &str,
    sink: &mut Sink<'_>,
) -> Result<std::result::Result<Pid, ExitInfo>> {
    let spawned = cmd.spawn();
    // Close our copies of the child's ends now, or EOF never comes.
    drop(cmd);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let errno = e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO);
            return refuse(sink, exit_code_for(errno), spawn_message(argv0, errno)).map(Err);
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    // The reaper collects it; std's Child must not (dropping it does not wait).
    drop(child);
    Ok(Ok(pid))
}

/// The [`ExitInfo`] of a command reaped with `status`.
pub fn exit_info(
    status: WaitStatus,
    started_us: u64,
    oom: Option<vmbuild_proto::OomKill>,
) -> Result<ExitInfo> {
    let (code, signal) = match status {
        WaitStatus::Exited(_, c) => (Some(c), None),
        WaitStatus::Signaled(_, s, _) => (None, Some(s as i32)),
        other => {
            return Err(InitError::Invalid(format!(
                "unexpected wait status {other:?}"
            )))
        }
    };
    Ok(ExitInfo {
        code,
        signal,
        started_us,
        ended_us: boottime_us(),
        oom,
    })
}

/// The directories `mkdir -p path` would create, outermost first (none
/// when `path` exists).
fn missing_dirs(path: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect();
    out.reverse();
    out
}

/// Forwards output until `pid` exits, then drains what is already buffered.
fn pump(
    pid: Pid,
    pipes: [OwnedFd; 2],
    watch: &ChildWatch,
    sink: &mut Sink<'_>,
) -> Result<WaitStatus> {
    let mut open: [Option<OwnedFd>; 2] = pipes.map(Some);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let (ready, child_event) = {
            let mut pfds = Vec::with_capacity(3);
            pfds.push(PollFd::new(watch.fd(), PollFlags::POLLIN));
            let mut which = Vec::with_capacity(2);
            for (i, p) in open.iter().enumerate() {
                if let Some(fd) = p {
                    pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(i);
                }
            }
            match poll(&mut pfds, PollTimeout::from(POLL_MS)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(InitError::sys("poll on the command's pipes", e)),
            }
            let fired = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<usize> = which
                .iter()
                .zip(&pfds[1..])
                .filter(|(_, p)| fired(p))
                .map(|(i, _)| *i)
                .collect();
            // A timeout also counts as a reason to check on the child.
            let child_event = fired(&pfds[0]) || pfds.iter().all(|p| !fired(p));
            (ready, child_event)
        };
        for i in ready {
            read_some(&mut open[i], i, &mut buf, sink)?;
        }
        if child_event {
            watch.drain();
            if let Some(st) = reap(Some(pid)) {
                for (i, pipe) in open.iter_mut().enumerate() {
                    let mut total = 0;
                    while pipe.is_some() && total < DRAIN_LIMIT {
                        match read_some(pipe, i, &mut buf, sink)? {
                            0 => break,
                            n => total += n,
                        }
                    }
                }
                return Ok(st);
            }
        }
    }
}

/// One non-blocking read from pipe `i` (0 = stdout, 1 = stderr), sent as a
/// frame. Closes the pipe on EOF. Returns the bytes read (0: none now).
fn read_some(
    pipe: &mut Option<OwnedFd>,
    i: usize,
    buf: &mut [u8],
    sink: &mut Sink<'_>,
) -> Result<usize> {
    let Some(fd) = pipe else { return Ok(0) };
    loop {
        return match nix::unistd::read(&*fd, buf) {
            Ok(0) => {
                *pipe = None;
                Ok(0)
            }
            Ok(n) => {
                let chunk = buf[..n].to_vec();
                sink(if i == 0 {
                    GuestMessage::Stdout(chunk)
                } else {
                    GuestMessage::Stderr(chunk)
                })?;
                Ok(n)
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(InitError::sys("reading the command's output", e)),
        };
    }
}

/// Shell exit code for a command that could not be started.
pub fn exit_code_for(errno: Errno) -> i32 {
    if errno == Errno::ENOENT {
        127
    } else {
        126
    }
}

/// The stderr line for a command that could not be started.
pub fn spawn_message(argv0: &str, errno: Errno) -> String {
    match errno {
        Errno::ENOENT => format!("vmbuild-init: {argv0}: command not found\n"),
        Errno::EACCES => format!("vmbuild-init: {argv0}: permission denied\n"),
        e => format!("vmbuild-init: {argv0}: cannot execute: {}\n", e.desc()),
    }
}

fn refuse(sink: &mut Sink<'_>, code: i32, msg: String) -> Result<ExitInfo> {
    let now = boottime_us();
    sink(GuestMessage::Stderr(msg.into_bytes()))?;
    Ok(ExitInfo {
        code: Some(code),
        signal: None,
        started_us: now,
        ended_us: now,
        oom: None,
    })
}

/// `reap` takes any child of the process: tests that run commands take
/// this lock, one at a time (here and in `tty`).
#[cfg(test)]
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`SERIAL`] for a test.
#[cfg(test)]
pub(crate) fn tests_serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct Got {
        out: Vec<u8>,
        err: Vec<u8>,
        frames: usize,
    }

    fn run_sh(script: &str) -> (ExitInfo, Got) {
        let _g = tests_serial();
        let spec = CommandSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("FOO".into(), "bar".into()),
            ],
            cwd: "/".into(),
            binds: Vec::new(),
            user: None,
        };
        run_spec(&spec)
    }

    #[test]
    fn missing_dirs_lists_what_mkdir_p_makes_outermost_first() {
        let tmp = std::env::temp_dir().join(format!("vmbuild-init-md-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let deep = tmp.join("a/b/c");
        assert_eq!(
            missing_dirs(&deep),
            [tmp.join("a"), tmp.join("a/b"), tmp.join("a/b/c")]
        );
        assert!(missing_dirs(&tmp).is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_user_command_runs_with_its_ids_and_owns_the_cwd_it_gets() {
        // Switching ids needs root, as the init has; elsewhere there is
        // nothing to switch from.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let _g = tests_serial();
        let tmp = std::env::temp_dir().join(format!("vmbuild-init-user-{}", std::process::id()));
        let cwd = tmp.join("made/here");
        let spec = CommandSpec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "id -u; id -g; id -G; touch mine".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: cwd.display().to_string(),
            binds: Vec::new(),
            user: Some(vmbuild_proto::RunUser {
                uid: 4321,
                gid: 4322,
                groups: vec![4322, 4323],
            }),
        };
        let (info, got) = run_spec(&spec);
        let out = String::from_utf8_lossy(&got.out).into_owned();
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(info.code, Some(0), "{}", String::from_utf8_lossy(&got.err));
        assert_eq!(out, "4321\n4322\n4322 4323\n");
    }

    fn run_spec(spec: &CommandSpec) -> (ExitInfo, Got) {
        let watch = ChildWatch::install().unwrap();
        let mut got = Got::default();
        let mut sink = |m: GuestMessage| {
            got.frames += 1;
            match m {
                GuestMessage::Stdout(b) => got.out.extend(b),
                GuestMessage::Stderr(b) => got.err.extend(b),
                other => panic!("unexpected {other:?}"),
            }
            Ok(())
        };
        let info = run(spec, &GuestRoot::initramfs(), watch, &mut sink).unwrap();
        (info, got)
    }

    #[test]
    fn exit_code_and_separate_streams() {
        let (info, got) = run_sh("echo out; echo to-stderr >&2; exit 7");
        assert_eq!((info.code, info.signal), (Some(7), None));
        assert_eq!(got.out, b"out\n");
        assert_eq!(got.err, b"to-stderr\n");
        assert!(info.ended_us >= info.started_us);
    }

    #[test]
    fn environment_is_exactly_the_spec() {
        let (info, got) = run_sh("env | sort");
        assert_eq!(info.code, Some(0));
        let text = String::from_utf8(got.out).unwrap();
        assert!(text.contains("FOO=bar\n"), "{text}");
        assert!(!text.contains("CARGO"), "host env leaked: {text}");
    }

    #[test]
    fn signal_death_is_reported_as_signal() {
        let (info, _) = run_sh("kill -TERM $$");
        assert_eq!((info.code, info.signal), (None, Some(15)));
    }

    #[test]
    fn ends_on_exit_status_not_on_eof() {
        let t0 = Instant::now();
        let (info, got) = run_sh("sleep 3 & echo started");
        assert_eq!(info.code, Some(0));
        assert_eq!(got.out, b"started\n");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn runs_in_its_own_session() {
        let (info, got) = run_sh("awk '{print $6}' /proc/$$/stat; echo $$");
        assert_eq!(info.code, Some(0));
        let text = String::from_utf8(got.out).unwrap();
        let nums: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(nums.len(), 2, "{text}");
        assert_eq!(nums[0], nums[1], "session id must be the shell's pid");
    }

    #[test]
    fn large_output_arrives_byte_exact_in_bounded_chunks() {
        let (info, got) = run_sh(
            "head -c 10485760 /dev/urandom | tee /dev/stderr | cksum >/dev/null; printf end",
        );
        assert_eq!(info.code, Some(0));
        assert_eq!(got.err.len(), 10 * 1024 * 1024);
        assert_eq!(got.out, b"end");
        assert!(got.frames >= 10 * 1024 * 1024 / CHUNK);
    }

    #[test]
    fn interleaved_streams_never_mix() {
        let (info, got) =
            run_sh("i=0; while [ $i -lt 2000 ]; do echo o; echo e >&2; i=$((i+1)); done");
        assert_eq!(info.code, Some(0));
        assert_eq!(got.out, b"o\n".repeat(2000));
        assert_eq!(got.err, b"e\n".repeat(2000));
    }

    #[test]
    fn missing_command_is_127_with_message() {
        let _g = tests_serial();
        let spec = CommandSpec {
            argv: vec!["no-such-command-xyz".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/".into(),
            binds: Vec::new(),
            user: None,
        };
        let (info, got) = run_spec(&spec);
        assert_eq!(info.code, Some(127));
        assert_eq!(
            got.err,
            b"vmbuild-init: no-such-command-xyz: command not found\n"
        );
    }

    #[test]
    fn non_executable_is_126_and_cwd_is_created() {
        let _g = tests_serial();
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("script");
        std::fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
        let spec = CommandSpec {
            argv: vec![f.display().to_string()],
            env: vec![],
            cwd: d.path().join("new/cwd").display().to_string(),
            binds: Vec::new(),
            user: None,
        };
        let (info, got) = run_spec(&spec);
        assert_eq!(info.code, Some(126));
        assert!(String::from_utf8_lossy(&got.err).contains("permission denied"));
        assert!(d.path().join("new/cwd").is_dir());
    }

    #[test]
    fn argv0_is_kept_and_cwd_applies() {
        let _g = tests_serial();
        let d = tempfile::tempdir().unwrap();
        let spec = CommandSpec {
            argv: vec!["sh".into(), "-c".into(), "pwd; echo \"$0\"".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: d.path().display().to_string(),
            binds: Vec::new(),
            user: None,
        };
        let (info, got) = run_spec(&spec);
        assert_eq!(info.code, Some(0));
        let want = format!("{}\nsh\n", d.path().canonicalize().unwrap().display());
        assert_eq!(String::from_utf8(got.out).unwrap(), want);
    }

    #[test]
    fn commands_are_looked_up_and_run_inside_an_image_root() {
        let _g = tests_serial();
        let d = tempfile::tempdir().unwrap();
        let root = GuestRoot::at(d.path());
        let watch = ChildWatch::install().unwrap();
        let mut out = Vec::new();
        let mut sink = |m: GuestMessage| {
            if let GuestMessage::Stdout(b) = m {
                out.extend(b);
            }
            Ok(())
        };
        // The host has `sh`; the empty root does not.
        let spec = CommandSpec {
            argv: vec!["sh".into(), "-c".into(), "echo escaped".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/work".into(),
            binds: Vec::new(),
            user: None,
        };
        let info = run(&spec, &root, watch, &mut sink).unwrap();
        assert_eq!(info.code, Some(127));
        assert!(
            d.path().join("work").is_dir(),
            "cwd is made inside the root"
        );

        // The same script path exists on the host and in the root; only
        // the host has its interpreter (/bin/sh). Chrooted, the exec fails
        // (as non-root, the chroot itself does); unchrooted it would print.
        let script = "#!/bin/sh\necho escaped\n";
        let tool = d.path().join("tool");
        let in_root = d.path().join("root").join(tool.strip_prefix("/").unwrap());
        for f in [&tool, &in_root] {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, script).unwrap();
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let root = GuestRoot::at(d.path().join("root"));
        let spec = CommandSpec {
            argv: vec![tool.display().to_string()],
            ..spec
        };
        let info = run(&spec, &root, watch, &mut sink).unwrap();
        let want = if nix::unistd::geteuid().is_root() {
            127
        } else {
            126
        };
        assert_eq!(info.code, Some(want));
        assert!(out.is_empty(), "ran outside the root: {out:?}");
    }

    #[test]
    fn spawn_errors_map_to_shell_codes() {
        assert_eq!(exit_code_for(Errno::ENOENT), 127);
        assert_eq!(exit_code_for(Errno::EACCES), 126);
        assert_eq!(exit_code_for(Errno::ENOEXEC), 126);
        assert!(spawn_message("x", Errno::ENOEXEC).starts_with("vmbuild-init: x: cannot execute"));
    }
}
