//! The environment of each step, layered from the sources a build has.
//!
//! Lowest first (a later layer overrides an earlier one):
//!
//! | # | layer                                   | rule            |
//! |---|-----------------------------------------|-----------------|
//! | 1 | `LoadOptions::base_env` (PATH, HOME...) | set             |
//! | 2 | `--env-file` values                     | override        |
//! | 3 | config `environment.environment`        | override        |
//! | 4 | cache defaults (`PIP_CACHE_DIR`...)     | fill-if-unset   |
//! | 5 | step `environment`, outer to inner      | override        |
//! | 6 | `--env K=V` from the command line       | override (wins) |
//!
//! A cache default is skipped when its variable, or one of its aliases
//! (`LoadOptions::cache_default_aliases`, e.g. `NPM_CONFIG_CACHE` for
//! `npm_config_cache`), is set at any layer: the user chose.
//! `--env` wins over everything, including a step's own environment: a
//! command-line override is what a CI user reaches for when a config must
//! be run differently without editing it.
//!
//! This is the one implementation of env layering and fill-if-unset:
//! `vmbuild run` uses it too (its command is a one-step build without a
//! config: no layers 2, 3 and 5).

/// Sets `key` to `value`, replacing an earlier value in place.
pub fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

/// Layers `over` (later entries win) on top of `env`.
pub fn layer(env: &mut Vec<(String, String)>, over: &[(String, String)]) {
    for (k, v) in over {
        set(env, k, v);
    }
}

/// Layers 1-3, fixed for a build, and the two layers that are applied
/// around each step's own environment.
#[derive(Debug, Clone)]
pub struct EnvLayers {
    /// base < env file < config environment.
    pub below: Vec<(String, String)>,
    /// Fill-if-unset defaults.
    pub cache_defaults: Vec<(String, String)>,
    /// (default variable, alias) pairs.
    pub aliases: Vec<(String, String)>,
    /// `--env` values.
    pub cli: Vec<(String, String)>,
}

impl EnvLayers {
    /// The complete environment of a step whose (accumulated, outer to
    /// inner) own environment is `step`.
    pub fn for_step(&self, step: &[(String, String)]) -> Vec<(String, String)> {
        let set_anywhere = |name: &str| {
            [&self.below[..], step, &self.cli[..]]
                .iter()
                .any(|l| l.iter().any(|(k, _)| k == name))
        };
        let mut env = self.below.clone();
        for (k, v) in &self.cache_defaults {
            let aliased = self
                .aliases
                .iter()
                .any(|(d, alias)| d == k && set_anywhere(alias));
            if !set_anywhere(k) && !aliased {
                env.push((k.clone(), v.clone()));
            }
        }
        layer(&mut env, step);
        layer(&mut env, &self.cli);
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let layers = EnvLayers {
            below: kv(&[("PATH", "/bin"), ("GOCACHE", "/mine")]),
            cache_defaults: kv(&[
                ("GOCACHE", "/cache/go"),
                ("PIP_CACHE_DIR", "/cache/pip"),
                ("npm_config_cache", "/cache/npm"),
            ]),
            aliases: kv(&[("npm_config_cache", "NPM_CONFIG_CACHE")]),
            cli: kv(&[("X", "cli")]),
        };
        let env = layers.for_step(&kv(&[("X", "step"), ("NPM_CONFIG_CACHE", "/n")]));
        assert_eq!(
            env,
            kv(&[
                ("PATH", "/bin"),
                ("GOCACHE", "/mine"),
                ("PIP_CACHE_DIR", "/cache/pip"),
                ("X", "cli"),
                ("NPM_CONFIG_CACHE", "/n")
            ])
        );
    }
}
