//! Where vmbuild keeps its own downloads and generated images.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::ImageError;

/// vmbuild's cache root from the values of `XDG_CACHE_HOME` and `HOME`:
/// `$XDG_CACHE_HOME/vmbuild`, else `$HOME/.cache/vmbuild`.
///
/// Following the XDG spec, an empty or relative `XDG_CACHE_HOME` is ignored.
pub fn cache_root_from(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, ImageError> {
    if let Some(xdg) = xdg_cache_home.map(PathBuf::from) {
        if xdg.is_absolute() {
            return Ok(xdg.join("vmbuild"));
        }
    }
    match home.map(PathBuf::from) {
        Some(home) if !home.as_os_str().is_empty() => Ok(home.join(".cache").join("vmbuild")),
        _ => Err(ImageError::NoCacheDir),
    }
}

/// vmbuild's cache root, from the process environment (see [`cache_root_from`]).
pub fn cache_root() -> Result<PathBuf, ImageError> {
    cache_root_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn xdg_wins_over_home() {
        let root = cache_root_from(os("/x/cache"), os("/home/u")).unwrap();
        assert_eq!(root, PathBuf::from("/x/cache/vmbuild"));
    }

    #[test]
    fn home_when_xdg_unset_empty_or_relative() {
        for xdg in [None, os(""), os("rel/cache")] {
            let root = cache_root_from(xdg, os("/home/u")).unwrap();
            assert_eq!(root, PathBuf::from("/home/u/.cache/vmbuild"));
        }
    }

    #[test]
    fn error_when_neither() {
        assert!(matches!(
            cache_root_from(None, None),
            Err(ImageError::NoCacheDir)
        ));
        assert!(matches!(
            cache_root_from(os(""), os("")),
            Err(ImageError::NoCacheDir)
        ));
    }
}
