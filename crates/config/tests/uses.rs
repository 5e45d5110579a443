//! `uses:` pipelines: built-ins, user directories, inputs, defaults,
//! nesting, search order and recursion.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use vmbuild_config::{builtin_pipeline, builtin_pipelines, load, LoadOptions, SCRIPT_PRELUDE};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn opts(dir: &Path) -> LoadOptions {
    LoadOptions {
        pipeline_dirs: vec![dir.to_path_buf()],
        ..LoadOptions::default()
    }
}

fn body(script: &str) -> &str {
    script.strip_prefix(SCRIPT_PRELUDE).expect("prelude")
}

#[test]
fn inputs_defaults_and_nesting() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "my/build.yaml",
        r#"
name: build things
needs: { packages: [make] }
inputs:
  target:
    description: what to build
    required: true
  jobs:
    default: "4"
  flags:
    description: no default, not required
  out:
    default: ${{targets.destdir}}/${{package.name}}
pipeline:
  - name: prepare
    working-directory: ${{inputs.target}}
    environment: { JOBS: "${{inputs.jobs}}" }
    runs: echo prepare ${{inputs.target}} [${{inputs.flags}}]
  - name: compile
    if: ${{inputs.jobs}} != 0
    uses: my/inner
    with:
      what: ${{inputs.target}} -j${{inputs.jobs}} > ${{inputs.out}}
"#,
    );
    write(
        d.path(),
        "my/inner.yaml",
        "inputs:\n  what: { required: true }\npipeline:\n  - runs: make ${{inputs.what}}\n",
    );
    let p = plan_with(
        &format!(
            "{HEADER}vars: {{ t: app }}\npipeline:\n  - name: outer\n    environment: {{ FROM: outer }}\n    uses: my/build\n    with:\n      target: ${{{{vars.t}}}}\n"
        ),
        &opts(d.path()),
    );
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["outer > prepare", "outer > compile > step 1"]);
    let prepare = &p.steps[0];
    assert_eq!(body(&prepare.script), "echo prepare app []");
    assert_eq!(prepare.workdir, "/home/build/app");
    assert_eq!(prepare.env_var("JOBS"), Some("4"));
    assert_eq!(
        prepare.env_var("FROM"),
        Some("outer"),
        "the uses step's environment is inherited"
    );
    assert_eq!(prepare.depth, 1);
    let compile = &p.steps[1];
    assert_eq!(
        body(&compile.script),
        "make app -j4 > /home/build/out/hello/hello"
    );
    assert_eq!(compile.depth, 2);
    assert_eq!(
        compile.workdir, "/home/build",
        "a uses pipeline starts in its caller's directory"
    );
}

#[test]
fn conditions_inside_pipelines_see_inputs() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "opt.yaml",
        "inputs:\n  enabled: { default: 'false' }\npipeline:\n  - name: maybe\n    if: ${{inputs.enabled}}\n    runs: echo on\n",
    );
    let p = plan_with(
        &format!(
            "{HEADER}pipeline:\n  - uses: opt\n  - uses: opt\n    with: {{ enabled: 'true' }}\n"
        ),
        &opts(d.path()),
    );
    assert_eq!(p.skipped, ["opt > maybe"]);
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].name, "opt > maybe");
}

#[test]
fn user_dirs_come_before_builtins_and_in_order() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    write(
        d1.path(),
        "test/echo.yaml",
        "inputs: { message: {} }\npipeline:\n  - runs: echo mine ${{inputs.message}}\n",
    );
    write(
        d2.path(),
        "test/echo.yaml",
        "pipeline:\n  - runs: echo second dir\n",
    );
    let o = LoadOptions {
        pipeline_dirs: vec![d1.path().to_path_buf(), d2.path().to_path_buf()],
        ..LoadOptions::default()
    };
    let p = plan_with(
        &format!("{HEADER}pipeline:\n  - uses: test/echo\n    with: {{ message: x }}\n"),
        &o,
    );
    assert_eq!(body(&p.steps[0].script), "echo mine x");
}

#[test]
fn the_config_dirs_pipelines_folder_is_searched() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "pipelines/local/step.yaml",
        "pipeline:\n  - runs: echo local\n",
    );
    write(
        d.path(),
        "vmbuild.yaml",
        &format!("{HEADER}pipeline:\n  - uses: local/step\n"),
    );
    let p = load(&d.path().join("vmbuild.yaml"), &LoadOptions::default()).unwrap();
    assert_eq!(body(&p.steps[0].script), "echo local");
    // --pipeline-dir wins over the config's folder.
    let other = tempfile::tempdir().unwrap();
    write(
        other.path(),
        "local/step.yaml",
        "pipeline:\n  - runs: echo flag\n",
    );
    let p = load(&d.path().join("vmbuild.yaml"), &opts(other.path())).unwrap();
    assert_eq!(body(&p.steps[0].script), "echo flag");
}

#[test]
fn recursion_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.yaml", "pipeline:\n  - uses: b\n");
    write(
        d.path(),
        "b.yaml",
        "pipeline:\n  - runs: echo b\n  - uses: a\n",
    );
    let e = err_with(
        &format!("{HEADER}pipeline:\n  - uses: a\n"),
        &opts(d.path()),
    );
    let b = d.path().join("b.yaml").display().to_string();
    assert_eq!(
        e,
        format!("{b}:3:11: pipeline `a` uses itself (a -> b -> a); break the cycle")
    );
    write(
        d.path(),
        "self.yaml",
        "pipeline:\n  - pipeline:\n    - uses: self\n",
    );
    let e = err_with(
        &format!("{HEADER}pipeline:\n  - uses: self\n"),
        &opts(d.path()),
    );
    assert!(
        e.ends_with("pipeline `self` uses itself (self -> self); break the cycle"),
        "{e}"
    );
}

#[test]
fn errors_inside_pipeline_files_name_that_file() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "bad.yaml",
        "inputs: {}\npipeline:\n  - runs: echo ${{inputs.nope}}\n",
    );
    let e = err_with(
        &format!("{HEADER}pipeline:\n  - uses: bad\n"),
        &opts(d.path()),
    );
    let f = d.path().join("bad.yaml").display().to_string();
    assert!(
        e.starts_with(&format!(
            "{f}:3:16: unknown variable `${{{{inputs.nope}}}}`"
        )),
        "{e}"
    );

    write(d.path(), "typo.yaml", "pipline: []\n");
    let e = err_with(
        &format!("{HEADER}pipeline:\n  - uses: typo\n"),
        &opts(d.path()),
    );
    let f = d.path().join("typo.yaml").display().to_string();
    assert_eq!(
        e,
        format!(
            "{f}:1:1: unknown key `pipline` in a pipeline definition; did you mean `pipeline`?"
        )
    );

    write(d.path(), "noin.yaml", "pipeline: []\n");
    let e = err_with(
        &format!("{HEADER}pipeline:\n  - uses: noin\n    with: {{ x: 1 }}\n"),
        &opts(d.path()),
    );
    assert_eq!(
        e,
        "vmbuild.yaml:6:13: pipeline `noin` has no input `x`; it takes no inputs"
    );

    write(
        d.path(),
        "req.yaml",
        "inputs:\n  r: { required: maybe }\npipeline: []\n",
    );
    let e = err_with(
        &format!("{HEADER}pipeline:\n  - uses: req\n"),
        &opts(d.path()),
    );
    assert!(
        e.ends_with("req.yaml:2:18: `maybe` is not true or false"),
        "{e}"
    );
}

#[test]
fn skipped_uses_steps_are_not_loaded() {
    // melange evaluates `if` first; a skipped `uses` need not exist.
    let p = plan(&format!(
        "{HEADER}pipeline:\n  - uses: not/there\n    if: 'false'\n"
    ));
    assert_eq!(p.skipped, ["not/there"]);
    // But its path is still checked.
    let e = err(&format!(
        "{HEADER}pipeline:\n  - uses: ../x\n    if: 'false'\n"
    ));
    assert!(e.contains("bad `uses` path"), "{e}");
}

/// melange's built-in pipelines (pkg/build/pipelines/ in
/// chainguard-dev/melange, read 2026-11-30): vmbuild ships each by name.
const MELANGE_BUILTINS: [&str; 51] = [
    "R/build",
    "autoconf/configure",
    "autoconf/make-install",
    "autoconf/make",
    "cargo/build",
    "cmake/build",
    "cmake/configure",
    "cmake/install",
    "fetch",
    "git-am",
    "git-checkout",
    "go/build",
    "go/build/v2",
    "go/bump",
    "go/covdata",
    "go/install",
    "llvm/covreport",
    "maven/configure-mirror",
    "maven/pombump",
    "meson/compile",
    "meson/configure",
    "meson/install",
    "npm/install",
    "patch",
    "pecl/install",
    "pecl/phpize",
    "perl/cleanup",
    "perl/make",
    "python/build-wheel",
    "python/build",
    "python/import",
    "python/install",
    "python/test",
    "ruby/build",
    "ruby/clean",
    "ruby/install",
    "split/alldocs",
    "split/bin",
    "split/debug",
    "split/dev",
    "split/infodir",
    "split/lib",
    "split/locales",
    "split/manpages",
    "split/static",
    "strip",
    "xcover/ensure",
    "xcover/profile",
    "xcover/status",
    "xcover/stop",
    "xcover/wait",
];

#[test]
fn the_builtins_are_melanges_full_set() {
    let mut ours: Vec<&str> = builtin_pipelines().collect();
    let mut theirs = MELANGE_BUILTINS.to_vec();
    // vmbuild's own addition (melange has no `test/echo`).
    theirs.push("test/echo");
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
}

#[test]
fn every_builtin_resolves_with_its_defaults() {
    let names: Vec<&str> = builtin_pipelines().collect();
    assert!(names.contains(&"maven/configure-mirror") && names.contains(&"test/echo"));
    for name in names {
        // Give each required input a value: ask the resolver which it misses.
        let mut with: Vec<String> = Vec::new();
        let p = loop {
            let text = format!(
                "{HEADER}pipeline:\n  - uses: {name}\n    with: {{ {} }}\n",
                with.join(", ")
            );
            match vmbuild_config::parse_str("vmbuild.yaml", &text, &LoadOptions::default()) {
                Ok(p) => break p,
                Err(e) => {
                    let e = e.to_string();
                    let input = e
                        .split("needs input `")
                        .nth(1)
                        .and_then(|r| r.split('`').next())
                        .unwrap_or_else(|| panic!("{name}: {e}"));
                    assert!(with.len() < 5, "{name}: {e}");
                    with.push(format!("{input}: x"));
                }
            }
        };
        assert!(!p.steps.is_empty(), "{name}");
        for s in &p.steps {
            assert!(
                !s.script.contains("${{"),
                "{name}: unsubstituted {}",
                s.script
            );
            assert!(s.name.starts_with(name), "{}", s.name);
        }
        assert!(builtin_pipeline(name).is_some());
    }
}

#[test]
fn maven_mirror_writes_settings_with_the_cache_backed_repository() {
    let p = plan(&format!(
        "{HEADER}pipeline:\n  - uses: maven/configure-mirror\n    with: {{ mirror-url: 'https://repo.example/m2/' }}\n"
    ));
    let s = &p.steps[0].script;
    assert!(s.contains("<url>https://repo.example/m2/</url>"), "{s}");
    assert!(s.contains("<mirrorOf>*</mirrorOf>"), "{s}");
    assert!(s.contains("$HOME/.m2/settings.xml"), "{s}");
    assert!(
        s.contains("<localRepository>$HOME/.m2/repository</localRepository>"),
        "{s}"
    );
    let p = plan(&format!(
        "{HEADER}pipeline:\n  - uses: maven/configure-mirror\n"
    ));
    assert!(p.steps[0]
        .script
        .contains("<url>https://maven-central.storage-download.googleapis.com/maven2/</url>"));
}

#[test]
fn autoconf_pipelines_use_their_dir_input() {
    let p = plan(&format!(
        "{HEADER}pipeline:\n  - uses: autoconf/configure\n    with: {{ dir: src, opts: --enable-x }}\n  - uses: autoconf/make-install\n"
    ));
    assert_eq!(p.steps[0].workdir, "/home/build");
    assert!(p.steps[0].script.contains("cd \"src\"\n"));
    assert!(p.steps[0].script.contains("--enable-x"));
    assert!(
        p.steps[0].script.contains("--host=x86_64-pc-linux-gnu") || !cfg!(target_arch = "x86_64")
    );
    assert!(p.steps[1]
        .script
        .contains("DESTDIR=\"/home/build/out/hello\""));
    assert_eq!(p.steps[1].workdir, "/home/build");
}

#[test]
fn environment_only_skips_pipelines_it_cannot_find() {
    let text = format!("{HEADER}environment:\n  contents:\n    packages: [make]\npipeline:\n  - uses: nowhere/to-be-found\n  - uses: autoconf/make\n");
    let e = vmbuild_config::parse_str("vmbuild.yaml", &text, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("pipeline `nowhere/to-be-found` not found"),
        "{e}"
    );
    let opts = LoadOptions {
        environment_only: true,
        ..LoadOptions::default()
    };
    let p = plan_with(&text, &opts);
    assert_eq!(p.packages, ["make"]);
    assert_eq!(p.steps.len(), 1);
}

/// melange's model: a `uses:` step's `working-directory` is where the
/// pipeline's steps start, and directory inputs such as `dir` are relative
/// to it, so both spellings build in `/home/build/pl`.
#[test]
fn a_uses_steps_working_directory_is_where_dir_inputs_start() {
    for (how, extra) in [
        ("working-directory", "    working-directory: pl\n"),
        ("dir", "    with: { dir: pl }\n"),
    ] {
        let p = vmbuild_config::parse_str(
            "vmbuild.yaml",
            &format!("{HEADER}pipeline:\n  - uses: autoconf/make\n{extra}"),
            &LoadOptions::default(),
        )
        .unwrap();
        let s = &p.steps[0];
        let (wd, dir) = (s.workdir.as_str(), body(&s.script).lines().next().unwrap());
        match how {
            "dir" => assert_eq!((wd, dir), ("/home/build", "cd \"pl\""), "{how}"),
            _ => assert_eq!((wd, dir), ("/home/build/pl", "cd \".\""), "{how}"),
        }
    }
}

/// `--skip-tests`: the `test:` sections are left unresolved, so a test
/// pipeline this machine lacks does not stop the build.
#[test]
fn skipped_tests_are_not_resolved() {
    let text = format!(
        "{HEADER}pipeline:\n  - runs: 'true'\ntest:\n  pipeline:\n    - uses: test/not-shipped-here\n"
    );
    let e = vmbuild_config::parse_str("vmbuild.yaml", &text, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("pipeline `test/not-shipped-here` not found"),
        "{e}"
    );
    let opts = LoadOptions {
        skip_tests: true,
        ..LoadOptions::default()
    };
    let p = vmbuild_config::parse_str("vmbuild.yaml", &text, &opts).unwrap();
    assert!(p.tests.is_empty());
    assert_eq!(p.steps.len(), 1);
}
