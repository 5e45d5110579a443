//! The environment a guest command gets.
//!
//! Layering and fill-if-unset are [`vmbuild_config::EnvLayers`]'s, for
//! `vmbuild run` as for builds. Precedence for `vmbuild run`, lowest
//! first: vmbuild's base environment (with the CA bundle variables under
//! `--ca-cert`), the per-language cache defaults (fill-if-unset, only when
//! a cache is shared; see [`vmbuild_cache::env_layers`]), `--env K=V`.

use vmbuild_config::env::set;
use vmbuild_config::EnvLayers;
use vmbuild_proto::{SymlinkSpec, GUEST_CA_BUNDLE, GUEST_HOME};

/// `(NAME, VALUE)` pairs, in order.
pub type EnvPairs = Vec<(String, String)>;

pub const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What every guest command starts from.
pub fn base_env() -> EnvPairs {
    [
        ("PATH", GUEST_PATH),
        ("HOME", GUEST_HOME),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("SHELL", "/bin/sh"),
        ("LANG", "C.UTF-8"),
        ("TERM", "dumb"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The variables that point TLS clients which do not read the system
/// bundle by default (Python requests and pip from PyPI, Node.js, cargo,
/// git built against other TLS stacks) at [`GUEST_CA_BUNDLE`]; added to
/// the base environment when the guest gets extra CA certificates, so a
/// config or `--env` can still override each.
pub const CA_BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
];

/// [`base_env`], plus [`CA_BUNDLE_VARS`] when `extra_ca` (the guest gets
/// extra CA certificates).
pub fn base_env_with_ca(extra_ca: bool) -> EnvPairs {
    let mut env = base_env();
    if extra_ca {
        for k in CA_BUNDLE_VARS {
            set(&mut env, k, GUEST_CA_BUNDLE);
        }
    }
    env
}

/// The complete environment of a `vmbuild run` command, and the cache
/// symlinks (maven, cargo) the guest makes for it: `base` < cache defaults
/// (fill-if-unset, when `cache_shared`) < `cli`.
pub fn command_env(
    base: EnvPairs,
    cache_shared: bool,
    cli: &[(String, String)],
) -> (EnvPairs, Vec<SymlinkSpec>) {
    let (cache_defaults, aliases) = vmbuild_cache::env_layers(cache_shared);
    let env = EnvLayers {
        below: base,
        cache_defaults,
        aliases,
        cli: cli.to_vec(),
    }
    .for_step(&[]);
    let links = if cache_shared {
        vmbuild_cache::links_for([env.as_slice()])
    } else {
        Vec::new()
    };
    (env, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> EnvPairs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lookup<'a>(env: &'a [(String, String)], k: &str) -> Vec<&'a str> {
        env.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn ca_bundle_vars_only_with_extra_certs_and_user_values_win() {
        assert!(!base_env_with_ca(false)
            .iter()
            .any(|(k, _)| CA_BUNDLE_VARS.contains(&k.as_str())));
        let (env, _) = command_env(
            base_env_with_ca(true),
            false,
            &kv(&[("PIP_CERT", "/mine.pem")]),
        );
        for k in CA_BUNDLE_VARS.iter().filter(|k| **k != "PIP_CERT") {
            assert_eq!(lookup(&env, k), [GUEST_CA_BUNDLE], "{k}: {env:?}");
        }
        assert_eq!(lookup(&env, "PIP_CERT"), ["/mine.pem"]);
    }

    #[test]
    fn later_layers_win_over_the_base() {
        let (env, links) = command_env(base_env(), false, &kv(&[("PATH", "/opt/bin"), ("X", "1")]));
        assert_eq!(lookup(&env, "HOME"), [GUEST_HOME]);
        assert_eq!(lookup(&env, "PATH"), ["/opt/bin"]);
        assert_eq!(lookup(&env, "X"), ["1"]);
        assert!(
            lookup(&env, "PIP_CACHE_DIR").is_empty(),
            "no cache, no defaults"
        );
        assert!(links.is_empty());
    }

    #[test]
    fn cache_defaults_fill_only_what_the_user_left_unset() {
        let (env, links) = command_env(
            base_env(),
            true,
            &kv(&[
                ("PIP_CACHE_DIR", "/mine"),
                ("CARGO_HOME", "/opt/cargo"),
                ("GOCACHE", ""),
            ]),
        );
        assert_eq!(lookup(&env, "PIP_CACHE_DIR"), ["/mine"]);
        assert_eq!(
            lookup(&env, "GOCACHE"),
            [""],
            "an empty value is still the user's choice"
        );
        assert_eq!(
            lookup(&env, "GOMODCACHE"),
            ["/var/cache/vmbuild/gomodcache"]
        );
        assert_eq!(lookup(&env, "UV_CACHE_DIR"), ["/var/cache/vmbuild/uv"]);
        assert_eq!(
            env[0],
            ("PATH".to_string(), GUEST_PATH.to_string()),
            "order kept"
        );
        // Both pnpm store variables are filled when the user set neither.
        assert_eq!(
            lookup(&env, "npm_config_store_dir"),
            ["/var/cache/vmbuild/pnpm-store"]
        );
        assert_eq!(
            lookup(&env, "pnpm_config_store_dir"),
            ["/var/cache/vmbuild/pnpm-store"]
        );
        // Exactly one entry per name.
        let mut names: Vec<_> = env.iter().map(|(k, _)| k).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), env.len());
        // CARGO_HOME set by the user: the ~/.cargo links are not made.
        assert!(
            links.iter().all(|l| !l.link.contains(".cargo")),
            "{links:?}"
        );
        assert!(links.iter().any(|l| l.link == "/home/build/.m2/repository"));
    }

    #[test]
    fn layering_is_idempotent() {
        let (once, _) = command_env(base_env(), true, &[]);
        let (twice, _) = command_env(once.clone(), true, &[]);
        assert_eq!(once, twice);
    }

    #[test]
    fn uppercase_npm_spelling_counts_as_set() {
        let (env, _) = command_env(base_env(), true, &kv(&[("NPM_CONFIG_CACHE", "/mine")]));
        assert!(lookup(&env, "npm_config_cache").is_empty());
    }

    #[test]
    fn older_or_parent_cache_variables_count_as_set() {
        for (user_var, default) in [
            ("HUGGINGFACE_HUB_CACHE", "HF_HUB_CACHE"),
            ("HF_HOME", "HF_HUB_CACHE"),
            ("RATTLER_CACHE_DIR", "PIXI_CACHE_DIR"),
            ("BUNDLE_USER_HOME", "BUNDLE_USER_CACHE"),
        ] {
            let (env, _) = command_env(base_env(), true, &kv(&[(user_var, "/mine")]));
            assert!(lookup(&env, default).is_empty(), "{user_var}: {env:?}");
            assert_eq!(lookup(&env, user_var), ["/mine"]);
        }
        let (env, _) = command_env(base_env(), true, &[]);
        assert_eq!(
            lookup(&env, "HF_HUB_CACHE"),
            ["/var/cache/vmbuild/huggingface-hub"]
        );
        assert!(lookup(&env, "HF_HOME").is_empty());
    }

    #[test]
    fn any_pnpm_store_variable_set_by_user_suppresses_both() {
        for user_var in [
            "npm_config_store_dir",
            "pnpm_config_store_dir",
            "NPM_CONFIG_STORE_DIR",
            "PNPM_CONFIG_STORE_DIR",
        ] {
            let (env, _) = command_env(base_env(), true, &kv(&[(user_var, "/mine")]));
            let store: Vec<_> = env
                .iter()
                .filter(|(k, _)| k.to_lowercase().ends_with("_config_store_dir"))
                .collect();
            assert_eq!(store.len(), 1, "{user_var}: {store:?}");
            assert_eq!(store[0].1, "/mine");
        }
    }
}
