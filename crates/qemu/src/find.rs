//! Finding the QEMU binary and its version.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::argv::{Arch, HostOs};
use crate::QemuError;

/// Environment variable naming the QEMU binary to use.
pub const QEMU_ENV: &str = "VMBUILD_QEMU";

/// Finds `qemu-system-<arch>`: `explicit` if given, else `$VMBUILD_QEMU`,
/// else the binary on `PATH`. An explicit or env path must be an existing file.
pub fn find_qemu(arch: Arch, explicit: Option<&Path>) -> Result<PathBuf, QemuError> {
    find_qemu_with(arch, explicit, std::env::var_os(QEMU_ENV), |name| {
        which::which(name).ok()
    })
}

/// [`find_qemu`] with the environment and PATH lookup passed in (for tests).
pub(crate) fn find_qemu_with(
    arch: Arch,
    explicit: Option<&Path>,
    env_value: Option<OsString>,
    on_path: impl Fn(&str) -> Option<PathBuf>,
) -> Result<PathBuf, QemuError> {
    if let Some(p) = explicit {
        return existing(p, "given explicitly");
    }
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        return existing(Path::new(&v), "from $VMBUILD_QEMU");
    }
    let name = format!("qemu-system-{}", arch.qemu_name());
    match on_path(&name) {
        Some(p) => Ok(p),
        None => Err(QemuError::QemuNotFound {
            name,
            hint: install_hint(HostOs::current(), arch),
        }),
    }
}

fn existing(p: &Path, origin: &'static str) -> Result<PathBuf, QemuError> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(QemuError::QemuPathMissing {
            path: p.to_path_buf(),
            origin,
        })
    }
}

/// How to install QEMU on `os`.
pub fn install_hint(os: HostOs, arch: Arch) -> String {
    match (os, arch) {
        (HostOs::MacOs, _) => "brew install qemu".into(),
        (HostOs::Linux, Arch::X86_64) => {
            "apt-get install qemu-system-x86 (Debian/Ubuntu) or dnf install qemu-system-x86".into()
        }
        (HostOs::Linux, Arch::Aarch64) => {
            "apt-get install qemu-system-arm (Debian/Ubuntu) or dnf install qemu-system-aarch64"
                .into()
        }
    }
}

/// Runs `QEMU --version` and returns the version, e.g. `7.2.22`.
pub fn qemu_version(path: &Path) -> Result<String, QemuError> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| QemuError::Version {
            path: path.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_qemu_version(&text).ok_or_else(|| QemuError::VersionUnparsed {
        path: path.to_path_buf(),
        output: format!(
            "{}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// The version from `QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)`.
pub fn parse_qemu_version(text: &str) -> Option<String> {
    let rest = text
        .lines()
        .find_map(|l| l.split_once("QEMU emulator version "))?
        .1;
    let v = rest.split_whitespace().next()?;
    v.starts_with(|c: char| c.is_ascii_digit())
        .then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<PathBuf> {
        None
    }

    #[test]
    fn explicit_path_wins_and_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join("my-qemu");
        std::fs::write(&q, b"").expect("write");
        let env = Some(OsString::from("/nonexistent/env-qemu"));
        let found = find_qemu_with(Arch::X86_64, Some(&q), env.clone(), none).ok();
        assert_eq!(found, Some(q.clone()));

        let missing = dir.path().join("nope");
        let err = find_qemu_with(Arch::X86_64, Some(&missing), None, |_| Some(q.clone()));
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("nope") && msg.contains("given explicitly"),
            "{msg}"
        );
    }

    #[test]
    fn env_beats_path_and_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join("env-qemu");
        std::fs::write(&q, b"").expect("write");
        let on_path = |_: &str| Some(PathBuf::from("/usr/bin/qemu-system-x86_64"));
        let found = find_qemu_with(Arch::X86_64, None, Some(q.clone().into()), on_path).ok();
        assert_eq!(found, Some(q));

        let err = find_qemu_with(Arch::X86_64, None, Some("/no/such".into()), on_path);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("/no/such") && msg.contains("VMBUILD_QEMU"),
            "{msg}"
        );
    }

    #[test]
    fn path_lookup_uses_the_arch_name() {
        let seen = std::cell::RefCell::new(String::new());
        let found = find_qemu_with(Arch::Aarch64, None, Some(OsString::new()), |n| {
            *seen.borrow_mut() = n.to_string();
            Some(PathBuf::from("/opt/bin").join(n))
        });
        assert_eq!(seen.borrow().as_str(), "qemu-system-aarch64");
        assert_eq!(
            found.ok(),
            Some(PathBuf::from("/opt/bin/qemu-system-aarch64"))
        );
    }

    #[test]
    fn missing_qemu_says_how_to_install() {
        let msg = find_qemu_with(Arch::X86_64, None, None, none)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("qemu-system-x86_64"), "{msg}");
        assert!(msg.contains("install"), "{msg}");
        assert!(
            install_hint(HostOs::Linux, Arch::X86_64).contains("apt-get install qemu-system-x86")
        );
        assert_eq!(
            install_hint(HostOs::MacOs, Arch::Aarch64),
            "brew install qemu"
        );
    }

    #[test]
    fn version_parsing() {
        let debian = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n\
                      Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_qemu_version(debian).as_deref(), Some("7.2.22"));
        assert_eq!(
            parse_qemu_version("QEMU emulator version 9.2.0\n").as_deref(),
            Some("9.2.0")
        );
        assert_eq!(parse_qemu_version("qemu-img version 7.2.0"), None);
        assert_eq!(parse_qemu_version(""), None);
    }

    #[test]
    fn version_of_the_installed_qemu() {
        // CI always has QEMU installed.
        let q = find_qemu(Arch::X86_64, None).expect("qemu-system-x86_64 must be installed");
        let v = qemu_version(&q).expect("qemu --version");
        assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{v}");
    }
}
