//! `--rootfs PATH|KEY`: the root image the steps run in, given as your own
//! erofs/ext4 image file or as a directory (packed into a temporary erofs
//! image for the run), or as a cached environment image named by its key
//! as `vmbuild image ls` shows it. (The flag keeps its name; "root image"
//! is what it selects, see docs/environments.md.)

use std::path::{Path, PathBuf};

use vmbuild_image::env::{EnvImage, InUse};
use vmbuild_runner::RootImage;
use vmbuild_runner::RunError;

/// Shortest key prefix taken as an image key.
const MIN_KEY_PREFIX: usize = 4;

/// How the VM attaches a cached environment image.
pub fn root_image(img: &EnvImage) -> RootImage {
    RootImage {
        path: img.path.clone(),
        fstype: img.format.fs_type().to_string(),
    }
}

/// Whether `--rootfs` names a cached image: no such path, and the text is
/// a key prefix (at least [`MIN_KEY_PREFIX`] hex digits).
/// `exists` tells whether a path is there (an existing `beef` is a path).
pub fn looks_like_key(arg: &Path, exists: impl Fn(&Path) -> bool) -> bool {
    let Some(s) = arg.to_str() else {
        return false;
    };
    s.len() >= MIN_KEY_PREFIX && s.bytes().all(|b| b.is_ascii_hexdigit()) && !exists(arg)
}

/// `--rootfs KEY`: the cached image, held for the run; `None` when `arg`
/// is a path rather than a key.
pub fn cached_image(arg: &Path) -> Option<Result<(RootImage, InUse), RunError>> {
    if !looks_like_key(arg, |p| std::fs::symlink_metadata(p).is_ok()) {
        return None;
    }
    let key = arg.to_string_lossy();
    Some(
        vmbuild_image::cache_root()
            .and_then(|root| vmbuild_image::env::find_image_in_use(&root, &key))
            .map(|held| (root_image(held.image()), held))
            .map_err(|e| match e {
                vmbuild_image::ImageError::NoSuchImage { .. } => RunError::Flag {
                    flag: format!("--rootfs {key}"),
                    why: format!("no such file or directory, and {e}"),
                },
                e => RunError::from(e),
            }),
    )
}

/// erofs superblock magic (little-endian u32 at offset 1024).
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
/// ext2/3/4 superblock magic (little-endian u16 at offset 1024 + 56).
const EXT_MAGIC: u16 = 0xEF53;

/// The filesystem type of an image from its superblock, if known.
pub fn detect_fstype(head: &[u8]) -> Option<&'static str> {
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    if u32_at(1024) == Some(EROFS_MAGIC) {
        Some("erofs")
    } else if u16_at(1080) == Some(EXT_MAGIC) {
        Some("ext4")
    } else {
        None
    }
}

/// Resolves `--rootfs`. A directory is packed with `mkfs.erofs` into
/// `scratch` (which the caller keeps alive for the run).
pub fn resolve(path: &Path, scratch: &Path) -> Result<RootImage, RunError> {
    let meta = std::fs::metadata(path).map_err(|e| RunError::Flag {
        flag: format!("--rootfs {}", path.display()),
        why: e.to_string(),
    })?;
    if meta.is_dir() {
        let image = scratch.join("rootfs.erofs");
        pack_dir(path, &image)?;
        return Ok(RootImage {
            path: image,
            fstype: "erofs".into(),
        });
    }
    let mut head = vec![0u8; 2048];
    let n = std::io::Read::read(
        &mut std::fs::File::open(path)
            .map_err(|e| RunError::io(format!("opening --rootfs {}", path.display()), e))?,
        &mut head,
    )
    .map_err(|e| RunError::io(format!("reading --rootfs {}", path.display()), e))?;
    match detect_fstype(&head[..n]) {
        Some(fstype) => Ok(RootImage {
            path: path.canonicalize().unwrap_or_else(|_| PathBuf::from(path)),
            fstype: fstype.into(),
        }),
        None => Err(RunError::Flag {
            flag: format!("--rootfs {}", path.display()),
            why:
                "neither a directory nor an erofs/ext4 image (make one with `mkfs.erofs IMAGE DIR`)"
                    .into(),
        }),
    }
}

fn pack_dir(dir: &Path, image: &Path) -> Result<(), RunError> {
    let mkfs = which::which("mkfs.erofs").map_err(|_| RunError::MissingTool {
        tool: "mkfs.erofs".into(),
        at: None,
        install: "--rootfs DIR packs the directory with it; apt-get install erofs-utils".into(),
    })?;
    let out = std::process::Command::new(mkfs)
        .arg(image)
        .arg(dir)
        .output()
        .map_err(|e| RunError::io("running mkfs.erofs", e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(RunError::Flag {
            flag: format!("--rootfs {}", dir.display()),
            why: format!(
                "mkfs.erofs could not pack it: {}",
                err.lines().last().unwrap_or("").trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_erofs_and_ext4_superblocks() {
        let mut erofs = vec![0u8; 2048];
        erofs[1024..1028].copy_from_slice(&EROFS_MAGIC.to_le_bytes());
        assert_eq!(detect_fstype(&erofs), Some("erofs"));
        let mut ext = vec![0u8; 2048];
        ext[1080..1082].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        assert_eq!(detect_fstype(&ext), Some("ext4"));
        assert_eq!(detect_fstype(&[0u8; 2048]), None);
        assert_eq!(
            detect_fstype(&[0u8; 100]),
            None,
            "short files are not images"
        );
    }

    #[test]
    fn key_prefixes_are_told_from_paths() {
        let none = |_: &Path| false;
        assert!(looks_like_key(Path::new("c392cebed7ad"), none));
        assert!(looks_like_key(Path::new("C392"), none));
        assert!(!looks_like_key(Path::new("c39"), none), "too short");
        assert!(!looks_like_key(Path::new("./c392cebed7ad"), none));
        assert!(!looks_like_key(Path::new("rootfs.erofs"), none));
        // An existing file or directory named like a key is a path.
        assert!(!looks_like_key(Path::new("beef"), |p| p == Path::new("beef")));
    }
}
