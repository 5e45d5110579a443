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
///
/// Only download caches, which are keyed by content or version and safe
/// to share between builds; never install locations (`GEM_HOME`,
/// `BUNDLE_PATH`, `CONDA_PREFIX`, npm's prefix, ...), which would carry one
/// build's installed state into the next. `set_by` lists a tool's older
/// spelling of the same variable and the parent directory the cache
/// defaults to (e.g. `HF_HOME` for `HF_HUB_CACHE`): the user set either,
/// so the user chose where the cache goes.
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
        d(
            "sccache",
            "SCCACHE_DIR",
            c("sccache"),
            "sccache's local disk cache (keyed by compiler, arguments and input hashes); sccache supports one server per cache dir, so with virtiofs do not run two builds on one cache at once",
            &[],
        ),
        d(
            "bundler",
            "BUNDLE_USER_CACHE",
            c("bundler"),
            "Bundler's user cache: compact index responses, and downloaded gems and git repos when global_gem_cache is on (installed gems stay in BUNDLE_PATH, not moved)",
            &["BUNDLE_USER_HOME"],
        ),
        d(
            "rubygems",
            "GEM_SPEC_CACHE",
            c("gem-specs"),
            "RubyGems' cache of remote gem specs (GEM_HOME, where gems are installed, is not moved)",
            &[],
        ),
        d(
            "conda",
            "CONDA_PKGS_DIRS",
            c("conda-pkgs"),
            "conda's (and mamba's) package cache: downloaded and extracted packages, copied into environments when a hardlink cannot cross to the build tree (environments, CONDA_PREFIX, are not moved)",
            &[],
        ),
        d(
            "pixi",
            "PIXI_CACHE_DIR",
            c("pixi"),
            "pixi's conda package and repodata cache",
            &["RATTLER_CACHE_DIR"],
        ),
        d(
            "bun",
            "BUN_INSTALL_CACHE_DIR",
            c("bun"),
            "bun's package cache, one directory per name@version; bun install falls back from hardlinks to copies across filesystems",
            &[],
        ),
        d(
            "deno",
            "DENO_DIR",
            c("deno"),
            "Deno's remote module, npm and compiled-code caches (it also keeps localStorage of scripts run with --location there)",
            &[],
        ),
        d(
            "nuget",
            "NUGET_PACKAGES",
            c("nuget-packages"),
            "NuGet's global-packages folder: each downloaded package expanded once per id and version and used in place; it is NuGet's download cache, not a project's install dir",
            &[],
        ),
        d(
            "nuget",
            "NUGET_HTTP_CACHE_PATH",
            c("nuget-http-cache"),
            "NuGet's HTTP cache of downloaded .nupkg files and feed responses",
            &[],
        ),
        d(
            "huggingface",
            "HF_HUB_CACHE",
            c("huggingface-hub"),
            "Hugging Face Hub's model, dataset and space cache; not HF_HOME, which also holds the login token",
            &["HUGGINGFACE_HUB_CACHE", "HF_HOME"],
        ),
        d(
            "ollama",
            "OLLAMA_MODELS",
            c("ollama-models"),
            "ollama's model store (content-addressed blobs and manifests), read by `ollama serve`; ~/.ollama, which holds its key pair, is not moved",
            &[],
        ),
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
        assert_eq!(get("SCCACHE_DIR"), "/var/cache/vmbuild/sccache");
        assert_eq!(get("BUNDLE_USER_CACHE"), "/var/cache/vmbuild/bundler");
        assert_eq!(get("GEM_SPEC_CACHE"), "/var/cache/vmbuild/gem-specs");
        assert_eq!(get("CONDA_PKGS_DIRS"), "/var/cache/vmbuild/conda-pkgs");
        assert_eq!(get("PIXI_CACHE_DIR"), "/var/cache/vmbuild/pixi");
        assert_eq!(get("BUN_INSTALL_CACHE_DIR"), "/var/cache/vmbuild/bun");
        assert_eq!(get("DENO_DIR"), "/var/cache/vmbuild/deno");
        assert_eq!(get("NUGET_PACKAGES"), "/var/cache/vmbuild/nuget-packages");
        assert_eq!(
            get("NUGET_HTTP_CACHE_PATH"),
            "/var/cache/vmbuild/nuget-http-cache"
        );
        assert_eq!(get("HF_HUB_CACHE"), "/var/cache/vmbuild/huggingface-hub");
        assert_eq!(get("OLLAMA_MODELS"), "/var/cache/vmbuild/ollama-models");
        // CARGO_HOME is deliberately not moved (see symlink_defaults).
        assert!(d.iter().all(|e| e.name != "CARGO_HOME"));
    }

    /// Install locations hold one build's installed state (absolute paths,
    /// compiled extensions for one libc); a shared cache must not get them.
    /// HF_HOME is listed because it holds the Hub login token besides the
    /// cache. Names are compared case-insensitively: npm reads both
    /// spellings.
    #[test]
    fn no_install_location_is_ever_set() {
        const INSTALL_DIRS: &[&str] = &[
            "GEM_HOME",
            "GEM_PATH",
            "BUNDLE_PATH",
            "CONDA_PREFIX",
            "NPM_CONFIG_PREFIX",
            "npm_config_prefix",
            "PIP_TARGET",
            "PIP_PREFIX",
            "PYTHONUSERBASE",
            "CARGO_HOME",
            "GOPATH",
            "PIPX_HOME",
            "PNPM_HOME",
            "BUN_INSTALL",
            "PIXI_HOME",
            "HF_HOME",
            "R_LIBS_USER",
        ];
        let d = cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME);
        for e in &d {
            assert!(
                !INSTALL_DIRS.iter().any(|i| i.eq_ignore_ascii_case(e.name)),
                "{} is an install location, not a cache",
                e.name
            );
        }
    }

    #[test]
    fn older_or_parent_spellings_count_as_set() {
        let d = cache_env_defaults("/c", "/h");
        let set_by = |n: &str| d.iter().find(|e| e.name == n).unwrap().set_by;
        // huggingface_hub reads HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE,
        // else $HF_HOME/hub: a default HF_HUB_CACHE would override either.
        assert_eq!(set_by("HF_HUB_CACHE"), ["HUGGINGFACE_HUB_CACHE", "HF_HOME"]);
        // pixi reads PIXI_CACHE_DIR, else RATTLER_CACHE_DIR.
        assert_eq!(set_by("PIXI_CACHE_DIR"), ["RATTLER_CACHE_DIR"]);
        // Bundler's user cache defaults to $BUNDLE_USER_HOME/cache.
        assert_eq!(set_by("BUNDLE_USER_CACHE"), ["BUNDLE_USER_HOME"]);
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
