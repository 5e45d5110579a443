//! Where virtiofsd is looked for, in which order.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::virtiofsd::VirtiofsdError;

/// Directory holding `virtiofsd`; when set, the only place looked at.
pub const VIRTIOFS_PATH_ENV: &str = "QEMU_VIRTIOFS_PATH";

const BINARY: &str = "virtiofsd";

/// The host operating system, which decides the search order.
pub use crate::HostOs;

/// The inputs of the lookup, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupEnv {
    pub os: HostOs,
    /// Value of `QEMU_VIRTIOFS_PATH` (unset and empty mean the same).
    pub virtiofs_path: Option<OsString>,
    /// Value of `PATH`.
    pub path: Option<OsString>,
}

impl LookupEnv {
    /// The lookup inputs of this process.
    pub fn from_process() -> Self {
        LookupEnv {
            os: HostOs::current(),
            virtiofs_path: std::env::var_os(VIRTIOFS_PATH_ENV),
            path: std::env::var_os("PATH"),
        }
    }
}

/// Finds virtiofsd.
///
/// - `QEMU_VIRTIOFS_PATH` set and non-empty: `$QEMU_VIRTIOFS_PATH/virtiofsd`
///   or an error naming that path; nothing else is tried.
/// - Linux: `/usr/libexec/virtiofsd`, `/usr/lib/qemu/virtiofsd`, then each
///   absolute directory of `$PATH`.
/// - macOS: each absolute directory of `$PATH`, then
///   `/opt/homebrew/bin/virtiofsd`, `/usr/local/bin/virtiofsd`.
///
/// Empty and relative `$PATH` entries are skipped (they would depend on the
/// working directory). When nothing is found, the error lists every place
/// checked and how to install virtiofsd.
pub fn find_virtiofsd(
    env: &LookupEnv,
    is_executable: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, VirtiofsdError> {
    if let Some(dir) = env.virtiofs_path.as_ref().filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        let candidate = dir.join(BINARY);
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(VirtiofsdError::VirtiofsdNotInDir { dir, candidate })
        };
    }
    let searched = candidates(env);
    for c in &searched {
        if is_executable(c) {
            tracing::debug!(path = %c.display(), "found virtiofsd");
            return Ok(c.clone());
        }
    }
    Err(VirtiofsdError::VirtiofsdNotFound {
        searched,
        install_hint: install_hint(env.os),
    })
}

/// [`find_virtiofsd`] with this process's environment and the real
/// filesystem.
pub fn find_virtiofsd_on_host() -> Result<PathBuf, VirtiofsdError> {
    find_virtiofsd(&LookupEnv::from_process(), &is_executable_file)
}

/// True when `path` (following symlinks) is a regular file with an execute
/// bit set.
pub fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn candidates(env: &LookupEnv) -> Vec<PathBuf> {
    let on_path: Vec<PathBuf> = env
        .path
        .as_ref()
        .map(|p| {
            std::env::split_paths(p)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(BINARY))
                .collect()
        })
        .unwrap_or_default();
    let fixed: &[&str] = match env.os {
        HostOs::Linux => &["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"],
        HostOs::MacOs => &["/opt/homebrew/bin/virtiofsd", "/usr/local/bin/virtiofsd"],
    };
    let fixed = fixed.iter().map(PathBuf::from);
    let mut all: Vec<PathBuf> = match env.os {
        HostOs::Linux => fixed.chain(on_path).collect(),
        HostOs::MacOs => on_path.into_iter().chain(fixed).collect(),
    };
    // The same file twice in the error message helps nobody.
    let mut seen = std::collections::HashSet::new();
    all.retain(|p| seen.insert(p.clone()));
    all
}

fn install_hint(os: HostOs) -> &'static str {
    match os {
        HostOs::Linux => {
            "install it: `apt-get install virtiofsd` (Debian 13, Ubuntu 24.04 and newer), \
             `apt-get install qemu-system-x86` (Debian 12: QEMU's C virtiofsd in /usr/lib/qemu), \
             or `cargo install virtiofsd` (needs libseccomp-dev and libcap-ng-dev)"
        }
        HostOs::MacOs => {
            "upstream virtiofsd does not run on macOS: install a macOS port of virtiofsd \
             (e.g. from a Homebrew tap) into /opt/homebrew/bin or your PATH"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory with a file named virtiofsd of the given mode.
    fn fake_dir(root: &Path, name: &str, mode: Option<u32>) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(mode) = mode {
            let bin = dir.join(BINARY);
            std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    fn path_of(dirs: &[&Path]) -> Option<OsString> {
        Some(std::env::join_paths(dirs).unwrap())
    }

    /// Only files under `root` count, so the host's real virtiofsd (e.g.
    /// /usr/lib/qemu/virtiofsd) cannot leak into a test.
    fn only_under(root: &Path) -> impl Fn(&Path) -> bool + '_ {
        move |p: &Path| p.starts_with(root) && is_executable_file(p)
    }

    #[test]
    fn env_dir_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let a = fake_dir(tmp.path(), "a", Some(0o755));
        let b = fake_dir(tmp.path(), "b", Some(0o755));
        let env = LookupEnv {
            os: HostOs::Linux,
            virtiofs_path: Some(a.clone().into()),
            path: path_of(&[&b]),
        };
        assert_eq!(
            find_virtiofsd(&env, &only_under(tmp.path())).unwrap(),
            a.join(BINARY)
        );
    }

    #[test]
    fn env_dir_without_binary_is_an_error_without_fallthrough() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = fake_dir(tmp.path(), "empty", None);
        let noexec = fake_dir(tmp.path(), "noexec", Some(0o644));
        let good = fake_dir(tmp.path(), "good", Some(0o755));
        for dir in [&empty, &noexec] {
            let env = LookupEnv {
                os: HostOs::Linux,
                virtiofs_path: Some(dir.clone().into()),
                path: path_of(&[&good]),
            };
            let err = find_virtiofsd(&env, &only_under(tmp.path())).unwrap_err();
            assert!(
                matches!(err, VirtiofsdError::VirtiofsdNotInDir { .. }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&dir.join(BINARY).display().to_string()),
                "{msg}"
            );
            assert!(msg.contains("QEMU_VIRTIOFS_PATH"), "{msg}");
        }
    }

    #[test]
    fn env_pointing_at_the_binary_itself_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let d = fake_dir(tmp.path(), "d", Some(0o755));
        let env = LookupEnv {
            os: HostOs::Linux,
            virtiofs_path: Some(d.join(BINARY).into()),
            path: None,
        };
        let err = find_virtiofsd(&env, &only_under(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("not the binary itself"), "{err}");
    }

    #[test]
    fn empty_env_value_means_unset() {
        let tmp = tempfile::tempdir().unwrap();
        let good = fake_dir(tmp.path(), "good", Some(0o755));
        let env = LookupEnv {
            os: HostOs::Linux,
            virtiofs_path: Some(OsString::new()),
            path: path_of(&[&good]),
        };
        assert_eq!(
            find_virtiofsd(&env, &only_under(tmp.path())).unwrap(),
            good.join(BINARY)
        );
    }

    #[test]
    fn linux_order_is_libexec_then_lib_qemu_then_path() {
        let env = LookupEnv {
            os: HostOs::Linux,
            virtiofs_path: None,
            path: Some("/p1:/p2".into()),
        };
        let order = candidates(&env);
        assert_eq!(
            order,
            [
                "/usr/libexec/virtiofsd",
                "/usr/lib/qemu/virtiofsd",
                "/p1/virtiofsd",
                "/p2/virtiofsd"
            ]
            .map(PathBuf::from)
        );
        // The first executable one wins, with a fake predicate.
        let pick = |want: &'static str| {
            find_virtiofsd(&env, &move |p: &Path| {
                p == Path::new(want) || p == Path::new("/p2/virtiofsd")
            })
            .unwrap()
        };
        assert_eq!(
            pick("/usr/libexec/virtiofsd"),
            Path::new("/usr/libexec/virtiofsd")
        );
        assert_eq!(
            pick("/usr/lib/qemu/virtiofsd"),
            Path::new("/usr/lib/qemu/virtiofsd")
        );
        assert_eq!(pick("/nothing"), Path::new("/p2/virtiofsd"));
    }

    #[test]
    fn macos_order_is_path_then_homebrew_then_usr_local() {
        let env = LookupEnv {
            os: HostOs::MacOs,
            virtiofs_path: None,
            path: Some("/p1".into()),
        };
        assert_eq!(
            candidates(&env),
            [
                "/p1/virtiofsd",
                "/opt/homebrew/bin/virtiofsd",
                "/usr/local/bin/virtiofsd"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn path_search_with_real_files_skips_non_executables_and_relative_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let noexec = fake_dir(tmp.path(), "noexec", Some(0o644));
        let missing = tmp.path().join("missing");
        let good = fake_dir(tmp.path(), "good", Some(0o700));
        let mut p = OsString::from("relative:");
        p.push(std::env::join_paths([&noexec, &missing, &good]).unwrap());
        let env = LookupEnv {
            os: HostOs::Linux,
            virtiofs_path: None,
            path: Some(p),
        };
        assert!(!candidates(&env).iter().any(|c| c.is_relative()));
        assert_eq!(
            find_virtiofsd(&env, &only_under(tmp.path())).unwrap(),
            good.join(BINARY)
        );
    }

    #[test]
    fn a_directory_named_virtiofsd_is_not_executable() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir_all(d.join(BINARY)).unwrap();
        assert!(!is_executable_file(&d.join(BINARY)));
    }

    #[test]
    fn not_found_lists_every_place_and_how_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let a = fake_dir(tmp.path(), "a", None);
        let env = LookupEnv {
            os: HostOs::Linux,
            virtiofs_path: None,
            path: path_of(&[&a, &a]),
        };
        let err = find_virtiofsd(&env, &only_under(tmp.path())).unwrap_err();
        let msg = err.to_string();
        for place in ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"] {
            assert!(msg.contains(place), "{msg}");
        }
        let in_a = a.join(BINARY).display().to_string();
        assert_eq!(msg.matches(&in_a).count(), 1, "deduplicated: {msg}");
        assert!(msg.contains("QEMU_VIRTIOFS_PATH"), "{msg}");
        assert!(msg.contains("apt-get install"), "{msg}");
        assert!(msg.contains("cargo install virtiofsd"), "{msg}");

        let mac = LookupEnv {
            os: HostOs::MacOs,
            virtiofs_path: None,
            path: None,
        };
        let msg = find_virtiofsd(&mac, &|_: &Path| false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/opt/homebrew/bin/virtiofsd"), "{msg}");
        assert!(msg.contains("macOS"), "{msg}");
    }
}
