//! Cache policy for the VM plan: what of the host cache is shared, how, and
//! where it appears in the guest, and which environment defaults and
//! symlinks point tools into it.
//!
//! The runner turns a [`SharedDir`] into a QEMU share, a guest mount and, in
//! virtiofs mode, a virtiofsd; it does not decide any of this itself.

use std::path::PathBuf;

use vmbuild_proto::{CacheMode, SymlinkSpec, GUEST_CACHE_ALIAS, GUEST_CACHE_DIR, GUEST_HOME};

use crate::env_defaults::{cache_env_defaults, symlink_defaults};
use crate::symlink_setup::applicable_symlinks;

/// `(NAME, VALUE)` pairs, in order.
pub type EnvPairs = Vec<(String, String)>;

/// The host cache directory a run shares, already validated and absolute
/// (`--cache-dir`, see [`crate::prepare_cache_dir`]), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheShare {
    pub host_dir: PathBuf,
    pub mode: CacheMode,
}

/// A host directory shown in the guest: plain data for the VM plan.
///
/// `mode` says how: [`CacheMode::Overlay`] is read-only 9p with a guest
/// tmpfs overlay (the guest may write, the host copy never changes);
/// [`CacheMode::Virtiofs`] is read-write through a virtiofsd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDir {
    /// Short name, unique within a VM: `[a-z0-9-]`, at most 16 bytes. The
    /// 9p/virtiofs mount tag is `vmbuild-<name>` (QEMU crashes on tags over
    /// 31 bytes on some versions).
    pub name: String,
    pub host_dir: PathBuf,
    pub mode: CacheMode,
    /// Absolute guest path it is mounted at.
    pub target: String,
    /// Guest paths made symlinks to `target` (e.g. `/var/cache/melange`).
    pub aliases: Vec<String>,
    /// Owner (uid, gid) of the mount's root as the guest sees it.
    pub owner: Option<(u32, u32)>,
    /// Permission bits of the mount's root as the guest sees it.
    pub root_mode: Option<u32>,
}

impl SharedDir {
    /// The mount tag, `vmbuild-<name>`.
    pub fn tag(&self) -> String {
        format!("vmbuild-{}", self.name)
    }
}

impl CacheShare {
    /// Where `--cache-dir` appears in the guest: at
    /// [`GUEST_CACHE_DIR`], with [`GUEST_CACHE_ALIAS`] so melange configs
    /// run unchanged (melange mounts its cache at `/var/cache/melange`).
    pub fn shared_dir(&self) -> SharedDir {
        SharedDir {
            name: "cache".into(),
            host_dir: self.host_dir.clone(),
            mode: self.mode,
            target: GUEST_CACHE_DIR.into(),
            aliases: vec![GUEST_CACHE_ALIAS.into()],
            owner: None,
            root_mode: None,
        }
    }
}

/// The per-language cache defaults in the form env layering takes them:
/// `(values, aliases)`, where `values` are `(NAME, VALUE)` filled in only
/// when unset, and `aliases` are `(NAME, OTHER)` pairs meaning "`OTHER`
/// being set counts as `NAME` being set" (e.g. `NPM_CONFIG_CACHE` for
/// `npm_config_cache`). Empty when no cache is shared.
pub fn env_layers(shared: bool) -> (EnvPairs, EnvPairs) {
    if !shared {
        return Default::default();
    }
    let defaults = cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME);
    let values = defaults
        .iter()
        .map(|d| (d.name.to_string(), d.value.clone()))
        .collect();
    let aliases = defaults
        .iter()
        .flat_map(|d| {
            d.set_by
                .iter()
                .map(move |a| (d.name.to_string(), a.to_string()))
        })
        .collect();
    (values, aliases)
}

/// The symlink defaults (maven, cargo) that apply when none of `envs` (the
/// complete environments of every command the VM will run) sets the
/// variable that turns a link off (e.g. `CARGO_HOME`): the guest makes
/// them once, during setup.
pub fn links_for<'a>(
    envs: impl IntoIterator<Item = &'a [(String, String)]> + Clone,
) -> Vec<SymlinkSpec> {
    symlink_defaults(GUEST_CACHE_DIR, GUEST_HOME)
        .iter()
        .filter(|l| {
            envs.clone()
                .into_iter()
                .all(|env| !applicable_symlinks(std::slice::from_ref(l), env).is_empty())
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

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cache_dir_appears_at_the_melange_paths() {
        let s = CacheShare {
            host_dir: "/c".into(),
            mode: CacheMode::Virtiofs,
        }
        .shared_dir();
        assert_eq!(s.target, "/var/cache/vmbuild");
        assert_eq!(s.aliases, ["/var/cache/melange"]);
        assert_eq!(s.tag(), "vmbuild-cache");
        assert_eq!(s.mode, CacheMode::Virtiofs);
    }

    #[test]
    fn no_cache_no_defaults() {
        assert_eq!(env_layers(false), (vec![], vec![]));
        let (values, aliases) = env_layers(true);
        assert!(values
            .iter()
            .any(|(k, v)| k == "PIP_CACHE_DIR" && v == "/var/cache/vmbuild/pip"));
        assert!(aliases.contains(&("npm_config_cache".into(), "NPM_CONFIG_CACHE".into())));
    }

    #[test]
    fn a_link_is_made_only_when_no_command_turns_it_off() {
        let plain = kv(&[("PATH", "/bin")]);
        let own_cargo = kv(&[("CARGO_HOME", "/opt/cargo")]);
        let both = links_for([plain.as_slice(), own_cargo.as_slice()]);
        assert!(both.iter().all(|l| !l.link.contains(".cargo")), "{both:?}");
        assert!(both.iter().any(|l| l.link == "/home/build/.m2/repository"));
        assert_eq!(links_for([plain.as_slice()]).len(), 3);
    }
}
