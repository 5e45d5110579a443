//! Making the scratch disk ([`super::plan::ScratchPlan`]): a sparse file
//! formatted ext4 on the host (tens of milliseconds; the guest's busybox
//! would have to write every inode table under emulation). It lives in the
//! run dir, so it goes with it on every path.

use std::path::Path;

use super::plan::ScratchPlan;
use crate::error::RunError;

/// Creates `plan.path` as a sparse file of `plan.bytes` and makes an ext4
/// filesystem on it (no journal: the disk is thrown away; no reserved
/// blocks; inode tables initialised lazily).
///
/// # Errors
/// [`RunError::Flag`] (`--disk`) when mkfs.ext4 is missing or fails,
/// [`RunError::Io`] when the file cannot be made.
pub fn make(plan: &ScratchPlan) -> Result<(), RunError> {
    let f = std::fs::File::create(&plan.path).map_err(|e| {
        RunError::io(
            format!("cannot create the scratch disk {}", plan.path.display()),
            e,
        )
    })?;
    f.set_len(plan.bytes).map_err(|e| {
        RunError::io(
            format!("cannot size the scratch disk {}", plan.path.display()),
            e,
        )
    })?;
    drop(f);
    mkfs(&plan.path)
}

fn mkfs(path: &Path) -> Result<(), RunError> {
    let bad = |why: String| RunError::Flag {
        flag: "--disk".into(),
        why,
    };
    let mkfs = which::which("mkfs.ext4").map_err(|_| {
        bad("the scratch disk needs mkfs.ext4 on the host: apt-get install e2fsprogs, or pass --disk 0 to keep the guest's writes in its RAM".into())
    })?;
    let out = std::process::Command::new(&mkfs)
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            "lazy_itable_init=1,nodiscard",
            "-L",
            "vmbuild-scratch",
        ])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| bad(format!("cannot run {}: {e}", mkfs.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(bad(format!(
        "{} failed ({}): {}; pass a size ext4 can take (e.g. 16G) or --disk 0",
        mkfs.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_16g_disk_is_sparse_and_ext4() {
        let d = tempfile::tempdir().unwrap();
        let plan = ScratchPlan {
            path: d.path().join("scratch.img"),
            bytes: 16 << 30,
        };
        make(&plan).unwrap();
        let md = std::fs::metadata(&plan.path).unwrap();
        assert_eq!(md.len(), 16 << 30);
        let used = std::os::unix::fs::MetadataExt::blocks(&md) * 512;
        assert!(used < 64 << 20, "sparse: {used} bytes used");
        use std::io::{Read, Seek, SeekFrom};
        let mut sb = [0u8; 2];
        let mut f = std::fs::File::open(&plan.path).unwrap();
        f.seek(SeekFrom::Start(1024 + 56)).unwrap();
        f.read_exact(&mut sb).unwrap();
        assert_eq!(sb, [0x53, 0xef], "ext2/3/4 superblock magic");
    }

    #[test]
    fn a_size_ext4_cannot_take_is_a_disk_error() {
        let d = tempfile::tempdir().unwrap();
        let plan = ScratchPlan {
            path: d.path().join("scratch.img"),
            bytes: 4096,
        };
        let e = make(&plan).unwrap_err().to_string();
        assert!(e.starts_with("--disk:"), "{e}");
    }
}
