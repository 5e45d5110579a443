//! Progress of long operations: a live line on a terminal (run under a
//! pseudo-terminal with `script -qec`), plain lines without control
//! characters otherwise, colour as `--color` and `NO_COLOR` say.
//!
//! - an environment image build, made to fail fast at mmdebstrap's
//!   `apt-get update` (a proxy that refuses connections) in a private
//!   cache dir; the tools' full log in a file that the failure names;
//! - `vmbuild cache export|import` of a directory through an OCI layout;
//! - the first-use kernel download and unpacking, with fake `apt-get` and
//!   `dpkg-deb` first on PATH (the pin is "gone", the fallback package
//!   arrives slowly and holds no kernel, so the run fails after both).

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{write_script, BIN};

/// Runs `vmbuild ARGS` (a shell-quoted string) with stderr on a
/// pseudo-terminal (`tty`) or on a pipe; what the terminal would show (or
/// stdout and stderr together).
fn shown(args: &str, tty: bool, env: &[(&str, &str)]) -> (Output, String) {
    let line = format!("{BIN} {args}");
    let mut cmd = if tty {
        let mut c = Command::new("script");
        c.args(["-qec", &line, "/dev/null"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("{line} 2>&1")]);
        c
    };
    cmd.env_remove("NO_COLOR")
        .env_remove("VMBUILD_COLOR")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vmbuild");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// The frames a live line drew: the text before each `\r` + erase-line
/// that redraws or clears it (none when nothing was drawn live).
fn frames(text: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = text.split("\r\x1b[2K").collect();
    parts.pop();
    parts
}

/// An SGR colour (indicatif's green spinner, blue/cyan bar).
fn coloured(text: &str) -> bool {
    ["\x1b[32m", "\x1b[34m", "\x1b[36m"]
        .iter()
        .any(|c| text.contains(c))
}

fn no_control_characters(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "control characters without a terminal: {text:?}"
    );
}

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

/// A directory with 64 MiB that does not compress: big enough that a
/// transfer lasts a few of the meter's 100 ms readings.
fn big_dir(at: &Path) {
    use std::io::Read;
    std::fs::create_dir_all(at).unwrap();
    let mut data = vec![0u8; 64 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .unwrap();
    std::fs::write(at.join("blob"), data).unwrap();
}

#[test]
fn cache_export_and_import_show_a_bar_on_a_terminal_and_plain_lines_otherwise() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().display();
    big_dir(&t.path().join("src"));
    let export = |layout: &str| {
        format!("cache export {p}/src/ --to type=local,dest={p}/{layout} --cache-root {p}/root")
    };
    let import = |layout: &str, dst: &str| {
        format!("cache import {p}/{dst}/ --from type=local,src={p}/{layout} --cache-root {p}/root")
    };

    // On a terminal: a live bar (redrawn in place) naming the transfer
    // with bytes of a total, in colour by default.
    let (o, tty) = shown(&export("l1"), true, &[]);
    assert!(o.status.success(), "{tty}");
    assert!(
        frames(&tty)
            .iter()
            .any(|f| f.contains("packing ") && f.contains(" blobs") && f.contains("B/64.00 MiB")),
        "no live transfer bar: {tty:?}"
    );
    assert!(coloured(&tty), "no colour on a terminal: {tty:?}");
    assert!(tty.contains("pushed 2 blobs"), "the summary: {tty:?}");
    let (o, tty) = shown(&import("l1", "d1"), true, &[]);
    assert!(o.status.success(), "{tty}");
    assert!(
        frames(&tty)
            .iter()
            .any(|f| f.contains("pulling ") && f.contains(" blobs") && f.contains("B/64.00 MiB")),
        "no live transfer bar: {tty:?}"
    );
    assert_eq!(
        std::fs::read(t.path().join("d1/blob")).unwrap(),
        std::fs::read(t.path().join("src/blob")).unwrap()
    );

    // NO_COLOR and --color never keep the bar but drop the colour;
    // --color always beats NO_COLOR.
    for (args, env) in [
        (export("l2"), vec![("NO_COLOR", "1")]),
        (format!("--color never {}", export("l3")), vec![]),
    ] {
        let (o, tty) = shown(&args, true, &env);
        assert!(o.status.success(), "{tty}");
        assert!(
            tty.contains("\r\x1b[2K") && !coloured(&tty),
            "{args}: {tty:?}"
        );
    }
    let (_, tty) = shown(
        &format!("--color always {}", export("l4")),
        true,
        &[("NO_COLOR", "1")],
    );
    assert!(coloured(&tty), "--color always: {tty:?}");
    // A terminal that cannot redraw (TERM=dumb, or no TERM) gets plain lines.
    let (o, dumb) = shown(&export("l6"), true, &[("TERM", "dumb")]);
    assert!(o.status.success(), "{dumb}");
    assert!(
        !dumb.contains('\x1b') && dumb.contains(" blobs for cache-to "),
        "{dumb:?}"
    );

    // Without a terminal: plain lines, one per phase, nothing else.
    let (o, plain) = shown(&export("l5"), false, &[]);
    assert!(o.status.success(), "{plain}");
    no_control_characters(&plain);
    assert!(
        plain.lines().any(|l| l.starts_with("vmbuild: packing ")
            && l.contains(" blobs for cache-to ")
            && l.ends_with(" MiB)")),
        "{plain}"
    );
    let (o, plain) = shown(&import("l5", "d5"), false, &[]);
    assert!(o.status.success(), "{plain}");
    no_control_characters(&plain);
    assert!(
        plain
            .lines()
            .any(|l| l.starts_with("vmbuild: pulling ") && l.contains(" blobs for cache-from ")),
        "{plain}"
    );
}

/// Fake apt tools in `dir`: the pinned kernel is gone from the "archive",
/// its fallback `linux-image-fake` (3 MiB) arrives in 1 MiB steps and
/// unpacks to nothing bootable.
fn fake_apt(dir: &Path) {
    write_script(
        &dir.join("apt-get"),
        r#"#!/bin/sh
[ "$1" = download ] || exit 1
if [ "$2" = --print-uris ]; then
  case "$3" in
    *=*) echo "E: Version '${3#*=}' for '${3%%=*}' was not found" >&2; exit 100;;
    *) echo "'http://deb.example/fake.deb' linux-image-fake_1_amd64.deb 3145728 SHA256:00"; exit 0;;
  esac
fi
case "$2" in
  *=*) echo "E: Version '${2#*=}' for '${2%%=*}' was not found" >&2; exit 100;;
esac
for i in 1 2 3; do
  head -c 1048576 /dev/zero >> linux-image-fake_1_amd64.deb
  sleep 0.4
done
"#,
    );
    write_script(
        &dir.join("apt-cache"),
        "#!/bin/sh\necho \"$2\"\necho '  Depends: linux-image-fake'\n",
    );
    write_script(
        &dir.join("dpkg-deb"),
        r#"#!/bin/sh
case "$1" in
  -f) echo "Package: linux-image-fake"; echo "Version: 1";;
  -x) sleep 0.5; mkdir -p "$3";;
esac
"#,
    );
}

#[test]
fn first_use_kernel_download_shows_bytes_then_an_unpack_spinner() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_apt(&bin);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |xdg: &str, args: &str, tty: bool| {
        let cache = t.path().join(xdg);
        let cache = cache.to_str().unwrap();
        shown(
            &format!("run {args} -- true"),
            tty,
            &[("PATH", &path), ("XDG_CACHE_HOME", cache)],
        )
    };

    let (o, tty) = run("c1", "", true);
    assert!(!o.status.success(), "the fake kernel cannot boot: {tty}");
    assert!(
        frames(&tty)
            .iter()
            .any(|f| f.contains("downloading linux-image-fake") && f.contains("MiB/3.00 MiB")),
        "no download bar with bytes of the total: {tty:?}"
    );
    assert!(
        frames(&tty)
            .iter()
            .any(|f| f.contains("unpacking linux-image-fake_1_amd64.deb")),
        "no unpack spinner: {tty:?}"
    );
    assert!(
        tty.contains("no longer in the apt archive"),
        "the fallback notice: {tty:?}"
    );

    let (o, plain) = run("c2", "", false);
    assert!(!o.status.success(), "{plain}");
    no_control_characters(&plain);
    for want in [
        "vmbuild: downloading linux-image-fake (3.0 MiB)",
        "vmbuild: unpacking linux-image-fake_1_amd64.deb",
    ] {
        assert!(plain.lines().any(|l| l == want), "no {want:?} in {plain}");
    }

    // --log-format json on a terminal: JSON events, never a live line.
    let (o, json) = run("c3", "--log-format json", true);
    assert!(!o.status.success(), "{json}");
    assert!(!json.contains('\x1b'), "{json:?}");
    assert!(
        json.lines().any(|l| l.contains(r#""event":"note""#)
            && l.contains("downloading linux-image-fake (3.0 MiB)")),
        "{json}"
    );
}

#[test]
fn a_build_that_needs_an_environment_image_shows_it_as_image_build_does() {
    let t = tempfile::tempdir().unwrap();
    let pipeline = t.path().join("vmbuild.yaml");
    std::fs::write(
        &pipeline,
        "package: {name: t, version: '1'}\nenvironment:\n  contents:\n    packages: [hello]\npipeline:\n  - runs: hello\n",
    )
    .unwrap();
    let xdg = t.path().join("xdg");
    let env = [
        ("XDG_CACHE_HOME", xdg.to_str().unwrap()),
        ("http_proxy", "http://127.0.0.1:9"),
        ("https_proxy", "http://127.0.0.1:9"),
    ];
    let build = |format: &str, tty: bool| {
        let (o, text) = shown(
            &format!("build {} --log-format {format}", pipeline.display()),
            tty,
            &env,
        );
        assert!(!o.status.success(), "apt-get update cannot work: {text}");
        text
    };

    let tty = build("text", true);
    assert!(
        frames(&tty)
            .iter()
            .any(|f| f.contains("running apt-get update")),
        "no live line for the image build: {tty:?}"
    );
    assert!(
        full_log_named(&tty).contains("Could not connect"),
        "{tty:?}"
    );

    let plain = build("text", false);
    no_control_characters(&plain);
    assert!(
        plain
            .lines()
            .any(|l| l == "vmbuild: running apt-get update"),
        "{plain}"
    );
    // apt's own lines stay in the log; only the error quotes its last ones.
    assert!(
        plain
            .lines()
            .filter(|l| l.contains("Could not connect"))
            .all(|l| l.starts_with("vmbuild: error: ")),
        "{plain}"
    );

    let json = build("json", true);
    assert!(!json.contains('\x1b'), "{json:?}");
    assert!(
        json.lines()
            .any(|l| l.contains(r#""event":"note""#)
                && l.contains(r#""text":"running apt-get update""#)),
        "{json}"
    );
}
