//! `vmbuild build`: steps, workspace in and out, failures, timeouts, the
//! export's defences, and the same results under every runner.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{assert_one_line_error, stderr, tree_digest, Vmb};

/// 2020-01-02T03:04:05Z, set on an output file with `touch -d`.
const MTIME: i64 = 1_577_934_245;

pub const THREE_STEPS: &str = r#"
package:
  name: trio
  version: "1.0"
pipeline:
  - name: the source arrived intact
    runs: |
      test -L src-link && test "$(readlink src-link)" = input.txt
      test -x tool.sh && test ! -x input.txt
      test "$(stat -c %i input.txt)" = "$(stat -c %i input-hard)"
      test "$(stat -c %Y input.txt)" = 1500000000
  - name: copy the input
    runs: |
      mkdir -p ${{targets.destdir}}/share
      cp input.txt ${{targets.destdir}}/share/input.txt
      touch -d "2020-01-02 03:04:05" ${{targets.destdir}}/share/input.txt
  - name: executable and symlink
    working-directory: ${{targets.destdir}}
    runs: |
      mkdir -p bin
      printf '#!/bin/sh\necho hi\n' > bin/tool
      chmod 0755 bin/tool
      ln -s ../share/input.txt bin/input-link
      mkdir empty-dir
  - name: hard link
    working-directory: ${{targets.destdir}}
    runs: |
      ln bin/tool bin/tool-again
      test "$(stat -c %h bin/tool)" = 2
      echo done
"#;

/// A source dir holding `vmbuild.yaml`, an input file (mtime 1500000000)
/// with a hard link and a symlink to it, and an executable.
pub fn project(config: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("vmbuild.yaml"), config).unwrap();
    let input = d.path().join("input.txt");
    std::fs::write(&input, "from the source dir\n").unwrap();
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(&input)
        .unwrap()
        .set_modified(t)
        .unwrap();
    std::fs::hard_link(&input, d.path().join("input-hard")).unwrap();
    std::os::unix::fs::symlink("input.txt", d.path().join("src-link")).unwrap();
    std::fs::write(d.path().join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(
        d.path().join("tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    d
}

const RUNNERS: [&str; 3] = ["qemu", "bubblewrap", "docker"];

pub fn build(v: &Vmb, proj: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let cfg = proj.join("vmbuild.yaml").to_string_lossy().into_owned();
    let out = out.to_string_lossy().into_owned();
    let mut args = vec!["build", cfg.as_str(), "--output-dir", out.as_str()];
    args.extend_from_slice(extra);
    v.run(&args)
}

pub fn check_outputs(out: &Path) {
    let rd = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(rd("share/input.txt"), "from the source dir\n");
    assert_eq!(
        std::fs::metadata(out.join("share/input.txt"))
            .unwrap()
            .mtime(),
        MTIME
    );
    let tool = std::fs::metadata(out.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(out.join("bin/input-link")).unwrap(),
        PathBuf::from("../share/input.txt")
    );
    let again = std::fs::metadata(out.join("bin/tool-again")).unwrap();
    assert_eq!(
        (again.ino(), again.nlink()),
        (tool.ino(), 2),
        "hard link kept"
    );
    assert!(out.join("empty-dir").is_dir());
}

#[test]
fn three_steps_give_the_same_outputs_under_all_three_runners() {
    let v = Vmb::new();
    let p = project(THREE_STEPS);
    let outs = tempfile::tempdir().unwrap();
    let (q, b, d) = (
        outs.path().join("qemu"),
        outs.path().join("bwrap"),
        outs.path().join("docker"),
    );

    let o = build(
        &v,
        p.path(),
        &q,
        &["--runner", "qemu", "--log-format", "json"],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    check_outputs(&q);
    let events: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert_eq!(finished.len(), 4, "{}", stderr(&o));
    assert!(finished
        .iter()
        .all(|e| e["status"] == "ok" && e["duration_ms"].is_u64()));
    assert!(events
        .iter()
        .any(|e| e["event"] == "output" && e["line"] == "done"));

    let o = build(&v, p.path(), &b, &["--runner", "bubblewrap"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    check_outputs(&b);
    assert_eq!(
        tree_digest(&q),
        tree_digest(&b),
        "both runners give the same tree"
    );
    let o = build(&v, p.path(), &d, &["--runner", "docker"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    check_outputs(&d);
    assert_eq!(
        tree_digest(&q),
        tree_digest(&d),
        "docker gives the same tree as qemu"
    );
    // The source dir was not changed by either build.
    let names: Vec<_> = std::fs::read_dir(p.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn a_failing_step_stops_the_build_and_places_nothing() {
    let v = Vmb::new();
    let p = project(
        r#"
package: { name: fails, version: "1" }
pipeline:
  - name: first
    runs: mkdir -p ${{targets.destdir}} && echo one > ${{targets.destdir}}/one
  - name: second
    runs: |
      echo "about to fail" >&2
      false
      echo never
  - name: third
    runs: echo three > ${{targets.destdir}}/three
"#,
    );
    for runner in RUNNERS {
        let outs = tempfile::tempdir().unwrap();
        let out = outs.path().join("out");
        let log = tempfile::NamedTempFile::new().unwrap();
        let log_path = log.path().to_string_lossy().into_owned();
        let args = [
            "--runner",
            runner,
            "--log-format",
            "text",
            "--log-file",
            &log_path,
        ];
        let o = build(&v, p.path(), &out, &args);
        assert_eq!(o.status.code(), Some(1), "{runner}: stderr: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("step 'second' failed with exit code 1"),
            "{runner}: {err}"
        );
        assert!(
            err.contains("about to fail") && !err.contains("never"),
            "{runner}: {err}"
        );
        assert!(
            !err.contains("[3/3]"),
            "{runner}: the third step must not start: {err}"
        );
        assert!(!out.exists(), "{runner}: no output dir for a failed build");
        let left: Vec<_> = std::fs::read_dir(outs.path()).unwrap().collect();
        assert!(left.is_empty(), "{runner}: no staging leftovers: {left:?}");
        let logged = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            logged.contains("about to fail") && logged.contains("[✘] second"),
            "{runner}: {logged}"
        );
    }
}

#[test]
fn a_step_over_its_timeout_stops_the_build() {
    let v = Vmb::new();
    let p = project(
        r#"
package: { name: slow, version: "1" }
pipeline:
  - name: sleepy
    timeout: 3s
    runs: sleep 120
"#,
    );
    for runner in RUNNERS {
        let outs = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let o = build(
            &v,
            p.path(),
            &outs.path().join("out"),
            &["--runner", runner],
        );
        assert_eq!(
            o.status.code(),
            Some(124),
            "{runner}: stderr: {}",
            stderr(&o)
        );
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "{runner}: took {:?}",
            t0.elapsed()
        );
        let err = stderr(&o);
        assert!(
            err.contains("timed out after 3s in step 'sleepy'"),
            "{runner}: {err}"
        );
    }
}

#[test]
fn a_config_error_names_file_line_and_column() {
    let v = Vmb::new();
    let p = project("package:\n  name: x\n  version: \"1\"\npipline:\n  - runs: true\n");
    let outs = tempfile::tempdir().unwrap();
    let o = build(&v, p.path(), &outs.path().join("out"), &[]);
    assert_eq!(o.status.code(), Some(125), "stderr: {}", stderr(&o));
    let line = assert_one_line_error(&o);
    assert!(
        line.contains("vmbuild.yaml:4:1") && line.contains("pipeline"),
        "{line}"
    );
}

#[test]
fn env_precedence_conditions_nesting_and_uses_under_every_runner() {
    let v = Vmb::new();
    let p = project(
        r#"
package: { name: envs, version: "2.5" }
vars: { flavor: full }
environment:
  environment: { FROM_CONFIG: config, OVERRIDDEN: config, PIP_CACHE_DIR: /config/pip }
pipeline:
  - name: record
    environment: { OVERRIDDEN: step }
    runs: |
      mkdir -p ${{targets.destdir}}
      echo "$FROM_FILE|$FROM_CONFIG|$OVERRIDDEN|$FROM_CLI|$PIP_CACHE_DIR|$GOCACHE" > ${{targets.destdir}}/env.txt
  - name: skipped
    if: ${{vars.flavor}} == 'lite'
    runs: echo skipped > ${{targets.destdir}}/skipped
  - name: group
    environment: { LEVEL: outer }
    pipeline:
      - name: inner
        runs: echo "$LEVEL ${{package.version}}" > ${{targets.destdir}}/nested.txt
      - uses: test/echo
        with: { message: from-uses }
"#,
    );
    std::fs::write(
        p.path().join("env.list"),
        "FROM_FILE=file\nFROM_CONFIG=file\n",
    )
    .unwrap();
    let env_file = p.path().join("env.list").to_string_lossy().into_owned();
    for runner in RUNNERS {
        let outs = tempfile::tempdir().unwrap();
        let out = outs.path().join("out");
        let c = outs.path().join("cache").to_string_lossy().into_owned();
        let args = [
            "--runner",
            runner,
            "--env-file",
            &env_file,
            "-e",
            "FROM_CLI=cli",
            "--cache-dir",
            &c,
            "--log-format",
            "text",
        ];
        let o = build(&v, p.path(), &out, &args);
        assert_eq!(o.status.code(), Some(0), "{runner}: stderr: {}", stderr(&o));
        let rd = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
        // env-file < config < cache defaults (fill-if-unset) < step < --env
        let want = "file|config|step|cli|/config/pip|/var/cache/vmbuild/gocache\n";
        assert_eq!(rd("env.txt"), want, "{runner}");
        assert_eq!(rd("nested.txt"), "outer 2.5\n", "{runner}");
        assert!(!out.join("skipped").exists(), "{runner}");
        let err = stderr(&o);
        assert!(err.contains("echo: from-uses"), "{runner}: {err}");
        assert!(
            err.contains("skipped (if: false): skipped"),
            "{runner}: {err}"
        );
    }
}

/// A tar stream that plants `link -> <outside>`, then writes `link/pwned`
/// through it, then `../escaped` beside the output dir.
pub(crate) fn evil_tar(outside: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_link_name(outside).unwrap();
    h.set_cksum();
    b.append_data(&mut h, "link", std::io::empty()).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_size(6);
    f.set_mode(0o644);
    f.set_cksum();
    b.append_data(&mut f, "link/pwned", &b"pwned\n"[..])
        .unwrap();
    let mut g = tar::Header::new_gnu();
    g.set_size(6);
    g.set_mode(0o644);
    let name = b"../escaped";
    g.as_old_mut().name[..name.len()].copy_from_slice(name);
    g.set_cksum();
    b.append(&g, &b"pwned\n"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn a_guest_cannot_write_outside_the_output_dir_through_a_symlink() {
    let v = Vmb::new();
    let outs = tempfile::tempdir().unwrap();
    let outside = outs.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // The build is hostile: it replaces the guest's tar so the export
    // stream is whatever it wants.
    let p = project(
        r#"
package: { name: evil, version: "1" }
pipeline:
  - runs: |
      mkdir -p /usr/local/bin ${{targets.destdir}}
      printf '#!/bin/sh\ncat /home/build/evil.tar\n' > /usr/local/bin/tar
      chmod +x /usr/local/bin/tar
"#,
    );
    std::fs::write(p.path().join("evil.tar"), evil_tar(&outside)).unwrap();
    let out = outs.path().join("out");
    let o = build(&v, p.path(), &out, &["--log-format", "text"]);
    assert_ne!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("link/pwned"),
        "the error names the entry: {}",
        stderr(&o)
    );
    assert!(
        !outside.join("pwned").exists(),
        "wrote outside the output dir"
    );
    assert!(!out.exists(), "nothing placed");
}

#[test]
fn outputs_past_max_output_size_fail_the_build_naming_the_limit_and_place_nothing() {
    let v = Vmb::new();
    // 2x the limit: two 1 MiB files against --max-output-size 1M.
    let p = project(
        r#"
package: { name: big, version: "1" }
pipeline:
  - runs: |
      mkdir -p ${{targets.destdir}}
      head -c 1048576 /dev/zero > ${{targets.destdir}}/a
      head -c 1048576 /dev/zero > ${{targets.destdir}}/b
"#,
    );
    let outs = tempfile::tempdir().unwrap();
    let out = outs.path().join("out");
    let o = build(&v, p.path(), &out, &["--max-output-size", "1M"]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--max-output-size (1048576 bytes"), "{err}");
    assert!(!out.exists(), "nothing lands in --output-dir");
    let left: Vec<_> = std::fs::read_dir(outs.path()).unwrap().collect();
    assert!(left.is_empty(), "no staging leftovers: {left:?}");
    let o = build(&v, p.path(), &out, &["--max-output-size", "2M"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(out.join("b")).unwrap().len(), 1 << 20);
}

#[test]
fn a_guest_flooding_stdout_stops_the_log_file_at_its_cap_and_the_build_ends() {
    let v = Vmb::new();
    // ~3 MiB of lines against --log-file-max 1M.
    let p = project(
        r#"
package: { name: loud, version: "1" }
pipeline:
  - runs: |
      seq 70000 | sed 's/$/ a line of build output that goes on and on/'
      echo still-finished
"#,
    );
    let outs = tempfile::tempdir().unwrap();
    let log = outs.path().join("build.log");
    let log_arg = log.to_string_lossy().into_owned();
    let o = build(
        &v,
        p.path(),
        &outs.path().join("out"),
        &[
            "--log-format",
            "json",
            "--log-file",
            &log_arg,
            "--log-file-max",
            "1M",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("still-finished"),
        "the screen gets everything"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let len = text.len() as u64;
    assert!(len > (1 << 20) && len < (1 << 20) + 512, "{len} bytes");
    assert!(text.contains("[vmbuild: this log stopped at 1048576 bytes (--log-file-max)"));
    assert!(!text.contains("still-finished"));
}
