//! `vmbuild build --interactive` (melange's flag): a failed step opens a
//! shell on the user's terminal. vmbuild runs under a pseudo-terminal
//! (util-linux `script`), and the test types into it only once the shell
//! is there (what it types is what a user would, Ctrl-C included).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{assert_one_line_error, stderr, Vmb, BIN};

/// Fails in `/home/build/sub` with exit code 3 and a variable of its own;
/// the next step writes an output.
const FAILS_THEN_WRITES: &str = r#"
package:
  name: hello
  version: "1.0"
pipeline:
  - name: breaks
    working-directory: /home/build/sub
    environment: { STEP_VAR: from-the-step }
    runs: |
      echo before
      exit 3
  - name: after
    runs: |
      mkdir -p ${{targets.destdir}}
      echo later > ${{targets.destdir}}/later.txt
"#;

/// What the build says once the shell is open.
const PROMPTED: &str = "Type 'exit 0' to continue with the next step or 'exit 1' to abort";

/// Printed before `stty -a` once vmbuild has exited.
const STTY_MARK: &str = "terminal-after-vmbuild:";

/// How long a whole interactive build may take (one VM boot under TCG on
/// a loaded machine, plus the typing).
const LIMIT: Duration = Duration::from_secs(120);

/// `vmbuild build --interactive` under a pty, its terminal output so far.
struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn start(vmb: &Vmb, project: &Path, args: &str) -> Terminal {
        // After vmbuild, the terminal's settings as it left them.
        let line = format!(
            "{BIN} build --interactive {args} --output-dir {out} {config}; rc=$?; echo {STTY_MARK}; stty -a; exit $rc",
            out = project.join("out").display(),
            config = project.join("vmbuild.yaml").display()
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("TMPDIR", vmb.tmp.path())
            .env("TERM", "xterm")
            .env_remove("VMBUILD_COLD")
            .env_remove("VMBUILD_SNAPSHOTS")
            .envs(vmb.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn script");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { child, stdin, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal shows `marker`.
    fn wait_for(&mut self, marker: &str) {
        let t0 = Instant::now();
        while !self.text().contains(marker) {
            if t0.elapsed() > LIMIT || matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = self.child.kill();
                panic!("the terminal never showed {marker:?}:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_in(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(keys.as_bytes()).expect("type");
        stdin.flush().expect("flush");
    }

    /// The exit code of vmbuild (script -e passes it on) and the whole
    /// terminal output.
    fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if t0.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!("vmbuild did not end:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread gets the last bytes once script has exited.
        std::thread::sleep(Duration::from_millis(200));
        let text = self.text();
        let after = text
            .rsplit_once(STTY_MARK)
            .map(|(_, a)| a.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no stty output: {text}"));
        for cooked in ["icanon", "isig", "echo"] {
            assert!(
                after.contains(&cooked),
                "vmbuild left the terminal without {cooked}: {after:?}"
            );
        }
        (status.code().unwrap_or(-1), text)
    }
}

fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("vmbuild.yaml"), FAILS_THEN_WRITES).unwrap();
    d
}

/// The shell is in the step's directory with its environment and the
/// failed script as history; Ctrl-C stops the command in it, not vmbuild;
/// `exit 0` goes on with the next step and the build passes. `args` add
/// flags (a `--timeout` shorter than the time spent in the shell: it does
/// not count).
fn shell_then_exit_0_continues(runner: &str, args: &str) {
    let vmb = Vmb::new();
    let p = project();
    let mut t = Terminal::start(&vmb, p.path(), &format!("--runner {runner} {args}"));
    t.wait_for(PROMPTED);
    // What is typed shows `$`; only what the shell prints has the values.
    t.type_in("echo \"cwd=$(pwd) var=$STEP_VAR term=$TERM\"; cat \"$HISTFILE\"\n");
    t.wait_for("cwd=/home/build/sub var=from-the-step term=xterm");
    t.wait_for("echo before");
    t.type_in("echo \"sleeping-$((2 + 2))\"; sleep 60; echo \"slept-$((1 + 1))\"\n");
    t.wait_for("sleeping-4");
    std::thread::sleep(Duration::from_secs(2));
    t.type_in("\x03");
    t.type_in("echo \"interrupted=$?\"\n");
    t.wait_for("interrupted=130");
    t.type_in("sleep 2; exit 0\n");
    let (code, text) = t.finish();
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains("slept-2"),
        "Ctrl-C did not stop sleep: {text}"
    );
    assert!(
        text.contains("continuing after step 'breaks' as if it had passed"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("out/later.txt")).unwrap(),
        "later\n",
        "the step after the shell ran"
    );
    vmb.assert_clean();
}

/// `exit 1` from the shell fails the build as the step did: its name,
/// its exit code, no output placed.
fn shell_then_exit_1_fails(runner: &str) {
    let vmb = Vmb::new();
    let p = project();
    let mut t = Terminal::start(&vmb, p.path(), &format!("--runner {runner}"));
    t.wait_for(PROMPTED);
    t.type_in("exit 1\n");
    let (code, text) = t.finish();
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("step 'breaks' failed with exit code 3; no outputs were placed"),
        "{text}"
    );
    assert!(!text.contains("[2/2] after"), "the next step ran: {text}");
    assert!(!p.path().join("out").exists());
    vmb.assert_clean();
}

#[test]
fn qemu_shell_in_the_failed_step_then_exit_0_continues_the_build() {
    shell_then_exit_0_continues("qemu", "");
}

#[test]
fn qemu_shell_exit_1_fails_the_build_at_the_step() {
    shell_then_exit_1_fails("qemu");
}

#[test]
fn bubblewrap_shell_in_the_failed_step_then_exit_0_continues_the_build_past_its_timeout() {
    // At least 4 s in the shell (2 s before Ctrl-C, 2 s before exit).
    shell_then_exit_0_continues("bubblewrap", "--timeout 3s");
}

#[test]
fn bubblewrap_shell_exit_1_fails_the_build_at_the_step() {
    shell_then_exit_1_fails("bubblewrap");
}

#[test]
fn docker_shell_in_the_failed_step_then_exit_0_continues_the_build() {
    shell_then_exit_0_continues("docker", "");
}

#[test]
fn docker_shell_exit_1_fails_the_build_at_the_step() {
    shell_then_exit_1_fails("docker");
}

#[test]
fn without_a_terminal_it_is_refused_before_anything_runs() {
    let vmb = Vmb::new();
    let p = project();
    let config = p.path().join("vmbuild.yaml");
    let config = config.to_str().unwrap();
    for runner in ["qemu", "bubblewrap", "docker"] {
        let t0 = Instant::now();
        let o = vmb.run(&["build", "--runner", runner, "--interactive", config]);
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        let line = assert_one_line_error(&o);
        assert!(
            line.contains("--interactive: stdin is not a terminal"),
            "{line}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "took {:?}: something ran first",
            t0.elapsed()
        );
    }
    assert!(!p.path().join("out").exists());
}
