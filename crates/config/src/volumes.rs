//! The top-level `cache:` list: build-level cache volumes with the keys of
//! `--cache` (`id`, `target`, `sharing`, `persist`, `uid`, `gid`, `mode`),
//! checked by the cache crate's own pure functions so a file and a flag
//! accept exactly the same values; every error is located.
//!
//! A pipeline file may only name volumes (`id:`), never a host directory:
//! `src:` would let whoever wrote the file (a pull request, say) mount any
//! host path read-write into the build. `src=DIR` stays a command-line
//! choice. Values are not `${{...}}`-substituted.

use vmbuild_cache::volume::{
    bad_id, check_target, parse_mode, parse_persist, parse_sharing, valid_id, VolumeSource,
    VolumeSpec,
};

use crate::decode::{Cx, Fields, Str};
use crate::error::{show, ConfigError};
use crate::yaml::Node;

pub(crate) const CACHE_KEYS: &[&str] = &[
    "id", "target", "sharing", "persist", "uid", "gid", "mode", "src",
];

/// Decodes the top-level `cache:` list (absent or null: empty). Two
/// entries may not share an id or a target.
pub(crate) fn cache(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<VolumeSpec>, ConfigError> {
    let mut out: Vec<VolumeSpec> = Vec::new();
    for node in cx.list(f, "cache")? {
        let (v, id, target) = volume(cx, node)?;
        if out.iter().any(|o| o.name() == v.name()) {
            return Err(cx.invalid(
                id.pos,
                "id",
                format!(
                    "cache `{}` is listed twice; mount one volume once",
                    show(&id.value)
                ),
            ));
        }
        if let Some(o) = out.iter().find(|o| o.target == v.target) {
            return Err(cx.invalid(
                target.pos,
                "target",
                format!(
                    "target {} is already cache `{}`'s; give each volume its own target",
                    v.target,
                    o.name()
                ),
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// One entry, with its `id` and `target` (for errors about duplicates).
fn volume(cx: Cx<'_>, node: &Node) -> Result<(VolumeSpec, Str, Str), ConfigError> {
    let f = cx.map(node, "cache", "a cache volume", CACHE_KEYS)?;
    if let Some(k) = f.key_node("src") {
        return Err(cx.invalid(
            k.pos,
            "src",
            "a pipeline file cannot mount a host directory (it would let the file write anywhere on the host); use `id: NAME` for a named volume, or pass --cache src=DIR,target=... on the command line".into(),
        ));
    }
    let id = cx.req_string(&f, "id")?;
    if !valid_id(&id.value) {
        return Err(cx.invalid(id.pos, "id", bad_id(&id.value)));
    }
    let target = cx.req_string(&f, "target")?;
    let spec = VolumeSpec {
        source: VolumeSource::Named(id.value.clone()),
        target: check_target(&target.value).map_err(|m| cx.invalid(target.pos, "target", m))?,
        sharing: opt(cx, &f, "sharing", parse_sharing)?.unwrap_or_default(),
        persist: opt(cx, &f, "persist", parse_persist)?,
        uid: opt(cx, &f, "uid", number)?,
        gid: opt(cx, &f, "gid", number)?,
        mode: opt(cx, &f, "mode", parse_mode)?,
    };
    Ok((spec, id, target))
}

/// An optional key read with `parse`, its error placed on the value.
fn opt<T>(
    cx: Cx<'_>,
    f: &Fields<'_>,
    key: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    cx.opt_string(f, key)?
        .map(|s| parse(&s.value).map_err(|m| cx.invalid(s.pos, key, m)))
        .transpose()
}

fn number(val: &str) -> Result<u32, String> {
    val.parse()
        .map_err(|_| format!("`{}` is not a number (a uid or gid)", show(val)))
}
