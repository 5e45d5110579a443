//! Builds real environment images with mmdebstrap and mkfs.erofs (needs
//! both, plus dump.erofs/fsck.erofs, and network access to Debian; skipped
//! with a message when a tool is missing). About 40-60 s here (two builds at once).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use vmbuild_image::env::{
    ensure_env_image_with, list_images, BuildOutput, EnvBuilder, MmdebstrapBuilder,
};
use vmbuild_image::{EnvSpec, ImageError, ImageFormat};

/// The real builder, counting its runs.
struct Counting {
    runs: AtomicUsize,
    inner: MmdebstrapBuilder,
}

impl Counting {
    fn new(format: ImageFormat) -> Counting {
        Counting {
            runs: AtomicUsize::new(0),
            inner: MmdebstrapBuilder {
                format: Some(format),
            },
        }
    }
}

impl EnvBuilder for Counting {
    fn build(
        &self,
        spec: &EnvSpec,
        key: &str,
        out: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<BuildOutput, ImageError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.inner.build(spec, key, out, progress)
    }
}

fn have(tool: &str) -> bool {
    which::which(tool).is_ok()
}

/// `dump.erofs --path=P image`: the inode description, or `None` if absent.
fn inode(image: &Path, path: &str) -> Option<String> {
    let out = Command::new("dump.erofs")
        .arg(format!("--path={path}"))
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.contains(&format!("File : {path}")).then_some(text)
}

/// `debugfs -R 'stat P' image` (ext4): the inode description, or `None`.
fn ext4_inode(image: &Path, path: &str) -> Option<String> {
    let debugfs = ["/usr/sbin/debugfs", "/sbin/debugfs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("debugfs");
    let out = Command::new(debugfs)
        .args(["-R", &format!("stat {path}")])
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.contains("Inode:").then_some(text)
}

#[test]
fn builds_real_images_once() {
    let missing: Vec<_> = [
        "mmdebstrap",
        "mkfs.erofs",
        "dump.erofs",
        "fsck.erofs",
        "mkfs.ext4",
    ]
    .into_iter()
    .filter(|t| !have(t) && !Path::new("/usr/sbin").join(t).exists())
    .collect();
    if !missing.is_empty() {
        // scripts/setup.sh installs them: under CI their absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing:?} not installed under CI: run the suite with scripts/test.sh"
        );
        eprintln!(
            "skipping: {missing:?} not installed (apt-get install mmdebstrap erofs-utils e2fsprogs)"
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let builder = Counting::new(ImageFormat::Erofs);
    let ext4_builder = Counting::new(ImageFormat::Ext4);
    let mut log = |l: &str| eprintln!("  {l}");

    // The bare image (essential set + apt, EROFS) and one with `hello`
    // (packed as ext4), built at the same time: different keys do not wait
    // for each other.
    let bare = EnvSpec::new(Vec::<String>::new());
    let hello = EnvSpec::new(["hello"]);
    let t0 = Instant::now();
    let ((img, built), (img2, built2)) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            ensure_env_image_with(root, &hello, &ext4_builder, &mut |l| {
                eprintln!("  [hello] {l}")
            })
            .unwrap()
        });
        let b = ensure_env_image_with(root, &bare, &builder, &mut log).unwrap();
        (b, h.join().unwrap())
    });
    let both = t0.elapsed();
    assert!(built && built2);
    assert_eq!(builder.runs.load(Ordering::SeqCst), 1);
    assert_eq!(ext4_builder.runs.load(Ordering::SeqCst), 1);
    assert_eq!(img.format, ImageFormat::Erofs);
    assert_eq!(
        img.path,
        root.join("images").join(&img.key).join("rootfs.erofs")
    );
    assert_eq!(img.size, std::fs::metadata(&img.path).unwrap().len());
    let fsck = Command::new("fsck.erofs").arg(&img.path).output().unwrap();
    assert!(fsck.status.success(), "{fsck:?}");

    let dash = inode(&img.path, "/usr/bin/dash").expect("dash in the image");
    assert!(
        dash.contains("regular file") && dash.contains("Uid: 0"),
        "{dash}"
    );
    assert!(inode(&img.path, "/usr/bin/sh").unwrap().contains("symlink"));
    assert!(
        inode(&img.path, "/bin").unwrap().contains("symlink"),
        "merged /usr"
    );
    assert!(inode(&img.path, "/usr/bin/apt-get").is_some());
    for m in vmbuild_image::env::MOUNT_POINTS {
        let d = inode(&img.path, m).unwrap_or_else(|| panic!("no mount point {m}"));
        assert!(d.contains("directory"), "{m}: {d}");
    }
    // dump.erofs 1.5 does not print the sticky bit (it is stored: checked
    // with a loop mount).
    assert!(inode(&img.path, "/tmp").unwrap().contains("rwxrwxrwx"));
    assert!(inode(&img.path, "/etc/resolv.conf").is_none());
    assert!(inode(&img.path, "/etc/hostname")
        .unwrap()
        .contains("Size: 8 "));
    // Slim: copyright kept, docs and man pages dropped, apt lists gone.
    assert!(inode(&img.path, "/usr/share/doc/bash/copyright").is_some());
    assert!(inode(&img.path, "/usr/share/doc/bash/README").is_none());
    assert!(inode(&img.path, "/usr/share/man/man1/bash.1.gz").is_none());
    assert!(inode(
        &img.path,
        "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"
    )
    .is_none());

    // Reused: no second mmdebstrap run.
    let t1 = Instant::now();
    let (again, built) = ensure_env_image_with(root, &bare, &builder, &mut log).unwrap();
    let reuse = t1.elapsed();
    assert!(!built);
    assert_eq!(again.key, img.key);
    assert_eq!(builder.runs.load(Ordering::SeqCst), 1);

    // The other package list: its own key and contents, in a clean ext4.
    assert_ne!(img2.key, img.key);
    assert_eq!(img2.format, ImageFormat::Ext4);
    assert!(img2.path.ends_with("rootfs.ext4"));
    assert!(inode(&img.path, "/usr/bin/hello").is_none());
    let hello_bin = ext4_inode(&img2.path, "/usr/bin/hello").expect("hello in the ext4 image");
    assert!(hello_bin.contains("User:     0"), "{hello_bin}");
    assert!(ext4_inode(&img2.path, "/home/build").is_some());
    assert!(ext4_inode(&img2.path, "/usr/bin/dash").is_some());
    let e2fsck = ["/usr/sbin/e2fsck", "/sbin/e2fsck"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("e2fsck");
    let fsck = Command::new(e2fsck)
        .arg("-fn")
        .arg(&img2.path)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");
    assert_eq!(list_images(root).unwrap().len(), 2);

    // Nothing but the two entries and their lock files is left.
    let mut names: Vec<String> = std::fs::read_dir(root.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    let entry: Vec<String> = std::fs::read_dir(img.path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!entry.iter().any(|n| n == "work"), "{entry:?}");

    eprintln!(
        "bare and +hello built together in {both:.1?}: {} KiB and {} KiB; reused in {reuse:.1?}",
        img.size / 1024,
        img2.size / 1024
    );
}
