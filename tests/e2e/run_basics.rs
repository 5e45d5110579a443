//! `vmbuild run`: output, exit codes, streaming, background processes.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::{stderr, stdout, Boot, Vmb};

in_both_boot_modes!(
    stdout_stderr_and_exit_code_come_back_separately,
    ten_mib_arrive_byte_exact_and_streams_do_not_mix,
    background_process_holding_stdout_does_not_hang_the_run,
    env_workdir_and_signals_reach_the_command,
);

fn stdout_stderr_and_exit_code_come_back_separately(boot: Boot) {
    let v = Vmb::booting(boot);
    let o = v.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "uname -r; echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let release = out.trim();
    assert!(
        release.starts_with("6.") && !release.contains(' '),
        "stdout: {out:?}"
    );
    assert!(!out.contains("to-stderr"));
    assert!(
        stderr(&o).lines().any(|l| l == "to-stderr"),
        "stderr: {}",
        stderr(&o)
    );
}

fn ten_mib_arrive_byte_exact_and_streams_do_not_mix(boot: Boot) {
    let v = Vmb::booting(boot);
    // stdout and stderr are written at the same time by two processes.
    let script = "head -c 10485760 /dev/urandom > /tmp/d; sha256sum /tmp/d > /tmp/sum; \
                  cat /tmp/d & i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo err$i >&2; done; wait; \
                  cat /tmp/sum >&2";
    let o = v.run(&["run", "--memory", "1G", "--", "sh", "-c", script]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr tail: {}",
        stderr(&o).lines().last().unwrap_or("")
    );
    assert_eq!(o.stdout.len(), 10 * 1024 * 1024);
    let local = hex::encode(Sha256::digest(&o.stdout));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        2001,
        "stderr must hold exactly the 2000 lines and the checksum"
    );
    for (i, l) in lines[..2000].iter().enumerate() {
        assert_eq!(*l, format!("err{}", i + 1));
    }
    let guest = lines[2000].split_whitespace().next().unwrap_or("");
    assert_eq!(
        guest, local,
        "checksum computed in the guest vs of what arrived"
    );
}

/// Under every runner (the other runners once, in the cold pass).
fn background_process_holding_stdout_does_not_hang_the_run(boot: Boot) {
    let v = Vmb::booting(boot);
    let runners: &[&str] = match boot {
        Boot::Cold => &["qemu", "bubblewrap", "docker"],
        Boot::Warm => &["qemu"],
    };
    for runner in runners {
        let t0 = Instant::now();
        let o = v.run(&[
            "run",
            "--runner",
            runner,
            "--",
            "sh",
            "-c",
            "sleep 300 & echo started",
        ]);
        assert_eq!(o.status.code(), Some(0), "{runner}: {}", stderr(&o));
        assert_eq!(stdout(&o), "started\n", "{runner}");
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{runner}: took {:?}",
            t0.elapsed()
        );
    }
}

fn env_workdir_and_signals_reach_the_command(boot: Boot) {
    let v = Vmb::booting(boot);
    let o = v.run(&[
        "run",
        "-e",
        "GREETING=hi there",
        "-w",
        "/tmp/work",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING|$(pwd)|$HOME\"; kill -TERM $$",
    ]);
    assert_eq!(
        stdout(&o),
        "hi there|/tmp/work|/home/build\n",
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(128 + 15), "killed by SIGTERM -> 143");
}

#[test]
fn a_missing_command_exits_127() {
    let v = Vmb::new();
    let o = v.run(&["run", "--", "no-such-command-here"]);
    assert_eq!(o.status.code(), Some(127), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains("no-such-command-here"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_goes_through_the_bubblewrap_runner_too() {
    let v = Vmb::new();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_string_lossy().into_owned();
    let o = v.run(&[
        "run",
        "--runner",
        "bubblewrap",
        "--cache-dir",
        &c,
        "-e",
        "X=from-flag",
        "--",
        "sh",
        "-c",
        "echo \"$PWD $X $PIP_CACHE_DIR\"; echo to-stderr >&2; echo kept > /var/cache/vmbuild/w; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "/home/build from-flag /var/cache/vmbuild/pip\n");
    assert!(
        stderr(&o).lines().any(|l| l == "to-stderr"),
        "{}",
        stderr(&o)
    );
    // bubblewrap binds the cache read-write, as melange's runner does.
    assert_eq!(
        std::fs::read_to_string(cache.path().join("w")).unwrap(),
        "kept\n"
    );
}

#[test]
fn a_feature_the_runner_lacks_is_a_one_line_error_naming_both() {
    let v = Vmb::new();
    for (flag, val) in [("--rootfs", "/nonexistent"), ("--network", "user")] {
        let o = v.run(&["run", "--runner", "bubblewrap", flag, val, "--", "true"]);
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        let line = crate::harness::assert_one_line_error(&o);
        assert!(
            line.contains("the bubblewrap runner does not support") && line.contains(flag),
            "{line}"
        );
    }
}

#[test]
fn log_format_json_gives_one_event_stream_for_run() {
    let v = Vmb::new();
    let events = |o: &std::process::Output| -> Vec<serde_json::Value> {
        stderr(o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let o = v.run(&[
        "run",
        "--log-format",
        "json",
        "--",
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "everything is in the event stream");
    let ev = events(&o);
    let kinds: Vec<&str> = ev.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"note"), "{kinds:?}");
    assert!(ev
        .iter()
        .any(|e| e["event"] == "note" && e["text"] == "booting the VM"));
    assert!(ev
        .iter()
        .any(|e| e["event"] == "output" && e["stream"] == "stdout" && e["line"] == "hi"));
    assert!(ev
        .iter()
        .any(|e| e["event"] == "output" && e["stream"] == "stderr" && e["line"] == "oops"));
    let done = ev
        .iter()
        .find(|e| e["event"] == "step_finished")
        .expect("step_finished");
    assert_eq!(done["exit_code"], 3);
    assert_eq!(kinds.last(), Some(&"step_finished"));

    let o = v.run(&[
        "run",
        "--log-format",
        "json",
        "--kernel",
        "/nonexistent/vmlinuz",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    let ev = events(&o);
    let err = ev.last().expect("an event");
    assert_eq!(err["event"], "error");
    assert_eq!(err["exit_code"], 125);
    assert!(err["message"]
        .as_str()
        .is_some_and(|m| m.contains("/nonexistent/vmlinuz")));
}
