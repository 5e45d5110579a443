//! `vmbuild config show` through the real binary: the layers it reads from
//! the real environment, a project `vmbuild.toml` beside a pipeline and the
//! user's `$XDG_CONFIG_HOME/vmbuild/config.toml`, each value's source named.

use crate::harness::{stdout, BIN};

#[test]
fn config_show_names_each_layer() {
    let d = tempfile::tempdir().expect("tmp");
    let project = d.path().join("proj");
    let xdg = d.path().join("xdg");
    std::fs::create_dir_all(project.join("sub")).unwrap();
    std::fs::create_dir_all(xdg.join("vmbuild")).unwrap();
    std::fs::write(
        project.join("vmbuild.yaml"),
        "package: {name: a, version: 1}\n",
    )
    .unwrap();
    std::fs::write(
        project.join("vmbuild.toml"),
        "cpus = 2\ncache-dir = \"cache\"\nsuite = \"trixie\"\n",
    )
    .unwrap();
    std::fs::write(
        xdg.join("vmbuild/config.toml"),
        "cpus = 8\nnetwork = \"none\"\ncolor = \"never\"\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["config", "show"])
        .arg(project.join("vmbuild.yaml"))
        .env("XDG_CONFIG_HOME", &xdg)
        .env("VMBUILD_MEMORY", "3G");
    for k in [
        "VMBUILD_RUNNER",
        "VMBUILD_CACHE_DIR",
        "VMBUILD_CACHE_ROOT",
        "VMBUILD_CACHE_MODE",
        "VMBUILD_CPUS",
        "VMBUILD_NETWORK",
        "VMBUILD_COLOR",
        "VMBUILD_SUITE",
        "VMBUILD_MIRROR",
    ] {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("vmbuild config show");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let line = |k: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(k))
            .unwrap_or_else(|| panic!("no {k} line: {text}"))
            .to_string()
    };
    let project_file = project.join("vmbuild.toml").display().to_string();
    assert!(line("memory").ends_with("env VMBUILD_MEMORY"), "{text}");
    assert!(
        line("cpus").contains(" 2 ")
            && line("cpus").ends_with(&format!("project file {project_file}")),
        "{text}"
    );
    assert!(
        line("cache-dir").contains(&project.join("cache").display().to_string()),
        "{text}"
    );
    assert!(line("network").contains("user file"), "{text}");
    assert!(
        line("color").contains(" never ") && line("color").contains("user file"),
        "{text}"
    );
    assert!(line("runner").ends_with("built-in"), "{text}");
    assert!(
        line("suite").contains(" trixie ")
            && line("suite").ends_with(&format!("project file {project_file}")),
        "{text}"
    );
    assert!(line("mirror").ends_with("built-in"), "{text}");

    // A misspelled key is an error naming the file, for config show and for a run.
    std::fs::write(project.join("vmbuild.toml"), "cpu = 2\n").unwrap();
    let bad = std::process::Command::new(BIN)
        .args(["config", "show"])
        .arg(&project)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains(&project_file) && err.contains("cpu"),
        "{err}"
    );
}
