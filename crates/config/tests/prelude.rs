//! SCRIPT_PRELUDE works in the shells a guest may have: `set -e` always,
//! `pipefail` where supported, and never breaks a shell without it (dash
//! 0.5.12, Debian bookworm's /bin/sh, refuses `set -o pipefail`).

use std::process::Command;

mod common;

use vmbuild_config::SCRIPT_PRELUDE;

/// (argv prefix) of each shell found on this machine.
fn shells() -> Vec<Vec<&'static str>> {
    let mut out = vec![vec!["/bin/sh"]];
    for (path, argv) in [
        ("/usr/bin/dash", vec!["/usr/bin/dash"]),
        ("/bin/bash", vec!["/bin/bash"]),
        ("/usr/bin/busybox", vec!["/usr/bin/busybox", "sh"]),
        ("/bin/busybox", vec!["/bin/busybox", "sh"]),
    ] {
        if std::path::Path::new(path).exists() {
            out.push(argv);
        }
    }
    out
}

fn run(shell: &[&str], script: &str) -> (i32, String) {
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg("-c")
        .arg(format!("{SCRIPT_PRELUDE}{script}"))
        .output()
        .expect("run shell");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn prelude_sets_e_and_pipefail_where_supported() {
    for sh in shells() {
        // set -e: the first failure stops the script.
        let (code, out) = run(&sh, "echo one\nfalse\necho two\n");
        assert_eq!((code, out.as_str()), (1, "one\n"), "{sh:?}");
        let supports = Command::new(sh[0])
            .args(&sh[1..])
            .args(["-c", "set -o pipefail"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let (code, out) = run(&sh, "false | true\necho after\n");
        if supports {
            assert_eq!(code, 1, "{sh:?}: pipefail should stop the script");
            assert_eq!(out, "", "{sh:?}");
        } else {
            assert_eq!(
                (code, out.as_str()),
                (0, "after\n"),
                "{sh:?}: must still run"
            );
        }
        let (code, out) = run(&sh, "# a comment first\necho ok");
        assert_eq!((code, out.as_str()), (0, "ok\n"), "{sh:?}");
    }
}

#[test]
fn prelude_keeps_line_numbers() {
    // dash names the line in "not found" messages: the script's line 2 must
    // still be line 2 (the prelude shares the first line).
    if !std::path::Path::new("/usr/bin/dash").exists() {
        return;
    }
    let out = Command::new("/usr/bin/dash")
        .arg("-c")
        .arg(format!("{SCRIPT_PRELUDE}true\nnosuchcmd_vmbuild_test\n"))
        .output()
        .expect("run dash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(": 2: nosuchcmd_vmbuild_test"), "{err}");
}

/// A step's whole argv, run on this host: bash when PATH has it, else
/// /bin/sh; `[[ ]]` and pipefail work whenever bash or busybox is the shell.
#[test]
fn steps_run_with_bash_when_there_is_one() {
    let step = |path: &str, script: &str| {
        let p = common::plan(&format!(
            "{}pipeline:\n  - runs: |\n      {script}\n",
            common::HEADER
        ));
        let argv = p.steps[0].argv();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env("PATH", path)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    if std::path::Path::new("/bin/bash").exists() {
        let (code, out) = step(
            "/usr/bin:/bin",
            "[[ x == x ]] && echo \"$BASH_VERSION\" | cut -c1",
        );
        assert_eq!(code, 0);
        assert!(!out.is_empty(), "not run by bash");
        let (code, _) = step("/usr/bin:/bin", "false | true");
        assert_eq!(code, 1, "pipefail is on under bash");
    }
    // No bash on PATH: /bin/sh runs it (dash here, busybox ash in a guest).
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = step(
        &empty.path().display().to_string(),
        "echo \"bash=${BASH_VERSION:-none}\"",
    );
    assert_eq!((code, out.as_str()), (0, "bash=none"));
}
