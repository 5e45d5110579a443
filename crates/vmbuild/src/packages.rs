//! Environment package names for a Debian environment: the built-in
//! Wolfi -> Debian map plus `--package-map FILE`s, checked against this
//! host's apt index (`apt-cache pkgnames`) when there is one. See
//! `vmbuild_config::packages` and docs/melange-compat.md.

use std::collections::HashSet;
use std::path::PathBuf;

use vmbuild_config::{ConfigError, PackageMap, Resolution};

/// The map and the Debian index, loaded once per command.
pub struct Packages {
    map: PackageMap,
    /// Debian package names known to this host's apt (sorted), if any.
    index: Option<(HashSet<String>, Vec<String>)>,
    /// Suggestions already computed, by unknown name (a tree of configs
    /// repeats the same few names).
    suggested: std::cell::RefCell<std::collections::HashMap<String, Vec<String>>>,
}

/// Debian's package names from `apt-cache pkgnames`, or `None` when apt
/// is not there or knows nothing (run `apt-get update`).
fn debian_index() -> Option<(HashSet<String>, Vec<String>)> {
    let out = std::process::Command::new("apt-cache")
        .arg("pkgnames")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    Some((names.iter().cloned().collect(), names))
}

impl Packages {
    /// The built-in map extended by each of `maps` (in order; later wins),
    /// and the host's Debian index.
    pub fn load(maps: &[PathBuf]) -> Result<Packages, ConfigError> {
        let mut map = PackageMap::builtin();
        for path in maps {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            map = map.extended(PackageMap::parse(&path.display().to_string(), &text)?);
        }
        let index = debian_index();
        if index.is_none() {
            tracing::info!("no apt package index on this host: package names not in the map are used unchecked");
        }
        Ok(Packages {
            map,
            index,
            suggested: Default::default(),
        })
    }

    /// Resolves environment package names to Debian ones.
    pub fn resolve(&self, names: &[String]) -> Resolution {
        match &self.index {
            Some((set, sorted)) => {
                let has = |n: &str| set.contains(n);
                let mut suggest = |n: &str| {
                    self.suggested
                        .borrow_mut()
                        .entry(n.to_string())
                        .or_insert_with(|| self.map.suggestions(n, Some(&has), sorted))
                        .clone()
                };
                self.map.resolve(names, Some(&has), &mut suggest)
            }
            None => self.map.resolve(names, None, &mut |_| Vec::new()),
        }
    }
}

/// Wolfi packages whose commands the busybox environment already has
/// (busybox's own applets: `wget`, `patch`, `sha256sum`, `tar`...).
const BUSYBOX_PROVIDES: &[&str] = &[
    "busybox",
    "wolfi-base",
    "wolfi-baselayout",
    "wget",
    "patch",
    "coreutils",
];

/// The environment packages a build needs: the config's own and its
/// pipelines' `needs`, or none when busybox covers every one of them
/// ([`BUSYBOX_PROVIDES`]): such a build runs in the busybox environment
/// instead of a Debian image built for `busybox` and `wget` alone.
pub fn wanted(packages: &[String]) -> Vec<String> {
    if packages
        .iter()
        .all(|p| BUSYBOX_PROVIDES.contains(&vmbuild_config::apk_name(p)))
    {
        return Vec::new();
    }
    packages.to_vec()
}

/// The Debian packages for each of a config's environments (`envs`: the
/// names each asks for, e.g. the build's then each test's), in order;
/// the maps and index are loaded once, and only when some environment
/// names packages. The first environment with names that have no Debian
/// equivalent is one error naming `config` and every such name, before
/// anything boots.
pub fn debian_packages(
    config: &std::path::Path,
    envs: &[Vec<String>],
    maps: &[PathBuf],
) -> Result<Vec<Vec<String>>, ConfigError> {
    if envs.iter().all(Vec::is_empty) {
        return Ok(vec![Vec::new(); envs.len()]);
    }
    let packages = Packages::load(maps)?;
    envs.iter()
        .map(|names| {
            if names.is_empty() {
                return Ok(Vec::new());
            }
            let r = packages.resolve(names);
            if let Some(message) = r.unknown_message() {
                return Err(ConfigError::UnknownPackages {
                    file: config.display().to_string(),
                    message,
                });
            }
            for c in &r.dropped_constraints {
                tracing::info!(
                    "{c}: the apk version constraint is dropped (Debian's versions differ)"
                );
            }
            for u in &r.unverified {
                tracing::info!(
                    "{u}: not in the package map and not checked (no apt index); used as a Debian name"
                );
            }
            Ok(r.debian)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn every_environment_is_resolved_in_order() {
        let cfg = std::path::Path::new("pkg.yaml");
        let envs = [Vec::new(), v(&["build-base"]), Vec::new()];
        let out = debian_packages(cfg, &envs, &[]).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[0].is_empty() && out[2].is_empty());
        assert_eq!(out[1], ["build-essential", "pkgconf"]);
        assert_eq!(
            debian_packages(cfg, &[Vec::new(), Vec::new()], &[]).unwrap(),
            [Vec::<String>::new(), Vec::new()]
        );
    }

    #[test]
    fn busybox_covers_what_it_provides() {
        assert!(wanted(&v(&["busybox", "wget"])).is_empty());
        assert!(wanted(&v(&[])).is_empty());
        assert_eq!(wanted(&v(&["busybox", "git"])), v(&["busybox", "git"]));
        assert_eq!(wanted(&v(&["make", "busybox"])), v(&["make", "busybox"]));
    }
}
