//! melange's schema beyond one pipeline: subpackages, `range:`/`data:`,
//! `var-transforms`, `test:`, `options:`, `needs`, ignored metadata.

mod common;

use common::{err, err_with, plan, plan_with, HEADER};
use vmbuild_config::LoadOptions;

fn body(script: &str) -> &str {
    script.split_once("; fi; ").map_or(script, |(_, b)| b)
}

const FULL: &str = r#"
package:
  name: lzip
  version: 1.24.1
  epoch: 2
  description: a compressor
  copyright:
    - license: GPL-2.0-or-later
  dependencies:
    runtime: [libgcc, "!musl", "so:libc.so.6"]
  resources: { cpu: 2, memory: 2Gi, disk: 10Gi }
  test-resources: { cpu: 1, memory: 512Mi }
  checks: { disabled: [empty] }
environment:
  contents:
    keyring: [https://example/key.pub]
    repositories: [https://example/os]
    packages: [build-base, busybox, "gcc~13"]
  accounts:
    run-as: build
    users: [{ username: build, uid: 1000 }]
capabilities: { add: [CAP_NET_ADMIN] }
vars:
  short: lz
var-transforms:
  - from: ${{package.version}}
    match: ^(\d+)\.(\d+)\.\d+$
    replace: $1.$2
    to: major-minor
data:
  - name: tools
    items:
      lzip: the compressor
      lziprecover: the recoverer
pipeline:
  - name: says what it is
  - uses: test/echo
    with: { message: "${{vars.major-minor}} ${{context.name}}" }
  - runs: echo ${{targets.outdir}} ${{targets.destdir}} ${{package.full-version}}
    assertions: { required-steps: 1 }
subpackages:
  - name: ${{package.name}}-dev
    description: headers
    dependencies: { runtime: [lzip] }
    pipeline:
      - runs: echo ${{subpkg.name}} ${{targets.subpkgdir}} ${{targets.contextdir}} ${{context.name}}
    test:
      pipeline:
        - runs: echo testing ${{context.name}}
  - range: tools
    name: ${{range.key}}-doc
    pipeline:
      - runs: echo "${{range.value}}" > ${{targets.subpkgdir}}/about
  - name: never
    if: ${{vars.short}} == 'gz'
    pipeline:
      - runs: exit 1
test:
  environment:
    contents:
      packages: [lzip, lzip-dev, coreutils]
  pipeline:
    - runs: lzip --version
update:
  enabled: true
  release-monitor: { identifier: 1234 }
"#;

#[test]
fn a_full_melange_config_resolves() {
    let p = plan(FULL);
    assert_eq!(p.package.cpus, Some(2));
    assert_eq!(p.package.test_memory_mib, Some(512));
    assert_eq!(p.packages, ["build-base", "busybox", "gcc~13"]);
    let run_as = p.accounts.run_as.as_ref().expect("run-as build");
    assert_eq!(
        (run_as.name.as_str(), run_as.uid, run_as.gid),
        ("build", 1000, 1000)
    );
    assert_eq!(
        p.accounts.users.len(),
        1,
        "the declared build user, not a second"
    );
    assert_eq!(p.subpackages, ["lzip-dev", "lzip-doc", "lziprecover-doc"]);
    assert_eq!(p.skipped, ["never"]);
    let bodies: Vec<(&str, &str, &str)> = p
        .steps
        .iter()
        .map(|s| (s.package.as_str(), s.name.as_str(), body(&s.script)))
        .collect();
    assert_eq!(
        bodies[0],
        ("lzip", "test/echo > echo", "echo \"echo: 1.24 lzip\""),
        "var-transforms and context.name"
    );
    assert_eq!(
        bodies[1].2,
        "echo /home/build/out /home/build/out/lzip 1.24.1-r2"
    );
    assert_eq!(
        bodies[2],
        (
            "lzip-dev",
            "lzip-dev > step 1",
            "echo lzip-dev /home/build/out/lzip-dev /home/build/out/lzip-dev lzip-dev"
        )
    );
    assert_eq!(
        bodies[3].2,
        "echo \"the compressor\" > /home/build/out/lzip-doc/about"
    );
    assert_eq!(bodies[4].0, "lziprecover-doc");
    assert_eq!(bodies.len(), 5, "the name-only step is a no-op: {bodies:?}");

    assert_eq!(p.tests.len(), 2);
    let main = &p.tests[0];
    assert_eq!(main.package, "lzip");
    assert_eq!(main.installs, ["lzip", "lzip-dev"]);
    // lzip's dependencies.runtime comes along into its test VM.
    assert_eq!(main.packages, ["coreutils", "libgcc"]);
    assert_eq!(body(&main.steps[0].script), "lzip --version");
    let dev = &p.tests[1];
    // lzip-dev's runtime dependency is the build's own lzip: installed
    // from the outputs, and lzip's own runtime dependency with it.
    assert_eq!(dev.package, "lzip-dev");
    assert_eq!(dev.installs, ["lzip-dev", "lzip"]);
    assert_eq!(dev.packages, ["libgcc"]);
    assert_eq!(body(&dev.steps[0].script), "echo testing lzip-dev");

    let notes = p.notes.join("\n");
    for key in [
        "`package.copyright`",
        "`package.dependencies`",
        "`package.checks`",
        "`package.resources.disk`",
        "`environment.contents.keyring`",
        "`capabilities`",
        "`update`",
        "`subpackages[].dependencies`",
    ] {
        assert!(notes.contains(key), "{key} not noted:\n{notes}");
    }
    assert!(
        notes.contains("vmbuild.yaml:7:3: `package.copyright` is melange packaging metadata"),
        "{notes}"
    );
    assert!(
        notes.contains("a step's `assertions` has no effect in vmbuild"),
        "{notes}"
    );
}

#[test]
fn needs_packages_join_the_environment() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("x")).unwrap();
    std::fs::write(
        d.path().join("x/clone.yaml"),
        "name: clone\ndescription: clones\nneeds:\n  packages: [git, \"${{inputs.extra}}\"]\ninputs:\n  extra: { default: openssh-client }\npipeline:\n  - runs: git --version\n",
    )
    .unwrap();
    let opts = LoadOptions {
        pipeline_dirs: vec![d.path().to_path_buf()],
        ..LoadOptions::default()
    };
    let p = plan_with(
        &format!("{HEADER}environment:\n  contents:\n    packages: [git, make]\npipeline:\n  - uses: x/clone\n  - if: 'false'\n    needs: {{ packages: [never] }}\n    runs: x\n  - needs: {{ packages: [jq] }}\n    runs: jq\n"),
        &opts,
    );
    assert_eq!(p.packages, ["git", "make", "openssh-client", "jq"]);
}

#[test]
fn build_options_change_vars_and_packages() {
    let text = format!(
        "{HEADER}environment:\n  contents:\n    packages: [gcc, openssl-dev]\nvars: {{ tls: openssl }}\noptions:\n  no-tls:\n    vars: {{ tls: none }}\n    environment:\n      contents:\n        packages:\n          add: [musl-dev]\n          remove: [openssl-dev]\npipeline:\n  - runs: echo ${{{{vars.tls}}}} ${{{{options.no-tls.enabled}}}}\n"
    );
    let p = plan(&text);
    assert_eq!(body(&p.steps[0].script), "echo openssl false");
    let opts = LoadOptions {
        build_options: vec!["no-tls".into()],
        ..LoadOptions::default()
    };
    let p = plan_with(&text, &opts);
    assert_eq!(body(&p.steps[0].script), "echo none true");
    assert_eq!(p.packages, ["gcc", "musl-dev"]);
    let opts = LoadOptions {
        build_options: vec!["no-tsl".into()],
        ..LoadOptions::default()
    };
    assert_eq!(
        err_with(&text, &opts),
        "--build-option no-tsl: the config has no such option; its options: no-tls"
    );
}

#[test]
fn unknown_substitutions_are_named() {
    // subpkg.name exists only in a subpackage's context.
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: echo ${{{{subpkg.name}}}}\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:5:16: unknown variable `${{subpkg.name}}`"),
        "{e}"
    );
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: echo ${{{{range.key}}}}\n"
    ));
    assert!(e.contains("unknown variable `${{range.key}}`"), "{e}");
}

#[test]
fn working_directories_may_be_anywhere() {
    let p = plan(&format!(
        "{HEADER}pipeline:\n  - working-directory: /usr/src/x\n    pipeline:\n      - runs: a\n  - working-directory: ${{{{targets.destdir}}}}\n    runs: b\n"
    ));
    assert_eq!(p.steps[0].workdir, "/usr/src/x");
    assert_eq!(p.steps[1].workdir, "/home/build/out/hello");
}

#[test]
fn a_vars_file_overrides_vars_before_transforms() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("vars.yaml");
    std::fs::write(&f, "ver: 3.4.5\nextra: yes\n").unwrap();
    let text = format!(
        "{HEADER}vars: {{ ver: 1.2.3 }}\nvar-transforms:\n  - {{ from: \"${{{{vars.ver}}}}\", match: '\\.\\d+$', replace: '', to: mm }}\npipeline:\n  - runs: echo ${{{{vars.ver}}}} ${{{{vars.mm}}}} ${{{{vars.extra}}}}\n"
    );
    assert_eq!(
        body(&plan(&text.replace(" ${{vars.extra}}", "")).steps[0].script),
        "echo 1.2.3 1.2"
    );
    let opts = LoadOptions {
        vars_file: Some(f.clone()),
        ..LoadOptions::default()
    };
    assert_eq!(
        body(&plan_with(&text, &opts).steps[0].script),
        "echo 3.4.5 3.4 yes"
    );
    std::fs::write(&f, "- a\n").unwrap();
    let e = err_with(&text, &opts);
    assert!(
        e.contains("vars.yaml:1:1: `--vars-file` must be a mapping"),
        "{e}"
    );
}
