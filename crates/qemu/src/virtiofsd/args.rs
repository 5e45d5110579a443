//! The virtiofsd command line, per flavour (pure).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::virtiofsd::Flavor;
use crate::virtiofsd::VirtiofsdError;

/// How virtiofsd isolates itself from the rest of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Mount/pid/net namespaces and `pivot_root` into the shared dir; as a
    /// non-root user (Rust flavour only) inside a user namespace.
    Namespace,
    /// `chroot` into the shared dir (root only).
    Chroot,
    /// No isolation (Rust flavour only).
    None,
}

impl Sandbox {
    /// The word both flavours use for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sandbox::Namespace => "namespace",
            Sandbox::Chroot => "chroot",
            Sandbox::None => "none",
        }
    }
}

impl fmt::Display for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The safest sandbox `flavor` can use, or `None` when it cannot run at all
/// for this user (the C flavour needs root).
///
/// `namespace` is the strongest and works for both flavours as root and for
/// the Rust flavour as an unprivileged user (through a user namespace);
/// `chroot` is root-only in both.
pub fn default_sandbox(flavor: Flavor, running_as_root: bool) -> Option<Sandbox> {
    match (flavor, running_as_root) {
        (_, true) => Some(Sandbox::Namespace),
        (Flavor::Rust, false) => Some(Sandbox::Namespace),
        (Flavor::LegacyC, false) => None,
    }
}

/// What virtiofsd should serve and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtiofsdArgs {
    /// The vhost-user socket QEMU connects to (its parent must exist).
    pub socket_path: PathBuf,
    /// The host directory shared read-write.
    pub shared_dir: PathBuf,
    pub sandbox: Sandbox,
    /// `--rlimit-nofile` (see [`nofile_for`]).
    pub rlimit_nofile: u64,
}

/// The descriptor limit both flavours are given: virtiofsd keeps a
/// descriptor per inode the guest has looked up, so a cache of hundreds of
/// thousands of files (node_modules, ~/.m2) needs that many. Spelt out
/// rather than left to each flavour's default (1,000,000 today, capped by
/// `fs.nr_open`).
pub const RLIMIT_NOFILE: u64 = 1_000_000;

/// The `--rlimit-nofile` to ask for: [`RLIMIT_NOFILE`] when vmbuild may
/// raise the hard limit (`CAP_SYS_RESOURCE`; it raises it for virtiofsd
/// before exec, as the Rust flavour fails with EPERM when it cannot), else
/// what the current hard limit allows.
pub fn nofile_for(can_raise: bool, current_hard: u64) -> u64 {
    if can_raise {
        RLIMIT_NOFILE
    } else {
        RLIMIT_NOFILE.min(current_hard)
    }
}

/// The argv (without the program) for `flavor`:
///
/// - Rust: `--socket-path=S --shared-dir=D --cache=auto --sandbox=X
///   --seccomp=kill --rlimit-nofile=N`
/// - C: `--socket-path=S -o source=D -o cache=auto -o sandbox=X -o flock
///   --rlimit-nofile=N`, with `\` and `,` in `D` backslash-escaped (the C
///   option parser splits `-o` values on commas). The C daemon's seccomp
///   filter is always on and kills.
///
/// `cache=auto` is both flavours' default, spelt out so the guest's
/// caching does not change under us. Submount announcement and thread pool
/// size keep each flavour's default.
///
/// Locks: `-o flock` makes the C daemon take a guest's `flock(2)` on its
/// own descriptor of the host file, so the guest and host processes
/// exclude each other (without it the guest kernel locks locally and the
/// host never sees it). POSIX (`fcntl`) locks stay guest-local on purpose:
/// the C daemon's `-o posix_lock` answers a waiting lock (`F_SETLKW`) with
/// EOPNOTSUPP, which would break every guest program that waits for a lock.
/// The Rust virtiofsd (1.14) implements no FUSE locking at all (its
/// getlk/setlk answer ENOSYS and `-o flock`/`-o posix_lock` are refused),
/// so with it every lock stays guest-local: see [`LOCKS_NOT_SHARED`].
pub fn build_args(flavor: Flavor, a: &VirtiofsdArgs) -> Result<Vec<OsString>, VirtiofsdError> {
    if !flavor.sandboxes().contains(&a.sandbox) {
        return Err(VirtiofsdError::UnsupportedSandbox {
            flavor,
            sandbox: a.sandbox,
        });
    }
    let socket = joined("--socket-path=", a.socket_path.as_os_str());
    Ok(match flavor {
        Flavor::Rust => vec![
            socket,
            joined("--shared-dir=", a.shared_dir.as_os_str()),
            "--cache=auto".into(),
            format!("--sandbox={}", a.sandbox).into(),
            "--seccomp=kill".into(),
            format!("--rlimit-nofile={}", a.rlimit_nofile).into(),
        ],
        Flavor::LegacyC => vec![
            socket,
            "-o".into(),
            joined("source=", &escape_fuse_opt(a.shared_dir.as_os_str())),
            "-o".into(),
            "cache=auto".into(),
            "-o".into(),
            format!("sandbox={}", a.sandbox).into(),
            "-o".into(),
            "flock".into(),
            format!("--rlimit-nofile={}", a.rlimit_nofile).into(),
        ],
    })
}

/// Said when the flavour in use cannot share locks with the host.
pub const LOCKS_NOT_SHARED: &str = "the Rust virtiofsd does not pass file locks to the host: \
    flock/fcntl locks taken in the guest only exclude other guest processes, and host locks \
    do not stop the guest; for host-visible flock use QEMU's C virtiofsd (QEMU_VIRTIOFS_PATH)";

fn joined(prefix: &str, value: &OsStr) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(value);
    s
}

/// Escapes `\` and `,` for a FUSE `-o` option value.
fn escape_fuse_opt(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b == b'\\' || b == b',' {
            out.push(b'\\');
        }
        out.push(b);
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sandbox: Sandbox) -> VirtiofsdArgs {
        VirtiofsdArgs {
            socket_path: "/run/vm/fs.sock".into(),
            shared_dir: "/home/u/cache".into(),
            sandbox,
            rlimit_nofile: RLIMIT_NOFILE,
        }
    }

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn rust_argv() {
        assert_eq!(
            strs(build_args(Flavor::Rust, &args(Sandbox::Namespace)).unwrap()),
            [
                "--socket-path=/run/vm/fs.sock",
                "--shared-dir=/home/u/cache",
                "--cache=auto",
                "--sandbox=namespace",
                "--seccomp=kill",
                "--rlimit-nofile=1000000"
            ]
        );
        let none = strs(build_args(Flavor::Rust, &args(Sandbox::None)).unwrap());
        assert!(none.contains(&"--sandbox=none".to_string()), "{none:?}");
        // 1.14 refuses `-o flock`/`-o posix_lock`: nothing lock-related.
        assert!(none.iter().all(|a| !a.contains("lock")), "{none:?}");
    }

    #[test]
    fn c_argv() {
        assert_eq!(
            strs(build_args(Flavor::LegacyC, &args(Sandbox::Chroot)).unwrap()),
            [
                "--socket-path=/run/vm/fs.sock",
                "-o",
                "source=/home/u/cache",
                "-o",
                "cache=auto",
                "-o",
                "sandbox=chroot",
                "-o",
                "flock",
                "--rlimit-nofile=1000000"
            ]
        );
    }

    #[test]
    fn c_shares_flock_but_not_posix_locks() {
        let c = strs(build_args(Flavor::LegacyC, &args(Sandbox::Namespace)).unwrap());
        assert!(c.windows(2).any(|w| w == ["-o", "flock"]), "{c:?}");
        assert!(!c.iter().any(|a| a.contains("posix_lock")), "{c:?}");
    }

    #[test]
    fn c_has_no_sandbox_none() {
        let err = build_args(Flavor::LegacyC, &args(Sandbox::None)).unwrap_err();
        assert!(
            matches!(err, VirtiofsdError::UnsupportedSandbox { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("namespace, chroot"), "{msg}");
    }

    #[test]
    fn commas_and_backslashes_are_escaped_for_c_only() {
        let mut a = args(Sandbox::Namespace);
        a.shared_dir = r"/x/a,b\c".into();
        let c = strs(build_args(Flavor::LegacyC, &a).unwrap());
        assert_eq!(c[2], r"source=/x/a\,b\\c");
        let r = strs(build_args(Flavor::Rust, &a).unwrap());
        assert_eq!(r[1], r"--shared-dir=/x/a,b\c");
    }

    #[test]
    fn non_utf8_paths_pass_through() {
        let mut a = args(Sandbox::Namespace);
        a.shared_dir = PathBuf::from(OsString::from_vec(b"/x/\xff".to_vec()));
        let r = build_args(Flavor::Rust, &a).unwrap();
        assert_eq!(r[1].as_bytes(), b"--shared-dir=/x/\xff");
    }

    #[test]
    fn nofile_is_the_full_million_as_root_else_what_the_hard_limit_allows() {
        assert_eq!(nofile_for(true, 20_000), 1_000_000);
        assert_eq!(nofile_for(false, 20_000), 20_000);
        assert_eq!(nofile_for(false, u64::MAX), 1_000_000);
    }

    #[test]
    fn sandbox_defaults() {
        assert_eq!(
            default_sandbox(Flavor::Rust, true),
            Some(Sandbox::Namespace)
        );
        assert_eq!(
            default_sandbox(Flavor::LegacyC, true),
            Some(Sandbox::Namespace)
        );
        assert_eq!(
            default_sandbox(Flavor::Rust, false),
            Some(Sandbox::Namespace)
        );
        assert_eq!(default_sandbox(Flavor::LegacyC, false), None);
    }
}
