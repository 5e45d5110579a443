//! The read-only view of the host root (pure, given a directory lister).
//!
//! Every top-level host entry is bound read-only onto the sandbox's tmpfs
//! root, except the paths the sandbox provides itself ([`OWNED`]). Where a
//! cache volume's target lies under a host entry (`/root/go/pkg/mod` under
//! `/root`), bubblewrap could not create its mount point inside a
//! read-only bind; so that entry is not bound whole: it becomes a plain
//! directory of the tmpfs root and its own entries are bound one by one,
//! recursively, only along the target's path (`/root/.bashrc`, ...,
//! `/root/go/src`, `/root/go/pkg/cache`). The rest of the host stays
//! visible read-only and no host path is ever written: the directories on
//! the way are the tmpfs's, which `--remount-ro /` makes read-only later.
//! The owned paths' ancestors (`/var`) are mirrored the same way.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::args::push;
use crate::error::RunError;

/// The paths the sandbox provides itself; the host's are never bound there.
pub(crate) const OWNED: &[&str] = &[
    "/dev",
    "/proc",
    "/tmp",
    "/run",
    "/home",
    "/var/tmp",
    "/var/cache",
];

/// What a host directory entry is, for [`mirror_host_root`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEntry {
    Dir,
    File,
    Symlink(PathBuf),
    /// Socket, FIFO, device: not bound.
    Other,
}

/// The entries of a host directory, sorted by name.
pub(crate) fn list_host_dir(dir: &Path) -> std::io::Result<Vec<(OsString, HostEntry)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            match fs::read_link(&path) {
                Ok(t) => HostEntry::Symlink(t),
                Err(_) => continue,
            }
        } else if ft.is_dir() {
            HostEntry::Dir
        } else if ft.is_file() {
            HostEntry::File
        } else {
            HostEntry::Other
        };
        out.push((entry.file_name(), kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

type Lister<'a> = dyn Fn(&Path) -> std::io::Result<Vec<(OsString, HostEntry)>> + 'a;

/// bubblewrap options that mirror the host root read-only, leaving out the
/// [`OWNED`] paths and the volume `targets` (absolute, normalised), and
/// descending into their ancestors (e.g. `/var`, `/root`).
pub(crate) fn mirror_host_root(
    list: &Lister<'_>,
    targets: &[&str],
) -> Result<Vec<OsString>, RunError> {
    let mut args = Vec::new();
    mirror_dir(Path::new("/"), list, targets, &mut args)?;
    Ok(args)
}

fn mirror_dir(
    dir: &Path,
    list: &Lister<'_>,
    targets: &[&str],
    args: &mut Vec<OsString>,
) -> Result<(), RunError> {
    let entries = list(dir)
        .map_err(|e| RunError::io(format!("listing {} to build the sandbox", dir.display()), e))?;
    for (name, kind) in entries {
        let path = dir.join(&name);
        let at = |paths: &[&str]| paths.iter().any(|o| Path::new(o) == path);
        if at(OWNED) || at(targets) {
            // The sandbox's own, or where a volume is bound.
            continue;
        }
        let target_under = targets.iter().find(|t| Path::new(t).starts_with(&path));
        if target_under.is_some() || OWNED.iter().any(|o| Path::new(o).starts_with(&path)) {
            // An ancestor: the sandbox makes it a real directory and binds
            // the host's entries in it one by one.
            match (&kind, target_under) {
                (HostEntry::Dir, _) => mirror_dir(&path, list, targets, args)?,
                (_, Some(t)) => return Err(not_a_dir(t, &path, &kind)),
                (_, None) => {}
            }
            continue;
        }
        match kind {
            HostEntry::Dir | HostEntry::File => push(
                args,
                ["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()],
            ),
            HostEntry::Symlink(target) => push(
                args,
                ["--symlink".as_ref(), target.as_os_str(), path.as_os_str()],
            ),
            HostEntry::Other => {
                tracing::debug!(path = %path.display(), "not binding a special file into the sandbox")
            }
        }
    }
    Ok(())
}

/// A volume target under a host path that is not a directory.
fn not_a_dir(target: &str, path: &Path, kind: &HostEntry) -> RunError {
    let what = match kind {
        HostEntry::Symlink(to) => format!(
            "a symlink (to {}) on the host; give the target through the path it points to",
            to.display()
        ),
        _ => "not a directory on the host; choose another target".into(),
    };
    RunError::Flag {
        flag: "--cache".into(),
        why: format!(
            "target {target}: {} is {what} (the bubblewrap runner mounts volumes under the host's own directories)",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn fake_host(dir: &Path) -> std::io::Result<Vec<(OsString, HostEntry)>> {
        let e = |n: &str, k: HostEntry| (OsString::from(n), k);
        Ok(match dir.to_str().unwrap_or("") {
            "/" => vec![
                e("bin", HostEntry::Symlink("usr/bin".into())),
                e("dev", HostEntry::Dir),
                e("etc", HostEntry::Dir),
                e("home", HostEntry::Dir),
                e("proc", HostEntry::Dir),
                e("root", HostEntry::Dir),
                e("run", HostEntry::Dir),
                e("swap.sock", HostEntry::Other),
                e(".dockerenv", HostEntry::File),
                e("tmp", HostEntry::Dir),
                e("usr", HostEntry::Dir),
                e("var", HostEntry::Dir),
            ],
            "/var" => vec![
                e("cache", HostEntry::Dir),
                e("lib", HostEntry::Dir),
                e("run", HostEntry::Symlink("/run".into())),
                e("tmp", HostEntry::Dir),
            ],
            "/root" => vec![
                e(".bashrc", HostEntry::File),
                e(".profile", HostEntry::Symlink(".bashrc".into())),
                e("go", HostEntry::Dir),
            ],
            "/root/go" => vec![e("bin", HostEntry::Dir), e("pkg", HostEntry::Dir)],
            "/root/go/pkg" => vec![e("cache", HostEntry::Dir), e("mod", HostEntry::Dir)],
            other => panic!("listed {other}, which the mirror must not descend into"),
        })
    }

    /// The mirror with no volumes, in order.
    const PLAIN: [&str; 21] = [
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        "/etc",
        "/etc",
        "--ro-bind",
        "/root",
        "/root",
        "--ro-bind",
        "/.dockerenv",
        "/.dockerenv",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/var/lib",
        "/var/lib",
        "--symlink",
        "/run",
        "/var/run",
    ];

    #[test]
    fn mirror_binds_host_entries_read_only_except_owned_paths() {
        assert_eq!(strs(&mirror_host_root(&fake_host, &[]).unwrap()), PLAIN);
    }

    #[test]
    fn a_target_under_root_mirrors_only_along_its_path() {
        let got = strs(&mirror_host_root(&fake_host, &["/root/go/pkg/mod"]).unwrap());
        let root_part = [
            "--ro-bind",
            "/root/.bashrc",
            "/root/.bashrc",
            "--symlink",
            ".bashrc",
            "/root/.profile",
            "--ro-bind",
            "/root/go/bin",
            "/root/go/bin",
            "--ro-bind",
            "/root/go/pkg/cache",
            "/root/go/pkg/cache",
        ];
        let want: Vec<&str> = [&PLAIN[..6], &root_part[..], &PLAIN[9..]].concat();
        assert_eq!(got, want, "/root/go/pkg/mod itself is left for the volume");
        assert!(!got.iter().any(|a| a == "/root/go/pkg/mod"));
    }

    #[test]
    fn targets_under_owned_paths_or_new_top_level_dirs_change_nothing() {
        for t in ["/home/build/.npm", "/tmp/x", "/var/cache/apt", "/vtest"] {
            assert_eq!(
                strs(&mirror_host_root(&fake_host, &[t]).unwrap()),
                PLAIN,
                "{t}"
            );
        }
    }

    #[test]
    fn nested_targets_and_a_target_at_an_existing_entry() {
        let got = strs(&mirror_host_root(&fake_host, &["/root/go", "/root/go/pkg/mod"]).unwrap());
        // /root/go is the outer volume's: not mirrored, not descended.
        assert!(!got.iter().any(|a| a.starts_with("/root/go")), "{got:?}");
        assert!(got.iter().any(|a| a == "/root/.bashrc"));
        let got = strs(&mirror_host_root(&fake_host, &["/usr"]).unwrap());
        assert!(!got.iter().any(|a| a == "/usr"), "{got:?}");
    }

    #[test]
    fn a_target_through_a_host_symlink_is_refused() {
        let e = mirror_host_root(&fake_host, &["/bin/tools"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target /bin/tools: /bin is a symlink (to usr/bin) on the host"),
            "{e}"
        );
        let e = mirror_host_root(&fake_host, &["/.dockerenv/x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory on the host"), "{e}");
    }

    #[test]
    fn mirror_reports_an_unreadable_root() {
        let e = mirror_host_root(
            &|_| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("listing / to build the sandbox"),
            "{e}"
        );
    }
}
