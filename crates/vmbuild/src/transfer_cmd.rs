//! `vmbuild cache export ID|DIR... --to SPEC` and `vmbuild cache import
//! ID|DIR --from SPEC`: the standalone cache transfers (the transfer
//! itself is `vmbuild_transfer`; the thread, progress and Ctrl-C are
//! `cache_transfer::on_thread`, shared with `build`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use vmbuild_cache::volume;

use crate::cache_cmd::{is_dir_arg, root_of};
use crate::cli::CacheCommand;

/// A `vmbuild cache export|import` argument as a transfer volume: a
/// directory (a path with a `/`, named `name`) or a volume id.
fn transfer_vol(
    root: &Path,
    target: &str,
    name: Option<&str>,
) -> Result<crate::cache_transfer::Vol> {
    if is_dir_arg(target) {
        let name = name.unwrap_or(crate::cache_transfer::CACHE_DIR_NAME);
        return Ok(crate::cache_transfer::dir_vol(name, Path::new(target))?);
    }
    let (id, fork) = volume::parse_volume_name(target)
        .with_context(|| format!("{target} is not a volume name"))?;
    if fork.is_some() {
        bail!("{target} is a private fork; export or import the volume {id}");
    }
    Ok(crate::cache_transfer::Vol {
        name: name.unwrap_or(id).to_string(),
        dir: root.join(id),
        lock: id.to_string(),
        key: id.to_string(),
    })
}

/// `vmbuild cache export ID|DIR... --to SPEC` and `vmbuild cache import
/// ID|DIR --from SPEC`: an explicit import replaces the volume's content
/// (under its exclusive lock, waiting for builds that hold it).
pub async fn transfer(cmd: CacheCommand, stop: &vmbuild_runner::Stopper) -> Result<()> {
    use crate::cache_transfer::{on_thread, records_dir};
    use vmbuild_transfer::{Direction, ExportOptions, Source};
    let mut note = |l: &str| crate::live::suspend(|| eprintln!("vmbuild: {l}"));
    match cmd {
        CacheCommand::Export {
            targets,
            to,
            name,
            root,
        } => {
            let root = root_of(&root)?;
            if name.is_some() && targets.len() > 1 {
                bail!("--name names one directory; export several targets without it");
            }
            let mut sources = Vec::new();
            for t in &targets {
                let v = transfer_vol(&root, t, name.as_deref())?;
                if !is_dir_arg(t) && !v.dir.is_dir() {
                    bail!(
                        "no volume {t} under {} (see `vmbuild cache ls`)",
                        root.display()
                    );
                }
                if sources.iter().any(|s: &Source| s.name == v.name) {
                    bail!(
                        "two targets are both named {} in the export; give each its own --name",
                        v.name
                    );
                }
                sources.push(Source {
                    name: v.name,
                    dir: v.dir,
                    key: v.key,
                });
            }
            let records = records_dir(&root);
            let label = format!("cache-to {to}");
            let summary = on_thread(&label, stop, &mut note, move |meter| {
                let mut store = vmbuild_transfer::open(&to, Direction::To, &[])?;
                vmbuild_transfer::export(
                    &sources,
                    store.as_mut(),
                    &ExportOptions {
                        level: to.compression_level,
                        records: &records,
                        meter,
                    },
                )
            })
            .await??;
            println!("cache-to {summary}");
            Ok(())
        }
        CacheCommand::Import {
            target,
            from,
            volume: wanted,
            root,
        } => {
            let root = root_of(&root)?;
            std::fs::create_dir_all(&root)
                .with_context(|| format!("creating the cache root {}", root.display()))?;
            let v = transfer_vol(&root, &target, wanted.as_deref())?;
            let label = format!("cache-from {from}");
            let lock_root = root.clone();
            let outcome = on_thread(&label, stop, &mut note, move |meter| {
                let mut store = vmbuild_transfer::open(&from, Direction::From, &[])?;
                let export = vmbuild_transfer::read_export(store.as_mut())?;
                if !export.config.volumes.iter().any(|x| x.name == v.name) {
                    return Err(vmbuild_transfer::TransferError::NoSuchVolume {
                        place: store.place(),
                        volume: v.name.clone(),
                        have: export
                            .config
                            .volumes
                            .iter()
                            .map(|x| x.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                let _lock = volume::lock_exclusive(&lock_root, &v.lock, true, |pid| {
                    crate::live::suspend(|| {
                        eprintln!(
                            "vmbuild: waiting for {} to be released{}",
                            v.name,
                            pid.map(|p| format!(" by pid {p}")).unwrap_or_default()
                        )
                    })
                })
                .map_err(|e| vmbuild_transfer::TransferError::Lock(e.to_string()))?;
                let dest = vmbuild_transfer::Dest {
                    name: v.name.clone(),
                    dir: v.dir.clone(),
                    key: v.key.clone(),
                    force: true,
                };
                vmbuild_transfer::import(
                    store.as_mut(),
                    &export,
                    &[dest],
                    &records_dir(&lock_root),
                    meter,
                )
            })
            .await??;
            for o in outcome {
                println!("cache-from {}", o.line());
            }
            Ok(())
        }
        other => crate::cache_cmd::cache(other),
    }
}
