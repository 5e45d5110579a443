//! `vmbuild image ls | build | rm | prune`: the cached environment images,
//! and their copies imported into a Docker Engine by the docker runner
//! (`vmbuild/env:<key>`): listed when an engine answers, removed with the
//! image they came from.

use anyhow::{bail, Context, Result};
use vmbuild_image::env::{self, EnvImage, EnvSpec};

use crate::cli::{ImageBuildArgs, ImageCommand};
use crate::human::{ago, human_size};

fn print_table(images: &[EnvImage]) {
    println!(
        "{:<12}  {:<6}  {:>10}  {:<10}  {:<9}  PACKAGES",
        "IMAGE", "FORMAT", "SIZE", "LAST USED", "SUITE"
    );
    for i in images {
        println!(
            "{:<12}  {:<6}  {:>10}  {:<10}  {:<9}  {}",
            i.short_key(),
            i.format.fs_type(),
            human_size(i.size),
            ago(i.last_used),
            i.spec.suite,
            i.spec.packages.join(" ")
        );
    }
}

/// The image spec of a pipeline file or of `--package` flags.
fn spec_of(a: &ImageBuildArgs) -> Result<EnvSpec> {
    let spec = match &a.config {
        Some(cfg) => {
            let opts = vmbuild_config::LoadOptions {
                environment_only: true,
                ..Default::default()
            };
            let plan = vmbuild_config::load(cfg, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
            if plan.packages.is_empty() {
                bail!(
                    "{} asks for no packages (environment.contents.packages): nothing to build",
                    cfg.display()
                );
            }
            let wanted = crate::packages::wanted(&plan.packages);
            let debian = crate::packages::debian_packages(cfg, &[wanted], &[])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            EnvSpec::new(debian.concat())
        }
        None if !a.package.is_empty() => EnvSpec::new(a.package.clone()),
        None => bail!("give a pipeline file or --package NAME (repeatable)"),
    };
    Ok(a.distro.apply(spec))
}

/// Runs `f` against the Docker Engine when one answers (`DOCKER_HOST` or
/// the default socket); `None` when none does (no engine is not an error
/// for managing the host's images). Called from a blocking section of the
/// multi-threaded runtime.
fn with_engine<T, F>(f: impl FnOnce(vmbuild_runner::docker::Engine) -> F) -> Option<Result<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    tokio::runtime::Handle::current().block_on(async {
        let engine = vmbuild_runner::docker::Engine::connect().await.ok()?;
        Some(f(engine).await)
    })
}

/// Removes the engine copies whose key is in `keys` (full keys); prints
/// what went.
fn remove_engine_copies(keys: &[String]) -> Result<()> {
    let keys = keys.to_vec();
    let gone = with_engine(|e| async move {
        let mut gone = Vec::new();
        for i in e.env_images().await? {
            if keys.contains(&i.key) {
                e.remove_image(&i.key).await?;
                gone.push(i);
            }
        }
        Ok(gone)
    });
    for i in gone.transpose()?.unwrap_or_default() {
        println!(
            "removed the Docker Engine copy vmbuild/env:{} ({})",
            i.key,
            human_size(i.size)
        );
    }
    Ok(())
}

pub fn image(cmd: ImageCommand) -> Result<()> {
    let root = vmbuild_image::cache_root()?;
    match cmd {
        ImageCommand::Ls => {
            let images = env::list_images(&root)?;
            if images.is_empty() {
                println!("no environment images (they are built on first use, or with `vmbuild image build`)");
            } else {
                print_table(&images);
                let total: u64 = images.iter().map(|i| i.size).sum();
                println!(
                    "{} image(s), {} in {}",
                    images.len(),
                    human_size(total),
                    env::images_dir(&root).display()
                );
            }
            let engine =
                with_engine(|e| async move { Ok((e.address.clone(), e.env_images().await?)) });
            if let Some((address, copies)) = engine.transpose()? {
                if !copies.is_empty() {
                    println!("in the docker engine at {address}:");
                    println!("{:<40}  {:>10}  CREATED", "IMAGE", "SIZE");
                    for c in &copies {
                        println!(
                            "{:<40}  {:>10}  {}",
                            format!("vmbuild/env:{}", c.key),
                            human_size(c.size),
                            ago(std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(
                                    u64::try_from(c.created).unwrap_or(0)
                                ))
                        );
                    }
                }
            }
        }
        ImageCommand::Build(a) => {
            let spec = spec_of(&a)?;
            let t0 = std::time::Instant::now();
            let mut live = crate::live::ToolLog::new(
                crate::live::mode(),
                &root.join("logs"),
                "environment image",
            );
            let result = env::ensure_env_image(&root, &spec, &mut |l: &str| {
                if let Some(p) = live.line(l) {
                    eprintln!("vmbuild: {p}");
                }
            });
            if let Some(l) = live.finish(result.is_ok()) {
                eprintln!("vmbuild: {l}");
            }
            let (img, built) = result.context("building the environment image")?;
            let what = if built {
                format!("built in {:.0}s", t0.elapsed().as_secs_f64())
            } else {
                "already cached".into()
            };
            println!(
                "{} {} ({}, {}): {}",
                img.short_key(),
                img.path.display(),
                img.format.fs_type(),
                human_size(img.size),
                what
            );
        }
        ImageCommand::Rm { images } => {
            for k in images {
                // An engine-only copy (the busybox environment, a --rootfs
                // import) goes by its full tag key.
                let engine_only = with_engine(|e| {
                    let k = k.clone();
                    async move { Ok(e.env_images().await?.into_iter().any(|i| i.key == k)) }
                });
                if engine_only.transpose()?.unwrap_or(false) && env::find_image(&root, &k).is_err()
                {
                    remove_engine_copies(std::slice::from_ref(&k))?;
                    continue;
                }
                let img = env::remove_image(&root, &k)?;
                println!("removed {} ({})", img.short_key(), human_size(img.size));
                remove_engine_copies(&[img.key])?;
            }
        }
        ImageCommand::Prune {
            older_than,
            max_size,
            dry_run,
        } => {
            if older_than.is_none() && max_size.is_none() {
                bail!("say what to prune: --older-than DURATION (e.g. 30d) and/or --max-size SIZE (e.g. 20G)");
            }
            let gone = env::prune_images(&root, older_than, max_size, dry_run)?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for i in &gone {
                println!(
                    "{verb} {} ({}, last used {})",
                    i.short_key(),
                    human_size(i.size),
                    ago(i.last_used)
                );
            }
            let freed: u64 = gone.iter().map(|i| i.size).sum();
            println!("{verb} {} image(s), {}", gone.len(), human_size(freed));
            if !dry_run {
                let keys: Vec<String> = gone.iter().map(|i| i.key.clone()).collect();
                remove_engine_copies(&keys)?;
            }
        }
    }
    Ok(())
}
