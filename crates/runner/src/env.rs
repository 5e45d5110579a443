//! The environment a guest command gets (for `vmbuild run`).
//!
//! Precedence, lowest first: vmbuild's base environment, the per-language
//! cache defaults (fill-if-unset, only when a cache is shared), `--env K=V`.

use vmbuild_proto::GUEST_HOME;

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

/// Sets `key` to `value`, replacing an earlier value of the same key.
pub fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

/// Sets `key` only when it is not set yet.
pub fn set_if_unset(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    if !env.iter().any(|(k, _)| k == key) {
        env.push((key.to_string(), value.to_string()));
    }
}

/// Layers `overrides` (later wins) on top of `env`.
pub fn layer(env: &mut Vec<(String, String)>, overrides: &[(String, String)]) {
    for (k, v) in overrides {
        set(env, k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_fill_if_unset_does_not_override() {
        let mut env = base_env();
        set_if_unset(&mut env, "HOME", "/elsewhere");
        set_if_unset(&mut env, "PIP_CACHE_DIR", "/var/cache/vmbuild/pip");
        layer(&mut env, &[("PATH".into(), "/opt/bin".into()), ("X".into(), "1".into())]);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some(GUEST_HOME));
        assert_eq!(get("PIP_CACHE_DIR"), Some("/var/cache/vmbuild/pip"));
        assert_eq!(get("PATH"), Some("/opt/bin"));
        assert_eq!(get("X"), Some("1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }
}
