//! Every error names file:line:column, and says what to do.

mod common;

use common::*;
use vmbuild_config::{ConfigError, LoadOptions};

#[test]
fn unknown_keys_suggest_the_closest() {
    assert_eq!(
        err(&format!("{HEADER}pipline:\n  - runs: x\n")),
        "vmbuild.yaml:4:1: unknown key `pipline` in the top level; did you mean `pipeline`?"
    );
    assert_eq!(
        err("package:\n  name: a1\n  vesrion: 1\npipeline: []\n"),
        "vmbuild.yaml:3:3: unknown key `vesrion` in package; did you mean `version`?"
    );
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - runs: x\n    working-dir: src\n")),
        "vmbuild.yaml:6:5: unknown key `working-dir` in a pipeline step; did you mean `working-directory`?"
    );
    assert_eq!(
        err(&format!(
            "{HEADER}environment:\n  contents:\n    pakages: [a]\npipeline: []\n"
        )),
        "vmbuild.yaml:6:5: unknown key `pakages` in environment.contents; did you mean `packages`?"
    );
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: x\n    zzzzzzzz: 1\n"
    ));
    assert!(e.starts_with("vmbuild.yaml:6:5: unknown key `zzzzzzzz` in a pipeline step; valid keys: name, runs, uses"), "{e}");
    assert_eq!(
        err("package:\n  name: a1\n  version: '1'\n  resources: { cpus: 2 }\npipeline: []\n"),
        "vmbuild.yaml:4:16: unknown key `cpus` in package.resources; did you mean `cpu`?"
    );
}

#[test]
fn melange_sections_are_checked_too() {
    assert_eq!(
        err(&format!("{HEADER}subpackages:\n  - nme: x\npipeline: []\n")),
        "vmbuild.yaml:5:5: unknown key `nme` in a subpackage; did you mean `name`?"
    );
    assert_eq!(
        err(&format!("{HEADER}var-transforms:\n  - from: x\n    match: '('\n    to: y\npipeline: []\n")),
        "vmbuild.yaml:6:12: `match` is not a valid regular expression (unclosed group); use RE2 syntax as melange does"
    );
    let e = err(&format!(
        "{HEADER}subpackages:\n  - name: x-${{{{range.key}}}}\n    range: nope\npipeline: []\n"
    ));
    assert_eq!(
        e,
        "vmbuild.yaml:6:12: `range: nope` names no `data:` entry; add it under the top-level `data:`"
    );
    let e = err(&format!(
        "{HEADER}subpackages:\n  - name: hello\npipeline: []\n"
    ));
    assert_eq!(
        e,
        "vmbuild.yaml:5:11: package `hello` is made twice; give each subpackage its own name"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        err("package:\n  name: [a]\n  version: 1\npipeline: []\n"),
        "vmbuild.yaml:2:9: `name` must be a string, found a list"
    );
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  runs: x\n")),
        "vmbuild.yaml:5:3: `pipeline` must be a list, found a mapping"
    );
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - runs: {{a: b}}\n")),
        "vmbuild.yaml:5:11: `runs` must be a string, found a mapping"
    );
    assert_eq!(
        err(&format!(
            "{HEADER}environment:\n  environment: [A]\npipeline: []\n"
        )),
        "vmbuild.yaml:5:16: `environment` must be a mapping of names to strings, found a list"
    );
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - just a string\n")),
        "vmbuild.yaml:5:5: `pipeline` must be a mapping, found a string"
    );
    assert_eq!(
        err("- a\n- b\n"),
        "vmbuild.yaml:1:1: a config must be a mapping with `package` and `pipeline`, found a list"
    );
    assert_eq!(
        err("just text\n"),
        "vmbuild.yaml:1:1: a config must be a mapping with `package` and `pipeline`, found a string"
    );
}

#[test]
fn missing_and_bad_values() {
    assert_eq!(
        err("package:\n  version: 1\npipeline: []\n"),
        "vmbuild.yaml:2:3: missing required `name` in package; add it"
    );
    assert_eq!(
        err("package:\n  name: a1\n  version:\npipeline: []\n"),
        "vmbuild.yaml:3:3: missing required `version` in package; add it"
    );
    assert_eq!(
        err("pipeline: []\n"),
        "vmbuild.yaml:1:1: missing required `package` in the top level; add it"
    );
    // As in melange, a config without a pipeline makes an empty package.
    assert!(plan(HEADER).steps.is_empty());
    assert_eq!(
        err("package:\n  name: -Hello\n  version: 1\npipeline: []\n"),
        "vmbuild.yaml:2:9: `-Hello` is not a valid package name; use letters, digits and `._+-`, starting with a letter or digit"
    );
    let e = err("package:\n  name: a1\n  version: 1\n  timeout: soon\npipeline: []\n");
    assert!(
        e.starts_with("vmbuild.yaml:4:12: `soon` is not a duration"),
        "{e}"
    );
    let e =
        err("package:\n  name: a1\n  version: 1\n  resources:\n    memory: 2XB\npipeline: []\n");
    assert!(
        e.starts_with("vmbuild.yaml:5:13: `2XB` is not a memory size"),
        "{e}"
    );
    let e = err("package:\n  name: a1\n  version: 1\n  epoch: -1\npipeline: []\n");
    assert!(
        e.starts_with("vmbuild.yaml:4:10: `-1` is not a valid epoch"),
        "{e}"
    );
    let e = err(&format!(
        "{HEADER}environment:\n  contents:\n    packages: [python3, 'Bad Name']\npipeline: []\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:6:25: `Bad Name` is not a valid package name"),
        "{e}"
    );
    let e = err(&format!(
        "{HEADER}environment:\n  environment:\n    1X: y\npipeline: []\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:6:5: `1X` is not a valid environment variable name"),
        "{e}"
    );
    assert!(err("").starts_with("vmbuild.yaml:1:1: the config is empty"));
}

#[test]
fn step_shape_errors() {
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - runs: a\n    uses: test/echo\n")),
        "vmbuild.yaml:6:5: a step has exactly one of `runs`, `uses` or `pipeline`; this one has `runs` and `uses`; split it into two steps"
    );
    assert_eq!(
        err(&format!(
            "{HEADER}pipeline:\n  - runs: a\n    with: {{x: y}}\n"
        )),
        "vmbuild.yaml:6:5: `with` gives inputs to a `uses` pipeline; this step has no `uses`"
    );
}

#[test]
fn yaml_syntax_errors_and_duplicates() {
    let e = err(&format!("{HEADER}pipeline:\n  - runs: [a\n"));
    assert!(e.starts_with("vmbuild.yaml:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    assert_eq!(
        err("package:\n  name: a1\n  name: a2\n  version: 1\npipeline: []\n"),
        "vmbuild.yaml:3:3: duplicate key `name` (first at line 2); remove one"
    );
}

#[test]
fn bad_substitutions_point_into_the_script() {
    // Inside a literal block: the line and column of the `${{`.
    assert_eq!(
        err(&format!("{HEADER}vars: {{ flavor: x }}\npipeline:\n  - runs: |\n      echo one\n      echo ${{{{vars.flavour}}}}\n")),
        "vmbuild.yaml:8:12: unknown variable `${{vars.flavour}}`; did you mean `${{vars.flavor}}`?"
    );
    // In a plain scalar.
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - runs: echo ${{{{package.nmae}}}}\n")),
        "vmbuild.yaml:5:16: unknown variable `${{package.nmae}}`; did you mean `${{package.name}}`?"
    );
    // Unterminated, in a quoted environment value.
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: x\n    environment:\n      A: \"pre ${{{{vars.x\"\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:7:15: unterminated `${{`"),
        "{e}"
    );
    // In working-directory and in a with value.
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: x\n    working-directory: ${{{{nope}}}}\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:6:24: unknown variable `${{nope}}`"),
        "{e}"
    );
    let e = err(&format!(
        "{HEADER}pipeline:\n  - uses: test/echo\n    with:\n      message: ${{{{inputs.x}}}}\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:7:16: unknown variable `${{inputs.x}}`"),
        "{e}"
    );
    // In a var, and a var using a later one.
    let e = err(&format!(
        "{HEADER}vars:\n  a: ${{{{vars.b}}}}\n  b: x\npipeline: []\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:5:6: unknown variable `${{vars.b}}`"),
        "{e}"
    );
    // Malformed.
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: echo ${{{{ a b }}}}\n"
    ));
    assert!(
        e.starts_with("vmbuild.yaml:5:16: `${{ a b }}` is not a valid substitution"),
        "{e}"
    );
}

#[test]
fn bad_conditions_point_into_the_condition() {
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - runs: x\n    if: a = b\n")),
        "vmbuild.yaml:6:11: bad `if` condition: unexpected `=`; did you mean `==`?"
    );
    assert_eq!(
        err(&format!(
            "{HEADER}pipeline:\n  - runs: x\n    if: \"(a == b\"\n"
        )),
        "vmbuild.yaml:6:17: bad `if` condition: expected `)` to close the `(`"
    );
    let e = err(&format!(
        "{HEADER}vars: {{ v: x }}\npipeline:\n  - runs: x\n    if: ${{{{vars.w}}}} == x\n"
    ));
    assert!(
        e.starts_with(
            "vmbuild.yaml:7:9: unknown variable `${{vars.w}}`; did you mean `${{vars.v}}`?"
        ),
        "{e}"
    );
    let e = err(&format!("{HEADER}pipeline:\n  - runs: x\n    if: maybe\n"));
    assert!(
        e.starts_with("vmbuild.yaml:6:9: bad `if` condition: `maybe` is not true or false"),
        "{e}"
    );
}

#[test]
fn bad_uses_paths() {
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - uses: ../../etc/passwd\n")),
        "vmbuild.yaml:5:11: bad `uses` path `../../etc/passwd`: `.` and `..` components are not allowed; use a name like `maven/configure-mirror` (found as <dir>/maven/configure-mirror.yaml)"
    );
    let e = err(&format!("{HEADER}pipeline:\n  - uses: /etc/passwd\n"));
    assert!(
        e.starts_with(
            "vmbuild.yaml:5:11: bad `uses` path `/etc/passwd`: absolute paths are not allowed"
        ),
        "{e}"
    );
    let e = err(&format!("{HEADER}pipeline:\n  - uses: test/ecoh\n"));
    assert!(
        e.starts_with(
            "vmbuild.yaml:5:11: pipeline `test/ecoh` not found; looked in: no pipeline directories"
        ),
        "{e}"
    );
    assert!(e.ends_with("did you mean `test/echo`?"), "{e}");
}

#[test]
fn inputs_missing_or_unknown() {
    assert_eq!(
        err(&format!("{HEADER}pipeline:\n  - uses: test/echo\n")),
        "vmbuild.yaml:5:11: pipeline `test/echo` needs input `message`; add `with: { message: ... }` to this step"
    );
    assert_eq!(
        err(&format!(
            "{HEADER}pipeline:\n  - uses: test/echo\n    with:\n      mesage: hi\n"
        )),
        "vmbuild.yaml:7:7: pipeline `test/echo` has no input `mesage`; did you mean `message`?"
    );
}

#[test]
fn errors_expose_their_location() {
    let e = error_with(&format!("{HEADER}pipline: []\n"), &LoadOptions::default());
    let at = e.location().expect("a location");
    assert_eq!((at.file.as_str(), at.line, at.col), ("vmbuild.yaml", 4, 1));
    match e {
        ConfigError::UnknownKey {
            key, suggestion, ..
        } => {
            assert_eq!(key, "pipline");
            assert_eq!(suggestion.as_deref(), Some("pipeline"));
        }
        other => panic!("wrong variant: {other:?}"),
    }
}

#[test]
fn missing_files_and_dirs() {
    let e = vmbuild_config::load(
        std::path::Path::new("/nonexistent/vmbuild.yaml"),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("/nonexistent/vmbuild.yaml: cannot read:"),
        "{e}"
    );
    let opts = LoadOptions {
        pipeline_dirs: vec!["/nonexistent-dir".into()],
        ..LoadOptions::default()
    };
    assert_eq!(
        err_with(&format!("{HEADER}pipeline: []\n"), &opts),
        "--pipeline-dir /nonexistent-dir: not a directory; check the path"
    );
    let opts = LoadOptions {
        env_file: Some("/nonexistent.env".into()),
        ..LoadOptions::default()
    };
    assert!(err_with(&format!("{HEADER}pipeline: []\n"), &opts)
        .starts_with("/nonexistent.env: cannot read:"));
}

#[test]
fn messages_are_one_line() {
    let e = err(&format!(
        "{HEADER}pipeline:\n  - runs: x\n    if: \"a\\n= b\"\n"
    ));
    assert!(!e.contains('\n'), "{e}");
}
