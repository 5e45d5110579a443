//! Packing a root filesystem directory into an image file: `mkfs.erofs`
//! (lz4hc) when available, else `mkfs.ext4 -d`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::image::ImageFormat;
use crate::ImageError;

/// Where root-only tools live when `PATH` lacks the sbin dirs (non-root
/// shells on Debian).
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// The mkfs tool found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packer {
    /// The image format it makes.
    pub format: ImageFormat,
    /// Path of `mkfs.erofs` or `mkfs.ext4`.
    pub program: PathBuf,
}

impl Packer {
    /// `mkfs.erofs` if installed (preferred), else `mkfs.ext4`; or the tool
    /// for `format` when one is asked for.
    pub fn find(format: Option<ImageFormat>) -> Result<Packer, ImageError> {
        let erofs = || {
            find_tool("mkfs.erofs").map(|program| Packer {
                format: ImageFormat::Erofs,
                program,
            })
        };
        let ext4 = || {
            find_tool("mkfs.ext4").map(|program| Packer {
                format: ImageFormat::Ext4,
                program,
            })
        };
        let missing_erofs = ImageError::ToolMissing {
            tool: "mkfs.erofs",
            package: "erofs-utils",
            purpose: "pack environment images (mkfs.ext4 from e2fsprogs also works)",
        };
        match format {
            Some(ImageFormat::Erofs) => erofs().ok_or(missing_erofs),
            Some(ImageFormat::Ext4) => ext4().ok_or(ImageError::ToolMissing {
                tool: "mkfs.ext4",
                package: "e2fsprogs",
                purpose: "pack environment images as ext4",
            }),
            None => erofs()
                .or_else(|| {
                    let p = ext4();
                    if p.is_some() {
                        tracing::info!("mkfs.erofs not found; packing environment images as ext4");
                    }
                    p
                })
                .ok_or(missing_erofs),
        }
    }

    /// The version banner of the tool, for `image.json`.
    pub fn version(&self) -> Option<String> {
        match self.format {
            // mkfs.erofs 1.5 has no -V; its siblings from erofs-utils do.
            ImageFormat::Erofs => ["dump.erofs", "fsck.erofs"]
                .iter()
                .find_map(|t| find_tool(t))
                .and_then(|t| super::run::first_line(&t, &["-V"]))
                .map(|v| {
                    v.replace("dump.erofs", "erofs-utils")
                        .replace("fsck.erofs", "erofs-utils")
                }),
            ImageFormat::Ext4 => super::run::first_line(&self.program, &["-V"]),
        }
    }

    /// Arguments to pack `dir` into `image`. `key` seeds the filesystem
    /// UUID (so a rebuild of the same spec gets the same UUID); `usage` sizes
    /// an ext4 image.
    pub fn args(&self, dir: &Path, image: &Path, key: &str, usage: TreeUsage) -> Vec<OsString> {
        match self.format {
            ImageFormat::Erofs => erofs_args(dir, image, key),
            ImageFormat::Ext4 => ext4_args(dir, image, key, usage),
        }
    }
}

/// A tool on `PATH` or in the sbin dirs.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| {
        SBIN_DIRS
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

/// `mkfs.erofs` arguments. lz4hc: the guest kernel (6.1, EROFS_FS_ZIP)
/// reads lz4 only (no LZMA), and lz4hc decompresses as fast as lz4 while
/// packing smaller. Ownership, modes, mtimes and xattrs are kept (no `-T`:
/// Python's .pyc files are checked against their sources' mtimes).
///
/// Measured (erofs-utils 1.5): python3 + python3-pip, 200 MiB of files ->
/// 98 MiB lz4hc, 109 MiB lz4, 182 MiB uncompressed; booted under TCG,
/// a cold `python3 -c 'import json, email, http.client, pip'` took
/// 0.87-0.93 s on each, and reading the whole tree 14-17 s on each: the
/// decompression cost is lost in the noise.
pub fn erofs_args(dir: &Path, image: &Path, key: &str) -> Vec<OsString> {
    vec![
        "-zlz4hc".into(),
        "-U".into(),
        uuid_from_key(key).into(),
        "--quiet".into(),
        image.into(),
        dir.into(),
    ]
}

/// `mkfs.ext4` arguments: no journal (the image is mounted read-only), no
/// reserved blocks, 4 KiB blocks, root owned by root, UUID and directory
/// hash seed from the key.
pub fn ext4_args(dir: &Path, image: &Path, key: &str, usage: TreeUsage) -> Vec<OsString> {
    let uuid = uuid_from_key(key);
    let (kib, inodes) = ext4_size(usage);
    vec![
        "-q".into(),
        "-F".into(),
        "-L".into(),
        "vmbuild".into(),
        "-b".into(),
        "4096".into(),
        "-m".into(),
        "0".into(),
        "-O".into(),
        "^has_journal".into(),
        "-N".into(),
        inodes.to_string().into(),
        "-U".into(),
        uuid.clone().into(),
        "-E".into(),
        format!("root_owner=0:0,hash_seed={uuid}").into(),
        "-d".into(),
        dir.into(),
        image.into(),
        format!("{kib}K").into(),
    ]
}

/// Size (KiB) and inode count of an ext4 image holding a tree: the data
/// plus 15% and 16 MiB for metadata and slack, 256 bytes per inode, rounded
/// up to 4 MiB; inodes plus 20% and 1024.
pub fn ext4_size(usage: TreeUsage) -> (u64, u64) {
    let inodes = usage.inodes + usage.inodes / 5 + 1024;
    let bytes = usage.bytes + usage.bytes * 15 / 100 + 16 * 1024 * 1024 + inodes * 256;
    let mib4 = bytes.div_ceil(4 * 1024 * 1024);
    (mib4 * 4 * 1024, inodes)
}

/// A filesystem UUID from the first 32 hex digits of a key.
pub fn uuid_from_key(key: &str) -> String {
    let h: String = key
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Space used by a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Allocated bytes (hard links counted once).
    pub bytes: u64,
    /// Number of inodes (files, dirs, links, nodes).
    pub inodes: u64,
}

/// Measure `root` without following symlinks. Unreadable subdirectories
/// (possible when the tree belongs to subordinate uids) are skipped: the
/// result is then a slight underestimate.
pub fn tree_usage(root: &Path) -> Result<TreeUsage, ImageError> {
    let meta = std::fs::symlink_metadata(root)
        .map_err(crate::error::io_err(format!("reading {}", root.display())))?;
    let mut seen = HashSet::new();
    let mut usage = TreeUsage::default();
    let mut stack = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = stack.pop() {
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.bytes += meta.blocks() * 512;
        if meta.is_dir() {
            let Ok(rd) = std::fs::read_dir(&path) else {
                tracing::debug!(path = %path.display(), "cannot read; not counted");
                continue;
            };
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    stack.push((e.path(), m));
                }
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn uuid() {
        assert_eq!(uuid_from_key(KEY), "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(uuid_from_key("ab"), "ab000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn erofs_argv() {
        let a = erofs_args(
            Path::new("/c/t/rootfs"),
            Path::new("/c/t/rootfs.erofs"),
            KEY,
        );
        assert_eq!(
            strs(&a),
            [
                "-zlz4hc",
                "-U",
                "01234567-89ab-cdef-0123-456789abcdef",
                "--quiet",
                "/c/t/rootfs.erofs",
                "/c/t/rootfs"
            ]
        );
    }

    #[test]
    fn ext4_argv_and_size() {
        let usage = TreeUsage {
            bytes: 100 * 1024 * 1024,
            inodes: 5000,
        };
        let (kib, inodes) = ext4_size(usage);
        assert_eq!(inodes, 5000 + 1000 + 1024);
        // 115 MiB + 16 MiB + 7024*256 B (1.7 MiB) = 132.7 MiB -> 136 MiB.
        assert_eq!(kib, 136 * 1024);
        let a = strs(&ext4_args(
            Path::new("/d"),
            Path::new("/i.ext4"),
            KEY,
            usage,
        ));
        let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
        assert_eq!(a[pos("-N") + 1], "7024");
        assert_eq!(a[pos("-O") + 1], "^has_journal");
        assert_eq!(a[pos("-d") + 1], "/d");
        assert_eq!(
            a[pos("-E") + 1],
            "root_owner=0:0,hash_seed=01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(&a[a.len() - 2..], ["/i.ext4", "139264K"]);
        // An empty tree still gets room for its metadata.
        assert_eq!(ext4_size(TreeUsage::default()), (20 * 1024, 1024));
    }

    #[test]
    fn usage_counts_hardlinks_once_and_skips_symlink_targets() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::write(r.join("d/f"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(r.join("d/f"), r.join("g")).unwrap();
        std::os::unix::fs::symlink("/usr", r.join("usr")).unwrap();
        let u = tree_usage(r).unwrap();
        assert_eq!(u.inodes, 4, "root, d, f (once), usr link");
        let f_blocks = std::fs::metadata(r.join("g")).unwrap().blocks() * 512;
        assert!(
            u.bytes >= f_blocks && u.bytes < 2 * f_blocks + 64 * 1024,
            "{u:?}"
        );
    }
}
