//! The few files in `/etc` of the root in use that the init owns:
//! `resolv.conf` (when the VM has a network), `hostname`, a `hosts` that
//! resolves `localhost` (a Debian minbase rootfs has none), and the CA
//! bundle when the host adds certificates to it.

use std::io;
use std::path::Path;

use vmbuild_proto::GUEST_CA_BUNDLE;

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

/// Appends the PEM text `certs` to the root's CA bundle
/// ([`GUEST_CA_BUNDLE`]), creating it (and its directory) if the root has
/// none. The bundle is read through links inside the root (some images
/// link it elsewhere) and written back as a plain file.
pub fn add_ca_certs(root: &GuestRoot, certs: &str) -> Result<()> {
    let guest = Path::new(GUEST_CA_BUNDLE);
    let current = root.host(guest)?;
    let mut text = match std::fs::read_to_string(&current) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(InitError::io(format!("reading {}", current.display()), e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(certs);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let at = root.host_nofollow(guest)?;
    if let Some(dir) = at.parent() {
        mkdir_p(dir)?;
    }
    replace(&at, &text)
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

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn ca_certs_are_appended_to_the_roots_bundle() {
        let d = tempfile::tempdir().unwrap();
        let certs = d.path().join("etc/ssl/certs");
        std::fs::create_dir_all(&certs).unwrap();
        // No trailing newline: the added certificate must still start on
        // a line of its own.
        std::fs::write(certs.join("ca-certificates.crt"), "PUBLIC").unwrap();
        add_ca_certs(&GuestRoot::at(d.path()), PEM).unwrap();
        assert_eq!(
            std::fs::read_to_string(certs.join("ca-certificates.crt")).unwrap(),
            format!("PUBLIC\n{PEM}")
        );
    }

    #[test]
    fn ca_bundle_is_created_when_missing_and_links_are_read_not_followed_out() {
        let d = tempfile::tempdir().unwrap();
        add_ca_certs(&GuestRoot::at(d.path()), "X").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("etc/ssl/certs/ca-certificates.crt")).unwrap(),
            "X\n"
        );

        // A bundle that is an absolute link inside the image (as on
        // distributions that keep it under /etc/pki): its text is kept, the
        // link is replaced by a file, and the link's target is untouched.
        let d = tempfile::tempdir().unwrap();
        let pki = d.path().join("etc/pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("bundle.pem"), "PUBLIC\n").unwrap();
        std::fs::create_dir_all(d.path().join("etc/ssl/certs")).unwrap();
        std::os::unix::fs::symlink(
            "/etc/pki/bundle.pem",
            d.path().join("etc/ssl/certs/ca-certificates.crt"),
        )
        .unwrap();
        add_ca_certs(&GuestRoot::at(d.path()), PEM).unwrap();
        let bundle = d.path().join("etc/ssl/certs/ca-certificates.crt");
        assert!(!bundle.is_symlink());
        assert_eq!(
            std::fs::read_to_string(bundle).unwrap(),
            format!("PUBLIC\n{PEM}")
        );
        assert_eq!(
            std::fs::read_to_string(pki.join("bundle.pem")).unwrap(),
            "PUBLIC\n"
        );
    }
}
