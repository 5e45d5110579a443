//! `vmbuild cache ls|du|inspect|clear|rm|prune` on volumes real runs made
//! and hold: sizes of what a guest wrote, and removers that never touch a
//! volume a running build holds.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{assert_one_line_error, stderr, stdout, wait_with_limit, Vmb};

/// `vmbuild cache ARGS --cache-root root`.
fn cache(v: &Vmb, root: &Path, args: &[&str]) -> Output {
    let r = root.to_string_lossy();
    let mut all = vec!["cache"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--cache-root", &r]);
    v.run(&all)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}{}", stdout(o), stderr(o));
    stdout(o)
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).expect("JSON on stdout")
}

fn volume<'a>(ls: &'a Value, name: &str) -> &'a Value {
    ls["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name} in {ls:#}"))
}

/// A virtiofs run with `--cache SPEC` running `script`.
fn run_with(v: &Vmb, root: &Path, spec: &str, script: &str) -> std::process::Child {
    v.cmd()
        .args(["run", "--cache-mode", "virtiofs", "--cache-root"])
        .arg(root)
        .args(["--cache", spec, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmbuild run")
}

#[test]
fn ls_du_inspect_clear_see_what_a_build_wrote() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let script = "head -c 1000000 /dev/urandom > /a/f; mkdir -p /a/pip /a/npm; \
                  echo x > /a/pip/x; head -c 2000 /dev/urandom > /a/npm/y";
    let mut run = run_with(&v, r, "id=a,target=/a", script);
    let status = wait_with_limit(&mut run, Duration::from_secs(180));
    let mut err = String::new();
    run.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(status.success(), "{err}");

    let ls = json(&cache(&v, r, &["ls", "--format", "json"]));
    let a = volume(&ls, "a");
    assert!(a["size_bytes"].as_u64().unwrap() >= 1_000_000, "{a:#}");
    assert_eq!(a["holder"]["state"], "idle");
    assert_eq!(a["path"], r.join("a").to_string_lossy().as_ref());
    let text = ok(&cache(&v, r, &["ls"]));
    assert!(text.contains("idle") && text.contains("KiB"), "{text}");

    // du: largest first, human sizes in text, bytes in JSON.
    let du = json(&cache(&v, r, &["du", "a", "--format", "json"]));
    let names: Vec<&str> = du["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["f", "npm", "pip"]);
    assert_eq!(du["entries"][0]["size_bytes"], 1_000_000);
    let du_text = ok(&cache(&v, r, &["du", "a"]));
    assert!(du_text.starts_with("  977 KiB  f\n"), "{du_text}");

    let inspect = json(&cache(&v, r, &["inspect", "a"]));
    assert_eq!(inspect["files"], 3);
    assert!(inspect["last_used"].as_str().unwrap().ends_with('Z'));
    assert_eq!(inspect["forks"], serde_json::json!([]));

    // clear: only the subpath; `..` refused in one line, exit 1.
    ok(&cache(&v, r, &["clear", "a", "pip"]));
    assert!(!r.join("a/pip").exists() && r.join("a/f").is_file());
    let bad = cache(&v, r, &["clear", "a", "../a"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(assert_one_line_error(&bad).contains("'..'"));
    let missing = cache(&v, r, &["inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(assert_one_line_error(&missing).contains("vmbuild cache ls"));

    // A plain directory given as a path works for du and clear.
    let plain = r.join("plain");
    std::fs::create_dir_all(plain.join("pip")).unwrap();
    std::fs::write(plain.join("pip/w"), b"w").unwrap();
    std::fs::write(plain.join("keep"), b"k").unwrap();
    let p = plain.to_string_lossy();
    assert!(ok(&cache(&v, r, &["du", &p])).contains("pip"));
    ok(&cache(&v, r, &["clear", &p, "pip"]));
    assert!(!plain.join("pip").exists() && plain.join("keep").exists());
    v.assert_clean();
}

#[test]
fn prune_rm_and_clear_leave_a_held_volume_alone() {
    let v = Vmb::new();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("a")).unwrap();
    std::fs::write(r.join("a/f"), vec![1u8; 4096]).unwrap();
    // The holder has its own TMPDIR: its run dir is there while it runs.
    let h = Vmb::new();
    let mut holder = run_with(
        &h,
        r,
        "id=b,target=/b,sharing=locked",
        "head -c 1000 /dev/urandom > /b/x; echo held; sleep 20",
    );
    let pid = holder.id();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "held\n", "the run did not start");

    let ls = json(&cache(&v, r, &["ls", "--format", "json"]));
    let b = volume(&ls, "b");
    assert_eq!(b["holder"]["state"], "exclusive");
    assert_eq!(b["holder"]["pids"][0], pid);

    let dry = ok(&cache(&v, r, &["prune", "--max-size", "0", "--dry-run"]));
    let real = ok(&cache(&v, r, &["prune", "--max-size", "0"]));
    assert!(dry.contains("would remove a ("), "{dry}");
    assert!(real.contains("removed a ("), "{real}");
    let held = format!("skipped b (1000 B): held, exclusive by pid {pid}");
    assert!(dry.contains(&held) && real.contains(&held), "{dry}\n{real}");
    assert!(!r.join("a").exists() && r.join("b").is_dir());

    let rm = cache(&v, r, &["rm", "b"]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(assert_one_line_error(&rm).contains(&format!("in use by pid {pid}")));
    let no_wait = cache(&v, r, &["clear", "b", "--no-wait"]);
    assert_eq!(no_wait.status.code(), Some(1));
    assert!(assert_one_line_error(&no_wait).contains(&format!("pid {pid}")));

    // Without --no-wait, clear says whom it waits for and runs after it.
    let mut clear = v
        .cmd()
        .args(["cache", "clear", "b", "--cache-root"])
        .arg(r)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let hs = wait_with_limit(&mut holder, Duration::from_secs(120));
    assert!(hs.success());
    assert!(wait_with_limit(&mut clear, Duration::from_secs(30)).success());
    let mut cerr = String::new();
    clear.stderr.take().unwrap().read_to_string(&mut cerr).ok();
    assert!(
        cerr.contains(&format!("held by pid {pid}; waiting")),
        "{cerr}"
    );

    ok(&cache(&v, r, &["rm", "b"]));
    assert!(!r.join("b").exists() && !r.join("b.lock").exists());
    let empty = json(&cache(&v, r, &["ls", "--format", "json"]));
    assert_eq!(empty["volumes"], serde_json::json!([]));
    v.assert_clean();
    h.assert_clean();
}
