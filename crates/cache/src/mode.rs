//! Which sharing mode the cache uses: read-only 9p + overlay, or virtiofs.

use std::path::Path;

use vmbuild_proto::CacheMode;

use crate::CacheError;

/// The environment variable melange users already know.
pub const USE_VIRTIOFS_ENV: &str = "QEMU_USE_VIRTIOFS";

/// Picks the cache mode: an explicit flag wins; otherwise the value of
/// `QEMU_USE_VIRTIOFS` decides (`1`/`true`/`yes` → virtiofs; `0`/`false`/
/// `no`/empty/unset → 9p + overlay, case-insensitive, surrounding blanks
/// ignored). Any other value is an error rather than a guess.
pub fn resolve_mode(
    flag: Option<CacheMode>,
    env_value: Option<&str>,
) -> Result<CacheMode, CacheError> {
    if let Some(mode) = flag {
        return Ok(mode);
    }
    let Some(raw) = env_value else {
        return Ok(CacheMode::Overlay);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(CacheMode::Virtiofs),
        "0" | "false" | "no" | "" => Ok(CacheMode::Overlay),
        _ => Err(CacheError::BadVirtiofsEnv {
            value: raw.to_owned(),
        }),
    }
}

/// [`resolve_mode`] with the value of `QEMU_USE_VIRTIOFS` from this
/// process's environment. A value that is not UTF-8 is reported, not ignored.
pub fn resolve_mode_from_env(flag: Option<CacheMode>) -> Result<CacheMode, CacheError> {
    match std::env::var_os(USE_VIRTIOFS_ENV) {
        None => resolve_mode(flag, None),
        Some(v) => match v.to_str() {
            Some(s) => resolve_mode(flag, Some(s)),
            None if flag.is_some() => resolve_mode(flag, None),
            None => Err(CacheError::BadVirtiofsEnv {
                value: v.to_string_lossy().into_owned(),
            }),
        },
    }
}

/// The one line shown to the user, e.g.
/// `cache: ./cache (9p read-only + overlay; writes discarded)`.
/// `path` is shown as the user spelled it.
pub fn describe(mode: CacheMode, path: &Path) -> String {
    let how = match mode {
        CacheMode::Overlay => "9p read-only + overlay; writes discarded",
        CacheMode::Virtiofs => "virtiofs read-write; writes persist",
    };
    format!("cache: {} ({how})", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins_over_env() {
        assert_eq!(
            resolve_mode(Some(CacheMode::Overlay), Some("1")).unwrap(),
            CacheMode::Overlay
        );
        assert_eq!(
            resolve_mode(Some(CacheMode::Virtiofs), Some("0")).unwrap(),
            CacheMode::Virtiofs
        );
        // Even a bad env value does not matter when the flag decides.
        assert_eq!(
            resolve_mode(Some(CacheMode::Virtiofs), Some("maybe")).unwrap(),
            CacheMode::Virtiofs
        );
    }

    #[test]
    fn unset_is_overlay() {
        assert_eq!(resolve_mode(None, None).unwrap(), CacheMode::Overlay);
    }

    #[test]
    fn truthy_values_select_virtiofs() {
        for v in ["1", "true", "TRUE", "Yes", "yes", " 1 "] {
            assert_eq!(
                resolve_mode(None, Some(v)).unwrap(),
                CacheMode::Virtiofs,
                "{v:?}"
            );
        }
    }

    #[test]
    fn falsy_values_select_overlay() {
        for v in ["0", "false", "False", "NO", "no", ""] {
            assert_eq!(
                resolve_mode(None, Some(v)).unwrap(),
                CacheMode::Overlay,
                "{v:?}"
            );
        }
    }

    #[test]
    fn other_values_are_errors_naming_value_and_choices() {
        for v in ["2", "on", "virtiofs", "y"] {
            let err = resolve_mode(None, Some(v)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("QEMU_USE_VIRTIOFS={v:?}")), "{msg}");
            for accepted in ["1", "true", "yes", "0", "false", "no"] {
                assert!(msg.contains(accepted), "{msg} lacks {accepted}");
            }
        }
    }

    #[test]
    fn describe_lines() {
        assert_eq!(
            describe(CacheMode::Overlay, Path::new("./cache")),
            "cache: ./cache (9p read-only + overlay; writes discarded)"
        );
        assert_eq!(
            describe(CacheMode::Virtiofs, Path::new("./cache")),
            "cache: ./cache (virtiofs read-write; writes persist)"
        );
    }
}
