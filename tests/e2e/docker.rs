//! `--runner docker` against a real Docker Engine (`scripts/test.sh` starts
//! one and exports DOCKER_HOST): streams and exit codes, the cache table
//! of every runner, the image imported once, no leftovers by label on
//! every path, and a hostile output.
//!
//! Leftovers are checked by label: every container vmbuild makes carries
//! `dev.vmbuild.session=<vmbuild's pid>-...`, so a test looks only at the
//! containers of the vmbuild process it started (tests run in parallel).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{assert_one_line_error, stderr, stdout, wait_with_limit, Vmb};

/// The engine's CLI, for looking (never for running builds: vmbuild talks
/// to the engine's API itself).
fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI (docker.io) is installed by scripts/setup.sh");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `vmbuild run --runner docker [FLAGS] -- sh -c SCRIPT`.
fn docker_sh<'a>(flags: &[&'a str], script: &'a str) -> Vec<&'a str> {
    let mut a = vec!["run", "--runner", "docker"];
    a.extend_from_slice(flags);
    a.extend(["--", "sh", "-c", script]);
    a
}

/// Containers (any state) of the vmbuild process `pid`.
fn containers_of(pid: u32) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        "label=dev.vmbuild.managed",
        "--format",
        "{{.ID}} {{.Label \"dev.vmbuild.session\"}}",
    ])
    .lines()
    .filter(|l| {
        l.split_once(' ')
            .is_some_and(|(_, s)| s.starts_with(&format!("{pid}-")))
    })
    .map(str::to_string)
    .collect()
}

fn dangling_labelled_images() -> Vec<String> {
    docker(&[
        "images",
        "-q",
        "--filter",
        "dangling=true",
        "--filter",
        "label=dev.vmbuild.managed",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Runs vmbuild to its end and checks that it left no container and no
/// dangling labelled image (and nothing in its TMPDIR).
fn run_clean(v: &Vmb, args: &[&str]) -> Output {
    let child = v.spawn(args);
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    v.assert_clean();
    assert_eq!(
        containers_of(pid),
        Vec::<String>::new(),
        "containers left: {}",
        stderr(&o)
    );
    assert_eq!(dangling_labelled_images(), Vec::<String>::new());
    o
}

#[test]
fn run_streams_apart_keeps_its_exit_code_and_binds_the_cache_read_write() {
    let v = Vmb::new();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_string_lossy().into_owned();
    let o = run_clean(
        &v,
        &docker_sh(
            &["--cache-dir", &c, "-e", "X=from-flag"],
            "echo \"$PWD $X $PIP_CACHE_DIR\"; env | grep -c '^HOSTNAME=' ; echo to-stderr >&2; echo kept > /var/cache/vmbuild/w; cat /var/cache/melange/w; exit 7",
        ),
    );
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "/home/build from-flag /var/cache/vmbuild/pip\n0\nkept\n",
        "exactly the command's environment: no HOSTNAME from the engine"
    );
    assert!(
        stderr(&o).lines().any(|l| l == "to-stderr"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("to-stderr"));
    assert_eq!(
        std::fs::read_to_string(cache.path().join("w")).unwrap(),
        "kept\n"
    );
}

#[test]
fn limits_network_and_capabilities() {
    let v = Vmb::new();
    // cgroup v1 and v2 spell the memory limit differently; either is 256 MiB.
    let script = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ls /sys/class/net | sort | tr '\\n' ' '";
    let o = run_clean(&v, &docker_sh(&["--memory", "256"], script));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("268435456"), "{out}");
    let caps = lines.next().unwrap();
    let eff = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_MKNOD: u64 = 1 << 27;
    assert_eq!(eff & (CAP_SYS_ADMIN | CAP_NET_RAW | CAP_MKNOD), 0, "{caps}");
    assert_ne!(eff, 0, "root keeps a few capabilities: {caps}");
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().nth(1)),
        Some(Some("1")),
        "{out}"
    );
    assert_eq!(lines.next(), Some("lo "), "no network but loopback: {out}");
    let o = run_clean(
        &v,
        &docker_sh(
            &["--network", "user"],
            "ls /sys/class/net | sort | tr '\\n' ' '",
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "eth0 lo ", "the engine's bridge");
}

#[test]
fn a_missing_engine_is_a_one_line_setup_error_saying_how_to_start_one() {
    let v = Vmb::new();
    let o = v
        .cmd()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no.sock", v.tmp.path().display()),
        )
        .args(["run", "--runner", "docker", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let line = assert_one_line_error(&o);
    assert!(
        line.contains("no.sock") && line.contains("dockerd"),
        "{line}"
    );
}

/// Starts `vmbuild ARGS`, waits until its container runs the command (it
/// prints `ready`), then SIGINTs it.
fn interrupt(v: &Vmb, args: &[&str]) -> (Option<i32>, String, u32) {
    let mut child: Child = v.spawn(args);
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    assert_eq!(containers_of(pid).len(), 1, "one container while it runs");
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let st = wait_with_limit(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (st.code(), err, pid)
}

#[test]
fn ctrl_c_stops_and_removes_the_container() {
    let v = Vmb::new();
    let (code, err, pid) = interrupt(&v, &docker_sh(&[], "echo ready; sleep 300"));
    assert_eq!(code, Some(130), "{err}");
    v.assert_clean();
    assert_eq!(containers_of(pid), Vec::<String>::new());
    assert_eq!(dangling_labelled_images(), Vec::<String>::new());
}

#[test]
fn no_container_is_left_after_a_build_that_succeeds_fails_or_times_out() {
    let v = Vmb::new();
    let proj = tempfile::tempdir().unwrap();
    for (body, want) in [
        ("  - runs: echo ok\n", 0),
        ("  - runs: exit 3\n", 1),
        ("  - timeout: 2s\n    runs: sleep 300\n", 124),
    ] {
        let cfg = proj.path().join("vmbuild.yaml");
        std::fs::write(
            &cfg,
            format!("package: {{ name: p, version: \"1\" }}\npipeline:\n{body}"),
        )
        .unwrap();
        let out = proj.path().join("out").to_string_lossy().into_owned();
        let o = run_clean(
            &v,
            &[
                "build",
                &cfg.to_string_lossy(),
                "--runner",
                "docker",
                "--output-dir",
                &out,
            ],
        );
        assert_eq!(o.status.code(), Some(want), "{body}: {}", stderr(&o));
    }
}

#[test]
fn the_cache_persists_as_the_documented_table_says_for_every_runner() {
    // melange's table: docker and bubblewrap bind the cache read-write
    // (writes persist); qemu shares it 9p read-only + overlay by default
    // (writes discarded) or virtiofs read-write (writes persist).
    let v = Vmb::new();
    for (runner, mode, persists) in [
        ("docker", None, true),
        ("bubblewrap", None, true),
        ("qemu", Some("overlay"), false),
        ("qemu", Some("virtiofs"), true),
    ] {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(cache.path().join("seed"), "seeded\n").unwrap();
        let c = cache.path().to_string_lossy().into_owned();
        let mut args = vec!["run", "--runner", runner, "--cache-dir", &c];
        if let Some(m) = mode {
            args.extend(["--cache-mode", m]);
        }
        args.extend([
            "--",
            "sh",
            "-c",
            "cat /var/cache/melange/seed && echo new > /var/cache/vmbuild/written",
        ]);
        let o = v.run(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{runner} {mode:?}: {}",
            stderr(&o)
        );
        assert_eq!(
            stdout(&o),
            "seeded\n",
            "{runner} {mode:?}: the build sees the cache"
        );
        assert_eq!(
            cache.path().join("written").exists(),
            persists,
            "{runner} {mode:?}"
        );
    }
}

#[test]
fn a_packages_environment_is_imported_once_and_reused() {
    // The same packages as the env-image tests, so the environment image
    // itself is built at most once for the suite.
    let v = Vmb::new();
    let proj = tempfile::tempdir().unwrap();
    let cfg = proj.path().join("vmbuild.yaml");
    std::fs::write(
        &cfg,
        "package: { name: hi, version: \"1\" }\nenvironment: { contents: { packages: [hello] } }\n\
         pipeline:\n  - runs: hello\n",
    )
    .unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let build = |out: &str| {
        let out = proj.path().join(out).to_string_lossy().into_owned();
        run_clean(
            &v,
            &[
                "build",
                &cfg,
                "--runner",
                "docker",
                "--output-dir",
                &out,
                "--log-format",
                "text",
            ],
        )
    };
    let first = build("a");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("Hello, world!"),
        "{}",
        stderr(&first)
    );
    // Packages environments only (tags that are a 64-hex key): other tests
    // import and remove `dir-`/`file-` images in parallel.
    let ids = || -> Vec<String> {
        docker(&[
            "images",
            "--no-trunc",
            "--format",
            "{{.Tag}} {{.ID}}",
            "--filter",
            "label=dev.vmbuild.kind=env-image",
        ])
        .lines()
        .filter(|l| l.split(' ').next().is_some_and(|t| t.len() == 64))
        .map(str::to_string)
        .collect()
    };
    let before = ids();
    let second = build("b");
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        !stderr(&second).contains("importing"),
        "the second build reuses the image: {}",
        stderr(&second)
    );
    assert_eq!(ids(), before, "no image was added or replaced");
    let ls = v.run(&["image", "ls"]);
    assert!(
        stdout(&ls).contains("docker"),
        "image ls shows the engine copies: {}",
        stdout(&ls)
    );
}

#[test]
fn a_hostile_output_under_docker_changes_nothing_outside_the_output_dir() {
    let v = Vmb::new();
    let outs = tempfile::tempdir().unwrap();
    let proj = tempfile::tempdir().unwrap();
    // The build replaces the container's tar: the export stream then holds
    // a symlink to /etc, an entry written through it, and a `../` entry.
    std::fs::write(
        proj.path().join("evil.tar"),
        crate::build::evil_tar(Path::new("/etc")),
    )
    .unwrap();
    let cfg = proj.path().join("vmbuild.yaml");
    std::fs::write(
        &cfg,
        "package: { name: evil, version: \"1\" }\npipeline:\n  - runs: |\n      mkdir -p /usr/local/bin ${{targets.destdir}}\n      printf '#!/bin/sh\\ncat /home/build/evil.tar\\n' > /usr/local/bin/tar\n      chmod +x /usr/local/bin/tar\n",
    )
    .unwrap();
    let out = outs.path().join("out");
    let o = run_clean(
        &v,
        &[
            "build",
            &cfg.to_string_lossy(),
            "--runner",
            "docker",
            "--output-dir",
            &out.to_string_lossy(),
        ],
    );
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!Path::new("/etc/pwned").exists());
    assert!(
        stderr(&o).contains("link/pwned"),
        "the error names the entry: {}",
        stderr(&o)
    );
    assert!(!outs.path().join("escaped").exists());
    assert!(!out.exists(), "nothing placed");
    let left: Vec<_> = std::fs::read_dir(outs.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing beside the output dir: {left:?}");
}

#[test]
fn a_rootfs_directory_is_imported_by_content_and_runs_the_command() {
    let v = Vmb::new();
    let root = vmbuild_image::cache_root().unwrap();
    let bb = vmbuild_image::busybox(&root, &mut |_: &str| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::copy(&bb, dir.path().join("bin/busybox")).unwrap();
    for a in ["bin/sh", "bin/echo", "bin/kill", "bin/mkdir", "usr/bin/env"] {
        std::os::unix::fs::symlink("/bin/busybox", dir.path().join(a)).unwrap();
    }
    // A marker that makes this tree's content (and so its key) unique.
    let marker = format!("{:?}", std::time::SystemTime::now());
    std::fs::write(dir.path().join("marker"), &marker).unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let args = docker_sh(&["--rootfs", &d], "cat /marker; test ! -e /bin/ls");
    let o = run_clean(&v, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), marker, "the command ran in the given tree");
    // Without a terminal the import's progress is a plain line with its size.
    assert!(
        stderr(&o)
            .lines()
            .any(|l| l.starts_with("vmbuild: importing vmbuild/env:dir-")
                && l.contains("into the Docker Engine (once) (")
                && l.ends_with("iB)")),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains('\r') && !stderr(&o).contains('\x1b'),
        "{:?}",
        stderr(&o)
    );
    let again = run_clean(&v, &args);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("importing"),
        "imported once: {}",
        stderr(&again)
    );
    // `vmbuild image rm KEY` removes an engine-only copy by its key.
    let key = stderr(&o)
        .split("vmbuild/env:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let rm = v.run(&["image", "rm", &key]);
    assert_eq!(rm.status.code(), Some(0), "{}", stderr(&rm));
    assert!(!docker(&["images", "--format", "{{.Tag}}"]).contains(&key));
}
