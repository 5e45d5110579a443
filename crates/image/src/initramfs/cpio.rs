//! A deterministic writer for the newc (`070701`) cpio format the kernel
//! unpacks as an initramfs.
//!
//! Every entry has mtime 0, uid/gid 0 and inode numbers assigned in write
//! order, so the same entries give the same bytes. Parent directories that
//! were not written explicitly are added (mode 0755) before their children.

use std::collections::BTreeSet;
use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode`.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file type bits.
pub const S_IFREG: u32 = 0o100000;
/// Symlink type bits.
pub const S_IFLNK: u32 = 0o120000;

/// Writes a newc archive to `W`. Paths are given without a leading `/`
/// (`bin/busybox`); a leading `/` is stripped.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl<W: Write> CpioWriter<W> {
    /// Start an archive.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    /// Add a directory with permission bits `perm` (e.g. `0o755`, `0o1777`).
    /// Adding the same directory twice writes it once.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        let path = clean(path)?;
        if self.dirs.contains(&path) {
            return Ok(());
        }
        self.parents(&path)?;
        self.dirs.insert(path.clone());
        self.entry(&path, S_IFDIR | (perm & 0o7777), 2, &[])
    }

    /// Add a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFREG | (perm & 0o7777), 1, data)
    }

    /// Add a symlink `path` -> `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, target.as_bytes())
    }

    /// Write the trailer and return the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 0, 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        let mut idx = 0;
        while let Some(pos) = path[idx..].find('/') {
            let parent = &path[..idx + pos];
            if !self.dirs.contains(parent) {
                self.dirs.insert(parent.to_string());
                self.entry(parent, S_IFDIR | 0o755, 2, &[])?;
            }
            idx += pos + 1;
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: file too large for cpio"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, ino, mode, nlink, size)?;
        self.put(data)?;
        self.pad()
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        let namesize = name.len() as u32 + 1;
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
        let mut hdr = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        hdr.extend_from_slice(MAGIC);
        for f in fields {
            hdr.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        hdr.extend_from_slice(name.as_bytes());
        hdr.push(0);
        self.put(&hdr)?;
        self.pad()
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

fn clean(path: &str) -> io::Result<String> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    let bad = p.is_empty()
        || p == TRAILER
        || p.contains('\0')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid cpio path {path:?}"),
        ));
    }
    Ok(p.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One parsed entry.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        pub name: String,
        pub ino: u32,
        pub mode: u32,
        pub mtime: u32,
        pub data: Vec<u8>,
    }

    /// A strict newc reader: checks magic, alignment and the trailer.
    pub fn parse(mut buf: &[u8]) -> Vec<Entry> {
        let total = buf.len();
        let mut out = Vec::new();
        loop {
            let off = total - buf.len();
            assert_eq!(off % 4, 0, "header at {off} not aligned");
            assert_eq!(&buf[..6], MAGIC, "bad magic at {off}");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&buf[6 + i * 8..14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (ino, mode, mtime, size, namesize) = (
                field(0),
                field(1),
                field(5),
                field(6) as usize,
                field(11) as usize,
            );
            let name_end = HEADER_LEN + namesize;
            assert_eq!(buf[name_end - 1], 0, "name not NUL-terminated");
            let name = std::str::from_utf8(&buf[HEADER_LEN..name_end - 1])
                .unwrap()
                .to_string();
            let data_start = (name_end + 3) & !3;
            let data = buf[data_start..data_start + size].to_vec();
            let next = (data_start + size + 3) & !3;
            if name == TRAILER {
                assert_eq!(total, off + next, "bytes after the trailer");
                return out;
            }
            out.push(Entry {
                name,
                ino,
                mode,
                mtime,
                data,
            });
            buf = &buf[next..];
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.file("/init", 0o755, b"#!init").unwrap();
        w.dir("tmp", 0o1777).unwrap();
        w.file("lib/modules/6.1/kernel/a.ko", 0o644, b"abcde")
            .unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.dir("lib", 0o755).unwrap(); // already implied: not written twice
        w.file("empty", 0o600, b"").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_with_parents_and_alignment() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let summary: Vec<(String, u32, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.name.clone(), e.mode, e.data.clone()))
            .collect();
        let want: Vec<(String, u32, Vec<u8>)> = vec![
            ("init".into(), 0o100755, b"#!init".to_vec()),
            ("tmp".into(), 0o041777, vec![]),
            ("lib".into(), 0o040755, vec![]),
            ("lib/modules".into(), 0o040755, vec![]),
            ("lib/modules/6.1".into(), 0o040755, vec![]),
            ("lib/modules/6.1/kernel".into(), 0o040755, vec![]),
            (
                "lib/modules/6.1/kernel/a.ko".into(),
                0o100644,
                b"abcde".to_vec(),
            ),
            ("bin".into(), 0o040755, vec![]),
            ("bin/sh".into(), 0o120777, b"busybox".to_vec()),
            ("empty".into(), 0o100600, vec![]),
        ];
        assert_eq!(summary, want);
        let inos: Vec<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos, (1..=10).collect::<Vec<_>>());
        assert!(entries.iter().all(|e| e.mtime == 0));
    }

    #[test]
    fn deterministic() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn rejects_bad_paths() {
        let mut w = CpioWriter::new(Vec::new());
        for p in ["", "/", "a/../b", "a//b", "./a", "TRAILER!!!"] {
            assert!(w.file(p, 0o644, b"").is_err(), "{p:?}");
        }
    }

    #[test]
    fn system_cpio_lists_it() {
        let Ok(cpio) = which::which("cpio") else {
            eprintln!("skipping: no cpio");
            return;
        };
        let t = tempfile::tempdir().unwrap();
        let archive = t.path().join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let out = std::process::Command::new(cpio)
            .args(["-t", "-F"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(listed.lines().count(), 10, "{listed}");
        assert!(listed.lines().any(|l| l == "lib/modules/6.1/kernel/a.ko"));
    }
}
