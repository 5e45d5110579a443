//! A real OCI registry for the tests: Debian's `docker-registry`
//! (distribution 2.8) on a loopback port with its own storage dir, with or
//! without htpasswd basic auth, killed and removed on drop. And test trees.

#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRegistry {
    pub addr: String,
    pub storage: PathBuf,
    pub log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry; with `auth`, it asks for that user and password.
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let log = dir.path().join("registry.log");
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                storage.display()
            );
            if let Some((user, password)) = auth {
                let hash = bcrypt::hash(password, 4).unwrap();
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: vmbuild-test\n    path: {}\n",
                    file.display()
                ));
            }
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .stdin(Stdio::null())
                .spawn()
                .expect("docker-registry (apt-get install docker-registry)");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return Self {
                        addr,
                        storage,
                        log,
                        child,
                        _dir: dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT/<repo>:<tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// Bytes in the storage dir.
    pub fn stored_bytes(&self) -> u64 {
        du(&self.storage)
    }

    /// Blob GETs the registry logged so far.
    pub fn blob_gets(&self) -> usize {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// The data file of blob `digest` in the storage dir.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn du(p: &Path) -> u64 {
    let m = std::fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| du(&e.unwrap().path()))
            .sum::<u64>()
    } else {
        m.blocks() * 512
    }
}

/// A cache volume as the tests need it: `small` small files over a few
/// dirs, symlinks (relative, absolute, dangling), a hard link, an empty
/// dir, odd modes, and one file of `big` bytes.
pub fn make_volume(root: &Path, small: usize, big: u64) {
    std::fs::create_dir_all(root).unwrap();
    for i in 0..small {
        let dir = root.join(format!("pkgs/d{:02}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!("file {i} {}", "x".repeat(i % 700));
        std::fs::write(dir.join(format!("f{i:05}.txt")), body).unwrap();
    }
    std::fs::set_permissions(
        root.join("pkgs/d00/f00000.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("pkgs/d01/f00001.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("pkgs/d02"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    symlink("../pkgs/d00/f00000.txt", root.join("empty/rel-link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("pkgs/d03/f00003.txt"), root.join("hardlink.txt")).unwrap();
    if big > 0 {
        let mut f = std::fs::File::create(root.join("big.bin")).unwrap();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = big;
        while left > 0 {
            for b in buf.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b.copy_from_slice(&state.to_le_bytes()[..b.len()]);
            }
            let n = left.min(buf.len() as u64) as usize;
            std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
            left -= n as u64;
        }
    }
}

/// Every entry's path, type, mode, link target, content hash and (for
/// files) hard-link group, sorted: equal lists, byte-exact trees.
pub fn tree(root: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    let mut inodes: std::collections::HashMap<u64, String> = Default::default();
    fn walk(
        root: &Path,
        p: &Path,
        out: &mut Vec<String>,
        inodes: &mut std::collections::HashMap<u64, String>,
    ) {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} link -> {}",
                    std::fs::read_link(&path).unwrap().display()
                ));
            } else if m.is_dir() {
                out.push(format!("{rel} dir {mode:o} mtime {}", m.mtime()));
                walk(root, &path, out, inodes);
            } else {
                let h = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                let group = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                out.push(format!(
                    "{rel} file {mode:o} {} {h} mtime {} linkgroup {group}",
                    m.len(),
                    m.mtime()
                ));
            }
        }
    }
    walk(root, root, &mut out, &mut inodes);
    out
}
