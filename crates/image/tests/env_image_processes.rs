//! Two processes asking for the same new environment image build it once:
//! this test binary runs itself twice as the two processes, with a fake
//! builder (no mmdebstrap needed).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use vmbuild_image::env::{ensure_env_image_with, BuildOutput, EnvBuilder};
use vmbuild_image::{EnvSpec, ImageError, ImageFormat};

/// Set in the child processes: the cache root to use.
const CHILD_ENV: &str = "VMBUILD_TEST_ENV_IMAGE_CHILD";

/// A builder that records its run, says it started, then waits for the
/// parent's go-ahead (a file) before writing the image.
struct Gated {
    root: PathBuf,
}

impl EnvBuilder for Gated {
    fn build(
        &self,
        spec: &EnvSpec,
        _key: &str,
        out: &Path,
        _progress: &mut dyn FnMut(&str),
    ) -> Result<BuildOutput, ImageError> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("builds.log"))
            .unwrap();
        writeln!(log, "{}", std::process::id()).unwrap();
        println!("STARTED");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.root.join("go").exists() {
            assert!(Instant::now() < deadline, "never released");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(out.join("rootfs.erofs"), spec.packages.join(",")).unwrap();
        Ok(BuildOutput {
            format: ImageFormat::Erofs,
            rootfs_bytes: 1,
            tools: Default::default(),
        })
    }
}

/// The child side: does nothing unless started by
/// `two_processes_build_once` (with CHILD_ENV set).
#[test]
fn child_process_entry() {
    let Some(root) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let spec = EnvSpec::new(["python3", "python3-pip"]);
    let builder = Gated { root: root.clone() };
    let (img, built) = ensure_env_image_with(&root, &spec, &builder, &mut |l| {
        println!("PROGRESS {l}");
    })
    .unwrap();
    println!("RESULT {} {built}", img.key);
}

fn spawn_child(root: &Path) -> (Child, Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, root)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Read lines (libtest may prefix the first with "test NAME ... ")
/// until one satisfies `pred`; all lines read are appended to `seen`.
fn wait_for(rx: &Receiver<String>, seen: &mut Vec<String>, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("{e}; output so far: {seen:?}"));
        let hit = pred(&l);
        seen.push(l);
        if hit {
            return;
        }
    }
}

fn result(lines: &[String]) -> (String, bool) {
    let r = lines
        .iter()
        .find_map(|l| l.split_once("RESULT ").map(|p| p.1))
        .unwrap_or_else(|| panic!("no RESULT in {lines:?}"));
    let (key, built) = r.split_once(' ').unwrap();
    (key.to_string(), built == "true")
}

#[test]
fn two_processes_build_once() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // we are a child
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let key = EnvSpec::new(["python3", "python3-pip"]).key();

    let (mut a, a_rx) = spawn_child(root);
    let mut a_lines = Vec::new();
    wait_for(&a_rx, &mut a_lines, |l| l.ends_with("STARTED"));

    let (mut b, b_rx) = spawn_child(root);
    let mut b_lines = Vec::new();
    let waiting = format!(
        "PROGRESS waiting for another vmbuild building image {}",
        &key[..12]
    );
    wait_for(&b_rx, &mut b_lines, |l| l.contains(&waiting));

    std::fs::write(root.join("go"), "").unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    a_lines.extend(a_rx.iter());
    b_lines.extend(b_rx.iter());

    assert_eq!(result(&a_lines), (key.clone(), true), "{a_lines:?}");
    assert_eq!(result(&b_lines), (key.clone(), false), "{b_lines:?}");
    assert!(
        !b_lines.iter().any(|l| l.ends_with("STARTED")),
        "{b_lines:?}"
    );
    let builds = std::fs::read_to_string(root.join("builds.log")).unwrap();
    assert_eq!(builds.lines().count(), 1, "{builds}");
    let image = root.join("images").join(&key).join("rootfs.erofs");
    assert_eq!(
        std::fs::read_to_string(image).unwrap(),
        "python3,python3-pip"
    );
}
