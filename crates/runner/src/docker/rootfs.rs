//! Root filesystems for the docker runner, as tarballs to import: the
//! default busybox environment (the same pinned static busybox and applet
//! links the VM's initramfs carries) and vmbuild's environment images or a
//! user's `--rootfs` image (erofs unpacked with `fsck.erofs --extract`,
//! ext4 with `debugfs rdump`). There is no registry to pull from: every
//! image the runner uses is made here and imported by content key.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::DockerError;
use crate::vm::RootImage;

/// Bumped when the busybox layout below changes, so a new layout gets a
/// new key (and a fresh import) instead of reusing an old image.
const BUSYBOX_LAYOUT: &str = "vmbuild-docker-busybox-1";

/// Directories of the busybox root, with their modes.
const BUSYBOX_DIRS: [(&str, u32); 14] = [
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("root", 0o700),
    ("home", 0o755),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("var/cache", 0o755),
    ("dev", 0o755),
    ("proc", 0o755),
];

/// Files of the busybox root: who root is, and the hostname.
const BUSYBOX_FILES: [(&str, &str); 3] = [
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", "root:x:0:\n"),
    ("etc/hostname", "vmbuild\n"),
];

/// The content key of the busybox environment: a digest of the binary,
/// its applet list and [`BUSYBOX_LAYOUT`] (`busybox-<24 hex>`).
pub fn busybox_key(busybox: &Path, applets: &[String]) -> Result<String, DockerError> {
    let mut h = Sha256::new();
    h.update(BUSYBOX_LAYOUT.as_bytes());
    hash_file(&mut h, busybox)?;
    for a in applets {
        h.update(a.as_bytes());
        h.update(b"\n");
    }
    Ok(format!("busybox-{}", &hex::encode(h.finalize())[..24]))
}

/// Writes the busybox root as a tar to `out`: [`BUSYBOX_DIRS`],
/// `bin/busybox`, a symlink to it for each applet path (`usr/bin/env`,
/// `bin/sh`, ...) and [`BUSYBOX_FILES`], all owned by root.
pub fn write_busybox_tar(
    busybox: &Path,
    applets: &[String],
    out: &Path,
) -> Result<(), DockerError> {
    let io = |what: &str| {
        let what = format!("{what} ({})", out.display());
        move |e: std::io::Error| DockerError::Io(what.clone(), e)
    };
    let mut t = tar::Builder::new(BufWriter::new(File::create(out).map_err(io("creating"))?));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    };
    for (d, mode) in BUSYBOX_DIRS {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        t.append_data(&mut h, d, std::io::empty())
            .map_err(io("writing"))?;
    }
    let bin = std::fs::read(busybox).map_err(io("reading busybox for"))?;
    let mut h = header(tar::EntryType::Regular, 0o755, bin.len() as u64);
    t.append_data(&mut h, "bin/busybox", bin.as_slice())
        .map_err(io("writing"))?;
    for path in applet_links(applets) {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        t.append_link(&mut h, &path, "/bin/busybox")
            .map_err(io("writing"))?;
    }
    for (f, text) in BUSYBOX_FILES {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        t.append_data(&mut h, f, text.as_bytes())
            .map_err(io("writing"))?;
    }
    t.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("finishing"))?;
    Ok(())
}

/// The applet paths to link, relative, without `bin/busybox` itself and
/// without anything outside the tree or in a directory the layout lacks.
fn applet_links(applets: &[String]) -> Vec<String> {
    let dirs = ["bin/", "sbin/", "usr/bin/", "usr/sbin/"];
    let mut v: Vec<String> = applets
        .iter()
        .map(|a| a.trim_start_matches('/').to_string())
        .filter(|a| a != "bin/busybox")
        .filter(|a| {
            dirs.iter().any(|d| {
                a.strip_prefix(d)
                    .is_some_and(|n| !n.is_empty() && !n.contains('/'))
            })
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The content key of a root image file: its environment image key when
/// it is one (`<images>/<key>/rootfs.erofs|ext4`), else `file-` and a
/// digest of its bytes.
pub fn image_key(image: &RootImage) -> Result<String, DockerError> {
    let parent_key = image
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("rootfs."))
        .and(image.path.parent())
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .filter(|k| k.len() >= 16 && k.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(k) = parent_key {
        return Ok(k.to_string());
    }
    file_key("file", &image.path)
}

/// `<prefix>-` and the first 32 hex digits of the sha256 of `path`.
pub fn file_key(prefix: &str, path: &Path) -> Result<String, DockerError> {
    let mut h = Sha256::new();
    hash_file(&mut h, path)?;
    Ok(format!("{prefix}-{}", &hex::encode(h.finalize())[..32]))
}

/// Unpacks `image` into `dir` (which must not exist yet) with its owners
/// and modes.
pub fn unpack_image(image: &RootImage, dir: &Path) -> Result<(), DockerError> {
    let (tool, mut cmd) = match image.fstype.as_str() {
        "erofs" => {
            let mut c = Command::new("fsck.erofs");
            c.arg(format!("--extract={}", dir.display()))
                .arg("--preserve")
                .arg(&image.path);
            ("fsck.erofs (erofs-utils)", c)
        }
        "ext4" => {
            std::fs::create_dir(dir)
                .map_err(|e| DockerError::Io(format!("creating {}", dir.display()), e))?;
            let mut c = Command::new("debugfs");
            c.arg("-R")
                .arg(format!("rdump / {}", dir.display()))
                .arg(&image.path);
            ("debugfs (e2fsprogs)", c)
        }
        other => {
            return Err(DockerError::Rootfs {
                path: image.path.clone(),
                why: format!("{other} images cannot be unpacked for the docker runner"),
            })
        }
    };
    let out = cmd.output().map_err(|e| DockerError::Rootfs {
        path: image.path.clone(),
        why: format!("cannot run {tool}: {e}; apt-get install erofs-utils e2fsprogs"),
    })?;
    if !out.status.success() {
        return Err(DockerError::Rootfs {
            path: image.path.clone(),
            why: format!(
                "{tool} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Writes the tree at `dir` as a tar to `out`: owners, modes, mtimes and
/// symlinks as they are (links not followed), device nodes included.
pub fn write_tree_tar(dir: &Path, out: &Path) -> Result<(), DockerError> {
    let io = |e: std::io::Error| {
        DockerError::Io(
            format!("packing {} into {}", dir.display(), out.display()),
            e,
        )
    };
    let mut t = tar::Builder::new(BufWriter::new(File::create(out).map_err(io)?));
    t.follow_symlinks(false);
    t.mode(tar::HeaderMode::Complete);
    t.append_dir_all(".", dir).map_err(io)?;
    t.into_inner().and_then(|mut w| w.flush()).map_err(io)?;
    Ok(())
}

/// Where a directory's tarball goes while it is imported.
pub fn scratch_tar(scratch: &Path) -> PathBuf {
    scratch.join("rootfs.tar")
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<(), DockerError> {
    let mut f =
        File::open(path).map_err(|e| DockerError::Io(format!("reading {}", path.display()), e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| DockerError::Io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_links_stay_in_the_layout() {
        let a: Vec<String> = [
            "usr/bin/env",
            "bin/sh",
            "/bin/ls",
            "bin/busybox",
            "../etc/x",
            "usr/lib/x",
            "bin/sh",
            "bin/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(applet_links(&a), ["bin/ls", "bin/sh", "usr/bin/env"]);
    }

    #[test]
    fn busybox_tar_has_the_layout_and_a_stable_key() {
        let d = tempfile::tempdir().unwrap();
        let bb = d.path().join("busybox");
        std::fs::write(&bb, b"\x7fELF not really").unwrap();
        let applets = vec!["bin/sh".to_string(), "usr/bin/env".to_string()];
        let out = d.path().join("rootfs.tar");
        write_busybox_tar(&bb, &applets, &out).unwrap();
        let mut ar = tar::Archive::new(File::open(&out).unwrap());
        let entries: Vec<(String, tar::EntryType, u32, Option<String>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.header().mode().unwrap(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let find = |p: &str| {
            entries
                .iter()
                .find(|e| e.0.trim_end_matches('/') == p)
                .unwrap()
        };
        assert_eq!(find("tmp").2, 0o1777);
        assert_eq!(find("bin/busybox").1, tar::EntryType::Regular);
        assert_eq!(find("bin/sh").3.as_deref(), Some("/bin/busybox"));
        assert_eq!(find("usr/bin/env").1, tar::EntryType::Symlink);
        assert!(entries.iter().any(|e| e.0 == "etc/passwd"));
        let k1 = busybox_key(&bb, &applets).unwrap();
        assert_eq!(k1, busybox_key(&bb, &applets).unwrap());
        assert!(k1.starts_with("busybox-") && k1.len() == 8 + 24, "{k1}");
        assert_ne!(k1, busybox_key(&bb, &applets[..1]).unwrap());
    }

    #[test]
    fn env_images_keep_their_key_other_files_are_hashed() {
        let d = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let dir = d.path().join(&key);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("rootfs.erofs"), b"x").unwrap();
        let img = |p: PathBuf| RootImage {
            path: p,
            fstype: "erofs".into(),
        };
        assert_eq!(image_key(&img(dir.join("rootfs.erofs"))).unwrap(), key);
        std::fs::write(d.path().join("mine.img"), b"x").unwrap();
        let k = image_key(&img(d.path().join("mine.img"))).unwrap();
        assert!(k.starts_with("file-") && k.len() == 37, "{k}");
    }
}
