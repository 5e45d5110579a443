//! `vmbuild build CONFIG.yaml`: load the pipeline, run its steps in one VM
//! (or bubblewrap sandbox), show progress, place the outputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vmbuild_config::{LoadOptions, Plan, GUEST_OUTPUT_DIR};
use vmbuild_image::rootfs::InUse;
use vmbuild_proto::{CommandSpec, GUEST_CACHE_DIR, GUEST_HOME};
use vmbuild_runner::pipeline::{self, Backend, BuildObserver, Step, StepsOutcome};
use vmbuild_runner::session::RootImage;
use vmbuild_runner::{env, RunError, Stopper, Timings, Vm};

use crate::cli::{BuildArgs, LogFormat, RunnerArg};
use crate::progress::{JsonProgress, Tee, TextProgress};

/// Exit code of a build whose step failed (the step's own code is shown).
pub const EXIT_STEP_FAILED: i32 = 1;

fn config_err(e: vmbuild_config::ConfigError) -> RunError {
    RunError::InvalidInput(e.to_string())
}

type EnvPairs = Vec<(String, String)>;

/// The cache defaults in the form the config crate layers them: the
/// values, and (default, alias) pairs.
fn cache_layers() -> (EnvPairs, EnvPairs) {
    let defaults = vmbuild_cache::cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME);
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

fn steps(plan: &Plan) -> Vec<Step> {
    plan.steps
        .iter()
        .map(|s| Step {
            name: s.name.clone(),
            depth: s.depth,
            command: CommandSpec {
                argv: s.argv(),
                env: s.env.clone(),
                cwd: s.workdir.clone(),
            },
            timeout: s.timeout,
        })
        .collect()
}

fn observer(args: &BuildArgs) -> Result<Box<dyn BuildObserver>, RunError> {
    use std::io::IsTerminal;
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let screen: Box<dyn BuildObserver> = if json {
        Box::new(JsonProgress::new(std::io::stderr()))
    } else {
        Box::new(TextProgress::new(std::io::stderr()))
    };
    Ok(match &args.log_file {
        None => screen,
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| RunError::io(format!("--log-file {}", p.display()), e))?;
            Box::new(Tee(screen, TextProgress::new(f)))
        }
    })
}

/// The environment image for the pipeline's packages, built on first use
/// (progress shown as notes) and reused afterwards; held for use (not
/// removable by `image rm`/`prune`) until the returned guard is dropped.
fn env_image(
    plan: &Plan,
    obs: &mut Box<dyn BuildObserver>,
) -> Result<(RootImage, InUse), RunError> {
    let spec = vmbuild_image::rootfs::EnvSpec::new(plan.packages.clone());
    let root = vmbuild_image::cache_root()?;
    let (held, built) = tokio::task::block_in_place(|| {
        vmbuild_image::rootfs::ensure_env_image_in_use(&root, &spec, &mut |l: &str| obs.note(l))
    })?;
    let img = held.image();
    obs.note(&format!(
        "environment image {} ({}, {} MiB){}",
        img.short_key(),
        img.format.fs_type(),
        img.size >> 20,
        if built { ", built now" } else { ", cached" }
    ));
    Ok((crate::rootfs_arg::root_image(img), held))
}

fn source_dir(args: &BuildArgs) -> Result<PathBuf, RunError> {
    let dir = match &args.source_dir {
        Some(d) => d.clone(),
        None => match args.config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let canon = dir
        .canonicalize()
        .map_err(|e| RunError::InvalidInput(format!("--source-dir {}: {e}", dir.display())))?;
    if !canon.is_dir() {
        return Err(RunError::InvalidInput(format!(
            "--source-dir {} is not a directory",
            dir.display()
        )));
    }
    Ok(canon)
}

pub async fn build(
    args: BuildArgs,
    started: Instant,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> Result<i32, RunError> {
    // The qemu runner's checks (QEMU, cache dir and mode, virtiofsd,
    // --rootfs) come first and once; bubblewrap needs only the cache dir.
    let mut prepared = match args.runner {
        RunnerArg::Qemu => Some(crate::vm_setup::prepare(
            &args.vm,
            crate::cli::NetworkArg::User,
        )?),
        RunnerArg::Bubblewrap => None,
    };
    let cache = match &prepared {
        Some(p) => p.opts.cache.clone().zip(p.cache_note.clone()),
        None => crate::vm_setup::prepare_cache(&args.vm)?,
    };
    let (cache_defaults, cache_default_aliases) = if cache.is_some() {
        cache_layers()
    } else {
        Default::default()
    };
    let opts = LoadOptions {
        pipeline_dirs: args.pipeline_dir.clone(),
        env_file: args.env_file.clone(),
        cli_env: args.env.clone(),
        cache_defaults,
        cache_default_aliases,
        base_env: env::base_env_with_ca(
            prepared.as_ref().is_some_and(|p| p.opts.ca_certs.is_some()),
        ),
    };
    let plan = vmbuild_config::load(&args.config, &opts).map_err(config_err)?;
    let source = source_dir(&args)?;
    let output_dir = args
        .output_dir
        .clone()
        .unwrap_or_else(|| Path::new("vmbuild-out").join(&plan.package.name));
    if !plan.packages.is_empty() && args.runner == RunnerArg::Bubblewrap {
        return Err(RunError::InvalidInput(format!(
            "{}: environment.contents.packages needs the qemu runner (bubblewrap uses the host's root filesystem)",
            args.config.display()
        )));
    }
    if args.vm.rootfs.is_some() && args.runner == RunnerArg::Bubblewrap {
        return Err(RunError::InvalidInput(
            "--rootfs needs the qemu runner (bubblewrap uses the host's root filesystem)".into(),
        ));
    }
    if !args.vm.ca_certs.is_empty() && args.runner == RunnerArg::Bubblewrap {
        return Err(RunError::InvalidInput(
            "--ca-cert needs the qemu runner (bubblewrap gives steps no network and the host's own CA store)".into(),
        ));
    }
    if !plan.packages.is_empty() && args.vm.rootfs.is_some() {
        return Err(RunError::InvalidInput(
            "--rootfs and environment.contents.packages both name the root filesystem: use one"
                .into(),
        ));
    }
    let steps = steps(&plan);
    let timeout = args.timeout.or(plan.package.timeout);
    let stop = Stopper::new(timeout, interrupt);
    let mut obs = observer(&args)?;

    let runner_name = match args.runner {
        RunnerArg::Qemu => "qemu",
        RunnerArg::Bubblewrap => "bubblewrap",
    };
    obs.note(&format!(
        "building {} {}: {} step(s) with the {runner_name} runner",
        plan.package.name,
        plan.package.version,
        steps.len()
    ));
    for s in &plan.skipped {
        obs.note(&format!("skipped (if: false): {s}"));
    }
    match (&cache, args.runner) {
        (Some((c, _)), RunnerArg::Bubblewrap) => {
            if args.vm.cache_mode.is_some() {
                return Err(RunError::InvalidInput(
                    "--cache-mode applies to the qemu runner; bubblewrap always binds the cache read-write".into(),
                ));
            }
            obs.note(&format!(
                "cache: {} (bind-mounted read-write; writes persist)",
                c.host_dir.display()
            ));
        }
        (Some((_, note)), _) => obs.note(note),
        (None, _) => {}
    }

    let mut backend = match prepared.as_mut() {
        Some(prepared) => {
            prepared.opts.cpus = args
                .vm
                .cpus
                .or(plan.package.cpus)
                .unwrap_or(crate::vm_setup::DEFAULT_CPUS);
            prepared.opts.memory_mib = args
                .vm
                .memory
                .or(plan.package.memory_mib)
                .unwrap_or(crate::vm_setup::DEFAULT_MEMORY_MIB);
            prepared.opts.source = Some(source.clone());
            prepared.opts.mkdirs = vec![GUEST_OUTPUT_DIR.to_string()];
            if prepared.opts.cache.is_some() {
                prepared.opts.symlinks =
                    env::cache_links(plan.steps.iter().map(|s| s.env.as_slice()));
            }
            if !plan.packages.is_empty() {
                let (image, held) = env_image(&plan, &mut obs)?;
                prepared.opts.rootfs = Some(image);
                prepared.image_hold = Some(held);
            }
            let assets = crate::vm_setup::assets(prepared.kernel.clone()).await?;
            obs.note("booting the VM");
            let timings = Timings {
                process_start: Some(started),
                ..Default::default()
            };
            let vm = Vm::boot(&prepared.opts, &assets, &stop, timings).await?;
            Backend::Qemu(Box::new(vm))
        }
        None => {
            let opts = vmbuild_runner::BwrapOptions {
                bwrap: None,
                source_dir: source.clone(),
                cache_dir: cache.as_ref().map(|(c, _)| c.host_dir.clone()),
            };
            let sandbox = tokio::task::block_in_place(|| vmbuild_runner::Sandbox::start(&opts))?;
            Backend::Bwrap(sandbox)
        }
    };

    let mut oom_notes = crate::oom::OomNotes {
        memory_mib: prepared.as_ref().map(|p| p.opts.memory_mib),
        inner: &mut *obs,
    };
    let outcome = match pipeline::run_steps(&mut backend, &steps, &mut oom_notes, &stop).await {
        Ok(o) => o,
        Err(e) => {
            backend.abort().await;
            return Err(e);
        }
    };
    match outcome {
        StepsOutcome::AllPassed { .. } => {
            obs.note(&format!(
                "exporting {GUEST_OUTPUT_DIR} to {}",
                output_dir.display()
            ));
            let report = match pipeline::export_outputs(
                &mut backend,
                GUEST_OUTPUT_DIR,
                env::base_env(),
                &output_dir,
                &stop,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    backend.abort().await;
                    return Err(e);
                }
            };
            backend.finish().await?;
            obs.note(&format!(
                "built {} {} in {:.1}s: {} file(s), {} symlink(s), {} hard link(s), {} dir(s) in {}",
                plan.package.name,
                plan.package.version,
                started.elapsed().as_secs_f64(),
                report.files,
                report.symlinks,
                report.hardlinks,
                report.dirs,
                output_dir.display()
            ));
            Ok(0)
        }
        StepsOutcome::Failed {
            name, exit, tail, ..
        } => {
            backend.finish().await?;
            let status = match (exit.code, exit.signal) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "an unknown status".into(),
            };
            eprintln!("vmbuild: error: step '{name}' failed with {status}; no outputs were placed");
            if !tail.trim().is_empty() {
                eprintln!("vmbuild: last output of '{name}':");
                for l in tail.lines() {
                    eprintln!("  {l}");
                }
            }
            Ok(EXIT_STEP_FAILED)
        }
    }
}
