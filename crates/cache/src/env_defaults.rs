//! Per-language cache defaults: which environment variables and which
//! symlinks point each tool's download cache into the shared cache dir.
//!
//! Everything here is fill-if-unset: a variable the user already set (in the
//! config's `environment` or in a step) is never overridden, and a symlink
//! is only made where nothing exists yet.

/// One environment variable that points a tool into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDefault {
    /// The tool it is for, e.g. `pip`.
    pub tool: &'static str,
    /// Variable name, e.g. `PIP_CACHE_DIR`.
    pub name: &'static str,
    /// Default value (usually a directory under the guest cache dir).
    pub value: String,
    /// Short reason, for the docs table.
    pub why: &'static str,
    /// Other variables whose presence means the user already chose, so this
    /// default is skipped too (e.g. npm reads `NPM_CONFIG_CACHE` as well as
    /// `npm_config_cache`).
    pub set_by: &'static [&'static str],
}

/// A symlink the guest creates before the first command when `link` does
/// not exist yet (for tools configured by a path, not a variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkDefault {
    /// The tool it is for, e.g. `maven`.
    pub tool: &'static str,
    /// The path that becomes a symlink, e.g. `/home/build/.m2/repository`.
    pub link: String,
    /// Where it points: a directory in the cache (created if missing).
    pub target: String,
    /// Short reason, for the docs table.
    pub why: &'static str,
    /// Do not make the link when this variable is set (the tool then looks
    /// elsewhere, e.g. `CARGO_HOME`).
    pub skip_if_env: Option<&'static str>,
}

/// The environment defaults for a guest whose cache is mounted at `cache`
/// and whose `$HOME` is `home` (normally [`vmbuild_proto::GUEST_CACHE_DIR`]
/// and [`vmbuild_proto::GUEST_HOME`]).
pub fn cache_env_defaults(cache: &str, home: &str) -> Vec<EnvDefault> {
    let c = |sub: &str| format!("{cache}/{sub}");
    let d = |tool, name, value, why, set_by| EnvDefault {
        tool,
        name,
        value,
        why,
        set_by,
    };
    vec![
        d("pip", "PIP_CACHE_DIR", c("pip"), "pip's HTTP and wheel cache", &[]),
        d("uv", "UV_CACHE_DIR", c("uv"), "uv's package cache", &[]),
        d(
            "uv",
            "UV_LINK_MODE",
            "copy".into(),
            "the cache is another filesystem than the build tree, so uv's default hardlinks fail and it warns on every install",
            &[],
        ),
        d(
            "poetry",
            "POETRY_CACHE_DIR",
            c("poetry"),
            "Poetry's package and repository cache",
            &[],
        ),
        d(
            "poetry",
            "POETRY_VIRTUALENVS_PATH",
            format!("{home}/.cache/pypoetry/virtualenvs"),
            "keeps Poetry's virtualenvs (which default to inside its cache dir) out of the shared cache",
            &[],
        ),
        d(
            "npm",
            "npm_config_cache",
            c("npm"),
            "npm's package cache",
            &["NPM_CONFIG_CACHE"],
        ),
        d(
            "yarn",
            "YARN_CACHE_FOLDER",
            c("yarn"),
            "Yarn 1 (classic) package cache",
            &[],
        ),
        d(
            "yarn",
            "YARN_GLOBAL_FOLDER",
            c("yarn-berry"),
            "Yarn 2+ keeps its global cache under globalFolder/cache and ignores YARN_CACHE_FOLDER while enableGlobalCache is on (its default)",
            &[],
        ),
        d(
            "pnpm",
            "npm_config_store_dir",
            c("pnpm-store"),
            "pnpm 10 and older read the store dir from here (npm itself then warns about an unknown env config store-dir)",
            &[
                "NPM_CONFIG_STORE_DIR",
                "pnpm_config_store_dir",
                "PNPM_CONFIG_STORE_DIR",
            ],
        ),
        d(
            "pnpm",
            "pnpm_config_store_dir",
            c("pnpm-store"),
            "pnpm 11 and newer read the store dir from here",
            &[
                "PNPM_CONFIG_STORE_DIR",
                "npm_config_store_dir",
                "NPM_CONFIG_STORE_DIR",
            ],
        ),
        d(
            "composer",
            "COMPOSER_CACHE_DIR",
            c("composer"),
            "Composer's package cache",
            &[],
        ),
        d(
            "go",
            "GOMODCACHE",
            c("gomodcache"),
            "downloaded Go modules",
            &[],
        ),
        d("go", "GOCACHE", c("gocache"), "Go's build cache", &[]),
        d(
            "gradle",
            "GRADLE_USER_HOME",
            c("gradle"),
            "Gradle's dependency cache and wrapper distributions",
            &[],
        ),
        d("ccache", "CCACHE_DIR", c("ccache"), "ccache's object cache", &[]),
    ]
}

/// The symlink defaults for a guest whose cache is mounted at `cache` and
/// whose `$HOME` is `home`.
///
/// Cargo: melange pointed `CARGO_HOME` into the cache, which hid
/// `$HOME/.cargo/bin` (rustup's toolchain proxies) from `PATH`. Here
/// `CARGO_HOME` stays `~/.cargo` and only its `registry` (index, downloaded
/// crates) and `git` (git checkouts) are links into the cache, laid out as
/// in melange's `CARGO_HOME` so an existing melange cache is reused.
pub fn symlink_defaults(cache: &str, home: &str) -> Vec<SymlinkDefault> {
    vec![
        SymlinkDefault {
            tool: "maven",
            link: format!("{home}/.m2/repository"),
            target: format!("{cache}/m2repository"),
            why: "Maven's local repository is a path, not a variable (same layout as melange's maven pipelines)",
            skip_if_env: None,
        },
        SymlinkDefault {
            tool: "cargo",
            link: format!("{home}/.cargo/registry"),
            target: format!("{cache}/cargo/registry"),
            why: "crates.io index and downloaded crates; ~/.cargo/bin stays usable",
            skip_if_env: Some("CARGO_HOME"),
        },
        SymlinkDefault {
            tool: "cargo",
            link: format!("{home}/.cargo/git"),
            target: format!("{cache}/cargo/git"),
            why: "git dependencies' checkouts; ~/.cargo/bin stays usable",
            skip_if_env: Some("CARGO_HOME"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbuild_proto::{GUEST_CACHE_DIR, GUEST_HOME};

    #[test]
    fn covers_every_tool_with_the_documented_values() {
        let d = cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME);
        let get = |n: &str| {
            d.iter()
                .find(|e| e.name == n)
                .map(|e| e.value.as_str())
                .unwrap_or_else(|| panic!("no default for {n}"))
        };
        assert_eq!(get("PIP_CACHE_DIR"), "/var/cache/vmbuild/pip");
        assert_eq!(get("UV_CACHE_DIR"), "/var/cache/vmbuild/uv");
        assert_eq!(get("UV_LINK_MODE"), "copy");
        assert_eq!(get("POETRY_CACHE_DIR"), "/var/cache/vmbuild/poetry");
        assert_eq!(
            get("POETRY_VIRTUALENVS_PATH"),
            "/home/build/.cache/pypoetry/virtualenvs"
        );
        assert_eq!(get("npm_config_cache"), "/var/cache/vmbuild/npm");
        assert_eq!(get("YARN_CACHE_FOLDER"), "/var/cache/vmbuild/yarn");
        assert_eq!(get("YARN_GLOBAL_FOLDER"), "/var/cache/vmbuild/yarn-berry");
        assert_eq!(get("npm_config_store_dir"), "/var/cache/vmbuild/pnpm-store");
        assert_eq!(
            get("pnpm_config_store_dir"),
            "/var/cache/vmbuild/pnpm-store"
        );
        assert_eq!(get("COMPOSER_CACHE_DIR"), "/var/cache/vmbuild/composer");
        assert_eq!(get("GOMODCACHE"), "/var/cache/vmbuild/gomodcache");
        assert_eq!(get("GOCACHE"), "/var/cache/vmbuild/gocache");
        assert_eq!(get("GRADLE_USER_HOME"), "/var/cache/vmbuild/gradle");
        assert_eq!(get("CCACHE_DIR"), "/var/cache/vmbuild/ccache");
        // CARGO_HOME is deliberately not moved (see symlink_defaults).
        assert!(d.iter().all(|e| e.name != "CARGO_HOME"));
    }

    #[test]
    fn names_are_unique_and_every_row_is_documented() {
        let d = cache_env_defaults("/c", "/h");
        let mut names: Vec<_> = d.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), d.len());
        assert!(d.iter().all(|e| !e.tool.is_empty() && !e.why.is_empty()));
    }

    #[test]
    fn symlinks_for_maven_and_cargo() {
        let s = symlink_defaults(GUEST_CACHE_DIR, GUEST_HOME);
        let pairs: Vec<_> = s
            .iter()
            .map(|l| (l.link.as_str(), l.target.as_str(), l.skip_if_env))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (
                    "/home/build/.m2/repository",
                    "/var/cache/vmbuild/m2repository",
                    None
                ),
                (
                    "/home/build/.cargo/registry",
                    "/var/cache/vmbuild/cargo/registry",
                    Some("CARGO_HOME")
                ),
                (
                    "/home/build/.cargo/git",
                    "/var/cache/vmbuild/cargo/git",
                    Some("CARGO_HOME")
                ),
            ]
        );
    }
}
