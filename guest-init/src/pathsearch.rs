//! Resolving a command name through `PATH` the way execvp(3) and shells do,
//! using the command's own environment (not the init's).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{access, AccessFlags};

/// Search path when the command's environment has no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a candidate file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Executable,
    /// Exists but cannot be run (no x bit, or a directory).
    NotExecutable,
    Missing,
}

/// Probes the real filesystem.
pub fn probe_fs(path: &Path) -> Probe {
    match std::fs::metadata(path) {
        Err(_) => Probe::Missing,
        Ok(m) if m.is_file() && access(path, AccessFlags::X_OK).is_ok() => Probe::Executable,
        Ok(_) => Probe::NotExecutable,
    }
}

/// The value of the last `PATH` entry of an environment list.
pub fn env_path(env: &[(String, String)]) -> Option<&str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
}

/// Finds the file to execute for `argv0`. A name with a slash is used as is
/// (relative to `cwd`); otherwise each `PATH` entry is tried in order (an
/// empty entry means `cwd`). Errors like execvp: `EACCES` when only
/// non-executable candidates exist, `ENOENT` when none do.
pub fn resolve(
    argv0: &str,
    path_var: Option<&str>,
    cwd: &Path,
    probe: impl Fn(&Path) -> Probe,
) -> Result<PathBuf, Errno> {
    if argv0.is_empty() {
        return Err(Errno::ENOENT);
    }
    if argv0.contains('/') {
        return Ok(cwd.join(argv0));
    }
    let mut denied = false;
    for dir in path_var.unwrap_or(DEFAULT_PATH).split(':') {
        let candidate = cwd.join(dir).join(argv0);
        match probe(&candidate) {
            Probe::Executable => return Ok(candidate),
            Probe::NotExecutable => denied = true,
            Probe::Missing => {}
        }
    }
    Err(if denied { Errno::EACCES } else { Errno::ENOENT })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(files: &'static [(&'static str, Probe)]) -> impl Fn(&Path) -> Probe {
        move |p| {
            files
                .iter()
                .find(|(f, _)| Path::new(f) == p)
                .map(|(_, k)| *k)
                .unwrap_or(Probe::Missing)
        }
    }

    #[test]
    fn first_executable_in_path_order_wins() {
        let p = fake(&[
            ("/usr/bin/sh", Probe::Executable),
            ("/bin/sh", Probe::Executable),
        ]);
        assert_eq!(
            resolve("sh", Some("/bin:/usr/bin"), Path::new("/"), &p),
            Ok("/bin/sh".into())
        );
        assert_eq!(
            resolve("sh", Some("/usr/bin:/bin"), Path::new("/"), &p),
            Ok("/usr/bin/sh".into())
        );
    }

    #[test]
    fn non_executable_is_skipped_but_remembered() {
        let p = fake(&[
            ("/a/tool", Probe::NotExecutable),
            ("/b/tool", Probe::Executable),
        ]);
        assert_eq!(
            resolve("tool", Some("/a:/b"), Path::new("/"), &p),
            Ok("/b/tool".into())
        );
        assert_eq!(
            resolve("tool", Some("/a"), Path::new("/"), &p),
            Err(Errno::EACCES)
        );
        assert_eq!(
            resolve("nope", Some("/a:/b"), Path::new("/"), &p),
            Err(Errno::ENOENT)
        );
    }

    #[test]
    fn names_with_a_slash_skip_the_search_and_are_relative_to_cwd() {
        let p = fake(&[]);
        assert_eq!(
            resolve("/x/y", Some("/a"), Path::new("/w"), &p),
            Ok("/x/y".into())
        );
        assert_eq!(
            resolve("./build.sh", None, Path::new("/w"), &p),
            Ok("/w/./build.sh".into())
        );
    }

    #[test]
    fn empty_path_entry_means_cwd_and_missing_path_uses_default() {
        let p = fake(&[
            ("/w/tool", Probe::Executable),
            ("/usr/bin/cc", Probe::Executable),
        ]);
        assert_eq!(
            resolve("tool", Some("/a::/b"), Path::new("/w"), &p),
            Ok("/w/tool".into())
        );
        assert_eq!(
            resolve("cc", None, Path::new("/w"), &p),
            Ok("/usr/bin/cc".into())
        );
        assert_eq!(resolve("", None, Path::new("/w"), &p), Err(Errno::ENOENT));
    }

    #[test]
    fn env_path_takes_the_last_path_entry() {
        let env = vec![
            ("PATH".to_string(), "/a".to_string()),
            ("HOME".to_string(), "/h".to_string()),
            ("PATH".to_string(), "/b".to_string()),
        ];
        assert_eq!(env_path(&env), Some("/b"));
        assert_eq!(env_path(&[]), None);
    }

    #[test]
    fn probe_fs_tells_executables_from_plain_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let x = d.path().join("x");
        std::fs::write(&x, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(probe_fs(&x), Probe::NotExecutable);
        std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(probe_fs(&x), Probe::Executable);
        assert_eq!(probe_fs(d.path()), Probe::NotExecutable);
        assert_eq!(probe_fs(&d.path().join("nope")), Probe::Missing);
    }
}
