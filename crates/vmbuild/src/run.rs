//! `vmbuild run -- CMD...`: one command through the runner seam.

use std::time::Instant;

use vmbuild_proto::{CommandSpec, GUEST_HOME};
use vmbuild_runner::pipeline::{self, BuildObserver, Step, StepsOutcome};
use vmbuild_runner::{env, RunError, StartEvent, StdioSink, Stopper};

use crate::cli::{LogFormat, NetworkArg, RunArgs};
use crate::oom::{message, MemoryFrom, OomNotes};
use crate::progress::JsonProgress;
use crate::runner_setup::{self, Spec};

/// Runs the command; `Ok(code)` is the command's shell exit code.
pub async fn run(mut args: RunArgs, started: Instant, stop: Stopper) -> Result<i32, RunError> {
    let kind = args.runner.unwrap_or_default().kind();
    let cache = runner_setup::cache(&args.vm)?;
    // base < cache defaults (fill-if-unset) < --env.
    let base = env::base_env_with_ca(!args.vm.ca_certs.is_empty());
    let (cmd_env, links) = env::command_env(base, cache.is_some(), &args.env);
    let mode = runner_setup::share_mode(&args.vm)?;
    // In mount order: a volume nested in another's target after it.
    args.vm.volumes = crate::volumes::merge(&[], &args.vm.volumes);
    crate::volumes::check(&args.vm.volumes, kind, mode, cache.is_some(), false)?;
    let cache_spec = crate::volumes::cache_dir_spec(
        cache.as_ref().map(|(c, _)| c.host_dir.as_path()),
        args.vm.cache_sharing,
        args.vm.cache_persist,
        kind,
        mode,
    )?;
    let mut spec = Spec {
        symlinks: links,
        default_network: Some(NetworkArg::None),
        ..Spec::default()
    };
    kind.check(&runner_setup::requested(&args.vm, &spec))?;
    let json = args.log_format == LogFormat::Json;
    let say = |l: &str| {
        if json {
            JsonProgress::new(std::io::stderr()).note(l);
        } else {
            eprintln!("vmbuild: {l}");
        }
    };
    let cache_held = crate::volumes::hold_cache_dir(
        cache_spec,
        args.vm.cache_root.as_deref(),
        &stop,
        &mut |l: &str| say(l),
    )
    .await?;
    let volumes = crate::volumes::hold(
        &args.vm.volumes,
        args.vm.cache_root.as_deref(),
        &stop,
        &mut |l: &str| say(l),
    )
    .await?;
    for v in &volumes {
        say(&crate::volumes::describe(v, kind, mode));
    }
    spec.volumes = crate::volumes::shares(&volumes, mode);
    let (options, holds) = runner_setup::options_held(kind, &args.vm, &cache, spec, started)?;
    if let Some((c, note)) = &cache {
        let note = crate::volumes::with_persist(
            runner_setup::cache_note(kind, c, note),
            cache_held.as_ref(),
            mode,
        );
        if json {
            JsonProgress::new(std::io::stderr()).note(&note);
        } else {
            eprintln!("{note}");
        }
    }
    let cmd = CommandSpec {
        argv: args.command.clone(),
        env: cmd_env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| GUEST_HOME.to_string()),
        binds: Vec::new(),
        user: None,
    };
    let memory_mib = options.memory_mib();
    let mut events = JsonProgress::new(std::io::stderr());
    let mut shown = crate::live::StartProgress::new(crate::live::mode());
    let mut session = options
        .start(&stop, &mut |e| match (json, e) {
            // `run` keeps quiet about phases unless it speaks JSON.
            (false, StartEvent::Phase(_)) => {}
            (true, e) => crate::live::start::note_event(&mut shown, e, &mut |l| events.note(l)),
            (false, e) => {
                crate::live::start::note_event(&mut shown, e, &mut |l| eprintln!("vmbuild: {l}"))
            }
        })
        .await?;
    drop(shown);
    let ran = if json {
        // The command as a one-step pipeline: the same events as a build.
        let step = Step {
            name: args.command.join(" "),
            depth: 0,
            command: cmd,
            timeout: None,
            shell: None,
        };
        let mut with_oom = OomNotes {
            inner: &mut events,
            memory_mib,
            from: MemoryFrom::RunFlag,
        };
        pipeline::run_steps(
            &mut session,
            std::slice::from_ref(&step),
            &mut with_oom,
            &stop,
        )
        .await
        .map(|o| match o {
            StepsOutcome::AllPassed { .. } => 0,
            StepsOutcome::Failed { exit, .. } => exit.shell_code(),
        })
    } else {
        session.run(&cmd, &mut StdioSink, &stop).await.map(|e| {
            if let (Some(oom), Some(mib)) = (&e.oom, memory_mib) {
                eprintln!("vmbuild: {}", message(oom, mib, MemoryFrom::RunFlag));
            }
            e.shell_code()
        })
    };
    let code = match ran {
        Ok(c) => c,
        Err(e) => {
            session.abort().await;
            return Err(e);
        }
    };
    if code == 0 {
        // persist=on-success: only a command that exited 0 commits.
        let mut say = |l: &str| say(l);
        if let Err(e) = crate::volumes::commit_all(
            &mut session,
            &volumes,
            cache_held.as_ref(),
            mode,
            &stop,
            &mut say,
        )
        .await
        {
            session.abort().await;
            return Err(e);
        }
    }
    let timings = session.finish().await?;
    if let (true, Some(t)) = (args.timings, timings) {
        eprintln!("vmbuild-timings: {}", t.phases().to_json());
    }
    drop((holds, volumes, cache_held));
    Ok(code)
}
