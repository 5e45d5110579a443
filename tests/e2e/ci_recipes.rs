//! The CI recipes in examples/ci (docs/ci.md) parse, have the shape their
//! CI system expects, and run the vmbuild commands they are about.

use std::path::PathBuf;

use serde_json::Value;

use crate::install::workspace;

fn recipe(name: &str) -> (PathBuf, String) {
    let path = workspace().join("examples/ci").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

fn yaml(name: &str) -> Value {
    let (path, text) = recipe(name);
    vmbuild_config::yaml_to_json(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every shell line of a list of steps/commands, joined.
fn script_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(script_text).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

#[test]
fn github_actions_workflow_has_jobs_with_steps_that_build() {
    let w = yaml("github-actions.yml");
    assert!(w.get("on").is_some(), "no `on:`");
    let jobs = w["jobs"].as_object().expect("jobs: a mapping");
    assert!(!jobs.is_empty());
    for (name, job) in jobs {
        assert!(job.get("runs-on").is_some(), "{name}: no runs-on");
        let steps = job["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no steps"));
        for s in steps {
            assert!(
                s.get("run").is_some() || s.get("uses").is_some(),
                "{name}: {s}"
            );
        }
        let runs: String = steps
            .iter()
            .map(|s| script_text(&s["run"]))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(runs.contains("vmbuild build "), "{name} builds nothing");
        assert!(
            runs.contains("cargo install --locked"),
            "{name} installs no vmbuild"
        );
    }
    let all = recipe("github-actions.yml").1;
    assert!(
        all.contains("/dev/kvm") && all.contains("actions/cache@"),
        "KVM and cache recipes"
    );
}

#[test]
fn gitlab_ci_job_has_a_script_that_builds() {
    let c = yaml("gitlab-ci.yml");
    let jobs: Vec<(&String, &Value)> = c
        .as_object()
        .expect("a mapping")
        .iter()
        .filter(|(k, v)| k.as_str() != "variables" && v.get("script").is_some())
        .collect();
    assert!(!jobs.is_empty(), "no job with a script");
    for (name, job) in jobs {
        assert!(job["image"].is_string(), "{name}: no image");
        assert!(
            script_text(&job["script"]).contains("vmbuild build "),
            "{name}"
        );
    }
}

#[test]
fn shell_runner_script_is_valid_bash_that_builds() {
    let (path, text) = recipe("shell-runner.sh");
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .expect("bash -n");
    assert!(syntax.success(), "bash -n {}", path.display());
    assert!(text.contains("vmbuild build "));
}

/// The vmbuild flags the recipes use exist: `vmbuild build` is given each
/// recipe's flags as `vmbuild build --help` lists them.
#[test]
fn the_flags_the_recipes_use_exist() {
    let help = std::process::Command::new(crate::harness::BIN)
        .args(["build", "--help"])
        .output()
        .expect("vmbuild build --help");
    let help = crate::harness::stdout(&help);
    let mut checked = 0;
    for name in ["github-actions.yml", "gitlab-ci.yml", "shell-runner.sh"] {
        let text = recipe(name).1;
        for flag in text
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            let flag = flag.split('=').next().unwrap_or(flag);
            if [
                "--locked",
                "--git",
                "--device",
                "--password-stdin",
                "--no-install-recommends",
                "--name-match",
                "--reload-rules",
            ]
            .contains(&flag)
            {
                continue; // cargo's, docker's, apt's, udevadm's
            }
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{name}: `{flag}` is not a `vmbuild build` flag"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} flags found in the recipes");
}
