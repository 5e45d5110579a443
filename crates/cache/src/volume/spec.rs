//! `--cache SPEC`: a cache volume as BuildKit's cache mounts describe it
//! (`id=gomod,target=/root/go/pkg/mod,sharing=locked`), parsed and checked
//! without touching anything.
//!
//! Keys (BuildKit's names where the meaning is the same, see
//! `RUN --mount=type=cache` in the Dockerfile reference): `id` (a named
//! volume under the cache root) or `src` (a host directory), `target` (an
//! absolute guest path), `sharing` (`shared` | `locked` | `private`),
//! `persist` (`never` | `on-success` | `always`), `uid`, `gid`, `mode`
//! (octal, e.g. `0755`).

use std::path::PathBuf;

use vmbuild_proto::CacheMode;

/// Where a volume's files live on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// `id=NAME`: `<cache root>/NAME`, created on first use.
    Named(String),
    /// `src=DIR`: a host directory of the user's.
    HostDir(PathBuf),
}

/// How concurrent vmbuild processes on one host share a volume (BuildKit's
/// `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Every build mounts the same directory at once.
    #[default]
    Shared,
    /// One build at a time; the next waits.
    Locked,
    /// A build that finds the volume held uses a free fork of it, or makes one.
    Private,
}

/// Whether a build's writes to the volume reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Writes are discarded (overlay mode's default).
    Never,
    /// Writes are applied to the host when the whole build succeeds.
    OnSuccess,
    /// Writes reach the host as they happen (virtiofs, bubblewrap).
    Always,
}

/// One `--cache` (or pipeline `cache:`) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub source: VolumeSource,
    /// Absolute guest path, normalised (no trailing `/`).
    pub target: String,
    pub sharing: Sharing,
    /// `None`: the cache mode's default ([`VolumeSpec::persist_in`]).
    pub persist: Option<Persist>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Permission bits of the volume root as the guest sees it.
    pub mode: Option<u32>,
}

/// Why a volume spec is refused; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--cache {spec:?}: {why}")]
    Bad { spec: String, why: String },
}

/// Volume ids: letters, digits, `-`, `_`, `.`, not starting with `.`
/// (names starting with a dot under the cache root are vmbuild's own: the
/// lock files of `src=DIR` volumes, commit staging); at most 64 bytes (a
/// directory name under the cache root).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Guest paths a volume may not be mounted at or under.
const RESERVED: &[&str] = &["/proc", "/sys", "/dev"];

/// Checks and normalises a guest target: absolute, no `..` or `.`
/// components, not `/`, nothing at or under `/proc`, `/sys`, `/dev`.
pub fn check_target(t: &str) -> Result<String, String> {
    if !t.starts_with('/') {
        return Err(format!("target {t:?} must be an absolute guest path"));
    }
    let parts: Vec<&str> = t.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(format!("target {t:?} must not contain '.' or '..'"));
    }
    if parts.is_empty() {
        return Err("target must not be / (the guest's root)".into());
    }
    if t.contains(['\0', ',', ':', '\\']) {
        return Err(format!(
            "target {t:?} must not contain NUL, ',', ':' or '\\'"
        ));
    }
    let norm = format!("/{}", parts.join("/"));
    if let Some(r) = RESERVED
        .iter()
        .find(|r| norm == **r || norm.starts_with(&format!("{r}/")))
    {
        return Err(format!(
            "target {norm} is under {r}, which the guest kernel owns"
        ));
    }
    Ok(norm)
}

/// `sharing=`: `shared`, `locked` or `private`.
pub fn parse_sharing(val: &str) -> Result<Sharing, String> {
    match val {
        "shared" => Ok(Sharing::Shared),
        "locked" => Ok(Sharing::Locked),
        "private" => Ok(Sharing::Private),
        _ => Err(format!("sharing={val:?}: use shared, locked or private")),
    }
}

/// `persist=`: `never`, `on-success` or `always`.
pub fn parse_persist(val: &str) -> Result<Persist, String> {
    match val {
        "never" => Ok(Persist::Never),
        "on-success" => Ok(Persist::OnSuccess),
        "always" => Ok(Persist::Always),
        _ => Err(format!("persist={val:?}: use never, on-success or always")),
    }
}

/// `mode=`: octal permission bits (`0755`, `755` or `0o755`, at most `07777`).
pub fn parse_mode(val: &str) -> Result<u32, String> {
    u32::from_str_radix(val.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("mode={val:?} is not octal permission bits like 0755"))
}

/// The message for an `id` that [`valid_id`] refuses.
pub fn bad_id(id: &str) -> String {
    format!("id={id:?}: use letters, digits, '-', '_' and '.' (at most 64), not a path")
}

impl std::str::FromStr for VolumeSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let bad = |why: String| SpecError::Bad {
            spec: spec.to_string(),
            why,
        };
        let (mut id, mut src, mut target) = (None, None, None);
        let mut v = VolumeSpec {
            source: VolumeSource::Named(String::new()),
            target: String::new(),
            sharing: Sharing::default(),
            persist: None,
            uid: None,
            gid: None,
            mode: None,
        };
        for field in spec.split(',') {
            let (k, val) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("{field:?} is not KEY=VALUE")))?;
            let num = |what: &str| {
                val.parse::<u32>()
                    .map_err(|_| bad(format!("{what}={val:?} is not a number")))
            };
            match k {
                "id" => id = Some(val.to_string()),
                "src" | "source" => src = Some(PathBuf::from(val)),
                "target" | "dst" | "destination" => target = Some(val.to_string()),
                "sharing" => v.sharing = parse_sharing(val).map_err(bad)?,
                "persist" => v.persist = Some(parse_persist(val).map_err(bad)?),
                "uid" => v.uid = Some(num("uid")?),
                "gid" => v.gid = Some(num("gid")?),
                "mode" => v.mode = Some(parse_mode(val).map_err(bad)?),
                _ => {
                    return Err(bad(format!(
                        "unknown key {k:?}; keys: id, src, target, sharing, persist, uid, gid, mode"
                    )))
                }
            }
        }
        v.source = match (id, src) {
            (Some(_), Some(_)) => return Err(bad("give id= or src=, not both".into())),
            (None, None) => {
                return Err(bad(
                    "needs id=NAME (a named volume) or src=DIR (a host directory)".into(),
                ))
            }
            (Some(id), None) if !valid_id(&id) => return Err(bad(bad_id(&id))),
            (Some(id), None) => VolumeSource::Named(id),
            (None, Some(p)) => VolumeSource::HostDir(p),
        };
        let target = target.ok_or_else(|| bad("needs target=/guest/path".into()))?;
        v.target = check_target(&target).map_err(bad)?;
        Ok(v)
    }
}

impl VolumeSpec {
    /// A short name for messages: the id, or the host dir.
    pub fn name(&self) -> String {
        match &self.source {
            VolumeSource::Named(id) => id.clone(),
            VolumeSource::HostDir(p) => p.display().to_string(),
        }
    }

    /// What happens to writes under `mode`: an explicit choice if it is
    /// possible there, else the mode's default (overlay: never; virtiofs:
    /// always, its only choice).
    pub fn persist_in(&self, mode: CacheMode) -> Result<Persist, String> {
        match (mode, self.persist) {
            (CacheMode::Overlay, None) => Ok(Persist::Never),
            (CacheMode::Overlay, Some(Persist::Always)) => Err(format!(
                "cache {}: persist=always needs the virtiofs cache mode (--cache-mode virtiofs); the overlay mode never writes the host while a build runs",
                self.name()
            )),
            (CacheMode::Overlay, Some(Persist::OnSuccess)) => Ok(Persist::OnSuccess),
            (CacheMode::Overlay, Some(Persist::Never)) => Ok(Persist::Never),
            (CacheMode::Virtiofs, None | Some(Persist::Always)) => Ok(Persist::Always),
            (CacheMode::Virtiofs, Some(p)) => Err(format!(
                "cache {}: persist={} is not possible in virtiofs mode, where the build writes the host directly; drop it or use the overlay mode",
                self.name(),
                if p == Persist::Never { "never" } else { "on-success" }
            )),
        }
    }
}

#[cfg(test)]
mod tests;
