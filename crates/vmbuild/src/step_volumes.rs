//! Step-level cache volumes (a step's own `cache:`): each distinct volume
//! is shared into the VM once, at a hidden guest path, and a step sees it
//! at its target through a bind made for that step's command only (in a
//! mount namespace of its own, so other steps never see it).
//!
//! Locks follow BuildKit's sharing modes: a `locked` volume is taken right
//! before each step that uses it and released right after; `shared` and
//! `private` ones are held for the whole build (a private fork must be
//! chosen before the VM boots, since its directory is shared at boot).

use std::path::{Path, PathBuf};

use vmbuild_cache::volume::{Persist, Sharing, VolumeSpec};
use vmbuild_cache::SharedDir;
use vmbuild_proto::{BindSpec, CacheMode};
use vmbuild_runner::pipeline::{BuildObserver, GateFuture, StepGate};
use vmbuild_runner::{RunError, Stopper};

use crate::volumes::{hold, resolve_dir, Mounted};

/// Where step volume `k` is mounted in the guest (hidden from the steps'
/// usual paths).
pub fn hidden_path(k: usize) -> String {
    format!("/run/vmbuild/step-volumes/{k}")
}

/// The distinct step-level volumes (by source, first use wins) of `steps`.
pub fn distinct(steps: &[Vec<VolumeSpec>]) -> Vec<VolumeSpec> {
    let mut out: Vec<VolumeSpec> = Vec::new();
    for v in steps.iter().flatten() {
        if !out.iter().any(|o| o.source == v.source) {
            out.push(v.clone());
        }
    }
    out
}

/// The binds of a step whose volumes are `own`, given the distinct list.
pub fn binds(own: &[VolumeSpec], distinct: &[VolumeSpec]) -> Vec<BindSpec> {
    own.iter()
        .filter_map(|v| {
            let k = distinct.iter().position(|d| d.source == v.source)?;
            Some(BindSpec {
                source: hidden_path(k),
                target: v.target.clone(),
            })
        })
        .collect()
}

/// The held step volumes of a build.
pub struct StepVolumes<'r> {
    pub distinct: Vec<VolumeSpec>,
    /// Host directory of each distinct volume.
    pub dirs: Vec<PathBuf>,
    /// Held for the build (shared, private), by distinct index.
    pub held: Vec<Option<Mounted>>,
    /// Each step's volumes.
    pub per_step: Vec<Vec<VolumeSpec>>,
    root: Option<&'r Path>,
    /// Locks of the running step (locked volumes).
    current: Vec<Mounted>,
}

impl<'r> StepVolumes<'r> {
    /// Resolves and holds the step volumes of `per_step` (locked ones only
    /// get their directory now; their lock is taken per step).
    pub async fn prepare(
        per_step: Vec<Vec<VolumeSpec>>,
        root: Option<&'r Path>,
        stop: &Stopper,
        note: &mut dyn FnMut(&str),
    ) -> Result<StepVolumes<'r>, RunError> {
        let distinct = distinct(&per_step);
        let mut dirs = Vec::new();
        let mut held = Vec::new();
        for v in &distinct {
            if v.sharing == Sharing::Locked {
                // Its lock is taken around each step that uses it.
                dirs.push(resolve_dir(v, root)?);
                held.push(None);
                continue;
            }
            let m = hold(std::slice::from_ref(v), root, stop, note).await?.pop();
            dirs.push(
                m.as_ref()
                    .map_or_else(|| resolve_dir(v, root), |m| Ok(m.host_dir.clone()))?,
            );
            held.push(m);
        }
        Ok(StepVolumes {
            distinct,
            dirs,
            held,
            per_step,
            root,
            current: Vec::new(),
        })
    }

    /// The shares: step volume `k` at [`hidden_path`]`(k)`, tag `vmbuild-step<k>`.
    pub fn shares(&self, mode: CacheMode) -> Vec<SharedDir> {
        self.distinct
            .iter()
            .zip(&self.dirs)
            .enumerate()
            .map(|(k, (v, dir))| SharedDir {
                name: format!("step{k}"),
                host_dir: dir.clone(),
                mode,
                target: hidden_path(k),
                aliases: Vec::new(),
                owner: (v.uid.is_some() || v.gid.is_some())
                    .then(|| (v.uid.unwrap_or(0), v.gid.unwrap_or(0))),
                root_mode: v.mode,
            })
            .collect()
    }

    /// Every step volume, held and tagged with its mount tag, for a commit
    /// at the end of the build: the build-long holds are handed over; a
    /// `locked` one that commits (`persist=on-success`) is taken again.
    pub async fn take_for_commit(
        &mut self,
        mode: CacheMode,
        stop: &Stopper,
        note: &mut dyn FnMut(&str),
    ) -> Result<Vec<Mounted>, RunError> {
        let mut out = Vec::new();
        for (k, v) in self.distinct.iter().enumerate() {
            let held = match self.held[k].take() {
                Some(m) => Some(m),
                None if v.persist_in(mode) != Ok(Persist::OnSuccess) => None,
                None => hold(std::slice::from_ref(v), self.root, stop, note)
                    .await?
                    .pop(),
            };
            if let Some(mut m) = held {
                m.tag = Some(format!("vmbuild-step{k}"));
                out.push(m);
            }
        }
        Ok(out)
    }
}

impl StepGate for StepVolumes<'_> {
    fn before<'a>(
        &'a mut self,
        index: usize,
        stop: &'a Stopper,
        obs: &'a mut dyn BuildObserver,
    ) -> GateFuture<'a> {
        Box::pin(async move {
            let locked: Vec<VolumeSpec> = self
                .per_step
                .get(index)
                .into_iter()
                .flatten()
                .filter(|v| v.sharing == Sharing::Locked)
                .cloned()
                .collect();
            self.current = hold(&locked, self.root, stop, &mut |l: &str| obs.note(l)).await?;
            Ok(())
        })
    }

    fn after(&mut self, _index: usize) {
        self.current.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbuild_cache::volume::VolumeSource;

    fn spec(s: &str) -> VolumeSpec {
        s.parse().unwrap()
    }

    #[test]
    fn each_volume_is_shared_once_and_bound_where_each_step_wants_it() {
        let steps = vec![
            vec![spec("id=gobuild,target=/root/.cache/go-build")],
            vec![],
            vec![spec("id=npm,target=/n"), spec("id=gobuild,target=/other")],
        ];
        let d = distinct(&steps);
        assert_eq!(d.len(), 2);
        assert!(binds(&steps[1], &d).is_empty());
        assert_eq!(
            binds(&steps[2], &d),
            [
                BindSpec {
                    source: "/run/vmbuild/step-volumes/1".into(),
                    target: "/n".into()
                },
                BindSpec {
                    source: "/run/vmbuild/step-volumes/0".into(),
                    target: "/other".into()
                },
            ]
        );
        assert!(matches!(d[0].source, VolumeSource::Named(ref id) if id == "gobuild"));
    }
}
