//! rename(2) of a directory that comes from an overlay's read-only lower
//! layer (the source tree of a build, the 9p cache) must move it, not fail
//! with EXDEV. The guest has no rename(2) tool without a fallback: busybox
//! `mv` copies and deletes on EXDEV. So the check runs `mv` from inside the
//! directory: a real rename carries the shell's working directory along
//! (`pwd -P` names the new path); a copy leaves the shell in a deleted
//! directory (`pwd -P` prints nothing).

use crate::harness::{stderr, stdout, Vmb};

/// `check DIR`: renames DIR/pkg to DIR/pkg.renamed from inside it and
/// prints `in place: DIR` or `copied: DIR (...)`.
const CHECK: &str = r#"
check() {
    ( cd "$1/pkg" && mv "$1/pkg" "$1/pkg.renamed" || { echo "mv failed: $1"; exit 0; }
      now=$(pwd -P)
      if [ "$now" = "$1/pkg.renamed" ] && [ "$(cat sub/f)" = lower ] && [ ! -e "$1/pkg" ]; then
          echo "in place: $1"
      else
          echo "copied: $1 (pwd -P after mv: '$now')"
      fi )
}
"#;

fn lower_tree(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("pkg/sub")).unwrap();
    std::fs::write(dir.join("pkg/sub/f"), "lower").unwrap();
}

#[test]
fn a_build_renames_lower_directories_of_the_source_and_the_cache_in_place() {
    let v = Vmb::new();
    let proj = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    lower_tree(proj.path());
    lower_tree(cache.path());
    let script = format!("{CHECK}check /home/build\ncheck /var/cache/vmbuild\n");
    let indented: String = script.lines().map(|l| format!("      {l}\n")).collect();
    let config = format!(
        "package:\n  name: rename\n  version: \"1\"\npipeline:\n  - name: rename\n    runs: |\n{indented}"
    );
    std::fs::write(proj.path().join("vmbuild.yaml"), config).unwrap();
    let out = tempfile::tempdir().unwrap();
    let cfg = proj.path().join("vmbuild.yaml");
    let o = v.run(&[
        "build",
        &cfg.to_string_lossy(),
        "--output-dir",
        &out.path().join("out").to_string_lossy(),
        "--cache-dir",
        &cache.path().to_string_lossy(),
        "--network",
        "none",
        "--log-format",
        "json",
    ]);
    // The progress (one JSON event per line) goes to stderr.
    let text = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for dir in ["/home/build", "/var/cache/vmbuild"] {
        assert!(
            text.contains(&format!("in place: {dir}\"")),
            "{dir}:\n{text}"
        );
    }
    assert!(
        proj.path().join("pkg/sub/f").exists(),
        "host source changed"
    );
    assert!(
        cache.path().join("pkg/sub/f").exists(),
        "host cache changed"
    );
}

#[test]
fn run_renames_a_lower_directory_of_the_cache_in_place() {
    let v = Vmb::new();
    let cache = tempfile::tempdir().unwrap();
    lower_tree(cache.path());
    let script = format!("{CHECK}check /var/cache/vmbuild\n");
    let o = v.run(&[
        "run",
        "--cache-dir",
        &cache.path().to_string_lossy(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "in place: /var/cache/vmbuild\n");
}
