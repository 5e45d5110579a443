//! Runs `vmbuild` with a private TMPDIR so a test can prove that nothing
//! (socket, run dir, QEMU or virtiofsd process) is left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_vmbuild");

pub struct Vmb {
    pub tmp: tempfile::TempDir,
    /// Extra environment for every `vmbuild` this runs.
    pub env: Vec<(String, String)>,
}

/// Runs each named `fn NAME(boot: Boot)` of the calling module as two
/// tests, `cold::NAME` and `warm::NAME` (see [`Boot`]).
macro_rules! in_both_boot_modes {
    ($($name:ident),* $(,)?) => {
        mod cold {
            $(#[test]
            fn $name() {
                super::$name(crate::harness::Boot::Cold)
            })*
        }
        mod warm {
            $(#[test]
            fn $name() {
                super::$name(crate::harness::Boot::Warm)
            })*
        }
    };
}

/// How the VMs of a test start (docs/warm-start.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// `--cold` (as `VMBUILD_COLD=true`): always a real boot.
    Cold,
    /// Restored from a snapshot store shared by the warm tests and saved
    /// before the first of them runs (see [`warm_store`]).
    Warm,
}

impl Vmb {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("vmb-e2e-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        Vmb {
            tmp,
            env: Vec::new(),
        }
    }

    /// A harness whose runs start as `boot` says.
    pub fn booting(boot: Boot) -> Self {
        let mut v = Vmb::new();
        match boot {
            Boot::Cold => v.env.push(("VMBUILD_COLD".into(), "true".into())),
            Boot::Warm => v.env.push((
                "VMBUILD_SNAPSHOTS".into(),
                warm_store().display().to_string(),
            )),
        }
        v
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("TMPDIR", self.tmp.path())
            .env_remove("QEMU_USE_VIRTIOFS")
            .env_remove("VMBUILD_COLD")
            .env_remove("VMBUILD_SNAPSHOTS")
            .stdin(Stdio::null());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `vmbuild ARGS`, then checks nothing was left behind.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("spawn vmbuild");
        self.assert_clean();
        out
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmbuild")
    }

    /// No file left in our TMPDIR and no process whose command line names it.
    pub fn assert_clean(&self) {
        let left: Vec<PathBuf> = std::fs::read_dir(self.tmp.path())
            .expect("read tmp")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
        let procs = processes_mentioning(self.tmp.path());
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
    }
}

/// The snapshot store of [`Boot::Warm`] tests, under the target dir, with
/// the snapshot of a default `vmbuild run` (1 vCPU, 1 GiB, no shares, no
/// network) saved by one run before any warm test uses it.
pub fn warm_store() -> &'static Path {
    static STORE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("warm-snapshots");
        let _ = std::fs::remove_dir_all(&dir);
        let o = Command::new(BIN)
            .args(["run", "--", "true"])
            .env("VMBUILD_SNAPSHOTS", &dir)
            .env_remove("VMBUILD_COLD")
            .stdin(Stdio::null())
            .output()
            .expect("spawn vmbuild");
        assert!(o.status.success(), "priming the warm store: {}", stderr(&o));
        assert_eq!(snapshot_count(&dir), 1, "the first run saves one snapshot");
        dir
    })
}

/// How many complete snapshots `store` holds.
pub fn snapshot_count(store: &Path) -> usize {
    std::fs::read_dir(store)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join(".complete").exists())
                .count()
        })
        .unwrap_or(0)
}

/// `(pid, cmdline)` of live processes whose argv mentions `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push((pid, cmd));
        }
    }
    found
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for a child with a limit, killing it (and failing) past the limit;
/// the failure shows what the child had written to a piped stderr, so a
/// hang says where it hung.
pub fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vmbuild did not exit within {limit:?}; its stderr:\n{}",
                stderr_so_far(child)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a killed child wrote to its piped stderr: read on a thread for at
/// most 2 s, since a grandchild may still hold the pipe open.
fn stderr_so_far(child: &mut Child) -> String {
    let Some(mut err) = child.stderr.take() else {
        return "(not piped)".into();
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut err, &mut chunk) {
            if tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while let Ok(bytes) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        got.extend(bytes);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The error output is exactly one line.
pub fn assert_one_line_error(o: &Output) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got: {err}");
    assert!(lines[0].starts_with("vmbuild: error: "), "{err}");
    lines[0].to_string()
}

/// A digest of a whole tree: every entry's relative path, type, mode bits,
/// and content (files) or target (symlinks), in sorted order.
pub fn tree_digest(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, h: &mut Sha256) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            h.update(format!("{rel}\0{:o}\0", md.mode()).as_bytes());
            if md.file_type().is_symlink() {
                h.update(
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .to_string_lossy()
                        .as_bytes(),
                );
            } else if md.is_dir() {
                walk(root, &p, h);
            } else {
                h.update(std::fs::read(&p).expect("read"));
            }
            h.update(b"\n");
        }
    }
    let mut h = Sha256::new();
    walk(root, root, &mut h);
    hex::encode(h.finalize())
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Reads lines from `r` until one contains `marker` (or EOF); returns all
/// of them.
pub fn read_until(r: &mut impl std::io::BufRead, marker: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(marker) {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read") == 0 {
            break;
        }
        seen.push_str(&line);
    }
    seen
}
