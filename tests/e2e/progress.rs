//! Progress of an environment image build: a live line on a terminal
//! (run under a pseudo-terminal with `script -qec`), plain lines without
//! control characters otherwise; the tools' full log in a file that a
//! failure names. The build is made to fail fast at mmdebstrap's `apt-get
//! update` (a proxy that refuses connections) in a private cache dir.

use std::process::Command;

use crate::harness::BIN;

fn image_build(tty: bool) -> (String, tempfile::TempDir) {
    let xdg = tempfile::tempdir().expect("cache dir");
    let vmbuild = format!("{BIN} image build --package hello");
    let mut cmd = if tty {
        // util-linux's script: the command gets a pty; its output (stdout
        // and stderr alike) is what the terminal would show.
        let mut c = Command::new("script");
        c.args(["-qec", &vmbuild, "/dev/null"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("{vmbuild} 2>&1")]);
        c
    };
    let out = cmd
        .env("XDG_CACHE_HOME", xdg.path())
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run vmbuild image build");
    assert!(
        !out.status.success(),
        "the build was meant to fail: {out:?}"
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), xdg)
}

fn full_log_named(text: &str) -> String {
    const MARK: &str = "vmbuild: the build's full log: ";
    let at = text
        .find(MARK)
        .unwrap_or_else(|| panic!("no log file named: {text}"));
    let path = text[at + MARK.len()..]
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn image_build_shows_a_live_line_on_a_terminal_and_plain_lines_otherwise() {
    let (tty, _keep) = image_build(true);
    assert!(
        tty.contains("\r\x1b[2K") && tty.contains("running apt-get update"),
        "no live progress line on the terminal: {tty:?}"
    );
    assert!(
        full_log_named(&tty).contains("Could not connect"),
        "the log has apt's error"
    );

    let (plain, _keep) = image_build(false);
    assert!(
        !plain.contains('\r') && !plain.contains('\x1b'),
        "control characters without a terminal: {plain:?}"
    );
    assert!(
        plain
            .lines()
            .any(|l| l == "vmbuild: running apt-get update"),
        "{plain}"
    );
    // Condensed: apt's own lines are in the log, not on the screen.
    let log = full_log_named(&plain);
    assert!(
        log.contains("Could not connect") && log.lines().count() > plain.lines().count(),
        "{log}"
    );
}
