//! A melange-style config, end to end in the busybox environment: `fetch`
//! from a seeded cache (offline), a main package split into `range:` and
//! `split/*` subpackages, `var-transforms`, bash-or-busybox shell features,
//! `environment.accounts` with `run-as` (build and test steps as a user),
//! and a `test:` section in a fresh VM; invoked with melange's flags.

use std::path::Path;

use crate::harness::{stderr, Vmb};

const CONFIG: &str = r#"
package:
  name: zed
  version: 2.5.1
  epoch: 0
  description: a melange-style package
  copyright:
    - license: MIT
  resources: { cpu: 1, memory: 1Gi }
environment:
  contents:
    packages: [busybox]
  accounts:
    groups:
      - groupname: makers
        gid: 1500
        members: [maker]
    users:
      - username: maker
        uid: 1500
    run-as: maker
var-transforms:
  - from: ${{package.version}}
    match: ^(\d+)\.(\d+)\.\d+$
    replace: $1.$2
    to: mm
data:
  - name: flavours
    items:
      red: warm
      blue: cold
pipeline:
  - uses: fetch
    with:
      uri: http://10.0.2.2:9/zed-${{package.version}}.tar.gz
      expected-sha256: SHA
  - name: shell features melange users rely on
    runs: |
      [[ "$(cat VERSION)" == 2.5.1 ]]
      if (false | true); then echo "pipefail is off" >&2; exit 1; fi
      echo build-only > /tmp/marker
  - name: the scratch disk's size (--disk)
    runs: df -Pk /home/build | awk 'NR == 2 { print $2 }' > disk-kb
  - name: steps run as the run-as user, who owns the workspace
    runs: |
      test "$(id -u):$(id -g):$(id -un)" = 1500:1500:maker
      id -G | grep -qw 1500
      touch /home/build/written-by-maker ${{targets.outdir}}/zed-blue/probe
      rm ${{targets.outdir}}/zed-blue/probe
  - runs: |
      mkdir -p ${{targets.destdir}}/usr/bin ${{targets.destdir}}/usr/include ${{targets.destdir}}/usr/share/man/man1
      printf '#!/bin/sh\necho zed ${{vars.mm}}\n' > ${{targets.destdir}}/usr/bin/zed
      chmod 0755 ${{targets.destdir}}/usr/bin/zed
      cp zed.h ${{targets.destdir}}/usr/include/
      echo '.TH ZED 1' > ${{targets.destdir}}/usr/share/man/man1/zed.1
subpackages:
  - name: ${{package.name}}-dev
    pipeline:
      - uses: split/dev
  - name: ${{package.name}}-doc
    pipeline:
      - uses: split/manpages
  - range: flavours
    name: zed-${{range.key}}
    pipeline:
      - runs: echo ${{range.value}} > ${{targets.subpkgdir}}/flavour
test:
  environment:
    contents:
      packages: [zed-dev]
    accounts:
      run-as: build
  pipeline:
    - name: the tool is installed in a fresh VM
      runs: |
        test "$(id -u):$(id -un)" = 1000:build
        test "$(zed)" = "zed 2.5"
        test -f /usr/include/zed.h
        test ! -e /tmp/marker
"#;

/// The source tarball (`zed-2.5.1/{VERSION,zed.h}`), seeded; its sha256.
fn tarball(dir: &Path) -> String {
    let src = dir.join("zed-2.5.1");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("VERSION"), "2.5.1").unwrap();
    std::fs::write(src.join("zed.h"), "int zed(void);\n").unwrap();
    seed(dir, "zed-2.5.1")
}

/// Packs `dir/NAME` as a .tar.gz and seeds `dir/cache` with it under its
/// `sha256:<hash>` (where `fetch` looks first); returns the hash.
fn seed(dir: &Path, name: &str) -> String {
    let tgz = dir.join(format!("{name}.tar.gz"));
    let ok = std::process::Command::new("tar")
        .args([
            "-czf",
            &tgz.display().to_string(),
            "-C",
            &dir.display().to_string(),
            name,
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let sum = std::process::Command::new("sha256sum")
        .arg(&tgz)
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(&tgz, cache.join(format!("sha256:{sum}"))).unwrap();
    sum
}

#[test]
fn a_melange_config_builds_splits_and_tests_offline_with_melange_flags() {
    let v = Vmb::new();
    let work = tempfile::tempdir().unwrap();
    let sum = tarball(work.path());
    let proj = work.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("zed.yaml"), CONFIG.replace("SHA", &sum)).unwrap();
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    let config = proj.join("zed.yaml");
    let workspace = work.path().join("ws");
    let o = v.run(&[
        "build",
        &config.display().to_string(),
        "--workspace-dir",
        &workspace.display().to_string(),
        "--runner",
        "qemu",
        "--cache-dir",
        &cache.display().to_string(),
        "--out-dir",
        &out.display().to_string(),
        "--cpu",
        "1",
        "--memory",
        "1Gi",
        "--disk",
        "2Gi",
        "--log-format",
        "json",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("fetch: zed-2.5.1.tar.gz from the cache"),
        "{err}"
    );
    assert!(err.contains("testing zed in a fresh VM"), "{err}");
    assert!(err.contains("steps run as maker (1500:1500)"), "{err}");
    let read =
        |p: &str| std::fs::read_to_string(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("zed/usr/bin/zed"), "#!/bin/sh\necho zed 2.5\n");
    assert_eq!(read("zed-dev/usr/include/zed.h"), "int zed(void);\n");
    assert!(
        !out.join("zed/usr/include").exists(),
        "split/dev moved the headers"
    );
    assert_eq!(read("zed-doc/usr/share/man/man1/zed.1"), ".TH ZED 1\n");
    assert!(!out.join("zed/usr/share/man").exists());
    assert_eq!(read("zed-red/flavour"), "warm\n");
    assert_eq!(read("zed-blue/flavour"), "cold\n");
    // --workspace-dir kept the guest's /home/build: the fetched source,
    // what the run-as user wrote, the outputs.
    assert_eq!(
        std::fs::read_to_string(workspace.join("VERSION")).unwrap(),
        "2.5.1"
    );
    assert!(workspace.join("written-by-maker").is_file());
    // melange's `--disk 2Gi` sized the scratch disk (ext4 keeps ~2%).
    let kb: u64 = std::fs::read_to_string(workspace.join("disk-kb"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((1_800_000..=2_097_152).contains(&kb), "{kb} KiB");
    assert!(workspace.join("out/zed/usr/bin/zed").is_file());

    // The runners that cannot switch users refuse run-as before running
    // anything, rather than running the steps as root.
    for runner in ["bubblewrap", "docker"] {
        let o = v.run(&[
            "build",
            &config.display().to_string(),
            "--runner",
            runner,
            "--out-dir",
            &work.path().join("never").display().to_string(),
        ]);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{err}");
        assert!(
            err.contains(&format!(
                "the {runner} runner does not support environment.accounts.run-as"
            )),
            "{err}"
        );
        assert!(!work.path().join("never").exists());
    }

    // A failing test fails the build, naming the step; the outputs stay.
    let failing = CONFIG
        .replace("SHA", &sum)
        .replace("test ! -e /tmp/marker", "exit 3");
    std::fs::write(&config, failing).unwrap();
    let o = v.run(&[
        "build",
        &config.display().to_string(),
        "--cache-dir",
        &cache.display().to_string(),
        "--output-dir",
        &out.display().to_string(),
        "--log-format",
        "text",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "step 'test zed > the tool is installed in a fresh VM' failed with exit code 3"
        ),
        "{err}"
    );
}

/// `git-checkout` and `patch` in a Debian environment pulled in by their
/// `needs.packages` (git, patch) through the package map: a local
/// repository checked out at a tag, its commit verified, a patch applied,
/// and a wrong expected commit failing the build.
#[test]
fn git_checkout_and_patch_run_with_the_packages_they_need() {
    let v = Vmb::new();
    let work = tempfile::tempdir().unwrap();
    let proj = work.path().join("proj");
    let repo = proj.join("upstream");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-C",
                &repo.display().to_string(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("hello.txt"), "hello\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    git(&["tag", "v1.0"]);
    let commit = git(&["rev-parse", "HEAD"]);
    std::fs::write(
        proj.join("fix.patch"),
        "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-hello\n+hello, patched\n",
    )
    .unwrap();
    let config = |expected: &str| {
        format!(
            r#"
package: {{ name: gc, version: "1.0" }}
environment:
  contents:
    packages: [busybox]
pipeline:
  - uses: git-checkout
    with:
      repository: /home/build/upstream
      tag: v${{{{package.version}}}}
      destination: src
      expected-commit: {expected}
  - uses: patch
    working-directory: src
    with:
      patches: ../fix.patch
  - runs: |
      command -v git
      mkdir -p ${{{{targets.destdir}}}}
      cp src/hello.txt ${{{{targets.destdir}}}}/
"#
        )
    };
    std::fs::write(proj.join("gc.yaml"), config(&commit)).unwrap();
    let out = work.path().join("out");
    let cfg = proj.join("gc.yaml").display().to_string();
    let o = v.run(&[
        "build",
        &cfg,
        "--output-dir",
        &out.display().to_string(),
        "--log-format",
        "json",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("at {commit}")), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("hello.txt")).unwrap(),
        "hello, patched\n"
    );

    let wrong = "0000000000000000000000000000000000000000";
    std::fs::write(proj.join("gc.yaml"), config(wrong)).unwrap();
    let o = v.run(&[
        "build",
        &cfg,
        "--output-dir",
        &out.display().to_string(),
        "--log-format",
        "text",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("is at {commit}, expected {wrong}")),
        "{err}"
    );
}

const AUTOCONF: &str = r#"
package: { name: hello, version: "1.0", epoch: 0 }
environment:
  contents:
    # With the tools of tests/e2e/melange_families.rs (cmake to ruby): both
    # tests use one environment image, built once.
    packages: [build-base, busybox, cmake, ninja, meson, python3, py3-build, py3-installer, py3-setuptools, python3-wheel, perl, ruby, ca-certificates-bundle]
pipeline:
  - uses: fetch
    with:
      uri: http://10.0.2.2:9/hello-1.0.tar.gz
      expected-sha256: SHA
  - uses: autoconf/configure
  - uses: autoconf/make
  - uses: autoconf/make-install
  - uses: strip
  - name: bash runs the steps in a Debian environment
    runs: |
      [[ -x ${{targets.destdir}}/usr/bin/hello ]]
      if (false | true); then echo "pipefail is off" >&2; exit 1; fi
      test -n "$BASH_VERSION"
subpackages:
  - name: hello-dev
    pipeline: [{ uses: split/dev }]
  - name: hello-doc
    pipeline: [{ uses: split/manpages }]
test:
  pipeline:
    - name: hello runs in a fresh VM
      runs: test "$(hello)" = "hello, world"
"#;

/// A tiny autoconf-style project (a hand-written `configure`), as a
/// seeded tarball; its sha256.
fn autoconf_tarball(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let src = dir.join("hello-1.0");
    std::fs::create_dir_all(&src).unwrap();
    let configure = src.join("configure");
    std::fs::write(
        &configure,
        "#!/bin/sh\nprefix=/usr/local\nfor a; do case \"$a\" in --prefix=*) prefix=${a#--prefix=} ;; esac; done\nsed \"s|@prefix@|$prefix|\" Makefile.in > Makefile\necho \"configured for $prefix\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&configure, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        src.join("Makefile.in"),
        "prefix = @prefix@\nall: hello\nhello: hello.c hello.h\n\t$(CC) -g -O0 -static -o hello hello.c\ninstall: hello\n\tmkdir -p $(DESTDIR)$(prefix)/bin $(DESTDIR)$(prefix)/include $(DESTDIR)$(prefix)/share/man/man1\n\tcp hello $(DESTDIR)$(prefix)/bin/\n\tcp hello.h $(DESTDIR)$(prefix)/include/\n\tcp hello.1 $(DESTDIR)$(prefix)/share/man/man1/\n",
    )
    .unwrap();
    std::fs::write(src.join("hello.h"), "#define GREETING \"hello, world\"\n").unwrap();
    std::fs::write(
        src.join("hello.c"),
        "#include <stdio.h>\n#include \"hello.h\"\nint main(void) { puts(GREETING); return 0; }\n",
    )
    .unwrap();
    std::fs::write(src.join("hello.1"), ".TH HELLO 1\n").unwrap();
    seed(dir, "hello-1.0")
}

/// The issue's acceptance build: fetch (offline, seeded cache) +
/// autoconf/configure + make + make-install + strip + split/dev +
/// split/manpages + a test in a fresh VM; the binary really stripped.
#[test]
fn an_autoconf_project_builds_strips_splits_and_tests_offline() {
    let v = Vmb::new();
    let work = tempfile::tempdir().unwrap();
    let sum = autoconf_tarball(work.path());
    let proj = work.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("hello.yaml"), AUTOCONF.replace("SHA", &sum)).unwrap();
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    let o = v.run(&[
        "build",
        &proj.join("hello.yaml").display().to_string(),
        "--cache-dir",
        &cache.display().to_string(),
        "--out-dir",
        &out.display().to_string(),
        "--memory",
        "2Gi",
        "--log-format",
        "json",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("testing hello in a fresh VM"), "{err}");
    let bin = out.join("hello/usr/bin/hello");
    let sections = std::process::Command::new("readelf")
        .arg("-S")
        .arg(&bin)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(".text"), "{sections}");
    assert!(
        !sections.contains(".debug_info"),
        "not stripped:\n{sections}"
    );
    assert!(out.join("hello-dev/usr/include/hello.h").is_file());
    assert!(!out.join("hello/usr/include").exists());
    assert!(out.join("hello-doc/usr/share/man/man1/hello.1").is_file());
}
