//! A command the guest's OOM killer kills is reported as such: who, that
//! the guest ran out of memory, the --memory in effect and how to raise it;
//! the exit code stays 137.

use crate::harness::{stderr, Vmb};

/// A 128 MiB guest has ~80 MiB of RAM and ~40 MiB available: a 70 MiB
/// buffer passes malloc's overcommit check and the OOM killer takes dd
/// while it fills it (quicker under TCG than the issue's
/// `x=$(head -c 400000000 /dev/zero | tr "\0" a)`, the same fault).
const HOG: &str = "dd if=/dev/zero of=/dev/null bs=70M count=1";

#[test]
fn run_reports_the_oom_kill_and_keeps_137() {
    let v = Vmb::new();
    let o = v.run(&[
        "run",
        "--memory",
        "128",
        "--",
        "sh",
        "-c",
        &format!("exec {HOG}"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(137), "{err}");
    assert!(
        err.contains("vmbuild: the guest ran out of memory: the kernel's OOM killer killed "),
        "{err}"
    );
    assert!(
        err.contains("killed dd (pid ") && err.contains("[--memory 128 MiB]; raise --memory"),
        "{err}"
    );
}

/// The victim is a child and the step itself exits 0: still reported.
#[test]
fn build_step_list_shows_the_oom_kill_of_a_child() {
    let v = Vmb::new();
    let proj = tempfile::tempdir().unwrap();
    let config = format!(
        "package:\n  name: hog\n  version: \"1\"\n  resources:\n    memory: 128Mi\n\
         pipeline:\n  - name: eat memory\n    runs: |\n      {HOG} || echo dd died\n"
    );
    std::fs::write(proj.path().join("vmbuild.yaml"), config).unwrap();
    let cfg = proj.path().join("vmbuild.yaml");
    let out = proj.path().join("out");
    let o = v.run(&[
        "build",
        &cfg.to_string_lossy(),
        "--output-dir",
        &out.to_string_lossy(),
        "--network",
        "none",
        "--log-format",
        "json",
    ]);
    // One JSON event per line on stderr; the note follows the step's end.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let finished = lines
        .iter()
        .position(|l| l.contains(r#""event":"step_finished""#))
        .unwrap_or_else(|| panic!("no step_finished:\n{err}"));
    let note = lines[finished + 1..]
        .iter()
        .find(|l| l.contains(r#""event":"note""#))
        .unwrap_or_else(|| panic!("no note after the step:\n{err}"));
    assert!(
        note.contains("step 'eat memory': the guest ran out of memory: the kernel's OOM killer killed dd (pid ")
            && note.contains("[--memory 128 MiB]; raise --memory (or the pipeline's resources.memory)"),
        "{note}"
    );
}
