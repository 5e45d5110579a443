//! `--cache-from` / `--cache-to` around real builds and `vmbuild cache
//! export|import`: a failed build exports nothing, an unreachable cache is
//! a warning unless `ignore-error=false`, and the standalone commands
//! round-trip a volume through an OCI layout dir.

use std::path::Path;

use crate::harness::{assert_one_line_error, stderr, Vmb};

/// A one-step pipeline in `dir` that runs `script`.
fn pipeline(dir: &Path, script: &str) -> String {
    let p = dir.join("vmbuild.yaml");
    std::fs::write(
        &p,
        format!("package:\n  name: t\n  version: '1'\npipeline:\n  - name: work\n    runs: |\n      {script}\n"),
    )
    .unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn build_exports_after_success_only_and_cache_errors_follow_ignore_error() {
    let v = Vmb::new();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root").to_string_lossy().into_owned();
    let layout = tmp.path().join("layout");
    let to = format!("type=local,dest={}", layout.display());
    let from = format!("type=local,src={}", layout.display());
    let out = tmp.path().join("out").to_string_lossy().into_owned();
    let common = |cfg: &str| {
        vec![
            "build".to_string(),
            cfg.to_string(),
            "--cache-mode".into(),
            "virtiofs".into(),
            "--cache-root".into(),
            root.clone(),
            "--cache".into(),
            "id=tools,target=/var/cache/tools".into(),
            "--output-dir".into(),
            out.clone(),
            "--log-format".into(),
            "text".into(),
        ]
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        v.run(&a)
    };

    // A failing build exports nothing.
    let failing = pipeline(tmp.path(), "echo partial > /var/cache/tools/stamp; exit 3");
    let mut a = common(&failing);
    a.extend(["--cache-to".into(), to.clone()]);
    let o = run(a);
    assert_ne!(o.status.code(), Some(0));
    assert!(!layout.exists(), "a failed build exported: {}", stderr(&o));

    // A good build exports; an unreachable --cache-from is only a warning.
    std::fs::create_dir(tmp.path().join("ok")).unwrap();
    let good = pipeline(
        &tmp.path().join("ok"),
        "echo built > /var/cache/tools/stamp",
    );
    let mut a = common(&good);
    a.extend([
        "--cache-from".into(),
        "type=registry,ref=127.0.0.1:9/none/cache:x".into(),
        "--cache-to".into(),
        to.clone(),
    ]);
    let o = run(a);
    let log = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{log}");
    assert!(
        log.contains("cannot reach it") && log.contains("building without it"),
        "{log}"
    );
    assert!(
        log.contains("cache-to ") && log.contains("1 volume"),
        "{log}"
    );

    // A fresh root imports it before boot; the step sees the stamp.
    let fresh = tmp.path().join("fresh").to_string_lossy().into_owned();
    std::fs::create_dir(tmp.path().join("check")).unwrap();
    let check = pipeline(
        &tmp.path().join("check"),
        "test \"$(cat /var/cache/tools/stamp)\" = built",
    );
    let mut a = common(&check);
    a[5] = fresh.clone();
    a.extend(["--cache-from".into(), from.clone()]);
    let o = run(a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("tools: imported"), "{}", stderr(&o));

    // An unreachable --cache-to fails the build only with ignore-error=false.
    let bad_to = "type=registry,ref=127.0.0.1:9/none/cache:x";
    let mut a = common(&good);
    a.extend(["--cache-to".into(), bad_to.into()]);
    let o = run(a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(ignored; ignore-error=false"),
        "{}",
        stderr(&o)
    );
    let mut a = common(&good);
    a.extend(["--cache-to".into(), format!("{bad_to},ignore-error=false")]);
    let o = run(a);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err.lines().last().unwrap_or("");
    assert!(
        line.starts_with("vmbuild: error: --cache-to") && line.contains("127.0.0.1:9"),
        "{err}"
    );
    assert!(
        !err.contains("packing"),
        "nothing is packed for an unreachable registry: {err}"
    );
}

#[test]
fn cache_export_and_import_commands_round_trip_a_volume() {
    let v = Vmb::new();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let vol = root.join("gomod");
    std::fs::create_dir_all(vol.join("pkg/a")).unwrap();
    std::fs::write(vol.join("pkg/a/mod.txt"), "module a\n").unwrap();
    std::os::unix::fs::symlink("pkg/a/mod.txt", vol.join("link")).unwrap();
    let r = root.to_string_lossy().into_owned();
    let dest = format!("type=local,dest={}", tmp.path().join("l").display());
    let src = format!("type=local,src={}", tmp.path().join("l").display());
    let o = v.run(&[
        "cache",
        "export",
        "gomod",
        "--to",
        &dest,
        "--cache-root",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let said = crate::harness::stdout(&o);
    assert!(
        said.starts_with("cache-to ") && said.contains("1 volume, 9 B; pushed 1 blob"),
        "{said}"
    );
    let o = v.run(&["cache", "rm", "gomod", "--cache-root", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!vol.exists());
    let o = v.run(&[
        "cache",
        "import",
        "gomod",
        "--from",
        &src,
        "--cache-root",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(vol.join("link")).unwrap(),
        "module a\n"
    );
    // Into a plain directory, by the volume's name in the export.
    let dir = tmp.path().join("plain");
    let d = format!("{}/", dir.display());
    let o = v.run(&[
        "cache",
        "import",
        &d,
        "--volume",
        "gomod",
        "--from",
        &src,
        "--cache-root",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("pkg/a/mod.txt")).unwrap(),
        "module a\n"
    );
    // Bad input: one line each, nothing changed.
    for (args, want) in [
        (
            vec![
                "cache",
                "import",
                "gomod",
                "--from",
                "type=local,src=/nonexistent",
                "--cache-root",
                &r,
            ],
            "no cache export there yet",
        ),
        (
            vec![
                "cache",
                "import",
                "other",
                "--from",
                &src,
                "--cache-root",
                &r,
            ],
            "has no volume other (it has: gomod)",
        ),
        (
            vec!["cache", "export", "nope", "--to", &dest, "--cache-root", &r],
            "no volume nope",
        ),
    ] {
        let o = v.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let line = assert_one_line_error(&o);
        assert!(line.contains(want), "{args:?}: {line}");
    }
    let o = v.run(&[
        "cache",
        "export",
        "gomod",
        "--to",
        "type=local,src=/x",
        "--cache-root",
        &r,
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("--cache-to takes dest=DIR"),
        "{}",
        stderr(&o)
    );
}

/// Everything under `dir` whose name says it is a transfer's temporary.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".spool-")
            || name.starts_with(".pull-")
            || name.contains("vmbuild-partial")
            || name.starts_with(".tmp-")
        {
            out.push(e.path().display().to_string());
        }
        if e.path().is_dir() && !e.path().is_symlink() && name.starts_with('.') {
            out.extend(leftovers(&e.path()));
        }
    }
    out
}

#[test]
fn ctrl_c_mid_transfer_leaves_nothing_and_changes_nothing() {
    use std::time::Duration;
    let reg = crate::registry::TestRegistry::start(None);
    let v = Vmb::new();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    crate::registry::make_volume(&root.join("big"), 500, 400 << 20);
    let r = root.to_string_lossy().into_owned();
    let to = format!("type=registry,ref={}", reg.reference("int/cache:x"));
    // SIGINT once the transfer's first phase line is out (its handler is
    // in place and work has begun), plus `after`: mid-transfer however
    // slowly the process started.
    let interrupt = |args: &[&str], after: Duration| {
        let mut c = v.spawn(args);
        let err = std::io::BufReader::new(c.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let drain = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut text = String::new();
            for line in err.lines().map_while(Result::ok) {
                if line.contains("packing") || line.contains("pulling") {
                    let _ = tx.send(());
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let began = rx.recv_timeout(Duration::from_secs(60)).is_ok();
        std::thread::sleep(after);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let st = crate::harness::wait_with_limit(&mut c, Duration::from_secs(60));
        let text = drain.join().unwrap();
        assert!(began, "no phase line from vmbuild {args:?}: {text}");
        v.assert_clean();
        st.code()
    };
    // Export: stopped while packing or pushing; nothing is tagged.
    let code = interrupt(
        &["cache", "export", "big", "--to", &to, "--cache-root", &r],
        Duration::from_millis(300),
    );
    assert_eq!(code, Some(130));
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    let o = v.run(&[
        "cache",
        "import",
        "x",
        "--volume",
        "big",
        "--from",
        &to,
        "--cache-root",
        &r,
    ]);
    assert!(
        stderr(&o).contains("no cache export there yet"),
        "{}",
        stderr(&o)
    );

    // A complete export, then an import into another volume stopped midway:
    // that volume keeps what it had.
    let o = v.run(&["cache", "export", "big", "--to", &to, "--cache-root", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::create_dir_all(root.join("other")).unwrap();
    std::fs::write(root.join("other/mine"), "kept").unwrap();
    let from = to.clone();
    let code = interrupt(
        &[
            "cache",
            "import",
            "other",
            "--volume",
            "big",
            "--from",
            &from,
            "--cache-root",
            &r,
        ],
        Duration::from_millis(300),
    );
    assert_eq!(code, Some(130));
    assert_eq!(std::fs::read_dir(root.join("other")).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(root.join("other/mine")).unwrap(),
        "kept"
    );
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
}
