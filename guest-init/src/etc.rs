//! The few files in `/etc` of the root in use that the init owns:
//! `resolv.conf` (when the VM has a network), `hostname`, and a `hosts`
//! that resolves `localhost` (a Debian minbase rootfs has none).

use std::io;
use std::path::Path;

use crate::error::{InitError, Result};
use crate::mounts::mkdir_p;
use crate::root::GuestRoot;

/// `/etc/hosts` when the root has none.
pub const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Writes `/etc/resolv.conf` (replacing a file or a dangling link such as
/// systemd-resolved's) when `resolv` is given, `/etc/hostname` and a
/// `hosts` entry when `hostname` is given, and `/etc/hosts` when missing.
/// Returns what it wrote, for the log.
pub fn write_etc(
    root: &GuestRoot,
    hostname: Option<&str>,
    resolv: Option<&str>,
) -> Result<Vec<String>> {
    let mut wrote = Vec::new();
    let etc = root.host(Path::new("/etc"))?;
    mkdir_p(&etc)?;
    if let Some(text) = resolv {
        replace(&root.host_nofollow(Path::new("/etc/resolv.conf"))?, text)?;
        wrote.push("/etc/resolv.conf".to_string());
    }
    if let Some(h) = hostname {
        replace(
            &root.host_nofollow(Path::new("/etc/hostname"))?,
            &format!("{h}\n"),
        )?;
        wrote.push("/etc/hostname".to_string());
    }
    let hosts_path = root.host(Path::new("/etc/hosts"))?;
    let old = match std::fs::read_to_string(&hosts_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(InitError::io(
                format!("reading {}", hosts_path.display()),
                e,
            ))
        }
    };
    if let Some(new) = hosts(old.as_deref(), hostname) {
        replace(&hosts_path, &new)?;
        wrote.push("/etc/hosts".to_string());
    }
    Ok(wrote)
}

/// The new `/etc/hosts`, or `None` when `old` already does the job: the
/// default when there is none, plus `127.0.1.1 <hostname>` when the
/// hostname is not listed (Debian's convention).
pub fn hosts(old: Option<&str>, hostname: Option<&str>) -> Option<String> {
    let mut text = old.unwrap_or(DEFAULT_HOSTS).to_string();
    let listed = |name: &str| {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .any(|l| l.split_whitespace().skip(1).any(|n| n == name))
    };
    let add = hostname.filter(|h| !listed(h)).map(str::to_string);
    if old.is_some() && add.is_none() {
        return None;
    }
    if let Some(h) = add {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("127.0.1.1\t{h}\n"));
    }
    Some(text)
}

/// Replaces whatever is at `path` (file or symlink) with a new file.
fn replace(path: &Path, text: &str) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(InitError::io(format!("replacing {}", path.display()), e)),
    }
    std::fs::write(path, text).map_err(|e| InitError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_gets_localhost_and_the_hostname_once() {
        let new = hosts(None, Some("vmbuild")).unwrap();
        assert!(new.starts_with(DEFAULT_HOSTS), "{new}");
        assert!(new.ends_with("127.0.1.1\tvmbuild\n"), "{new}");
        assert_eq!(hosts(Some(&new), Some("vmbuild")), None, "already listed");
        assert_eq!(hosts(None, None).as_deref(), Some(DEFAULT_HOSTS));
        assert_eq!(hosts(Some("127.0.0.1 localhost\n"), None), None);
        // A name only in a comment does not count.
        let with_comment = hosts(Some("127.0.0.1 localhost # vm"), Some("vm")).unwrap();
        assert_eq!(with_comment, "127.0.0.1 localhost # vm\n127.0.1.1\tvm\n");
    }

    #[test]
    fn writes_into_the_root_replacing_links() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        // systemd-resolved style: an absolute link to a file that is not there.
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            etc.join("resolv.conf"),
        )
        .unwrap();
        std::fs::write(etc.join("hostname"), "buildhost\n").unwrap();
        let root = GuestRoot::at(d.path());
        let wrote = write_etc(&root, Some("vmbuild"), Some("nameserver 10.0.2.3\n")).unwrap();
        assert_eq!(wrote, ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]);
        let resolv = etc.join("resolv.conf");
        assert!(!resolv.is_symlink());
        assert_eq!(
            std::fs::read_to_string(resolv).unwrap(),
            "nameserver 10.0.2.3\n"
        );
        assert_eq!(
            std::fs::read_to_string(etc.join("hostname")).unwrap(),
            "vmbuild\n"
        );
        assert!(
            !d.path().join("run").exists(),
            "the link must not be followed"
        );

        let wrote = write_etc(&root, None, None).unwrap();
        assert!(wrote.is_empty(), "{wrote:?}");
    }
}
