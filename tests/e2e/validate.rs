//! `vmbuild validate`: no VM boots; fixtures in melange's format written
//! for these tests give 0 errors, broken ones an error each, located.

use std::path::Path;

use crate::harness::{stderr, stdout, Vmb};

/// Uses every part of the schema vmbuild gives a meaning to, and some it
/// only accepts.
const GOOD: &str = r#"
package:
  name: demo
  version: 1.2.3
  epoch: 1
  description: every feature
  copyright: [{ license: MIT }]
  dependencies: { runtime: [busybox] }
  resources: { cpu: 2, memory: 2Gi }
  test-resources: { memory: 1Gi }
environment:
  contents:
    packages: [build-base, busybox, "gcc~13", ca-certificates-bundle]
  environment: { CFLAGS: -O2 }
vars: { flavour: full }
var-transforms:
  - { from: "${{package.version}}", match: '^(\d+)\.(\d+)\.\d+$', replace: '$1.$2', to: mm }
data:
  - name: langs
    items: { en: English, de: Deutsch }
options:
  lite: { vars: { flavour: lite } }
pipeline:
  - uses: git-checkout
    with:
      repository: https://example.org/demo.git
      tag: v${{package.version}}
      expected-commit: 0123456789abcdef0123456789abcdef01234567
  - uses: local/hello
  - uses: autoconf/configure
  - uses: autoconf/make
  - uses: autoconf/make-install
  - uses: strip
  - name: only a name
  - if: ${{options.lite.enabled}} == 'true'
    runs: echo lite
subpackages:
  - name: ${{package.name}}-dev
    pipeline: [{ uses: split/dev }]
    test: { pipeline: [{ runs: "test -d /usr/include" }] }
  - range: langs
    name: demo-${{range.key}}
    pipeline: [{ runs: "echo ${{range.value}} > ${{targets.subpkgdir}}/lang" }]
test:
  environment: { contents: { packages: [demo-dev] } }
  pipeline:
    - uses: python/import
      with: { import: json }
update: { enabled: true }
"#;

const LOCAL_PIPELINE: &str = "name: hello\ndescription: says hello\nneeds: { packages: [jq] }\npipeline:\n  - runs: echo hello ${{context.name}}\n";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn validate_accepts_the_fixtures_and_locates_each_error() {
    let v = Vmb::new();
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "pipelines/local/hello.yaml", LOCAL_PIPELINE);
    let good = write(d.path(), "good.yaml", GOOD);
    let o = v.run(&["validate", &good]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(demo 1.2.3: 9 step(s), 3 subpackage(s), 2 test(s))"),
        "{}",
        stdout(&o)
    );

    let bad = [
        ("typo.yaml", GOOD.replace("  pipeline: [{ uses: split/dev }]", "  pipline: [{ uses: split/dev }]"), "typo.yaml:39:5: unknown key `pipline` in a subpackage; did you mean `pipeline`?"),
        ("subst.yaml", GOOD.replace("${{range.value}}", "${{range.valeu}}"), "subst.yaml:43:30: unknown variable `${{range.valeu}}`; did you mean `${{range.value}}`?"),
        ("uses.yaml", GOOD.replace("uses: strip", "uses: stirp"), "uses.yaml:33:11: pipeline `stirp` not found"),
        ("input.yaml", GOOD.replace("tag: v", "tagg: v"), "input.yaml:27:7: pipeline `git-checkout` has no input `tagg`; did you mean `tag`?"),
    ];
    let mut paths = vec![good.clone()];
    for (name, text, _) in &bad {
        paths.push(write(d.path(), name, text));
    }
    let mut args = vec!["validate", "-q"];
    args.extend(paths.iter().map(String::as_str));
    let o = v.run(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for (_, _, want) in &bad {
        let line = format!("error: {}/{want}", d.path().display());
        assert!(err.contains(&line), "missing {line:?} in:\n{err}");
    }
    assert!(err.contains("5 config(s): 1 valid, 4 with errors"), "{err}");

    // An unknown package is a warning, and an error with --strict.
    let pkg = write(
        d.path(),
        "pkg.yaml",
        &GOOD.replace("packages: [build-base,", "packages: [no-such-package-zz,"),
    );
    let o = v.run(&["validate", &pkg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-package-zz"), "{}", stderr(&o));
    let o = v.run(&["validate", "--strict", &pkg]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("error: "), "{}", stderr(&o));
}

/// `vmbuild build` refuses unknown package names before booting: one
/// error naming every one, with suggestions.
#[test]
fn build_lists_every_unknown_package_before_booting() {
    let v = Vmb::new();
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "pkgs.yaml",
        "package: { name: p, version: '1' }\nenvironment:\n  contents:\n    packages: [build-base, protobuf-dev, no-such-package-zz]\npipeline:\n  - runs: 'true'\n",
    );
    let t0 = std::time::Instant::now();
    let o = v.run(&["build", &cfg]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("pkgs.yaml: 2 package name(s) have no Debian equivalent: protobuf-dev (did you mean libprotobuf-dev"),
        "{err}"
    );
    assert!(err.contains("no-such-package-zz"), "{err}");
    assert!(!err.contains("booting"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
}

/// The same for a `test:` section's environment: its unknown names fail
/// the build before it boots, not after the build has run; `--skip-tests`
/// does not look at them.
#[test]
fn a_tests_unknown_package_fails_before_the_build_boots() {
    let v = Vmb::new();
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "t.yaml",
        "package: { name: p, version: '1' }\npipeline:\n  - runs: 'true'\ntest:\n  environment:\n    contents:\n      packages: [ldd-check-zz]\n  pipeline:\n    - runs: 'true'\n",
    );
    let out = d.path().join("out");
    let o = v.run(&["build", &cfg, "--out-dir", &out.display().to_string()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("t.yaml: 1 package name(s) have no Debian equivalent: ldd-check-zz"),
        "{err}"
    );
    assert!(!err.contains("booting"), "{err}");
    assert!(!out.exists());
    let o = v.run(&[
        "build",
        &cfg,
        "--skip-tests",
        "--out-dir",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
