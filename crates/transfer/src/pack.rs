//! Packing one chunk as a deterministic tar compressed with zstd: the same
//! entries always give the same bytes, so the same digest (sorted entries
//! from [`crate::walk`]; uid/gid 0 and no user or group names; mtimes in
//! whole seconds; permission bits only; GNU headers with GNU long names;
//! one zstd frame at a fixed level, single-threaded, with its content
//! checksum).
//!
//! Files are opened with `O_NOFOLLOW`, and one that changed size while it
//! was read fails the pack (a cache being written during an export).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::walk::{Entry, Kind};

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W> {
    pub inner: W,
    hash: Sha256,
    pub bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// `sha256:<hex>` of everything written, and the writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hash.finalize())),
            self.bytes,
            self.inner,
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A packed chunk: its digest and compressed size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub digest: String,
    pub size: u64,
}

/// Writes the chunk `entries` of the volume at `root` to `out` as
/// tar + zstd at `level`.
pub fn pack<W: Write>(
    root: &Path,
    entries: &[Entry],
    level: i32,
    out: W,
) -> io::Result<(Packed, W)> {
    let hashing = Hashing::new(out);
    let mut z = zstd::stream::write::Encoder::new(hashing, level)?;
    z.include_checksum(true)?;
    let mut tar = tar::Builder::new(z);
    for e in entries {
        append(&mut tar, root, e)?;
    }
    let z = tar.into_inner()?;
    let hashing = z.finish()?;
    let (digest, size, out) = hashing.finish();
    Ok((Packed { digest, size }, out))
}

fn header(e: &Entry, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(e.mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(e.mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn name(e: &Entry) -> Vec<u8> {
    if e.rel.is_empty() {
        b"./".to_vec()
    } else {
        e.rel.clone()
    }
}

fn append<W: Write>(tar: &mut tar::Builder<W>, root: &Path, e: &Entry) -> io::Result<()> {
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&name(e)));
    match &e.kind {
        Kind::Dir => {
            let mut h = header(e, tar::EntryType::Directory);
            tar.append_data(&mut h, &path, io::empty())
        }
        Kind::Symlink(t) => {
            let mut h = header(e, tar::EntryType::Symlink);
            tar.append_link(&mut h, &path, std::ffi::OsStr::from_bytes(t))
        }
        Kind::HardLink(t) => {
            let mut h = header(e, tar::EntryType::Link);
            tar.append_link(&mut h, &path, std::ffi::OsStr::from_bytes(t))
        }
        Kind::File => {
            let full = root.join(&path);
            let f = File::options()
                .read(true)
                .custom_flags(libc_nofollow())
                .open(&full)?;
            let mut h = header(e, tar::EntryType::Regular);
            h.set_size(e.size);
            let mut exact = Exact {
                inner: f.take(e.size + 1),
                left: e.size,
                path: &full,
            };
            tar.append_data(&mut h, &path, &mut exact)
        }
    }
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Reads exactly the size listed, failing if the file grew or shrank.
struct Exact<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let changed = || {
            io::Error::other(format!(
                "{} changed while it was exported; export again when nothing writes the cache",
                self.path.display()
            ))
        };
        if self.left == 0 {
            // One more byte would mean the file grew.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(changed()),
            };
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(changed());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::list;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("sub/l")).unwrap();
        d
    }

    #[test]
    fn same_tree_same_bytes_and_a_valid_tar() {
        let d = tree();
        let l = list(d.path()).unwrap();
        let (a, bytes) = pack(d.path(), &l.entries, 3, Vec::new()).unwrap();
        let (b, _) = pack(d.path(), &l.entries, 3, Vec::new()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size, bytes.len() as u64);
        let raw = zstd::decode_all(&bytes[..]).unwrap();
        let mut ar = tar::Archive::new(&raw[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().uid().unwrap(), 0);
                e.path().unwrap().display().to_string()
            })
            .collect();
        assert_eq!(names, ["./", "sub", "sub/f", "sub/l"]);
        // A different level is different bytes.
        let (c, _) = pack(d.path(), &l.entries, 9, Vec::new()).unwrap();
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn a_file_that_changed_since_the_listing_fails_the_pack() {
        let d = tree();
        let l = list(d.path()).unwrap();
        std::fs::write(d.path().join("sub/f"), b"hello, longer").unwrap();
        let e = pack(d.path(), &l.entries, 3, Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("changed while it was exported"),
            "{e}"
        );
        std::fs::write(d.path().join("sub/f"), b"hi").unwrap();
        assert!(pack(d.path(), &l.entries, 3, Vec::new()).is_err());
    }
}
