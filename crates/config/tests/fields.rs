//! Every field of the config is parsed into the plan.

mod common;

use std::time::Duration;

use common::*;
use vmbuild_config::{LoadOptions, SCRIPT_PRELUDE};

const FULL: &str = r#"
package:
  name: hello-world.c++
  version: 1.10
  epoch: 3
  description: "says hello"
  timeout: 10m
  resources:
    cpu: 2
    memory: 2Gi
  copyright:
    - license: Apache-2.0
  dependencies:
    runtime: [busybox]
environment:
  contents:
    packages:
      - python3
      - build-essential
      - gcc=4:12.2.0-3
    repositories:
      - https://deb.debian.org/debian
    keyring:
      - /etc/apt/trusted.gpg
  environment:
    GLOBAL: g
    OVERRIDDEN: config
vars:
  flavor: full
  full-name: ${{package.name}}-${{vars.flavor}}
update:
  enabled: true
pipeline:
  - name: compile
    runs: |
      make ${{vars.full-name}}
    working-directory: src
    environment:
      OVERRIDDEN: step
      CFLAGS: -O2
    if: ${{vars.flavor}} == 'full'
    timeout: 30s
  - runs: echo second
  - name: group
    working-directory: /home/build/grp
    environment: { LEVEL: outer }
    timeout: 1m
    pipeline:
      - name: inner
        environment: { LEVEL: inner }
        runs: echo inner
      - name: inner2
        timeout: 5s
        runs: echo inner2
  - name: never
    if: ${{vars.flavor}} != 'full'
    pipeline:
      - runs: echo never
  - uses: test/echo
    with:
      message: hi ${{package.version}}
"#;

#[test]
fn every_field_reaches_the_plan() {
    let p = plan(FULL);
    let pkg = &p.package;
    assert_eq!(pkg.name, "hello-world.c++");
    assert_eq!(
        pkg.version, "1.10",
        "version must stay text, not the float 1.1"
    );
    assert_eq!(pkg.epoch, 3);
    assert_eq!(pkg.description.as_deref(), Some("says hello"));
    assert_eq!(pkg.timeout, Some(Duration::from_secs(600)));
    assert_eq!(pkg.cpus, Some(2));
    assert_eq!(pkg.memory_mib, Some(2048));
    assert_eq!(p.packages, ["python3", "build-essential", "gcc=4:12.2.0-3"]);
    assert_eq!(p.repositories, ["https://deb.debian.org/debian"]);

    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "compile",
            "step 2",
            "group > inner",
            "group > inner2",
            "test/echo > echo"
        ]
    );
    assert_eq!(p.skipped, ["never"]);

    let compile = &p.steps[0];
    assert_eq!(
        compile.script,
        format!("{SCRIPT_PRELUDE}make hello-world.c++-full\n")
    );
    assert_eq!(compile.workdir, "/home/build/src");
    assert_eq!(compile.timeout, Some(Duration::from_secs(30)));
    assert_eq!(compile.depth, 0);
    assert_eq!(compile.env_var("GLOBAL"), Some("g"));
    assert_eq!(compile.env_var("OVERRIDDEN"), Some("step"));
    assert_eq!(compile.env_var("CFLAGS"), Some("-O2"));
    assert_eq!(
        compile.argv()[..2],
        ["/bin/sh".to_string(), "-c".to_string()]
    );

    let second = &p.steps[1];
    assert_eq!(second.workdir, "/home/build");
    assert_eq!(second.timeout, None);
    assert_eq!(second.env_var("OVERRIDDEN"), Some("config"));
    assert_eq!(second.env_var("CFLAGS"), None);

    let inner = &p.steps[2];
    assert_eq!(inner.depth, 1);
    assert_eq!(inner.workdir, "/home/build/grp");
    assert_eq!(inner.env_var("LEVEL"), Some("inner"));
    assert_eq!(
        inner.timeout,
        Some(Duration::from_secs(60)),
        "inherits the group's timeout"
    );
    let inner2 = &p.steps[3];
    assert_eq!(inner2.env_var("LEVEL"), Some("outer"));
    assert_eq!(inner2.timeout, Some(Duration::from_secs(5)));

    let echo = &p.steps[4];
    assert_eq!(echo.depth, 1);
    assert_eq!(
        echo.script,
        format!("{SCRIPT_PRELUDE}echo \"echo: hi 1.10\"")
    );
}

#[test]
fn scalars_keep_their_text() {
    let p = plan(
        "package:\n  name: x1\n  version: 1.10\nvars:\n  n: 010\n  b: yes\n  f: 1e3\n  q: '1.0'\npipeline:\n  - runs: echo ${{vars.n}} ${{vars.b}} ${{vars.f}} ${{vars.q}}\n",
    );
    assert_eq!(p.package.version, "1.10");
    assert!(
        p.steps[0].script.ends_with("echo 010 yes 1e3 1.0"),
        "{}",
        p.steps[0].script
    );
}

#[test]
fn optional_fields_default() {
    let p = plan(&format!("{HEADER}pipeline:\n  - runs: true\n"));
    assert_eq!(p.package.epoch, 0);
    assert_eq!(p.package.description, None);
    assert_eq!(p.package.timeout, None);
    assert_eq!(p.package.cpus, None);
    assert_eq!(p.package.memory_mib, None);
    assert!(p.packages.is_empty() && p.repositories.is_empty() && p.skipped.is_empty());
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].name, "step 1");
    // An empty pipeline is a valid (if useless) config.
    assert!(plan(&format!("{HEADER}pipeline: []\n")).steps.is_empty());
}

#[test]
fn timeout_forms() {
    for (text, secs) in [("600", 600), ("10m", 600), ("30s", 30), ("1h30m", 5400)] {
        let p = plan(&format!(
            "package:\n  name: a1\n  version: '1'\n  timeout: {text}\npipeline:\n  - runs: x\n    timeout: {text}\n"
        ));
        assert_eq!(p.package.timeout, Some(Duration::from_secs(secs)), "{text}");
        assert_eq!(
            p.steps[0].timeout,
            Some(Duration::from_secs(secs)),
            "{text}"
        );
    }
}

#[test]
fn substitution_everywhere_it_applies() {
    let p = plan(
        r#"
package: { name: sub, version: "2.0", epoch: 1 }
environment:
  environment: { OUT: "${{targets.destdir}}/${{package.name}}" }
vars: { dir: src, flag: "on" }
pipeline:
  - name: build ${{package.full-version}}
    working-directory: ${{vars.dir}}/x
    environment: { CTX: "${{targets.contextdir}}", ARCH: "${{build.arch}}" }
    if: ${{vars.flag}} == on
    runs: echo ${{host.triplet.gnu}} ${{package.epoch}}
"#,
    );
    let s = &p.steps[0];
    assert_eq!(s.name, "build 2.0-r1");
    assert_eq!(s.workdir, "/home/build/src/x");
    // melange's layout: one directory per package under targets.outdir.
    assert_eq!(s.env_var("OUT"), Some("/home/build/out/sub/sub"));
    assert_eq!(s.env_var("CTX"), Some("/home/build/out/sub"));
    assert_eq!(s.env_var("ARCH"), Some(std::env::consts::ARCH));
    let triplet = if cfg!(target_arch = "x86_64") {
        "x86_64-pc-linux-gnu"
    } else {
        "-linux-gnu"
    };
    assert!(s.script.contains(triplet), "{}", s.script);
    assert!(s.script.ends_with(" 1"));
}

#[test]
fn conditions_skip_whole_groups() {
    let p = plan(&format!(
        "{HEADER}vars: {{ mode: fast }}\npipeline:\n  - name: slow\n    if: ${{{{vars.mode}}}} == slow || false\n    pipeline:\n      - runs: a\n      - runs: b\n  - name: fast\n    if: \"!(${{{{vars.mode}}}} != 'fast')\"\n    pipeline:\n      - name: inner\n        if: \"true && ${{{{vars.mode}}}} == fast\"\n        runs: c\n      - name: off\n        if: 'false'\n        runs: d\n"
    ));
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fast > inner"]);
    assert_eq!(p.skipped, ["slow", "fast > off"]);
}

#[test]
fn merge_keys_and_anchors_work() {
    let p = plan(&format!(
        "{HEADER}pipeline:\n  - &common\n    environment: {{ A: '1' }}\n    runs: one\n  - <<: *common\n    runs: two\n"
    ));
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.steps[1].env_var("A"), Some("1"));
    assert!(p.steps[1].script.ends_with("two"));
}

#[test]
fn the_hello_example_parses() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/vmbuild.yaml");
    let p = vmbuild_config::load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.package.name, "hello");
    assert_eq!(p.steps.len(), 3);
    let all: String = p.steps.iter().map(|s| s.script.as_str()).collect();
    for needle in [
        "/home/build/out/hello/share/hello/greeting.txt",
        "ln -sf",
        "chmod 0755",
        "ln -f bin/hello",
    ] {
        assert!(all.contains(needle), "{needle} missing");
    }
    assert!(!all.contains("${{"), "unsubstituted: {all}");
    assert_eq!(p.steps[2].workdir, "/home/build/out/hello");
}
