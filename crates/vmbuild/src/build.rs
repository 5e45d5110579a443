//! `vmbuild build CONFIG.yaml`: load the pipeline, run its steps in one VM
//! (or bubblewrap sandbox), show progress, place the outputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vmbuild_config::{package_dir, LoadOptions, Plan, GUEST_OUTPUT_DIR};
use vmbuild_image::env::InUse;
use vmbuild_proto::{CommandSpec, RunUser, GUEST_HOME};
pub use vmbuild_runner::pipeline::BuildObserver;
use vmbuild_runner::pipeline::{self, Step, StepsOutcome};
use vmbuild_runner::{env, RootImage, RunError, Stopper};

use crate::cache_transfer;
use crate::cli::{BuildArgs, LogFormat, NetworkArg};
use crate::progress::{JsonProgress, Tee, TextProgress};
use crate::runner_setup::{self, Spec};

/// Exit code of a build whose step failed (the step's own code is shown).
pub const EXIT_STEP_FAILED: i32 = 1;

/// Prints a failed step (name, status, last output; an `error` event
/// under `--log-format json`) and returns [`EXIT_STEP_FAILED`]. `what`
/// says what it means for the build ("no outputs were placed").
pub fn report_failure(
    format: LogFormat,
    name: &str,
    exit: &vmbuild_proto::ExitInfo,
    tail: &str,
    what: &str,
) -> i32 {
    let status = match (exit.code, exit.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    };
    let message = format!("step '{name}' failed with {status}; {what}");
    if format == LogFormat::Json {
        let v = serde_json::json!({"event": "error", "message": message, "exit_code": EXIT_STEP_FAILED, "step": name, "tail": tail});
        eprintln!("{v}");
        return EXIT_STEP_FAILED;
    }
    eprintln!("vmbuild: error: {message}");
    if !tail.trim().is_empty() {
        eprintln!("vmbuild: last output of '{name}':");
        for l in tail.lines() {
            eprintln!("  {l}");
        }
    }
    EXIT_STEP_FAILED
}

/// The runner's steps for plan steps, each run as `user` (`None`: root).
pub fn steps(plan_steps: &[vmbuild_config::PlanStep], user: Option<&RunUser>) -> Vec<Step> {
    plan_steps
        .iter()
        .map(|s| Step {
            name: s.name.clone(),
            depth: s.depth,
            command: CommandSpec {
                argv: s.argv(),
                env: s.env.clone(),
                cwd: s.workdir.clone(),
                binds: Vec::new(),
                user: user.cloned(),
            },
            timeout: s.timeout,
            shell: None,
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
            let f = crate::capped::Capped::new(f, args.log_file_max);
            Box::new(Tee(screen, TextProgress::new(f)))
        }
    })
}

/// Creates `accounts` in a started session when the file declares any
/// (qemu runner; the others have refused `run-as` already and are told
/// here that they make no accounts), as root, before the first step.
pub async fn accounts(
    session: &mut vmbuild_runner::Session,
    accounts: &vmbuild_config::accounts::Accounts,
    stop: &Stopper,
    obs: &mut Box<dyn BuildObserver>,
) -> Result<(), RunError> {
    if !accounts.declared {
        return Ok(());
    }
    if session.kind() != vmbuild_runner::RunnerKind::Qemu {
        obs.note(&format!(
            "environment.accounts: the {} runner does not create users or groups; steps run as root",
            session.kind()
        ));
        return Ok(());
    }
    let names: Vec<&str> = accounts.users.iter().map(|u| u.name.as_str()).collect();
    obs.note(&format!(
        "creating environment.accounts (users: {}){}",
        names.join(", "),
        match &accounts.run_as {
            Some(r) => format!("; steps run as {} ({}:{})", r.name, r.uid, r.gid),
            None => String::new(),
        }
    ));
    vmbuild_runner::accounts::create_accounts(
        session,
        &accounts.setup_script(GUEST_HOME),
        env::base_env(),
        stop,
    )
    .await
}

/// `--workspace-dir DIR`: copies the guest's `/home/build` into `DIR`
/// (replacing it, through the same hardened unpacker and atomic swap as
/// the outputs) after the steps, whether they passed or not. melange binds
/// its workspace dir read-write instead; a copy keeps the VM's shares
/// read-only and gives the same result after the build.
async fn keep_workspace(
    session: &mut vmbuild_runner::Session,
    args: &BuildArgs,
    stop: &Stopper,
    obs: &mut Box<dyn BuildObserver>,
) -> Result<(), RunError> {
    let Some(dir) = &args.workspace_dir else {
        return Ok(());
    };
    obs.note(&format!(
        "copying the workspace {GUEST_HOME} to {} (--workspace-dir)",
        dir.display()
    ));
    pipeline::export_outputs(
        session,
        GUEST_HOME,
        env::base_env(),
        dir,
        vmbuild_runner::ExportLimits {
            max_bytes: args.max_output_size,
            ..vmbuild_runner::ExportLimits::default()
        },
        stop,
    )
    .await
    .map(|_| ())
}

/// The environment image for the pipeline's packages, built on first use
/// and reused afterwards; held for use (not removable by `image
/// rm`/`prune`) until the returned guard is dropped. A build shows as
/// `vmbuild image build` does (one live line, or a note per phase), its
/// tools' full log kept in a file that a failure names.
pub fn env_image(
    packages: &[String],
    distro: &crate::cli::DistroArgs,
    obs: &mut Box<dyn BuildObserver>,
) -> Result<(RootImage, InUse), RunError> {
    let spec = distro.apply(vmbuild_image::env::EnvSpec::new(packages.to_vec()));
    let root = vmbuild_image::cache_root()?;
    let mut live =
        crate::live::ToolLog::new(crate::live::mode(), &root.join("logs"), "environment image");
    let result = tokio::task::block_in_place(|| {
        vmbuild_image::env::ensure_env_image_in_use(&root, &spec, &mut |l: &str| {
            if let Some(p) = live.line(l) {
                obs.note(&p);
            }
        })
    });
    if let Some(l) = live.finish(result.is_ok()) {
        obs.note(&l);
    }
    let (held, built) = result?;
    let img = held.image();
    obs.note(&format!(
        "environment image {} ({}, {} MiB){}",
        img.short_key(),
        img.format.fs_type(),
        img.size >> 20,
        if built { ", built now" } else { ", cached" }
    ));
    Ok((crate::root_image_arg::root_image(img), held))
}

/// The main package and its subpackages.
fn packages(plan: &Plan) -> impl Iterator<Item = &str> {
    std::iter::once(plan.package.name.as_str()).chain(plan.subpackages.iter().map(String::as_str))
}

/// What is exported (a guest directory) and where it lands on the host.
/// A package without subpackages keeps the one-package layout: its
/// `${{targets.destdir}}` becomes `--output-dir` (default
/// `./vmbuild-out/<package>`). With subpackages the whole
/// `${{targets.outdir}}` is exported, one directory per package
/// (`--output-dir/<package>/`, `--output-dir/<subpackage>/`; default
/// `./vmbuild-out`).
fn outputs(plan: &Plan, output_dir: Option<&Path>) -> (String, PathBuf) {
    let name = &plan.package.name;
    if plan.subpackages.is_empty() {
        let out = output_dir.map_or_else(|| Path::new("vmbuild-out").join(name), Path::to_path_buf);
        (package_dir(name), out)
    } else {
        let out = output_dir.map_or_else(|| PathBuf::from("vmbuild-out"), Path::to_path_buf);
        (GUEST_OUTPUT_DIR.to_string(), out)
    }
}

/// The directory shown at /home/build: `--source-dir`, else the config
/// file's directory; canonical, and a directory.
pub fn source_dir(args: &BuildArgs) -> Result<PathBuf, RunError> {
    let dir = match &args.source_dir {
        Some(d) => d.clone(),
        None => match args.config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let canon = dir
        .canonicalize()
        .map_err(|e| RunError::io(format!("--source-dir {}", dir.display()), e))?;
    if !canon.is_dir() {
        return Err(RunError::SourceDir {
            path: dir,
            why: "is not a directory; pass a directory as --source-dir".into(),
        });
    }
    Ok(canon)
}

pub async fn build(
    mut args: BuildArgs,
    started: Instant,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> Result<i32, RunError> {
    let kind = args.runner.unwrap_or_default().kind();
    if args.interactive {
        crate::interactive::check(kind, vmbuild_runner::terminal::stdin_is_terminal())?;
    }
    let (cache_defaults, cache_default_aliases) =
        vmbuild_cache::env_layers(args.vm.cache_dir.is_some());
    let opts = LoadOptions {
        pipeline_dirs: args.pipeline_dir.clone(),
        env_file: args.env_file.clone(),
        cli_env: args.env.clone(),
        cache_defaults,
        cache_default_aliases,
        base_env: env::base_env_with_ca(!args.vm.ca_certs.is_empty()),
        build_options: args.build_option.clone(),
        vars_file: args.vars_file.clone(),
        environment_only: false,
        skip_tests: args.skip_tests,
    };
    let mut plan = vmbuild_config::load(&args.config, &opts)?;
    for p in &args.package_append {
        if !plan.packages.contains(p) {
            plan.packages.push(p.clone());
        }
    }
    if args.debug {
        for s in plan
            .steps
            .iter_mut()
            .chain(plan.tests.iter_mut().flat_map(|t| t.steps.iter_mut()))
        {
            s.script = s.script.replacen(
                vmbuild_config::SCRIPT_PRELUDE,
                &format!("{}set -x; ", vmbuild_config::SCRIPT_PRELUDE),
                1,
            );
        }
    }
    // From here on the volumes are the file's `cache:` and the flags, merged
    // (a flag replaces the file's entry with its id or target).
    args.vm.volumes = crate::volumes::merge(&plan.volumes, &args.vm.volumes);
    let cache = runner_setup::cache(&args.vm)?;
    let source = source_dir(&args)?;
    for note in &plan.notes {
        tracing::info!("{note}");
    }
    // The build's environment, then each test's (none with --skip-tests):
    // a name with no Debian equivalent fails now, not after the build ran.
    let envs: Vec<Vec<String>> = std::iter::once(&plan.packages)
        .chain(plan.tests.iter().map(|t| &t.packages))
        .map(|p| crate::packages::wanted(p))
        .collect();
    let mut debian = crate::packages::debian_packages(&args.config, &envs, &args.package_map)?;
    let test_debian = debian.split_off(1);
    let debian = debian.remove(0);
    let (export_dir, output_dir) = outputs(&plan, args.output_dir.as_deref());
    if !debian.is_empty() && args.vm.rootfs.is_some() {
        return Err(RunError::Flag {
            flag: "--rootfs".into(),
            why: "the pipeline's environment.contents.packages names the root filesystem too: use one".into(),
        });
    }
    let mode = runner_setup::share_mode(&args.vm)?;
    crate::volumes::check(&args.vm.volumes, kind, mode, cache.is_some(), true)?;
    let cache_spec = crate::volumes::cache_dir_spec(
        cache.as_ref().map(|(c, _)| c.host_dir.as_path()),
        args.vm.cache_sharing,
        args.vm.cache_persist,
        kind,
        mode,
    )?;
    let mut spec = Spec {
        source: Some(source),
        mkdirs: std::iter::once(GUEST_OUTPUT_DIR.to_string())
            .chain(packages(&plan).map(package_dir))
            .collect(),
        symlinks: if cache.is_some() {
            vmbuild_cache::links_for(plan.steps.iter().map(|s| s.env.as_slice()))
        } else {
            Vec::new()
        },
        cpus: plan.package.cpus,
        memory_mib: plan.package.memory_mib,
        default_network: Some(NetworkArg::User),
        packages: !debian.is_empty(),
        volumes: Vec::new(),
    };
    kind.check(&runner_setup::requested(&args.vm, &spec))?;
    // Refused before anything boots: the build's run-as, and the tests'.
    let tests_run_as = !args.skip_tests && plan.tests.iter().any(|t| t.accounts.run_as.is_some());
    if plan.accounts.run_as.is_some() || tests_run_as {
        kind.check(&[vmbuild_runner::Feature::RunAs])?;
    }
    let per_step: Vec<_> = plan.steps.iter().map(|s| s.volumes.clone()).collect();
    let step_specs = crate::step_volumes::distinct(&per_step);
    if !step_specs.is_empty() {
        kind.check(&[vmbuild_runner::Feature::StepVolumes])?;
        crate::volumes::check(&step_specs, kind, mode, false, false)?;
    }
    let user = vmbuild_runner::accounts::run_user(plan.accounts.run_as.as_ref());
    let mut steps = steps(&plan.steps, user.as_ref());
    for (step, own) in steps.iter_mut().zip(&per_step) {
        step.command.binds = crate::step_volumes::binds(own, &step_specs);
    }
    if args.interactive {
        let term = crate::interactive::term(std::env::var("TERM").ok());
        for (step, plan_step) in steps.iter_mut().zip(&plan.steps) {
            step.shell = Some(crate::interactive::shell_command(
                plan_step,
                &step.command,
                &term,
            ));
        }
    }
    let timeout = args.timeout.or(plan.package.timeout);
    let stop = Stopper::new(timeout, interrupt);
    let mut obs = observer(&args)?;
    let transfers = if args.cache_from.is_empty() && args.cache_to.is_empty() {
        None
    } else {
        let root = crate::volumes::root_dir(args.vm.cache_root.as_deref())?;
        let specs: Vec<_> = args.vm.volumes.iter().chain(&step_specs).collect();
        let vols = cache_transfer::build_vols(
            &root,
            cache.as_ref().map(|(c, _)| c.host_dir.as_path()),
            &specs,
        )?;
        cache_transfer::import_before(&args.cache_from, &vols, &root, &stop, &mut |l: &str| {
            obs.note(l)
        })
        .await?;
        Some((root, vols))
    };
    let cache_held = crate::volumes::hold_cache_dir(
        cache_spec,
        args.vm.cache_root.as_deref(),
        &stop,
        &mut |l: &str| obs.note(l),
    )
    .await?;
    let volumes = crate::volumes::hold(
        &args.vm.volumes,
        args.vm.cache_root.as_deref(),
        &stop,
        &mut |l: &str| obs.note(l),
    )
    .await?;
    let mut step_volumes = crate::step_volumes::StepVolumes::prepare(
        per_step,
        args.vm.cache_root.as_deref(),
        &stop,
        &mut |l: &str| obs.note(l),
    )
    .await?;
    spec.volumes = crate::volumes::shares(&volumes, mode);
    spec.volumes.extend(step_volumes.shares(mode));
    let (mut options, mut holds) =
        runner_setup::options_held(kind, &args.vm, &cache, spec, started)?;

    obs.note(&format!(
        "building {} {}: {} step(s) with the {kind} runner",
        plan.package.name,
        plan.package.version,
        steps.len()
    ));
    for s in &plan.skipped {
        obs.note(&format!("skipped (if: false): {s}"));
    }
    if let Some((c, note)) = &cache {
        obs.note(&crate::volumes::with_persist(
            runner_setup::cache_note(kind, c, note),
            cache_held.as_ref(),
            mode,
        ));
    }
    for v in &volumes {
        obs.note(&crate::volumes::describe(v, kind, mode));
    }
    if !debian.is_empty() {
        let (image, held) = env_image(&debian, &args.distro, &mut obs)?;
        options.set_root_image(image)?;
        holds.images.push(held);
    }
    let memory_mib = options.memory_mib();
    let mut shown = crate::live::StartProgress::new(crate::live::mode());
    let mut session = options
        .start(&stop, &mut |e| {
            crate::live::start::note_event(&mut shown, e, &mut |l| obs.note(l))
        })
        .await?;
    drop(shown);
    if let Err(e) = accounts(&mut session, &plan.accounts, &stop, &mut obs).await {
        session.abort().await;
        return Err(e);
    }

    let mut oom_notes = crate::oom::OomNotes {
        memory_mib,
        from: crate::oom::MemoryFrom::BuildConfig,
        inner: &mut *obs,
    };
    let ran = pipeline::run_steps_gated(
        &mut session,
        &steps,
        &mut oom_notes,
        &stop,
        &mut step_volumes,
    )
    .await;
    let outcome = match ran {
        Ok(o) => o,
        Err(e) => {
            session.abort().await;
            return Err(e);
        }
    };
    if let Err(e) = keep_workspace(&mut session, &args, &stop, &mut obs).await {
        session.abort().await;
        return Err(e);
    }
    let code = match outcome {
        StepsOutcome::AllPassed { .. } => {
            obs.note(&format!(
                "exporting {export_dir} to {}",
                output_dir.display()
            ));
            let report = match pipeline::export_outputs(
                &mut session,
                &export_dir,
                env::base_env(),
                &output_dir,
                vmbuild_runner::ExportLimits {
                    max_bytes: args.max_output_size,
                    ..vmbuild_runner::ExportLimits::default()
                },
                &stop,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    session.abort().await;
                    return Err(e);
                }
            };
            let committed = async {
                let mut note = |l: &str| obs.note(l);
                let (cache_dir, session) = (cache_held.as_ref(), &mut session);
                crate::volumes::commit_all(session, &volumes, cache_dir, mode, &stop, &mut note)
                    .await?;
                let step_held = step_volumes.take_for_commit(mode, &stop, &mut note).await?;
                crate::volumes::commit_all(session, &step_held, None, mode, &stop, &mut note).await
            }
            .await;
            if let Err(e) = committed {
                session.abort().await;
                return Err(e);
            }
            session.finish().await?;
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
            let tested = if args.skip_tests || plan.tests.is_empty() {
                0
            } else {
                crate::test_run::run_tests(
                    &args,
                    &plan,
                    &test_debian,
                    &output_dir,
                    started,
                    &stop,
                    &mut obs,
                )
                .await?
            };
            // The cache goes out only after the whole build, tests included, passed.
            if let (0, Some((root, vols))) = (tested, &transfers) {
                cache_transfer::export_after(
                    &args.cache_to,
                    vols,
                    &args.cache_from,
                    root,
                    &stop,
                    &mut |l: &str| obs.note(l),
                )
                .await?;
            }
            tested
        }
        StepsOutcome::Failed {
            name, exit, tail, ..
        } => {
            session.finish().await?;
            report_failure(
                args.log_format,
                &name,
                &exit,
                &tail,
                "no outputs were placed",
            )
        }
    };
    drop((holds, volumes, cache_held));
    Ok(code)
}
