//! Where named volumes live: `--cache-root DIR`, else `$VMBUILD_CACHE_ROOT`,
//! else `$XDG_CACHE_HOME/vmbuild/volumes`, else `~/.cache/vmbuild/volumes`.

use std::path::{Path, PathBuf};

/// The environment variable that sets the cache root.
pub const CACHE_ROOT_ENV: &str = "VMBUILD_CACHE_ROOT";

/// The cache root from an explicit flag and the given environment lookup
/// (pure: `env` is `std::env::var_os` in real use). `None` when nothing
/// names a home either.
pub fn cache_root(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    flag.map(Path::to_path_buf)
        .or_else(|| nonempty(CACHE_ROOT_ENV))
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|x| x.join("vmbuild/volumes")))
        .or_else(|| nonempty("HOME").map(|h| h.join(".cache/vmbuild/volumes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
    }

    #[test]
    fn flag_then_env_then_xdg_then_home() {
        let all = [
            ("VMBUILD_CACHE_ROOT", "/e"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            cache_root(Some(Path::new("/f")), env(&all)),
            Some("/f".into())
        );
        assert_eq!(cache_root(None, env(&all)), Some("/e".into()));
        assert_eq!(
            cache_root(None, env(&all[1..])),
            Some("/x/vmbuild/volumes".into())
        );
        assert_eq!(
            cache_root(None, env(&all[2..])),
            Some("/h/.cache/vmbuild/volumes".into())
        );
        assert_eq!(
            cache_root(None, env(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")])),
            Some("/h/.cache/vmbuild/volumes".into())
        );
        assert_eq!(cache_root(None, env(&[])), None);
    }
}
