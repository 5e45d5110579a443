//! bubblewrap's command line for one command, and what bubblewrap reports
//! back: pure functions, unit-tested without running anything.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use vmbuild_proto::{CommandSpec, GUEST_CACHE_ALIAS, GUEST_CACHE_DIR, GUEST_HOME};

use crate::error::RunError;

/// Runs the command with exactly its environment (see [`super`]).
pub(crate) const ENV_SHIM: &str = "/usr/bin/env";
pub(super) fn push<'a>(args: &mut Vec<OsString>, items: impl IntoIterator<Item = &'a OsStr>) {
    args.extend(items.into_iter().map(OsStr::to_os_string));
}

/// One bubblewrap invocation: `options` go through `--args` (they carry
/// the environment, which must not show in `ps`), `argv` follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    pub options: Vec<OsString>,
    pub argv: Vec<OsString>,
}

impl Invocation {
    /// The options as bubblewrap's `--args` reads them: NUL-terminated.
    pub(crate) fn options_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for o in &self.options {
            out.extend_from_slice(o.as_bytes());
            out.push(0);
        }
        out
    }

    /// The options in an unlinked temporary file, rewound, for bubblewrap
    /// to read as `--args FD`.
    pub(crate) fn options_file(&self) -> Result<std::fs::File, RunError> {
        use std::io::{Seek, Write};
        let mut f = tempfile::tempfile()
            .map_err(|e| RunError::io("creating a temporary file for bubblewrap's options", e))?;
        f.write_all(&self.options_bytes())
            .and_then(|_| f.rewind())
            .map_err(|e| RunError::io("writing bubblewrap's options", e))?;
        Ok(f)
    }
}

fn refuse_nul(what: &str, s: &str) -> Result<(), RunError> {
    if s.contains('\0') {
        return Err(RunError::BadCommand(format!(
            "{what} {s:?} contains a NUL byte; remove it"
        )));
    }
    Ok(())
}

/// A cache volume as bubblewrap binds it: a host directory, read-write at
/// an absolute, normalised target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeBind {
    pub host: PathBuf,
    pub target: String,
}

/// `path` as bubblewrap must spell it during setup: it resolves symlinks in
/// `--dir` and mount paths against the setup root, not the sandbox's, so
/// the cache alias (`/var/cache/melange`) becomes the real cache path.
fn setup_path(cache: Option<&Path>, path: &str) -> String {
    match (cache, path.strip_prefix(GUEST_CACHE_ALIAS)) {
        (Some(_), Some(rest)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{GUEST_CACHE_DIR}{rest}")
        }
        _ => path.to_string(),
    }
}

/// The bubblewrap options and argv that run `cmd` (see [`super`] for the
/// why). `volumes` are bound after the sandbox's own mounts, shallowest
/// target first, so one under `/home/build` lands on the workspace and a
/// nested one on its parent volume; `mirror` must have left their targets
/// and ancestors out ([`super::mirror::mirror_host_root`]).
pub(crate) fn invocation(
    mirror: &[OsString],
    workspace: &Path,
    cache: Option<&Path>,
    volumes: &[VolumeBind],
    cmd: &CommandSpec,
) -> Result<Invocation, RunError> {
    for a in &cmd.argv {
        refuse_nul("argument", a)?;
    }
    let argv0 = cmd
        .argv
        .first()
        .ok_or_else(|| RunError::BadCommand("empty command line".into()))?;
    if argv0.contains('=') {
        return Err(RunError::BadCommand(format!(
            "command {argv0:?}: the bubblewrap runner cannot run a program whose name contains '='; rename it or use --runner qemu"
        )));
    }
    refuse_nul("working directory", &cmd.cwd)?;
    if !cmd.cwd.starts_with('/') {
        return Err(RunError::BadCommand(format!(
            "working directory {:?} is not absolute; give an absolute path",
            cmd.cwd
        )));
    }
    for (k, v) in &cmd.env {
        refuse_nul("environment variable", k)?;
        refuse_nul(&format!("value of {k}"), v)?;
        if k.is_empty() || k.contains('=') {
            return Err(RunError::BadCommand(format!(
                "environment variable name {k:?} is empty or contains '='; fix it"
            )));
        }
    }

    let mut o: Vec<OsString> = Vec::new();
    let mut add = |items: &[&OsStr]| push(&mut o, items.iter().copied());
    let s = |x: &'static str| OsStr::new(x);
    add(&[
        s("--unshare-all"),
        s("--unshare-pid"),
        s("--die-with-parent"),
        s("--new-session"),
        s("--cap-drop"),
        s("ALL"),
    ]);
    for dir in ["/home", "/var", "/var/cache"] {
        add(&[s("--perms"), s("0755"), s("--dir"), s(dir)]);
    }
    o.extend(mirror.iter().cloned());
    let mut add = |items: &[&OsStr]| push(&mut o, items.iter().copied());
    add(&[s("--dev"), s("/dev"), s("--proc"), s("/proc")]);
    add(&[s("--perms"), s("01777"), s("--tmpfs"), s("/tmp")]);
    add(&[s("--perms"), s("01777"), s("--tmpfs"), s("/var/tmp")]);
    add(&[s("--perms"), s("0755"), s("--tmpfs"), s("/run")]);
    add(&[s("--bind"), workspace.as_os_str(), s(GUEST_HOME)]);
    if let Some(c) = cache {
        add(&[s("--bind"), c.as_os_str(), s(GUEST_CACHE_DIR)]);
        add(&[s("--symlink"), s(GUEST_CACHE_DIR), s(GUEST_CACHE_ALIAS)]);
    }
    let mut by_depth: Vec<&VolumeBind> = volumes.iter().collect();
    by_depth.sort_by_key(|v| v.target.matches('/').count());
    for v in by_depth {
        let t = OsString::from(setup_path(cache, &v.target));
        add(&[s("--dir"), &t, s("--bind"), v.host.as_os_str(), &t]);
    }
    if !cmd.cwd.trim_end_matches('/').is_empty() {
        add(&[s("--dir"), OsStr::new(&setup_path(cache, &cmd.cwd))]);
    }
    add(&[
        s("--remount-ro"),
        s("/"),
        s("--chdir"),
        OsStr::new(&cmd.cwd),
        s("--clearenv"),
    ]);
    for (k, v) in &cmd.env {
        add(&[s("--setenv"), OsStr::new(k), OsStr::new(v)]);
    }

    // bubblewrap sets PWD itself; `env` takes it out again (or puts the
    // command's own value back) and runs the command.
    let mut argv: Vec<OsString> = vec!["--".into(), ENV_SHIM.into()];
    match cmd.env.iter().rev().find(|(k, _)| k == "PWD") {
        Some((_, v)) => argv.extend(["--".into(), format!("PWD={v}").into()]),
        None => argv.extend(["-u".into(), "PWD".into(), "--".into()]),
    }
    argv.extend(cmd.argv.iter().map(OsString::from));
    Ok(Invocation { options: o, argv })
}

/// What bubblewrap wrote on `--json-status-fd`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StatusReport {
    /// PID (in our namespace) of the sandbox's PID 1.
    pub child_pid: Option<i32>,
    /// The command's exit code; absent when bubblewrap failed before the
    /// command started (setup error, `env` not executable).
    pub exit_code: Option<i32>,
}

/// Parses the JSON documents bubblewrap wrote so far (a trailing partial
/// document is ignored).
pub(crate) fn parse_status(bytes: &[u8]) -> StatusReport {
    let mut report = StatusReport::default();
    for doc in serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>() {
        let Ok(doc) = doc else { break };
        let int = |key: &str| {
            doc.get(key)
                .and_then(serde_json::Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        report.child_pid = report.child_pid.or(int("child-pid"));
        report.exit_code = report.exit_code.or(int("exit-code"));
    }
    report
}

/// The error for a bubblewrap that exited without running the command.
pub(crate) fn setup_failed(status: &std::process::ExitStatus, stderr_tail: &[u8]) -> RunError {
    let text = String::from_utf8_lossy(stderr_tail);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("bwrap:"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no message");
    let hint = if line.contains("namespace") {
        "; user namespaces may be disabled on this host (check sysctl kernel.unprivileged_userns_clone and user.max_user_namespaces) or use --runner qemu"
    } else {
        "; fix what it names, or use --runner qemu"
    };
    RunError::SandboxStartFailed {
        status: status.to_string(),
        detail: format!("{}{hint}", line.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn spec(argv: &[&str], env: &[(&str, &str)], cwd: &str) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: cwd.into(),
            binds: Vec::new(),
            user: None,
        }
    }

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    /// Index of the option `name` followed by `args`, if present.
    fn find(opts: &[String], seq: &[&str]) -> Option<usize> {
        opts.windows(seq.len())
            .position(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn invocation_sets_up_namespaces_mounts_env_and_cwd() {
        let mirror = vec![OsString::from("--ro-bind"), "/usr".into(), "/usr".into()];
        let cmd = spec(
            &["make", "-j2"],
            &[("PATH", "/usr/bin"), ("HOME", "/home/build")],
            "/home/build/src",
        );
        let inv = invocation(
            &mirror,
            Path::new("/tmp/ws"),
            Some(Path::new("/c")),
            &[],
            &cmd,
        )
        .unwrap();
        let o = strs(&inv.options);
        for seq in [
            &[
                "--unshare-all",
                "--unshare-pid",
                "--die-with-parent",
                "--new-session",
                "--cap-drop",
                "ALL",
            ][..],
            &["--ro-bind", "/usr", "/usr"],
            &["--dev", "/dev", "--proc", "/proc"],
            &["--perms", "01777", "--tmpfs", "/tmp"],
            &["--tmpfs", "/run"],
            &["--bind", "/tmp/ws", "/home/build"],
            &["--bind", "/c", "/var/cache/vmbuild"],
            &["--symlink", "/var/cache/vmbuild", "/var/cache/melange"],
            &["--dir", "/home/build/src"],
            &[
                "--remount-ro",
                "/",
                "--chdir",
                "/home/build/src",
                "--clearenv",
            ],
            &[
                "--setenv",
                "PATH",
                "/usr/bin",
                "--setenv",
                "HOME",
                "/home/build",
            ],
        ] {
            assert!(find(&o, seq).is_some(), "{seq:?} missing from {o:?}");
        }
        // Order matters: mounts before the cwd is created, the root made
        // read-only after that, the environment cleared before it is set.
        let at = |seq: &[&str]| find(&o, seq).unwrap();
        assert!(at(&["--bind", "/tmp/ws"]) < at(&["--dir", "/home/build/src"]));
        assert!(at(&["--dir", "/home/build/src"]) < at(&["--remount-ro"]));
        assert!(at(&["--clearenv"]) < at(&["--setenv"]));
        assert!(!o.iter().any(|x| x == "--share-net"));
        assert_eq!(
            strs(&inv.argv),
            ["--", ENV_SHIM, "-u", "PWD", "--", "make", "-j2"]
        );
        assert_eq!(
            inv.options_bytes().iter().filter(|&&b| b == 0).count(),
            inv.options.len()
        );
    }

    #[test]
    fn no_cache_no_cache_mounts_and_root_cwd_needs_no_dir() {
        let inv = invocation(&[], Path::new("/ws"), None, &[], &spec(&["true"], &[], "/")).unwrap();
        let o = strs(&inv.options);
        assert!(find(&o, &["--bind", "/ws", "/home/build"]).is_some());
        assert!(
            !o.iter()
                .any(|x| x.contains("/var/cache/vmbuild") || x == "/var/cache/melange"),
            "{o:?}"
        );
        assert!(find(&o, &["--dir", "/"]).is_none());
    }

    #[test]
    fn cwd_in_the_cache_alias_is_created_through_the_real_path() {
        let cmd = spec(&["true"], &[], "/var/cache/melange/go");
        let o = strs(
            &invocation(&[], Path::new("/ws"), Some(Path::new("/c")), &[], &cmd)
                .unwrap()
                .options,
        );
        assert!(
            find(&o, &["--dir", "/var/cache/vmbuild/go"]).is_some(),
            "{o:?}"
        );
        assert!(
            find(&o, &["--chdir", "/var/cache/melange/go"]).is_some(),
            "{o:?}"
        );
    }

    #[test]
    fn volumes_are_bound_read_write_after_the_sandbox_mounts_shallowest_first() {
        let vb = |host: &str, target: &str| VolumeBind {
            host: host.into(),
            target: target.into(),
        };
        let vols = [
            vb("/v/inner", "/root/go/pkg/mod/cache"),
            vb("/v/mod", "/root/go/pkg/mod"),
            vb("/v/npm", "/home/build/.npm"),
            vb("/v/m", "/var/cache/melange/x"),
        ];
        let cmd = spec(&["true"], &[], "/home/build");
        let o = strs(
            &invocation(&[], Path::new("/ws"), Some(Path::new("/c")), &vols, &cmd)
                .unwrap()
                .options,
        );
        let at =
            |seq: &[&str]| find(&o, seq).unwrap_or_else(|| panic!("{seq:?} missing from {o:?}"));
        let root = at(&[
            "--dir",
            "/root/go/pkg/mod",
            "--bind",
            "/v/mod",
            "/root/go/pkg/mod",
        ]);
        let inner = at(&[
            "--dir",
            "/root/go/pkg/mod/cache",
            "--bind",
            "/v/inner",
            "/root/go/pkg/mod/cache",
        ]);
        let npm = at(&[
            "--dir",
            "/home/build/.npm",
            "--bind",
            "/v/npm",
            "/home/build/.npm",
        ]);
        // Through the alias's real path: bubblewrap resolves it on the host.
        let alias = at(&["--bind", "/v/m", "/var/cache/vmbuild/x"]);
        assert!(root < inner, "a nested volume mounts on top of its parent");
        assert!(
            at(&["--bind", "/ws", "/home/build"]) < npm,
            "on the workspace"
        );
        assert!(at(&["--bind", "/c", "/var/cache/vmbuild"]) < alias);
        assert!(inner < at(&["--remount-ro", "/"]));
        assert!(
            !o.iter().any(|x| x == "--ro-bind"),
            "volumes are never read-only: {o:?}"
        );
    }

    #[test]
    fn a_pwd_given_in_env_is_kept() {
        let cmd = spec(&["pwd"], &[("PWD", "/elsewhere")], "/");
        let inv = invocation(&[], Path::new("/ws"), None, &[], &cmd).unwrap();
        assert_eq!(
            strs(&inv.argv),
            ["--", ENV_SHIM, "--", "PWD=/elsewhere", "pwd"]
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let ws = Path::new("/ws");
        let err = |c: CommandSpec| invocation(&[], ws, None, &[], &c).unwrap_err().to_string();
        assert!(err(spec(&["a=b"], &[], "/")).contains("contains '='"));
        assert!(err(spec(&["true"], &[], "rel")).contains("not absolute"));
        assert!(err(spec(&["true"], &[("A=B", "1")], "/")).contains("empty or contains '='"));
        assert!(err(spec(&["true"], &[("", "1")], "/")).contains("empty or contains '='"));
        assert!(err(spec(&["true"], &[("A", "x\0y")], "/")).contains("NUL"));
        assert!(err(spec(&["tr\0ue"], &[], "/")).contains("NUL"));
    }

    #[test]
    fn status_documents_are_parsed_incrementally() {
        let first = br#"{ "child-pid": 6123, "pid-namespace": 4026532181 }"#;
        assert_eq!(
            parse_status(first),
            StatusReport {
                child_pid: Some(6123),
                exit_code: None
            }
        );
        assert_eq!(
            parse_status(&first[..20]),
            StatusReport::default(),
            "partial document"
        );
        let both = [&first[..], b"\n{ \"exit-code\": 137 }\n"].concat();
        assert_eq!(
            parse_status(&both),
            StatusReport {
                child_pid: Some(6123),
                exit_code: Some(137)
            }
        );
        assert_eq!(parse_status(b"garbage"), StatusReport::default());
    }

    #[test]
    fn setup_failure_names_bwraps_message() {
        let status = std::process::ExitStatus::from_raw(1 << 8);
        let e = setup_failed(
            &status,
            b"noise\nbwrap: Can't mkdir /usr/x: Read-only file system\n",
        )
        .to_string();
        assert!(
            e.contains("bwrap: Can't mkdir /usr/x: Read-only file system"),
            "{e}"
        );
        assert!(
            e.contains("exit status: 1") && e.contains("--runner qemu"),
            "{e}"
        );
        let e = setup_failed(
            &status,
            b"bwrap: No permissions to creating new namespace\n",
        )
        .to_string();
        assert!(e.contains("user namespaces may be disabled"), "{e}");
    }
}
