//! The two virtiofsd implementations and how to tell them apart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::virtiofsd::Sandbox;
use crate::virtiofsd::VirtiofsdError;

/// Which virtiofsd a binary is; their command lines differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Rust virtiofsd (gitlab.com/virtio-fs/virtiofsd): `--shared-dir`,
    /// `--sandbox=namespace|chroot|none`, runs unprivileged.
    Rust,
    /// QEMU's legacy C virtiofsd (QEMU ≤ 7.2, Debian 12's
    /// `/usr/lib/qemu/virtiofsd`): `-o source=`, root only.
    LegacyC,
}

impl Flavor {
    /// The sandbox modes this flavour accepts.
    pub fn sandboxes(self) -> &'static [Sandbox] {
        match self {
            Flavor::Rust => &[Sandbox::Namespace, Sandbox::Chroot, Sandbox::None],
            Flavor::LegacyC => &[Sandbox::Namespace, Sandbox::Chroot],
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Rust => "the Rust virtiofsd",
            Flavor::LegacyC => "QEMU's legacy C virtiofsd",
        })
    }
}

/// What [`probe`] learnt about a virtiofsd binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtiofsdInfo {
    pub path: PathBuf,
    pub flavor: Flavor,
    /// E.g. `1.14.0` or `7.2.22`, when `--version` said.
    pub version: Option<String>,
}

/// Tells the flavour from `virtiofsd --help` output (stdout and stderr
/// together). The Rust one documents `--shared-dir`; the C one documents
/// `-o source=PATH`. The Rust one also accepts legacy `-o` options, so
/// `--shared-dir` is checked first.
pub fn parse_flavor(help: &str) -> Option<Flavor> {
    if help.contains("--shared-dir") {
        Some(Flavor::Rust)
    } else if help.contains("source=PATH") || help.contains("-o source=") {
        Some(Flavor::LegacyC)
    } else {
        None
    }
}

/// The version from `virtiofsd --version` output: `virtiofsd 1.14.0` (Rust)
/// or `virtiofsd version 7.2.22 (Debian ...)` (C).
pub fn parse_version(output: &str) -> Option<String> {
    let first = output.lines().find(|l| !l.trim().is_empty())?;
    let mut words = first.split_whitespace();
    if words.next()? != "virtiofsd" {
        return None;
    }
    let v = match words.next()? {
        "version" => words.next()?,
        v => v,
    };
    v.starts_with(|c: char| c.is_ascii_digit())
        .then(|| v.to_owned())
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `binary --help` and `binary --version` to learn its flavour and
/// version. Each run is killed after 5 s.
pub async fn probe(binary: &Path) -> Result<VirtiofsdInfo, VirtiofsdError> {
    let help = run_capture(binary, "--help").await?;
    let flavor = parse_flavor(&help).ok_or_else(|| VirtiofsdError::UnknownFlavor {
        binary: binary.to_owned(),
        head: help.chars().take(200).collect(),
    })?;
    // A version is nice to have; not knowing it is no reason to fail.
    let version = match run_capture(binary, "--version").await {
        Ok(out) => parse_version(&out),
        Err(e) => {
            tracing::debug!(error = %e, "virtiofsd --version failed");
            None
        }
    };
    tracing::debug!(binary = %binary.display(), %flavor, ?version, "probed virtiofsd");
    Ok(VirtiofsdInfo {
        path: binary.to_owned(),
        flavor,
        version,
    })
}

/// stdout + stderr of `binary arg`, whatever its exit status.
async fn run_capture(binary: &Path, arg: &str) -> Result<String, VirtiofsdError> {
    let probe_err = |reason: String| VirtiofsdError::Probe {
        binary: binary.to_owned(),
        reason,
    };
    let child = tokio::process::Command::new(binary)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| probe_err(e.to_string()))?;
    let out = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| probe_err(format!("no answer to {arg} within {PROBE_TIMEOUT:?}")))?
        .map_err(|e| probe_err(e.to_string()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST_HELP: &str = include_str!("../../tests/fixtures/rust-virtiofsd-1.14.0.help.txt");
    const RUST_VERSION: &str =
        include_str!("../../tests/fixtures/rust-virtiofsd-1.14.0.version.txt");
    const C_HELP: &str = include_str!("../../tests/fixtures/qemu-c-virtiofsd-7.2.help.txt");
    const C_VERSION: &str = include_str!("../../tests/fixtures/qemu-c-virtiofsd-7.2.version.txt");

    #[test]
    fn captured_help_texts() {
        assert_eq!(parse_flavor(RUST_HELP), Some(Flavor::Rust));
        assert_eq!(parse_flavor(C_HELP), Some(Flavor::LegacyC));
    }

    #[test]
    fn rust_help_mentions_legacy_options_too_but_is_rust() {
        // The Rust binary documents `-o <COMPAT_OPTIONS>`; make sure a help
        // text with both markers is still Rust.
        let both = format!("{C_HELP}\n      --shared-dir <SHARED_DIR>\n");
        assert_eq!(parse_flavor(&both), Some(Flavor::Rust));
    }

    #[test]
    fn unrelated_help_is_unknown() {
        assert_eq!(
            parse_flavor("Usage: false [ignored command line arguments]"),
            None
        );
        assert_eq!(parse_flavor(""), None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version(RUST_VERSION).as_deref(), Some("1.14.0"));
        assert_eq!(parse_version(C_VERSION).as_deref(), Some("7.2.22"));
        assert_eq!(parse_version("qemu-system-x86_64 7.2"), None);
        assert_eq!(parse_version("virtiofsd backend"), None);
    }

    #[test]
    fn c_flavor_has_no_sandbox_none() {
        assert!(!Flavor::LegacyC.sandboxes().contains(&Sandbox::None));
        assert!(Flavor::Rust.sandboxes().contains(&Sandbox::None));
    }

    #[tokio::test]
    async fn probing_a_non_virtiofsd_says_so() {
        let err = probe(Path::new("/bin/echo")).await.unwrap_err();
        assert!(
            matches!(err, VirtiofsdError::UnknownFlavor { .. }),
            "{err:?}"
        );
        let err = probe(Path::new("/nonexistent/virtiofsd"))
            .await
            .unwrap_err();
        assert!(matches!(err, VirtiofsdError::Probe { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn probing_the_installed_c_virtiofsd() {
        // qemu-system-x86 (Debian 12) ships it; CI installs that package.
        let bin = Path::new("/usr/lib/qemu/virtiofsd");
        assert!(bin.exists(), "install qemu-system-x86 to run this test");
        let info = probe(bin).await.unwrap();
        assert_eq!(info.flavor, Flavor::LegacyC);
        assert!(info.version.is_some());
    }
}
