//! The real builder: `mmdebstrap` makes the root filesystem as a directory,
//! `mkfs.erofs` (or `mkfs.ext4`) packs it.
//!
//! - Variant `apt`: the Essential:yes set (dash as `/bin/sh`, coreutils,
//!   bash, ...) plus apt, the smallest set that has both; `minbase` adds
//!   tzdata, mount and e2fsprogs (+7 MiB) that build steps rarely need.
//! - Mode `unshare`, as root too: mmdebstrap then runs in its own mount
//!   namespace, so a killed build leaves no `/proc`, `/sys` or `/dev` bind
//!   mounts behind in the cache (in `root` mode it would). As a normal user
//!   it needs `/etc/subuid` and `/etc/subgid` entries; the tree is then
//!   owned by subordinate uids, so packing and cleanup run through
//!   `mmdebstrap --unshare-helper` where those uids map back to root.
//! - dpkg `path-exclude`s drop man pages, info, docs (copyright files
//!   kept) and translations (`C.UTF-8` lives in /usr/lib/locale and stays):
//!   170 MiB -> 125 MiB for the bare set. They stay in the image's dpkg
//!   config, so packages installed later in the guest are slim too.
//! - apt lists and the package cache are removed by mmdebstrap's default
//!   cleanup; a customize hook (run with `chroot`, so symlinks resolve
//!   inside the tree) makes the guest's mount points, sets the hostname and
//!   drops the host's resolv.conf that mmdebstrap copied in.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::build_tree::remove_tree;
use super::builder::{BuildOutput, EnvBuilder};
use super::image::{short, ImageFormat};
use super::pack::{find_tool, tree_usage, Packer};
use super::run::{first_line, run_streaming, Finished};
use super::spec::EnvSpec;
use crate::error::io_err;
use crate::ImageError;

/// dpkg options that keep docs, man pages and translations out.
pub const SLIM_DPKG_OPTIONS: [&str; 6] = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
];

/// Directories the guest mounts over or links (they must exist in a
/// read-only image).
pub const MOUNT_POINTS: [&str; 8] = [
    "/home/build",
    "/var/cache/vmbuild",
    "/var/cache/melange",
    "/tmp",
    "/proc",
    "/sys",
    "/dev",
    "/run",
];

/// Hostname written into images.
pub const HOSTNAME: &str = "vmbuild";

/// The shell command of the customize hook (run by mmdebstrap with the
/// tree as `$1`).
pub fn customize_hook() -> String {
    format!(
        "chroot \"$1\" /bin/sh -c 'mkdir -p {} && chmod 1777 /tmp && echo {HOSTNAME} > /etc/hostname \
         && rm -f /etc/resolv.conf'",
        MOUNT_POINTS.join(" ")
    )
}

/// mmdebstrap's arguments to build `spec` into the directory `target`.
pub fn mmdebstrap_args(spec: &EnvSpec, target: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--variant=apt".into(),
        "--mode=unshare".into(),
        "--format=directory".into(),
        format!("--architectures={}", spec.architecture).into(),
    ];
    a.extend(
        SLIM_DPKG_OPTIONS
            .iter()
            .map(|o| format!("--dpkgopt={o}").into()),
    );
    a.push(format!("--customize-hook={}", customize_hook()).into());
    if !spec.packages.is_empty() {
        a.push(format!("--include={}", spec.packages.join(",")).into());
    }
    a.push("--".into());
    a.push(spec.suite.clone().into());
    a.push(target.into());
    if let Some(m) = &spec.mirror {
        a.push(m.into());
    }
    a
}

/// Packages apt said it cannot find: `name`, or `name=version` for a
/// missing version.
pub fn parse_unknown_packages(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        let l = l.trim();
        let found = if let Some(p) = l.strip_prefix("E: Unable to locate package ") {
            Some(p.trim().to_string())
        } else if let Some(rest) = l.strip_prefix("E: Package '") {
            rest.strip_suffix("' has no installation candidate")
                .map(str::to_string)
        } else if let Some(rest) = l.strip_prefix("E: Version '") {
            rest.strip_suffix("' was not found")
                .and_then(|r| r.split_once("' for '"))
                .map(|(v, p)| format!("{p}={v}"))
        } else {
            None
        };
        if let Some(p) = found {
            if !p.is_empty() && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// The lines worth showing from a failed tool's output: its last few
/// `E:` lines (without mmdebstrap's closing "failed to run"), else its
/// last lines.
pub fn error_summary(tail: &[String]) -> String {
    let errors: Vec<&str> = tail
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("E: ") && !l.ends_with("mmdebstrap failed to run"))
        .collect();
    let pick: Vec<&str> = if errors.is_empty() {
        let all: Vec<&str> = tail.iter().map(|l| l.trim()).collect();
        all[all.len().saturating_sub(5)..].to_vec()
    } else {
        errors[errors.len().saturating_sub(3)..].to_vec()
    };
    if pick.is_empty() {
        "no output".into()
    } else {
        pick.join(" / ")
    }
}

/// Turn a failed mmdebstrap run into the most specific error.
pub(crate) fn mmdebstrap_failure(fin: &Finished, spec: &EnvSpec) -> ImageError {
    let unknown = parse_unknown_packages(&fin.tail);
    if !unknown.is_empty() {
        return ImageError::UnknownPackage {
            name: unknown.join(", "),
            suite: spec.suite.clone(),
        };
    }
    let network = fin.tail.iter().any(|l| {
        [
            "Failed to fetch",
            "Could not resolve",
            "Temporary failure resolving",
            "Could not connect",
        ]
        .iter()
        .any(|p| l.contains(p))
    });
    tracing::debug!(command = %fin.command, "mmdebstrap failed");
    ImageError::ImageBuildFailed {
        // The full command line (hook, dpkg options) is in the debug log.
        command: format!(
            "mmdebstrap {}{}",
            spec.suite,
            spec.mirror
                .as_deref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default()
        ),
        status: fin.status.clone(),
        output: error_summary(&fin.tail),
        hint: if network {
            "check network access to the Debian mirror (and http_proxy if one is needed)"
        } else if fin
            .tail
            .iter()
            .any(|l| l.contains("subuid") || l.contains("subgid"))
        {
            "as a normal user mmdebstrap needs entries for you in /etc/subuid and /etc/subgid \
             (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER), or run as root"
        } else {
            "check that the suite and architecture exist on the mirror, and the free space in \
             the cache directory"
        },
    }
}

/// Builds images with mmdebstrap and mkfs (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MmdebstrapBuilder {
    /// The image format; `None` (the default) picks EROFS when
    /// `mkfs.erofs` is installed, else ext4.
    pub format: Option<ImageFormat>,
}

impl EnvBuilder for MmdebstrapBuilder {
    fn build(
        &self,
        spec: &EnvSpec,
        key: &str,
        out: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<BuildOutput, ImageError> {
        let mmdebstrap = find_tool("mmdebstrap").ok_or(ImageError::ToolMissing {
            tool: "mmdebstrap",
            package: "mmdebstrap",
            purpose: "build environment images (environment.contents)",
        })?;
        let packer = Packer::find(self.format)?;
        let root = rustix::process::geteuid().is_root();
        let scratch = Scratch::new(out, &mmdebstrap, root)?;
        let tree = scratch.dir.join("rootfs");

        let what = if spec.packages.is_empty() {
            "no extra packages".to_string()
        } else {
            spec.packages.join(" ")
        };
        progress(&format!(
            "image {}: mmdebstrap {} {}: {what}",
            short(key),
            spec.suite,
            spec.architecture
        ));
        let fin = run_streaming(&mmdebstrap, &mmdebstrap_args(spec, &tree), progress)?;
        if !fin.ok {
            return Err(mmdebstrap_failure(&fin, spec));
        }

        let usage = tree_usage(&tree)?;
        progress(&format!(
            "image {}: packing {} ({} MiB of files)",
            short(key),
            packer.format.fs_type(),
            usage.bytes.div_ceil(1024 * 1024)
        ));
        let packed = scratch.dir.join(packer.format.file_name());
        let (program, args) =
            scratch.wrap(&packer.program, packer.args(&tree, &packed, key, usage));
        let fin = run_streaming(&program, &args, &mut |l| tracing::debug!(line = l, "mkfs"))?;
        if !fin.ok {
            return Err(ImageError::ImageBuildFailed {
                command: fin.command,
                status: fin.status,
                output: error_summary(&fin.tail),
                hint: "check the free space in the cache directory",
            });
        }
        let image = out.join(packer.format.file_name());
        std::fs::rename(&packed, &image).map_err(io_err(format!(
            "moving {} to {}",
            packed.display(),
            image.display()
        )))?;
        drop(scratch);

        let mut tools = BTreeMap::new();
        if let Some(v) = first_line(&mmdebstrap, &["--version"]) {
            tools.insert("mmdebstrap".to_string(), v);
        }
        if let Some(v) = packer.version() {
            tools.insert("mkfs".to_string(), v);
        }
        Ok(BuildOutput {
            format: packer.format,
            rootfs_bytes: usage.bytes,
            tools,
        })
    }
}

/// The build's work dir inside the entry's temp dir, removed on drop (also
/// on errors, before the entry's temp dir itself is removed).
struct Scratch {
    dir: PathBuf,
    /// `None` as root; else mmdebstrap, whose `--unshare-helper` runs
    /// commands where the tree's subordinate uids are root.
    helper: Option<PathBuf>,
}

impl Scratch {
    fn new(out: &Path, mmdebstrap: &Path, root: bool) -> Result<Scratch, ImageError> {
        let dir = out.join("work");
        std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        if root {
            return Ok(Scratch { dir, helper: None });
        }
        // The subordinate root must reach and write the work dir; the
        // entry's temp dir is private (0700) and only gets o+x, so nobody
        // else can list it to find the work dir.
        for (path, mode) in [(out, 0o711), (dir.as_path(), 0o777)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
        Ok(Scratch {
            dir,
            helper: Some(mmdebstrap.to_path_buf()),
        })
    }

    /// `program args`, run through the unshare helper when not root.
    fn wrap(&self, program: &Path, args: Vec<OsString>) -> (PathBuf, Vec<OsString>) {
        match &self.helper {
            None => (program.to_path_buf(), args),
            Some(h) => {
                let mut a: Vec<OsString> = vec!["--unshare-helper".into(), program.into()];
                a.extend(args);
                (h.clone(), a)
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.dir, self.helper.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn argv_default_mirror_no_packages() {
        let spec = EnvSpec {
            packages: vec![],
            suite: "bookworm".into(),
            mirror: None,
            architecture: "amd64".into(),
        };
        let a = strs(&mmdebstrap_args(
            &spec,
            Path::new("/c/images/.tmp-k#1/work/rootfs"),
        ));
        assert_eq!(
            &a[..4],
            [
                "--variant=apt",
                "--mode=unshare",
                "--format=directory",
                "--architectures=amd64"
            ]
        );
        assert!(a.contains(&"--dpkgopt=path-exclude=/usr/share/doc/*".to_string()));
        assert!(a.contains(&"--dpkgopt=path-include=/usr/share/doc/*/copyright".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--include")));
        assert_eq!(
            &a[a.len() - 3..],
            ["--", "bookworm", "/c/images/.tmp-k#1/work/rootfs"]
        );
        let hook = a
            .iter()
            .find(|x| x.starts_with("--customize-hook="))
            .unwrap();
        for m in MOUNT_POINTS {
            assert!(hook.contains(m), "{m}");
        }
        assert!(hook.starts_with("--customize-hook=chroot \"$1\" /bin/sh -c '"));
    }

    #[test]
    fn argv_with_packages_and_mirror() {
        let spec = EnvSpec {
            packages: vec!["python3".into(), "python3-pip".into()],
            suite: "trixie".into(),
            mirror: Some("http://mirror.example/debian".into()),
            architecture: "arm64".into(),
        };
        let a = strs(&mmdebstrap_args(&spec, Path::new("/t")));
        assert!(a.contains(&"--include=python3,python3-pip".to_string()));
        assert!(a.contains(&"--architectures=arm64".to_string()));
        assert_eq!(
            &a[a.len() - 4..],
            ["--", "trixie", "/t", "http://mirror.example/debian"]
        );
    }

    #[test]
    fn hook_script_runs_in_sh() {
        // The hook is valid shell that makes the mount points: run it on a
        // fake tree with a `chroot` that just prefixes paths.
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/resolv.conf"), "nameserver 1.1.1.1").unwrap();
        // A fake `chroot ROOT /bin/sh -c SCRIPT` (a shell function, which
        // wins over PATH): run SCRIPT with its absolute paths under ROOT.
        let fake_chroot = "chroot() { root=$1; shift 3; \
                           s=$(printf '%s' \"$1\" | sed \"s# /# $root/#g\"); /bin/sh -c \"$s\"; }";
        let st = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{fake_chroot}\n{}", customize_hook()))
            .arg("hook")
            .arg(&tree)
            .status()
            .unwrap();
        assert!(st.success());
        for m in MOUNT_POINTS {
            assert!(tree.join(&m[1..]).is_dir(), "{m}");
        }
        let tmp_mode = std::fs::metadata(tree.join("tmp"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(tmp_mode & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read_to_string(tree.join("etc/hostname")).unwrap(),
            "vmbuild\n"
        );
        assert!(!tree.join("etc/resolv.conf").exists());
    }

    #[test]
    fn unknown_packages_from_apt_output() {
        let out = lines(
            "I: installing remaining packages inside the chroot...\n\
             Reading package lists...\n\
             Package python3 is not available, but is referred to by another package.\n\
             E: Unable to locate package nosuchpkg-xyz\n\
             E: Version '0.0.1' for 'python3' was not found\n\
             E: Package 'oldpkg' has no installation candidate\n\
             E: Unable to locate package nosuchpkg-xyz\n\
             E: setup failed: E: apt-get ... install hello nosuchpkg-xyz python3=0.0.1 failed\n\
             E: mmdebstrap failed to run",
        );
        assert_eq!(
            parse_unknown_packages(&out),
            ["nosuchpkg-xyz", "python3=0.0.1", "oldpkg"]
        );
        let fin = Finished {
            command: "mmdebstrap ...".into(),
            ok: false,
            status: "exit status: 25".into(),
            tail: out,
        };
        let spec = EnvSpec::new(["nosuchpkg-xyz"]);
        match mmdebstrap_failure(&fin, &spec) {
            ImageError::UnknownPackage { name, suite } => {
                assert_eq!(name, "nosuchpkg-xyz, python3=0.0.1, oldpkg");
                assert_eq!(suite, "bookworm");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn network_failure_keeps_the_error_lines() {
        let out = lines(
            "I: running apt-get update...\n\
             Err:1 http://127.0.0.1:9/debian bookworm InRelease\n\
             \x20 Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\n\
             E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect\n\
             E: Some index files failed to download.\n\
             E: apt-get update --error-on=any failed\n\
             I: main() received signal PIPE: waiting for setup...\n\
             E: mmdebstrap failed to run",
        );
        assert!(parse_unknown_packages(&out).is_empty());
        let fin = Finished {
            command: "mmdebstrap x".into(),
            ok: false,
            status: "exit status: 25".into(),
            tail: out,
        };
        let e = mmdebstrap_failure(&fin, &EnvSpec::new(Vec::<String>::new()));
        let msg = e.to_string();
        assert!(
            matches!(&e, ImageError::ImageBuildFailed { command, .. } if command == "mmdebstrap bookworm"),
            "{e:?}"
        );
        assert!(
            msg.contains("E: Failed to fetch http://127.0.0.1:9"),
            "{msg}"
        );
        assert!(
            msg.contains("apt-get update --error-on=any failed"),
            "{msg}"
        );
        assert!(!msg.contains("failed to run"), "{msg}");
        assert!(msg.contains("network access"), "{msg}");
    }

    #[test]
    fn summary_without_error_lines_is_the_last_lines() {
        let out = lines("a\nb\nc\nd\ne\nf\ng");
        assert_eq!(error_summary(&out), "c / d / e / f / g");
        assert_eq!(error_summary(&[]), "no output");
    }

    #[test]
    fn wrap_through_helper_when_not_root() {
        let s = Scratch {
            dir: PathBuf::from("/nonexistent/work"),
            helper: Some("/usr/bin/mmdebstrap".into()),
        };
        let (p, a) = s.wrap(Path::new("/usr/bin/mkfs.erofs"), vec!["x".into()]);
        assert_eq!(p, Path::new("/usr/bin/mmdebstrap"));
        assert_eq!(strs(&a), ["--unshare-helper", "/usr/bin/mkfs.erofs", "x"]);
        let s = Scratch {
            dir: PathBuf::from("/nonexistent/work"),
            helper: None,
        };
        let (p, a) = s.wrap(Path::new("/usr/bin/mkfs.erofs"), vec!["x".into()]);
        assert_eq!(
            (p.as_path(), strs(&a)),
            (Path::new("/usr/bin/mkfs.erofs"), vec!["x".into()])
        );
    }
}
