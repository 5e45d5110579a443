//! What this QEMU binary is and supports: its version (as data for the
//! argv builder) and whether it accepts the seccomp sandbox vmbuild asks
//! for. One `QEMU -sandbox SPEC -version` run answers both (QEMU checks
//! `-sandbox` while parsing options, before `-version` exits; a build
//! without seccomp refuses the option). The answer is cached on disk, keyed
//! by the binary's path, size, mtime and inode, so a boot does not pay for
//! it (about 30 ms).

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::argv::QemuVersion;

/// The seccomp sandbox vmbuild asks QEMU for: everything QEMU's filter
/// offers — obsolete syscalls, set*id/privilege changes, fork/exec and
/// scheduler/affinity changes are all refused.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuProbe {
    pub version: QemuVersion,
    /// QEMU accepted [`SANDBOX`] (built with seccomp).
    pub sandbox: bool,
    /// QEMU's words when it refused the sandbox (for `doctor`).
    pub sandbox_error: Option<String>,
}

/// Probes `qemu`, using a cached answer in `cache_dir` when the binary has
/// not changed (and storing a new one there). `cache_dir: None` always runs
/// QEMU.
///
/// # Errors
/// A message when QEMU cannot be run or prints no version either way.
pub fn probe(qemu: &Path, cache_dir: Option<&Path>) -> Result<QemuProbe, String> {
    let cache_file =
        cache_dir.and_then(|d| cache_key(qemu).map(|k| d.join(format!("qemu-probe-{k:016x}"))));
    if let Some(hit) = cache_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| parse_cached(&s))
    {
        return Ok(hit);
    }
    let found = run_probe(qemu)?;
    if let (Some(f), Some(d)) = (&cache_file, cache_dir) {
        // A cache that cannot be written only costs the next boot 30 ms.
        let _ = std::fs::create_dir_all(d);
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, format_cached(&found)).is_ok() {
            let _ = std::fs::rename(&tmp, f);
        }
    }
    Ok(found)
}

fn run_probe(qemu: &Path) -> Result<QemuProbe, String> {
    let run = |args: &[&str]| {
        std::process::Command::new(qemu)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", qemu.display()))
    };
    let out = run(&["-sandbox", SANDBOX, "-version"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if let Some(version) = QemuVersion::parse_banner(&text) {
            return Ok(QemuProbe {
                version,
                sandbox: true,
                sandbox_error: None,
            });
        }
    }
    let refusal = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let plain = run(&["-version"])?;
    let version = QemuVersion::parse_banner(&String::from_utf8_lossy(&plain.stdout))
        .ok_or_else(|| format!("{} -version printed no QEMU version", qemu.display()))?;
    Ok(QemuProbe {
        version,
        sandbox: false,
        sandbox_error: Some(refusal),
    })
}

/// A hash of the binary's identity, `None` if it cannot be stat'ed.
fn cache_key(qemu: &Path) -> Option<u64> {
    let md = std::fs::metadata(qemu).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        qemu,
        md.len(),
        md.mtime(),
        md.mtime_nsec(),
        md.ino(),
        md.dev(),
    )
        .hash(&mut h);
    Some(h.finish())
}

fn format_cached(p: &QemuProbe) -> String {
    format!(
        "version={}\nsandbox={}\nsandbox_error={}\n",
        p.version,
        u8::from(p.sandbox),
        p.sandbox_error.as_deref().unwrap_or("").replace('\n', " ")
    )
}

fn parse_cached(s: &str) -> Option<QemuProbe> {
    let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('='));
    let err = get("sandbox_error")?;
    Some(QemuProbe {
        version: QemuVersion::parse(get("version")?)?,
        sandbox: get("sandbox")? == "1",
        sandbox_error: (!err.is_empty()).then(|| err.to_string()),
    })
}

/// The probe's default cache directory: `$XDG_CACHE_HOME/vmbuild`, else
/// `~/.cache/vmbuild`; `None` without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("vmbuild"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_answers_round_trip() {
        for p in [
            QemuProbe {
                version: QemuVersion::new(7, 2, 22),
                sandbox: true,
                sandbox_error: None,
            },
            QemuProbe {
                version: QemuVersion::new(10, 0, 0),
                sandbox: false,
                sandbox_error: Some("-sandbox is not supported by this QEMU binary".into()),
            },
        ] {
            assert_eq!(parse_cached(&format_cached(&p)), Some(p));
        }
        assert_eq!(parse_cached("version=7.2.0\n"), None);
    }

    /// A fake QEMU that refuses `-sandbox` like a build without seccomp.
    fn fake_qemu(dir: &Path, sandbox_ok: bool) -> PathBuf {
        let p = dir.join("qemu-fake");
        let refuse = if sandbox_ok {
            ""
        } else {
            "case \"$1\" in -sandbox) echo '-sandbox is not supported by this QEMU binary' >&2; exit 1;; esac\n"
        };
        std::fs::write(
            &p,
            format!("#!/bin/sh\n{refuse}echo \"$@\" >> {}/calls\necho 'QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)'\n", dir.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_qemu_without_seccomp_is_reported_and_the_answer_cached() {
        let d = tempfile::tempdir().unwrap();
        let q = fake_qemu(d.path(), false);
        let cache = d.path().join("cache");
        let first = probe(&q, Some(&cache)).unwrap();
        assert_eq!(first.version, QemuVersion::new(10, 0, 2));
        assert!(!first.sandbox);
        assert!(first.sandbox_error.unwrap().contains("not supported"));
        let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
        assert_eq!(calls, "-version\n");
        let again = probe(&q, Some(&cache)).unwrap();
        assert!(!again.sandbox);
        let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
        assert_eq!(calls, "-version\n", "second probe came from the cache");
    }

    #[test]
    fn the_real_qemu_supports_the_sandbox() {
        let q = which::which("qemu-system-x86_64").expect("QEMU is installed on test hosts");
        let p = probe(&q, None).unwrap();
        assert!(p.sandbox, "{p:?}");
        assert!(p.version >= QemuVersion::new(7, 2, 0), "{p:?}");
    }
}
