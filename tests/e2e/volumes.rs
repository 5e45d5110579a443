//! Cache volumes (`--cache id=...,target=...`): several at their own guest
//! paths in both cache modes, and BuildKit's sharing modes across
//! concurrent vmbuild processes.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{assert_one_line_error, stderr, stdout, wait_with_limit, Vmb};

fn root_arg(root: &Path) -> String {
    root.to_string_lossy().into_owned()
}

/// `vmbuild run` in virtiofs mode with `--cache-root root` and `extra`.
fn spawn_run(v: &Vmb, root: &Path, extra: &[&str], script: &str) -> Child {
    v.cmd()
        .env("QEMU_USE_VIRTIOFS", "1")
        .args(["run", "--cache-root", &root_arg(root)])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmbuild")
}

fn finish(mut c: Child, limit: Duration) -> (i32, String, String) {
    let status = wait_with_limit(&mut c, limit);
    let (mut out, mut err) = (String::new(), String::new());
    c.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .ok();
    c.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .ok();
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn two_volumes_at_two_paths_in_both_modes() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("gomod")).unwrap();
    std::fs::write(root.path().join("gomod/seen"), "from host\n").unwrap();
    let r = root_arg(root.path());
    let script = "cat /root/go/pkg/mod/seen; ls -ldn /home/build/.npm | cut -c1-10; \
                  stat -c %u /home/build/.npm; echo new > /root/go/pkg/mod/w; echo n > /home/build/.npm/w";
    let specs = [
        "--cache",
        "id=gomod,target=/root/go/pkg/mod",
        "--cache",
        "id=npm,target=/home/build/.npm,uid=1000,mode=0700",
    ];
    let mut args = vec!["run", "--cache-root", &r];
    args.extend(specs);
    args.extend(["--", "sh", "-c", script]);
    // Overlay (default): both visible, writes discarded.
    let o = v.run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from host\ndrwx------\n1000\n");
    assert!(!root.path().join("gomod/w").exists() && !root.path().join("npm/w").exists());
    assert!(stderr(&o).contains("cache gomod:") && stderr(&o).contains("writes discarded"));
    // virtiofs: the same, and the writes persist.
    let o = v.run(&[&args[..1], &["--cache-mode", "virtiofs"][..], &args[1..]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(root.path().join("gomod/w")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("npm/w")).unwrap(),
        "n\n"
    );
}

/// Each run appends "start <ns>" and "end <ns>" to /v/log around a sleep.
const STAMP: &str = "echo start $(date +%s%N) >> /v/log; sleep 3; echo end $(date +%s%N) >> /v/log";

#[test]
fn locked_runs_one_after_the_other_and_a_killed_holder_frees_the_volume() {
    let (v, w) = (Vmb::new(), Vmb::new());
    let root = tempfile::tempdir().unwrap();
    let lock = ["--cache", "id=apt,target=/v,sharing=locked"];
    let a = spawn_run(&v, root.path(), &lock, STAMP);
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn_run(&w, root.path(), &lock, STAMP);
    let (ca, _, ea) = finish(a, Duration::from_secs(120));
    let (cb, _, eb) = finish(b, Duration::from_secs(120));
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    let waits = [&ea, &eb]
        .iter()
        .filter(|e| e.contains("waiting for cache apt (held by pid"))
        .count();
    assert_eq!(waits, 1, "exactly one waited:\n{ea}\n{eb}");
    let log = std::fs::read_to_string(root.path().join("apt/log")).unwrap();
    let kinds: Vec<&str> = log
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["start", "end", "start", "end"],
        "interleaved: {log}"
    );
    v.assert_clean();
    w.assert_clean();

    // A holder killed with SIGKILL: the kernel drops its lock.
    let holder = Vmb::new();
    let mut h = spawn_run(&holder, root.path(), &lock, "echo held; sleep 120");
    let mut line = String::new();
    BufReader::new(h.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n");
    let waiter = spawn_run(&w, root.path(), &lock, "echo got it");
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    h.kill().expect("SIGKILL the holder");
    h.wait().unwrap();
    let (code, out, err) = finish(waiter, Duration::from_secs(90));
    assert_eq!((code, out.as_str()), (0, "got it\n"), "{err}");
    assert!(err.contains("waiting for cache apt"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(60));
    w.assert_clean();
    // The killed vmbuild's QEMU died with it (PDEATHSIG).
    let t0 = Instant::now();
    while !crate::harness::processes_mentioning(holder.tmp.path()).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "holder's QEMU outlived it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn private_runs_get_their_own_directory_and_reuse_a_free_fork() {
    let (v, w) = (Vmb::new(), Vmb::new());
    let root = tempfile::tempdir().unwrap();
    let private = ["--cache", "id=pip,target=/v,sharing=private"];
    let script = "ls /v; echo $$ > /v/marker-$RANDOM; sleep 3";
    let a = spawn_run(&v, root.path(), &private, script);
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn_run(&w, root.path(), &private, script);
    let (ca, oa, ea) = finish(a, Duration::from_secs(120));
    let (cb, ob, eb) = finish(b, Duration::from_secs(120));
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    assert_eq!((oa.as_str(), ob.as_str()), ("", ""), "each started empty");
    let count = |d: &str| {
        std::fs::read_dir(root.path().join(d))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    assert_eq!(
        (count("pip"), count("pip~1")),
        (1, 1),
        "markers did not meet"
    );
    assert!(format!("{ea}{eb}").contains("fork pip~1"), "{ea}\n{eb}");
    // A later run finds the main one free and reuses it.
    let (c, out, err) = finish(
        spawn_run(&v, root.path(), &private, "ls /v | wc -l"),
        Duration::from_secs(60),
    );
    assert_eq!((c, out.trim()), (0, "1"), "{err}");
    // `vmbuild cache ls` shows the volume and its fork.
    let o = v.run(&[
        "cache",
        "ls",
        "--cache-root",
        &root_arg(root.path()),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ls = stdout(&o);
    assert!(ls.contains("\"pip\"") && ls.contains("\"pip~1\""), "{ls}");
    v.assert_clean();
    w.assert_clean();
}

#[test]
fn shared_in_virtiofs_mode_a_running_build_sees_another_ones_write() {
    let (v, w) = (Vmb::new(), Vmb::new());
    let root = tempfile::tempdir().unwrap();
    let shared = ["--cache", "id=sh,target=/v"];
    let reader = spawn_run(
        &v,
        root.path(),
        &shared,
        "i=0; while [ ! -e /v/from-writer ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; cat /v/from-writer",
    );
    let (cw, _, ew) = finish(
        spawn_run(&w, root.path(), &shared, "echo hello > /v/from-writer"),
        Duration::from_secs(60),
    );
    assert_eq!(cw, 0, "{ew}");
    let (cr, out, er) = finish(reader, Duration::from_secs(90));
    assert_eq!((cr, out.as_str()), (0, "hello\n"), "{er}");
    v.assert_clean();
    w.assert_clean();
}

#[test]
fn bad_volume_specs_are_one_line_errors_before_anything_boots() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let r = root_arg(root.path());
    for (spec, mode, says) in [
        ("id=a,target=relative", "overlay", "absolute"),
        ("id=a/b,target=/x", "overlay", "not a path"),
        (
            "id=a,target=/x,sharing=sometimes",
            "overlay",
            "shared, locked or private",
        ),
        (
            "id=a,target=/x,persist=on-success",
            "virtiofs",
            "not possible in virtiofs mode",
        ),
        ("id=a,target=/proc/x", "overlay", "under /proc"),
    ] {
        let t0 = Instant::now();
        let o = v.run(&[
            "run",
            "--cache-root",
            &r,
            "--cache-mode",
            mode,
            "--cache",
            spec,
            "--",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(125), "{spec}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(says), "{spec}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{spec}: refused before booting"
        );
    }
    let o = v.run(&[
        "run",
        "--cache-root",
        &r,
        "--cache",
        "id=a,target=/x",
        "--cache",
        "id=b,target=/x",
        "--",
        "true",
    ]);
    assert!(assert_one_line_error(&o).contains("already cache a's mount"));
    let o = v.run(&[
        "run",
        "--runner",
        "bubblewrap",
        "--cache-root",
        &r,
        "--cache",
        "id=a,target=/x,persist=never",
        "--",
        "true",
    ]);
    assert!(assert_one_line_error(&o)
        .contains("persist=never is not possible with the bubblewrap runner"));
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}

/// Changes of every kind the overlay can record; run by the guest on the
/// volume and by the test on a host copy, which must end up identical.
const CHANGES: &str = "set -e; cd \"$1\"; echo new > change; rm gone; echo n > newfile; \
    mkdir -p d/e; echo deep > d/e/f; ln -s keep link; ln newfile hard; chmod 600 change; \
    mv olddir renamed; rm -r repl; mkdir repl; echo z > repl/z; chmod 700 d";

fn seed_volume(dir: &Path) {
    std::fs::create_dir_all(dir.join("olddir")).unwrap();
    std::fs::create_dir_all(dir.join("repl")).unwrap();
    for (f, s) in [
        ("keep", "keep\n"),
        ("change", "old\n"),
        ("gone", "bye\n"),
        ("olddir/a", "a\n"),
        ("repl/x", "x\n"),
    ] {
        std::fs::write(dir.join(f), s).unwrap();
    }
}

fn pipeline(dir: &Path, script: &str) -> String {
    let cfg = dir.join("p.yaml");
    let yaml = format!(
        "package: {{name: commit-test, version: '1'}}\npipeline:\n  - name: change the volume\n    runs: |\n      {script}\n"
    );
    std::fs::write(&cfg, yaml).unwrap();
    cfg.to_string_lossy().into_owned()
}

#[test]
fn on_success_commits_every_kind_of_change_and_failures_commit_nothing() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let vol = root.path().join("c");
    seed_volume(&vol);
    let expected = work.path().join("expected");
    seed_volume(&expected);
    let st = std::process::Command::new("sh")
        .args(["-c", CHANGES, "sh"])
        .arg(&expected)
        .status()
        .unwrap();
    assert!(st.success());
    let r = root_arg(root.path());
    let out = work.path().join("out").to_string_lossy().into_owned();
    let spec = "id=c,target=/c,persist=on-success";
    let before = crate::harness::tree_digest(&vol);

    // The changes, then `tail`, as one build step, with `extra` flags.
    let build = |tail: &str, extra: &[&str]| {
        let cfg = pipeline(
            work.path(),
            &format!("sh -c '{}' sh /c{tail}", CHANGES.replace('\'', "")),
        );
        let mut args = vec![
            "build",
            &cfg,
            "--cache-root",
            &r,
            "--cache",
            spec,
            "--output-dir",
            &out,
        ];
        args.extend(extra);
        v.run(&args)
    };
    // A failing build and a timed-out build change nothing.
    let o = build("; exit 3", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        crate::harness::tree_digest(&vol),
        before,
        "a failed build committed"
    );
    let o = build("; sleep 60", &["--timeout", "8"]);
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert_eq!(
        crate::harness::tree_digest(&vol),
        before,
        "a timed-out build committed"
    );

    // A passing build: the host volume ends up exactly as the changes say.
    let o = build("", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("cache c: committed"), "{}", stderr(&o));
    assert_eq!(
        crate::harness::tree_digest(&vol),
        crate::harness::tree_digest(&expected),
        "volume differs from the expected tree"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(vol.join("newfile")).unwrap().ino(),
        std::fs::metadata(vol.join("hard")).unwrap().ino()
    );
}

#[test]
fn a_hostile_commit_cannot_reach_outside_the_volume() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let r = root_arg(root.path());
    let spec = "--cache=id=h,target=/h,persist=on-success";
    // A link to /etc, a setuid file and a device node in the volume.
    let o = v.run(&[
        "run",
        "--cache-root",
        &r,
        spec,
        "--",
        "sh",
        "-c",
        "cd /h; ln -s /etc etc; echo x > suid; chmod 4755 suid; mknod dev c 1 3; echo ok",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let vol = root.path().join("h");
    assert_eq!(
        std::fs::read_link(vol.join("etc")).unwrap(),
        Path::new("/etc")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(vol.join("suid")).unwrap().mode() & 0o7777,
        0o755,
        "setuid stripped"
    );
    assert!(
        std::fs::symlink_metadata(vol.join("dev")).is_err(),
        "no device node on the host"
    );
    assert!(
        stderr(&o).contains("dev"),
        "the skipped node is reported: {}",
        stderr(&o)
    );
    // A later build writing "through" the link writes the guest's /etc,
    // never the host's.
    let marker = format!("vmbuild-hostile-{}", std::process::id());
    let o = v.run(&[
        "run",
        "--cache-root",
        &r,
        spec,
        "--",
        "sh",
        "-c",
        &format!("echo pwned > /h/etc/{marker}"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "the host's /etc was written"
    );
    // Over the byte limit: nothing lands.
    let o = v
        .cmd()
        .env("VMBUILD_COMMIT_MAX_BYTES", "100000")
        .args([
            "run",
            "--cache-root",
            &r,
            spec,
            "--",
            "sh",
            "-c",
            "head -c 300000 /dev/zero > /h/big",
        ])
        .output()
        .unwrap();
    v.assert_clean();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("larger than 100000 bytes"),
        "{}",
        stderr(&o)
    );
    assert!(!vol.join("big").exists());
}

/// Two volumes declared in the pipeline file's `cache:`, seen by the steps
/// at their targets; in virtiofs mode their writes land under the cache
/// root on the host.
const FILE_VOLUMES: &str = r#"
package:
  name: vols
  version: "1.0"
cache:
  - id: gomod
    target: /root/go/pkg/mod
    sharing: locked
  - id: npm
    target: /home/build/.npm
    uid: 1000
    mode: "0700"
pipeline:
  - name: see and write both volumes
    runs: |
      cat /root/go/pkg/mod/seen
      stat -c 'npm %u %a' /home/build/.npm
      echo mod > /root/go/pkg/mod/w
      echo npm > /home/build/.npm/w
"#;

fn build_with_file_volumes(
    runner: &str,
    extra: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("gomod")).unwrap();
    std::fs::write(root.path().join("gomod/seen"), "from host\n").unwrap();
    let proj = tempfile::tempdir().unwrap();
    let cfg = proj.path().join("vmbuild.yaml");
    std::fs::write(&cfg, FILE_VOLUMES).unwrap();
    let out = proj.path().join("out");
    let (cfg, out, r) = (
        cfg.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
        root_arg(root.path()),
    );
    let mut args = vec![
        "build",
        &cfg,
        "--output-dir",
        &out,
        "--runner",
        runner,
        "--cache-root",
        &r,
    ];
    args.extend_from_slice(extra);
    let o = v.run(&args);
    v.assert_clean();
    (o, root)
}

#[test]
fn pipeline_file_volumes_are_mounted_at_their_targets() {
    let (o, root) = build_with_file_volumes("qemu", &["--cache-mode", "virtiofs"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("from host"), "{}", stderr(&o));
    assert!(stderr(&o).contains("npm 1000 700"), "{}", stderr(&o));
    let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
    assert_eq!(
        (read("gomod/w"), read("npm/w")),
        ("mod\n".into(), "npm\n".into())
    );
    assert!(stderr(&o).contains("cache gomod:") && stderr(&o).contains("(locked;"));
}

#[test]
fn pipeline_file_volumes_under_bubblewrap() {
    // The file's npm entry has uid: 1000, which bubblewrap cannot give (it
    // maps only the invoking user): a flag with the same id replaces it.
    let (o, root) = build_with_file_volumes(
        "bubblewrap",
        &["--cache", "id=npm,target=/home/build/.npm,mode=0700"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let uid = nix::unistd::getuid().as_raw();
    assert!(
        stderr(&o).contains(&format!("npm {uid} 700")),
        "{}",
        stderr(&o)
    );
    let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
    assert_eq!(
        (read("gomod/w"), read("npm/w")),
        ("mod\n".into(), "npm\n".into())
    );
    assert!(stderr(&o).contains("bind-mounted read-write; writes persist"));
}

/// A volume under the host's /root, which the sandbox otherwise binds
/// read-only: the write lands in the volume, /root stays readable in the
/// sandbox and unchanged on the host.
#[test]
fn bubblewrap_volume_under_the_read_only_host_root() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let tag = format!("vmbuild-e2e-{}", std::process::id());
    let marker = Path::new("/root").join(format!(".{tag}"));
    std::fs::write(&marker, "host root file\n").unwrap();
    let vtest = format!("/root/{tag}-vtest");
    let script = format!(
        "echo x > {vtest}/f; cat {m}; if touch /root/{tag}-new 2>/dev/null; then echo writable; fi",
        m = marker.display()
    );
    let spec = format!("id=v,target={vtest}");
    let o = v.run(&[
        "run",
        "--runner",
        "bubblewrap",
        "--cache-root",
        &root_arg(root.path()),
        "--cache",
        &spec,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "host root file\n",
        "/root readable, not writable"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("v/f")).unwrap(),
        "x\n"
    );
    assert!(
        !Path::new(&vtest).exists(),
        "no mount point made on the host"
    );
    assert!(!Path::new(&format!("/root/{tag}-new")).exists());
    v.assert_clean();
}

#[test]
fn cache_dir_takes_cache_persist_and_cache_sharing() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("f"), "old\n").unwrap();
    let (r, c) = (root_arg(root.path()), root_arg(cache.path()));
    let run = |script: &str| {
        v.run(&[
            "run",
            "--cache-root",
            &r,
            "--cache-dir",
            &c,
            "--cache-persist",
            "on-success",
            "--cache-sharing",
            "locked",
            "--",
            "sh",
            "-c",
            script,
        ])
    };
    let o = run("echo new > /var/cache/vmbuild/f; exit 1");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(cache.path().join("f")).unwrap(),
        "old\n"
    );
    let o = run("echo new > /var/cache/vmbuild/f; mkdir /var/cache/melange/pip && echo w > /var/cache/melange/pip/x");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changes committed if the build succeeds"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(cache.path().join("f")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(cache.path().join("pip/x")).unwrap(),
        "w\n"
    );
    // The lock lives under the cache root, with no directory beside it.
    let names: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() == 1 && names[0].starts_with(".src-") && names[0].ends_with(".lock"),
        "{names:?}"
    );
    let o = v.run(&["run", "--cache-persist", "on-success", "--", "true"]);
    assert!(assert_one_line_error(&o).contains("apply to --cache-dir DIR"));
    let o = v.run(&[
        "run",
        "--cache-dir",
        &c,
        "--cache-sharing",
        "private",
        "--",
        "true",
    ]);
    assert!(assert_one_line_error(&o).contains("needs a named volume"));
}

/// Step 1 uses a locked step-level volume, step 2 does not and waits.
const STEP_VOLUMES: &str = r#"
package: {name: stepvol, version: "1"}
pipeline:
  - name: with the volume
    cache:
      - id: gobuild
        target: /root/.cache/go-build
        sharing: locked
        persist: on-success
    runs: |
      cat /root/.cache/go-build/seed
      echo built > /root/.cache/go-build/obj
  - name: without it
    runs: |
      test ! -e /root/.cache/go-build/seed && echo "not visible here"
      sleep 6
"#;

#[test]
fn a_step_level_volume_is_visible_in_its_step_only_and_locked_only_then() {
    let (v, w) = (Vmb::new(), Vmb::new());
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("gobuild")).unwrap();
    std::fs::write(root.path().join("gobuild/seed"), "seeded\n").unwrap();
    let cfg = dir.path().join("p.yaml");
    std::fs::write(&cfg, STEP_VOLUMES).unwrap();
    let mut build = v
        .cmd()
        .args([
            "build",
            &cfg.to_string_lossy(),
            "--cache-root",
            &root_arg(root.path()),
        ])
        .args([
            "--output-dir",
            &dir.path().join("out").to_string_lossy(),
            "--log-format",
            "text",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(build.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("[2/2] without it") {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "build ended early: {log}"
        );
        log.push_str(&line);
    }
    // While step 2 runs, the locked volume is free for another build.
    let t0 = Instant::now();
    let other = spawn_run(
        &w,
        root.path(),
        &["--cache", "id=gobuild,target=/g,sharing=locked"],
        "cat /g/seed",
    );
    let (code, out, e) = finish(other, Duration::from_secs(60));
    assert_eq!((code, out.as_str()), (0, "seeded\n"), "{e}");
    assert!(!e.contains("waiting for cache"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    let status = wait_with_limit(&mut build, Duration::from_secs(90));
    err.read_to_string(&mut log).ok();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("│ seeded") && log.contains("│ not visible here"),
        "{log}"
    );
    assert!(log.contains("cache gobuild: committed"), "{log}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("gobuild/obj")).unwrap(),
        "built\n"
    );
    v.assert_clean();
    w.assert_clean();
}
