//! The environment a guest command gets (for `vmbuild run`).
//!
//! Precedence, lowest first: vmbuild's base environment (with the CA bundle
//! variables under `--ca-cert`), the per-language cache defaults
//! (fill-if-unset, only when a cache is shared), `--env K=V`.

use vmbuild_proto::{SymlinkSpec, GUEST_CACHE_DIR, GUEST_CA_BUNDLE, GUEST_HOME};

pub const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What every guest command starts from.
pub fn base_env() -> Vec<(String, String)> {
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
pub fn base_env_with_ca(extra_ca: bool) -> Vec<(String, String)> {
    let mut env = base_env();
    if extra_ca {
        for k in CA_BUNDLE_VARS {
            set(&mut env, k, GUEST_CA_BUNDLE);
        }
    }
    env
}

/// Sets `key` to `value`, replacing an earlier value of the same key.
pub fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

/// Layers `overrides` (later wins) on top of `env`.
pub fn layer(env: &mut Vec<(String, String)>, overrides: &[(String, String)]) {
    for (k, v) in overrides {
        set(env, k, v);
    }
}

/// Adds the per-language cache defaults to `env` (fill-if-unset: a variable
/// the user set, or an equivalent one, wins) and returns the symlink
/// defaults (maven, cargo) that apply to this environment, for `Setup`.
pub fn apply_cache_defaults(env: &mut Vec<(String, String)>) -> Vec<SymlinkSpec> {
    let defaults = vmbuild_cache::cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME);
    vmbuild_cache::apply_defaults(env, &defaults);
    cache_links([env.as_slice()])
}

/// The symlink defaults (maven, cargo) that apply when none of `envs`
/// sets the variable that turns a link off (e.g. `CARGO_HOME`): the guest
/// makes them once for every command (or pipeline step) of the VM.
pub fn cache_links<'a>(
    envs: impl IntoIterator<Item = &'a [(String, String)]> + Clone,
) -> Vec<SymlinkSpec> {
    vmbuild_cache::symlink_defaults(GUEST_CACHE_DIR, GUEST_HOME)
        .iter()
        .filter(|l| {
            envs.clone().into_iter().all(|env| {
                !vmbuild_cache::applicable_symlinks(std::slice::from_ref(l), env).is_empty()
            })
        })
        .map(|l| SymlinkSpec {
            link: l.link.clone(),
            target: l.target.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundle_vars_only_with_extra_certs_and_user_values_win() {
        assert!(!base_env_with_ca(false)
            .iter()
            .any(|(k, _)| CA_BUNDLE_VARS.contains(&k.as_str())));
        let mut env = base_env_with_ca(true);
        for k in CA_BUNDLE_VARS {
            assert!(
                env.iter().any(|(ek, v)| ek == k && v == GUEST_CA_BUNDLE),
                "{k} missing: {env:?}"
            );
        }
        layer(&mut env, &[("PIP_CERT".into(), "/mine.pem".into())]);
        assert_eq!(
            env.iter()
                .filter(|(k, _)| k == "PIP_CERT")
                .collect::<Vec<_>>(),
            [&("PIP_CERT".to_string(), "/mine.pem".to_string())]
        );
    }

    #[test]
    fn later_layers_win_over_the_base() {
        let mut env = base_env();
        layer(
            &mut env,
            &[("PATH".into(), "/opt/bin".into()), ("X".into(), "1".into())],
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOME"), Some(GUEST_HOME));
        assert_eq!(get("PATH"), Some("/opt/bin"));
        assert_eq!(get("X"), Some("1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }

    #[test]
    fn cache_defaults_fill_only_what_the_user_left_unset() {
        let mut env = base_env();
        layer(
            &mut env,
            &[
                ("PIP_CACHE_DIR".into(), "/mine".into()),
                ("CARGO_HOME".into(), "/opt/cargo".into()),
            ],
        );
        let links = apply_cache_defaults(&mut env);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("PIP_CACHE_DIR").as_deref(), Some("/mine"));
        assert_eq!(
            get("GOMODCACHE").as_deref(),
            Some("/var/cache/vmbuild/gomodcache")
        );
        // CARGO_HOME set by the user: the ~/.cargo links are not made.
        assert!(
            links.iter().all(|l| !l.link.contains(".cargo")),
            "{links:?}"
        );
        assert!(links.iter().any(|l| l.link == "/home/build/.m2/repository"));
    }

    #[test]
    fn a_link_is_made_only_when_no_step_turns_it_off() {
        let plain = base_env();
        let mut own_cargo = base_env();
        layer(
            &mut own_cargo,
            &[("CARGO_HOME".into(), "/opt/cargo".into())],
        );
        let both = cache_links([plain.as_slice(), own_cargo.as_slice()]);
        assert!(both.iter().all(|l| !l.link.contains(".cargo")), "{both:?}");
        assert!(both.iter().any(|l| l.link.ends_with(".m2/repository")));
        assert_eq!(cache_links([plain.as_slice()]).len(), 3);
    }
}
