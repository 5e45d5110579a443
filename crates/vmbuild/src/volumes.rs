//! `--cache SPEC` volumes for one run or build: each resolved to a host
//! directory and held with its sharing mode for as long as the run lasts
//! (waiting, for `locked`, while still honouring Ctrl-C and `--timeout`),
//! then handed to the runner as shares at their guest paths.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmbuild_cache::volume::{
    acquire, Acquired, HeldVolume, Persist, Sharing, VolumeSource, VolumeSpec,
};
use vmbuild_cache::SharedDir;
use vmbuild_proto::{CacheMode, GUEST_CACHE_ALIAS, GUEST_CACHE_DIR, GUEST_HOME};
use vmbuild_runner::{RunError, RunnerKind, Stopper};

/// How often a waiting build retries a held volume.
const RETRY: Duration = Duration::from_millis(200);

/// A volume ready to mount: its host directory, and the lock that keeps
/// it ours until dropped.
#[derive(Debug)]
pub struct Mounted {
    pub spec: VolumeSpec,
    pub host_dir: PathBuf,
    /// `<id>` or the private fork `<id>~N` in use.
    pub name: String,
    /// The mount tag when it is not `vmbuild-vol<index>` (the cache dir).
    pub tag: Option<String>,
    held: HeldVolume,
}

fn flag(why: String) -> RunError {
    RunError::Flag {
        flag: "--cache".into(),
        why,
    }
}

/// A build's volumes: the pipeline file's `cache:` entries, each replaced
/// by a `--cache` flag with the same id or the same target, then the other
/// flags, in order. Then ordered by target depth (stable), so a volume
/// nested in another's target is mounted after (on top of) it.
pub fn merge(file: &[VolumeSpec], flags: &[VolumeSpec]) -> Vec<VolumeSpec> {
    let replaced = |f: &VolumeSpec| {
        flags.iter().any(|c| {
            c.target == f.target
                || matches!((&c.source, &f.source), (VolumeSource::Named(a), VolumeSource::Named(b)) if a == b)
        })
    };
    let mut out: Vec<VolumeSpec> = file.iter().filter(|f| !replaced(f)).cloned().collect();
    out.extend(flags.iter().cloned());
    out.sort_by_key(|v| v.target.matches('/').count());
    out
}

/// Checks the specs against each other and the run's fixed mounts, before
/// anything is locked or booted: unique targets, none on the cache dir's
/// or (`source`) the build's `/home/build`, and a persistence the runner
/// `kind` (and for qemu, the cache `mode`) allows.
pub fn check(
    specs: &[VolumeSpec],
    kind: RunnerKind,
    mode: CacheMode,
    cache_dir: bool,
    source: bool,
) -> Result<(), RunError> {
    let mut taken: Vec<(&str, String)> = Vec::new();
    if cache_dir {
        taken.push((GUEST_CACHE_DIR, "--cache-dir".into()));
        taken.push((GUEST_CACHE_ALIAS, "--cache-dir's alias".into()));
    }
    if source {
        taken.push((GUEST_HOME, "the source directory".into()));
    }
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.source == s.source) {
            // It would wait on its own lock (locked) or mount twice.
            return Err(flag(format!(
                "cache {} is given twice; give each volume once",
                s.name()
            )));
        }
        if let Some((_, by)) = taken.iter().find(|(t, _)| *t == s.target) {
            return Err(flag(format!(
                "cache {}: target {} is already {by}'s mount",
                s.name(),
                s.target
            )));
        }
        match kind {
            RunnerKind::Qemu => s.persist_in(mode).map(drop),
            RunnerKind::Bubblewrap | RunnerKind::Docker => bind_rules(kind, s),
        }
        .map_err(flag)?;
        if s.sharing == Sharing::Private && matches!(s.source, VolumeSource::HostDir(_)) {
            return Err(flag(format!(
                "cache {}: sharing=private needs a named volume (id=NAME): a host directory cannot be forked",
                s.name()
            )));
        }
        taken.push((&s.target, format!("cache {}", s.name())));
    }
    Ok(())
}

/// bubblewrap and docker bind a volume read-write, as melange does: writes
/// persist, so only `persist=always` (or nothing) describes it. Neither
/// can give `uid=`/`gid=`: bubblewrap's commands run as the user who ran
/// vmbuild, the only uid mapped into the sandbox (another owner would lock
/// the command out), and a docker bind mount keeps the host directory's
/// own owner.
fn bind_rules(kind: RunnerKind, s: &VolumeSpec) -> Result<(), String> {
    if s.uid.is_some() || s.gid.is_some() {
        let why = match kind {
            RunnerKind::Docker => "whose bind mounts keep the host directory's owner",
            _ => "whose commands run as your own user (the only one mapped into the sandbox)",
        };
        return Err(format!(
            "cache {}: uid=/gid= cannot apply with the {kind} runner, {why}; drop them or use --runner qemu",
            s.name()
        ));
    }
    match s.persist {
        None | Some(Persist::Always) => Ok(()),
        Some(p) => Err(format!(
            "cache {}: persist={} is not possible with the {kind} runner, which bind-mounts volumes read-write (writes persist); drop it or use --runner qemu",
            s.name(),
            if p == Persist::Never { "never" } else { "on-success" }
        )),
    }
}

/// `--cache-dir` (`dir`, if given) as a volume when `--cache-sharing` or
/// `--cache-persist` asks for volume behaviour: a `src=DIR` volume at the
/// cache dir's guest path, checked as volumes are; `None` otherwise. Either
/// flag without `--cache-dir` is an error.
pub fn cache_dir_spec(
    dir: Option<&Path>,
    sharing: Option<Sharing>,
    persist: Option<Persist>,
    kind: RunnerKind,
    mode: CacheMode,
) -> Result<Option<VolumeSpec>, RunError> {
    if sharing.is_none() && persist.is_none() {
        return Ok(None);
    }
    let Some(dir) = dir else {
        return Err(RunError::Flag {
            flag: "--cache-sharing/--cache-persist".into(),
            why: "apply to --cache-dir DIR, which is not given (volumes take sharing= and persist= in --cache)".into(),
        });
    };
    let spec = VolumeSpec {
        source: VolumeSource::HostDir(dir.to_path_buf()),
        target: GUEST_CACHE_DIR.into(),
        sharing: sharing.unwrap_or_default(),
        persist,
        uid: None,
        gid: None,
        mode: None,
    };
    let bad = |why: String| RunError::Flag {
        flag: "--cache-dir".into(),
        why,
    };
    if spec.sharing == Sharing::Private {
        return Err(bad("--cache-sharing private needs a named volume (--cache id=NAME,...): a cache dir cannot be forked".into()));
    }
    match kind {
        RunnerKind::Qemu => spec.persist_in(mode).map(drop),
        RunnerKind::Bubblewrap | RunnerKind::Docker => bind_rules(kind, &spec),
    }
    .map_err(|e| bad(e.replace("cache ", "")))?;
    Ok(Some(spec))
}

/// The cache dir's note, saying so when `--cache-persist on-success`
/// commits its changes.
pub fn with_persist(note: String, held: Option<&Mounted>, mode: CacheMode) -> String {
    match held.map(|m| m.spec.persist_in(mode)) {
        Some(Ok(Persist::OnSuccess)) => note.replace(
            "writes discarded",
            "changes committed if the build succeeds",
        ),
        _ => note,
    }
}

/// Holds `--cache-dir` as [`cache_dir_spec`] describes (its lock, for its
/// sharing mode), tagged with the cache dir's mount tag for a commit.
pub async fn hold_cache_dir(
    spec: Option<VolumeSpec>,
    root: Option<&Path>,
    stop: &Stopper,
    note: &mut dyn FnMut(&str),
) -> Result<Option<Mounted>, RunError> {
    let Some(spec) = spec else { return Ok(None) };
    let mut held = hold(std::slice::from_ref(&spec), root, stop, note).await?;
    Ok(held.pop().map(|mut m| {
        m.tag = Some("vmbuild-cache".into());
        m
    }))
}

/// The lock name of a `src=DIR` volume under the cache root.
pub fn src_lock_name(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!(".src-{}", &hex::encode(digest)[..16])
}

/// The cache root (`--cache-root`, else `VMBUILD_CACHE_ROOT`, XDG, HOME).
pub fn root_dir(root: Option<&Path>) -> Result<PathBuf, RunError> {
    vmbuild_cache::volume::cache_root(root, |k| std::env::var_os(k)).ok_or_else(|| {
        flag("no cache root: set --cache-root DIR, VMBUILD_CACHE_ROOT or HOME".into())
    })
}

/// A volume's host directory, created if missing, without taking its lock
/// (for a step-level `locked` volume, locked only while its step runs).
pub fn resolve_dir(spec: &VolumeSpec, root: Option<&Path>) -> Result<PathBuf, RunError> {
    match &spec.source {
        VolumeSource::HostDir(d) => Ok(vmbuild_cache::prepare_cache_dir(d)?),
        VolumeSource::Named(id) => {
            let dir = root_dir(root)?.join(id);
            std::fs::create_dir_all(&dir)
                .map_err(|e| RunError::io(format!("creating volume {}", dir.display()), e))?;
            Ok(dir)
        }
    }
}

/// Holds every volume, in order (waiting as `sharing` says), and makes
/// missing directories. `note` hears "waiting for cache X (held by pid N)"
/// once per wait.
pub async fn hold(
    specs: &[VolumeSpec],
    root: Option<&Path>,
    stop: &Stopper,
    note: &mut dyn FnMut(&str),
) -> Result<Vec<Mounted>, RunError> {
    let mut out = Vec::new();
    if specs.is_empty() {
        return Ok(out);
    }
    let root = root_dir(root)?;
    // Resolve every volume first, then lock in one fixed order (by lock
    // name) whatever the order given: two builds that both take `a` and
    // `b` as `locked` can then never wait on each other in a cycle.
    let mut plan = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (lock_name, host_dir) = match &spec.source {
            VolumeSource::Named(id) => (id.clone(), None),
            VolumeSource::HostDir(d) => {
                let dir = vmbuild_cache::prepare_cache_dir(d)?;
                (src_lock_name(&dir), Some(dir))
            }
        };
        plan.push((lock_name, i, host_dir));
    }
    plan.sort();
    let mut slots: Vec<Option<Mounted>> = specs.iter().map(|_| None).collect();
    for (lock_name, i, host_dir) in plan {
        let spec = &specs[i];
        let mut told = false;
        let held = loop {
            match acquire(&root, &lock_name, spec.sharing)? {
                Acquired::Held(h) => break h,
                Acquired::Busy { holder } => {
                    if !told {
                        let by = holder
                            .map(|p| format!(" (held by pid {p})"))
                            .unwrap_or_default();
                        note(&format!("waiting for cache {}{by}", spec.name()));
                        told = true;
                    }
                    let during = format!("while waiting for cache {}", spec.name());
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        e = stop.fired(&during) => return Err(e),
                    }
                }
            }
        };
        let name = held.name.clone();
        let dir = host_dir.unwrap_or_else(|| held.dir.clone());
        slots[i] = Some(Mounted {
            spec: spec.clone(),
            host_dir: dir,
            name,
            tag: None,
            held,
        });
    }
    out.extend(slots.into_iter().flatten());
    Ok(out)
}

/// The byte limit of one volume's commit: `VMBUILD_COMMIT_MAX_BYTES`, else
/// [`vmbuild_runner::commit::MAX_COMMIT_BYTES`] (16 GiB).
fn commit_limit() -> u64 {
    std::env::var("VMBUILD_COMMIT_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(vmbuild_runner::commit::MAX_COMMIT_BYTES)
}

/// Commits the changes of every `persist=on-success` volume (overlay mode)
/// after a successful build or run: each under its exclusive lock (waiting
/// for other holders, still honouring Ctrl-C and `--timeout`), each
/// reported in one line.
pub async fn commit_all(
    session: &mut vmbuild_runner::Session,
    mounted: &[Mounted],
    cache_dir: Option<&Mounted>,
    mode: CacheMode,
    stop: &Stopper,
    note: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    // The cache dir has its own tag; volume i is vmbuild-vol<i>.
    let all = cache_dir
        .map(|c| (usize::MAX, c))
        .into_iter()
        .chain(mounted.iter().enumerate());
    for (i, m) in all {
        if m.spec.persist_in(mode) != Ok(Persist::OnSuccess) {
            continue;
        }
        let mut told = false;
        while !m.held.try_exclusive()? {
            if !told {
                note(&format!(
                    "cache {}: waiting for other builds to release it before committing",
                    m.spec.name()
                ));
                told = true;
            }
            let during = format!("while waiting to commit cache {}", m.spec.name());
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                e = stop.fired(&during) => return Err(e),
            }
        }
        let tag = m.tag.clone().unwrap_or_else(|| format!("vmbuild-vol{i}"));
        let r = vmbuild_runner::commit::commit_changes(
            session,
            &tag,
            &m.spec.name(),
            &m.host_dir,
            commit_limit(),
            stop,
        )
        .await?;
        for l in r.guest_notes.lines().filter(|l| !l.trim().is_empty()) {
            note(&format!(
                "cache {}: {}",
                m.spec.name(),
                l.trim_start_matches("vmbuild-init: ")
            ));
        }
        note(&format!(
            "cache {}: committed {} file(s) and symlink(s), {} removal(s), {} dir(s)",
            m.spec.name(),
            r.applied.written,
            r.applied.removed,
            r.applied.dirs
        ));
    }
    Ok(())
}

/// The one-line note for a held volume, e.g.
/// `cache gomod: /root/.cache/vmbuild/volumes/gomod at /root/go/pkg/mod (locked; virtiofs read-write; writes persist)`.
pub fn describe(m: &Mounted, kind: RunnerKind, mode: CacheMode) -> String {
    let sharing = match m.spec.sharing {
        Sharing::Shared => "shared",
        Sharing::Locked => "locked",
        Sharing::Private => "private",
    };
    let how = match (kind, mode, m.spec.persist_in(mode)) {
        (RunnerKind::Bubblewrap | RunnerKind::Docker, _, _) => {
            "bind-mounted read-write; writes persist"
        }
        (RunnerKind::Qemu, CacheMode::Overlay, Ok(Persist::OnSuccess)) => {
            "9p read-only + overlay; changes committed if the build succeeds"
        }
        (RunnerKind::Qemu, CacheMode::Overlay, _) => "9p read-only + overlay; writes discarded",
        (RunnerKind::Qemu, CacheMode::Virtiofs, _) => "virtiofs read-write; writes persist",
    };
    let fork = match &m.spec.source {
        VolumeSource::Named(id) if *id != m.name => format!(", fork {}", m.name),
        _ => String::new(),
    };
    format!(
        "cache {}: {} at {} ({sharing}{fork}; {how})",
        m.spec.name(),
        m.host_dir.display(),
        m.spec.target
    )
}

/// The shares for the held volumes, after any others (so a volume under
/// `/home/build` mounts on top of the source).
pub fn shares(mounted: &[Mounted], mode: CacheMode) -> Vec<SharedDir> {
    mounted
        .iter()
        .enumerate()
        .map(|(i, m)| SharedDir {
            name: format!("vol{i}"),
            host_dir: m.host_dir.clone(),
            mode,
            target: m.spec.target.clone(),
            aliases: Vec::new(),
            owner: (m.spec.uid.is_some() || m.spec.gid.is_some())
                .then(|| (m.spec.uid.unwrap_or(0), m.spec.gid.unwrap_or(0))),
            root_mode: m.spec.mode,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> VolumeSpec {
        s.parse().unwrap()
    }

    fn qemu_check(
        specs: &[VolumeSpec],
        mode: CacheMode,
        cache_dir: bool,
        source: bool,
    ) -> Result<(), RunError> {
        check(specs, RunnerKind::Qemu, mode, cache_dir, source)
    }

    #[test]
    fn flags_replace_file_entries_by_id_or_target_and_parents_mount_first() {
        let file = [
            spec("id=gomod,target=/root/go/pkg/mod"),
            spec("id=npm,target=/home/build/.npm"),
            spec("id=apt,target=/var/cache/apt"),
        ];
        let flags = [
            spec("id=gomod,target=/go,sharing=locked"),
            spec("id=other,target=/home/build/.npm"),
            spec("id=root,target=/root"),
        ];
        let got: Vec<(String, String)> = merge(&file, &flags)
            .iter()
            .map(|v| (v.name(), v.target.clone()))
            .collect();
        let want = [
            ("gomod", "/go"),
            ("root", "/root"),
            ("apt", "/var/cache/apt"),
            ("other", "/home/build/.npm"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())),
            "apt kept; gomod replaced by id, npm by target; shallower targets first"
        );
        assert_eq!(merge(&file, &[]), {
            let mut f = file.to_vec();
            f.sort_by_key(|v| v.target.matches('/').count());
            f
        });
    }

    #[test]
    fn bubblewrap_volumes_always_persist_and_keep_their_owner() {
        let bw = |s: &str| {
            check(
                &[spec(s)],
                RunnerKind::Bubblewrap,
                CacheMode::Overlay,
                false,
                true,
            )
        };
        assert!(bw("id=a,target=/root/a").is_ok());
        assert!(bw("id=a,target=/root/a,persist=always").is_ok());
        let e = bw("id=a,target=/x,persist=never").unwrap_err().to_string();
        assert!(
            e.contains("persist=never is not possible with the bubblewrap runner"),
            "{e}"
        );
        let e = bw("id=a,target=/x,persist=on-success")
            .unwrap_err()
            .to_string();
        assert!(e.contains("persist=on-success"), "{e}");
        assert!(bw("id=a,target=/x,mode=0700").is_ok());
        let e = bw("id=a,target=/x,uid=1000").unwrap_err().to_string();
        assert!(
            e.contains("uid=/gid= cannot apply with the bubblewrap runner"),
            "{e}"
        );
    }

    #[test]
    fn the_same_volume_twice_is_refused() {
        let e = check(
            &[
                spec("id=a,target=/x,sharing=locked"),
                spec("id=a,target=/y,sharing=locked"),
            ],
            RunnerKind::Qemu,
            CacheMode::Overlay,
            false,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cache a is given twice"), "{e}");
    }

    #[test]
    fn targets_must_not_collide_with_each_other_or_fixed_mounts() {
        let a = spec("id=a,target=/x");
        assert!(qemu_check(
            &[a.clone(), spec("id=b,target=/y")],
            CacheMode::Overlay,
            true,
            true
        )
        .is_ok());
        let e = qemu_check(
            &[a.clone(), spec("id=b,target=/x/")],
            CacheMode::Overlay,
            false,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("already cache a's mount"), "{e}");
        let e = qemu_check(
            &[spec("id=a,target=/home/build")],
            CacheMode::Overlay,
            false,
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("source directory"), "{e}");
        let e = qemu_check(
            &[spec("id=a,target=/var/cache/melange")],
            CacheMode::Overlay,
            true,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--cache-dir"), "{e}");
        // Nested under /home/build is fine: it mounts after the source.
        assert!(qemu_check(
            &[spec("id=a,target=/home/build/.npm")],
            CacheMode::Overlay,
            true,
            true
        )
        .is_ok());
    }

    #[test]
    fn persistence_and_private_host_dirs_are_checked() {
        let e = qemu_check(
            &[spec("id=a,target=/x,persist=always")],
            CacheMode::Overlay,
            false,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("virtiofs"), "{e}");
        let e = qemu_check(
            &[spec("src=/tmp,target=/x,sharing=private")],
            CacheMode::Virtiofs,
            false,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs a named volume"), "{e}");
    }

    #[test]
    fn shares_follow_the_specs_in_order_with_owner_and_mode() {
        let root = tempfile::tempdir().unwrap();
        let h = |id: &str| match acquire(root.path(), id, Sharing::Shared).unwrap() {
            Acquired::Held(h) => h,
            Acquired::Busy { .. } => panic!("busy"),
        };
        let m = vec![
            Mounted {
                spec: spec("id=a,target=/a,uid=1000"),
                host_dir: "/r/a".into(),
                name: "a".into(),
                tag: None,
                held: h("a"),
            },
            Mounted {
                spec: spec("id=b,target=/b,mode=0700"),
                host_dir: "/r/b".into(),
                name: "b".into(),
                tag: None,
                held: h("b"),
            },
        ];
        let s = shares(&m, CacheMode::Virtiofs);
        assert_eq!(
            s.iter().map(|s| s.tag()).collect::<Vec<_>>(),
            ["vmbuild-vol0", "vmbuild-vol1"]
        );
        assert_eq!((s[0].owner, s[0].root_mode), (Some((1000, 0)), None));
        assert_eq!((s[1].owner, s[1].root_mode), (None, Some(0o700)));
        assert_eq!(s[1].target, "/b");
        assert!(s.iter().all(|s| s.mode == CacheMode::Virtiofs));
    }
}
