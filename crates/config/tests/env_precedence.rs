//! The environment precedence table from the crate docs, layer by layer.
//!
//! Lowest first: base < --env-file < config environment < cache defaults
//! (fill-if-unset) < step environment (outer < inner) < --env.

mod common;

use common::*;
use vmbuild_config::LoadOptions;

/// One variable per "highest layer that sets it", so each row of the table
/// is checked independently.
#[test]
fn precedence_table() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("ci.env");
    std::fs::write(
        &env_file,
        "# ci\nFILE_ONLY=file\nFILE_CONFIG=file\nexport FILE_CLI=file\nCACHE_VS_FILE=file\nPATH=/file/bin\n",
    )
    .unwrap();
    let opts = LoadOptions {
        base_env: kv(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/build"),
            ("BASE_ONLY", "base"),
        ]),
        env_file: Some(env_file),
        cache_defaults: kv(&[
            ("CACHE_ONLY", "/cache/only"),
            ("CACHE_VS_FILE", "/cache/file"),
            ("CACHE_VS_CONFIG", "/cache/config"),
            ("CACHE_VS_STEP", "/cache/step"),
            ("npm_config_cache", "/cache/npm"),
        ]),
        cache_default_aliases: kv(&[("npm_config_cache", "NPM_CONFIG_CACHE")]),
        cli_env: kv(&[
            ("FILE_CLI", "cli"),
            ("STEP_CLI", "cli"),
            ("CLI_ONLY", "cli"),
        ]),
        ..LoadOptions::default()
    };
    let p = plan_with(
        r#"
package: { name: env, version: "1" }
environment:
  environment:
    FILE_CONFIG: config
    CONFIG_ONLY: config
    CACHE_VS_CONFIG: config
    CONFIG_STEP: config
    NPM_CONFIG_CACHE: /mine/npm
pipeline:
  - name: outer
    environment:
      CONFIG_STEP: outer
      OUTER_INNER: outer
      STEP_CLI: step
      CACHE_VS_STEP: step
    pipeline:
      - name: inner
        environment: { OUTER_INNER: inner }
        runs: env
  - name: plain
    runs: env
"#,
        &opts,
    );
    let inner = &p.steps[0];
    let table = [
        ("BASE_ONLY", Some("base")),
        ("HOME", Some("/home/build")),
        ("PATH", Some("/file/bin")), // env file > base
        ("FILE_ONLY", Some("file")),
        ("FILE_CONFIG", Some("config")), // config > env file
        ("CONFIG_ONLY", Some("config")),
        ("CACHE_ONLY", Some("/cache/only")), // default fills a gap
        ("CACHE_VS_FILE", Some("file")),     // fill-if-unset: env file kept
        ("CACHE_VS_CONFIG", Some("config")), // fill-if-unset: config kept
        ("CACHE_VS_STEP", Some("step")),     // step > cache default
        ("npm_config_cache", None),          // alias set in config: default skipped
        ("NPM_CONFIG_CACHE", Some("/mine/npm")),
        ("CONFIG_STEP", Some("outer")), // step > config
        ("OUTER_INNER", Some("inner")), // inner step > outer step
        ("STEP_CLI", Some("cli")),      // --env > step
        ("FILE_CLI", Some("cli")),      // --env > env file
        ("CLI_ONLY", Some("cli")),
    ];
    for (name, want) in table {
        assert_eq!(inner.env_var(name), want, "{name}");
    }
    // Each name appears once.
    let mut names: Vec<&str> = inner.env.iter().map(|(k, _)| k.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate names in {:?}", inner.env);

    // A sibling step does not see another step's environment.
    let plain = &p.steps[1];
    assert_eq!(plain.env_var("CONFIG_STEP"), Some("config"));
    assert_eq!(plain.env_var("OUTER_INNER"), None);
    assert_eq!(plain.env_var("CACHE_VS_STEP"), Some("/cache/step"));
    assert_eq!(plain.env_var("STEP_CLI"), Some("cli"));
}

#[test]
fn env_file_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("bad.env");
    std::fs::write(&env_file, "OK=1\n\nBAD LINE\n").unwrap();
    let opts = LoadOptions {
        env_file: Some(env_file.clone()),
        ..LoadOptions::default()
    };
    let e = err_with(&format!("{HEADER}pipeline: []\n"), &opts);
    assert_eq!(
        e,
        format!(
            "{}:3:1: expected KEY=VALUE, found `BAD LINE`",
            env_file.display()
        )
    );
}
