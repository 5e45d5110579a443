//! `vmbuild cache ls | du | inspect | clear | rm | prune`: the named cache
//! volumes under the cache root. The work (and its locking) is in
//! `vmbuild_cache::volume`; this parses, prints and says what to do.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use vmbuild_cache::volume::{self, DuEntry, Holder, Volume};

use crate::cli::{CacheCommand, CacheRootArg, OutputFormat};
use crate::human::{ago, human_size, rfc3339, unix_secs};

/// The cache root: `--cache-root`, else the environment's.
pub(crate) fn root_of(a: &CacheRootArg) -> Result<PathBuf> {
    volume::cache_root(a.cache_root.as_deref(), |k| std::env::var_os(k)).context(
        "no cache root: pass --cache-root DIR or set VMBUILD_CACHE_ROOT (HOME is not set either)",
    )
}

/// An argument naming a plain directory rather than a volume: it has a
/// `/` (`./cache`), or is no volume name at all.
pub(crate) fn is_dir_arg(s: &str) -> bool {
    s.contains('/') || volume::parse_volume_name(s).is_none()
}

fn holder_json(h: &Holder) -> Value {
    match h {
        Holder::Idle => json!({"state": "idle", "pids": []}),
        Holder::Shared(p) => json!({"state": "shared", "pids": p}),
        Holder::Exclusive(p) => json!({"state": "exclusive", "pids": [p]}),
    }
}

/// A volume as JSON; `last_used` is RFC 3339 (UTC), `last_used_unix`
/// seconds since the epoch.
fn volume_json(v: &Volume) -> Value {
    json!({
        "name": v.name,
        "id": v.id,
        "fork": v.fork,
        "path": v.path,
        "size_bytes": v.usage.bytes,
        "files": v.usage.files,
        "last_used": rfc3339(v.last_used),
        "last_used_unix": unix_secs(v.last_used),
        "holder": holder_json(&v.holder),
    })
}

fn forks_of<'a>(all: &'a [Volume], v: &Volume) -> Vec<&'a Volume> {
    match v.fork {
        None => all
            .iter()
            .filter(|f| f.id == v.id && f.fork.is_some())
            .collect(),
        Some(_) => Vec::new(),
    }
}

fn ls(root: &Path, format: OutputFormat) -> Result<()> {
    let all = volume::list_volumes(root)?;
    if format == OutputFormat::Json {
        let vols: Vec<Value> = all
            .iter()
            .map(|v| {
                let mut j = volume_json(v);
                let forks: Vec<&str> = forks_of(&all, v).iter().map(|f| f.name.as_str()).collect();
                j["forks"] = json!(forks);
                j
            })
            .collect();
        println!("{:#}", json!({"root": root, "volumes": vols}));
        return Ok(());
    }
    if all.is_empty() {
        println!(
            "no cache volumes in {} (a build makes one on first use of --cache id=NAME,target=PATH)",
            root.display()
        );
        return Ok(());
    }
    println!(
        "{:<20}  {:>9}  {:>7}  {:<10}  {:<22}  PATH",
        "VOLUME", "SIZE", "FILES", "LAST USED", "HOLDER"
    );
    for v in &all {
        println!(
            "{:<20}  {:>9}  {:>7}  {:<10}  {:<22}  {}",
            v.name,
            human_size(v.usage.bytes),
            v.usage.files,
            ago(v.last_used),
            v.holder.to_string(),
            v.path.display()
        );
    }
    let total: u64 = all.iter().map(|v| v.usage.bytes).sum();
    println!(
        "{} volume(s) and fork(s), {} in {}",
        all.len(),
        human_size(total),
        root.display()
    );
    Ok(())
}

fn du(root: &Path, target: Option<&str>, format: OutputFormat) -> Result<()> {
    let (dir, entries): (PathBuf, Vec<DuEntry>) = match target {
        None => {
            let mut v: Vec<DuEntry> = volume::list_volumes(root)?
                .into_iter()
                .map(|v| DuEntry {
                    name: v.name,
                    usage: v.usage,
                })
                .collect();
            v.sort_by(|a, b| b.usage.bytes.cmp(&a.usage.bytes).then(a.name.cmp(&b.name)));
            (root.to_path_buf(), v)
        }
        Some(t) => {
            let dir = if is_dir_arg(t) {
                PathBuf::from(t)
            } else {
                volume::find_volume(root, t)?.path
            };
            let e = volume::du_entries(&dir).with_context(|| {
                format!(
                    "measuring {}; pass a volume id or a directory",
                    dir.display()
                )
            })?;
            (dir, e)
        }
    };
    let total: u64 = entries.iter().map(|e| e.usage.bytes).sum();
    if format == OutputFormat::Json {
        let e: Vec<Value> = entries
            .iter()
            .map(|e| json!({"name": e.name, "size_bytes": e.usage.bytes, "files": e.usage.files}))
            .collect();
        println!(
            "{:#}",
            json!({"path": dir, "size_bytes": total, "entries": e})
        );
        return Ok(());
    }
    for e in &entries {
        println!("{:>9}  {}", human_size(e.usage.bytes), e.name);
    }
    println!("{:>9}  total ({})", human_size(total), dir.display());
    Ok(())
}

fn inspect(root: &Path, name: &str) -> Result<()> {
    let v = volume::find_volume(root, name)?;
    let all = volume::list_volumes(root)?;
    let mut j = volume_json(&v);
    j["forks"] = Value::Array(forks_of(&all, &v).into_iter().map(volume_json).collect());
    println!("{j:#}");
    Ok(())
}

fn clear(root: &Path, target: &str, subpaths: &[String], no_wait: bool) -> Result<()> {
    let cleared = if is_dir_arg(target) {
        let dir = Path::new(target);
        if !dir.is_dir() {
            bail!("{target} is not a directory; pass a volume id (see `vmbuild cache ls`) or an existing directory");
        }
        volume::clear_dir(dir, subpaths)?
    } else {
        let v = volume::find_volume(root, target)?;
        let _lock = volume::lock_exclusive(root, &v.name, !no_wait, |pid| {
            let who = pid.map_or("another process".into(), |p| format!("pid {p}"));
            eprintln!("vmbuild: cache volume {} is held by {who}; waiting for it (Ctrl-C to stop, --no-wait to fail instead)", v.name);
        })?;
        volume::clear_dir(&v.path, subpaths)?
    };
    let mut freed = 0;
    for (name, usage) in &cleared {
        match usage {
            Some(u) => {
                freed += u.bytes;
                println!("removed {name} ({})", human_size(u.bytes));
            }
            None => println!("{name}: not there"),
        }
    }
    println!("cleared {target}: {} freed", human_size(freed));
    Ok(())
}

fn rm(root: &Path, ids: &[String]) -> Result<()> {
    for id in ids {
        let size: u64 = volume::list_volumes(root)?
            .iter()
            .filter(|v| v.name == *id || (v.id == *id && v.fork.is_some()))
            .map(|v| v.usage.bytes)
            .sum();
        let names = volume::remove_volume(root, id)?;
        if !id.contains('~') {
            // Its export record describes content that is gone.
            vmbuild_transfer::records::forget(&crate::cache_transfer::records_dir(root), id);
        }
        println!("removed {} ({})", names.join(", "), human_size(size));
    }
    Ok(())
}

/// Prune needs a limit: without one it would remove everything idle.
fn need_limits(keep: Option<std::time::Duration>, max_size: Option<u64>) -> Result<()> {
    if keep.is_none() && max_size.is_none() {
        bail!("say what to prune: --keep-duration AGE (e.g. 30d; 1s: everything idle) and/or --max-size SIZE (e.g. 20G)");
    }
    Ok(())
}

fn prune(
    root: &Path,
    keep: Option<std::time::Duration>,
    max_size: Option<u64>,
    dry_run: bool,
    format: OutputFormat,
) -> Result<()> {
    need_limits(keep, max_size)?;
    let p = volume::prune(root, SystemTime::now(), keep, max_size, dry_run)?;
    let freed: u64 = p.removed.iter().map(|v| v.usage.bytes).sum();
    if format == OutputFormat::Json {
        let j = json!({
            "dry_run": dry_run,
            "removed": p.removed.iter().map(volume_json).collect::<Vec<_>>(),
            "held": p.held.iter().map(volume_json).collect::<Vec<_>>(),
            "freed_bytes": freed,
        });
        println!("{j:#}");
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for v in &p.removed {
        println!(
            "{verb} {} ({}, last used {})",
            v.name,
            human_size(v.usage.bytes),
            ago(v.last_used)
        );
    }
    for v in &p.held {
        println!(
            "skipped {} ({}): held, {}",
            v.name,
            human_size(v.usage.bytes),
            v.holder
        );
    }
    println!(
        "{verb} {} volume(s), {}",
        p.removed.len(),
        human_size(freed)
    );
    Ok(())
}

/// Runs one `vmbuild cache` subcommand.
pub fn cache(cmd: CacheCommand) -> Result<()> {
    match cmd {
        CacheCommand::Ls { root, format } => ls(&root_of(&root)?, format),
        CacheCommand::Du {
            target,
            root,
            format,
        } => du(&root_of(&root)?, target.as_deref(), format),
        CacheCommand::Inspect { id, root } => inspect(&root_of(&root)?, &id),
        CacheCommand::Clear {
            target,
            subpaths,
            no_wait,
            root,
        } => clear(&root_of(&root)?, &target, &subpaths, no_wait),
        CacheCommand::Rm { ids, root } => rm(&root_of(&root)?, &ids),
        CacheCommand::Prune {
            keep_duration,
            max_size,
            dry_run,
            dir: Some(dir),
            format,
            ..
        } => prune_dir(&dir, keep_duration, max_size, dry_run, format),
        CacheCommand::Prune {
            keep_duration,
            max_size,
            dry_run,
            dir: None,
            root,
            format,
        } => prune(&root_of(&root)?, keep_duration, max_size, dry_run, format),
        CacheCommand::Export { .. } | CacheCommand::Import { .. } => {
            bail!("cache export/import run through cache_cmd::transfer")
        }
    }
}

/// `prune --dir DIR`: the top-level entries of a plain cache directory.
fn prune_dir(
    dir: &Path,
    keep: Option<std::time::Duration>,
    max_size: Option<u64>,
    dry_run: bool,
    format: OutputFormat,
) -> Result<()> {
    need_limits(keep, max_size)?;
    let removed = volume::prune_plain(dir, SystemTime::now(), keep, max_size, dry_run)?;
    let freed: u64 = removed.iter().map(|e| e.bytes).sum();
    if format == OutputFormat::Json {
        let entries: Vec<Value> = removed
            .iter()
            .map(|e| json!({"name": e.name, "size_bytes": e.bytes, "last_used": rfc3339(e.last_used)}))
            .collect();
        println!(
            "{:#}",
            json!({"dry_run": dry_run, "dir": dir, "removed": entries, "freed_bytes": freed})
        );
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for e in &removed {
        println!(
            "{verb} {}/{} ({}, last used {})",
            dir.display(),
            e.name,
            human_size(e.bytes),
            ago(e.last_used)
        );
    }
    println!("{verb} {} entr(ies), {}", removed.len(), human_size(freed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_volume_names_are_told_apart() {
        assert!(is_dir_arg("./cache"));
        assert!(is_dir_arg("/var/cache/x"));
        assert!(is_dir_arg("."));
        assert!(!is_dir_arg("npm"));
        assert!(!is_dir_arg("npm~2"));
    }
}
