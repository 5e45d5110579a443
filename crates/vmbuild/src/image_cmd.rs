//! `vmbuild image ls | build | rm | prune`: the cached environment images.

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
    let mut spec = match &a.config {
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
            let debian = crate::packages::debian_packages(cfg, &wanted, &[])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            EnvSpec::new(debian)
        }
        None if !a.package.is_empty() => EnvSpec::new(a.package.clone()),
        None => bail!("give a pipeline file or --package NAME (repeatable)"),
    };
    if let Some(s) = &a.suite {
        spec.suite = s.clone();
    }
    if let Some(m) = &a.mirror {
        spec.mirror = Some(m.clone());
    }
    Ok(spec)
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
        }
        ImageCommand::Build(a) => {
            let spec = spec_of(&a)?;
            let t0 = std::time::Instant::now();
            use std::io::IsTerminal;
            let mut live = crate::live::Live::new(
                std::io::stderr().is_terminal(),
                &root.join("logs"),
                "environment image",
            );
            let result = env::ensure_env_image(&root, &spec, &mut |l: &str| live.line(l));
            live.finish(result.is_ok());
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
                let img = env::remove_image(&root, &k)?;
                println!("removed {} ({})", img.short_key(), human_size(img.size));
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
        }
    }
    Ok(())
}
