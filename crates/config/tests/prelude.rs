//! SCRIPT_PRELUDE works in the shells a guest may have: `set -e` always,
//! `pipefail` where supported, and never breaks a shell without it (dash
//! 0.5.12, Debian bookworm's /bin/sh, refuses `set -o pipefail`).

use std::process::Command;

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
