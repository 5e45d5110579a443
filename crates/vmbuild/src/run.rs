//! `vmbuild run -- CMD...`: one command through the runner seam.

use std::time::Instant;

use vmbuild_proto::{CommandSpec, GUEST_HOME};
use vmbuild_runner::{env, RunError, StartEvent, StdioSink, Stopper};

use crate::cli::{NetworkArg, RunArgs};
use crate::runner_setup::{self, Holds, Spec};

/// Runs the command; `Ok(code)` is the command's shell exit code.
pub async fn run(args: RunArgs, started: Instant, stop: Stopper) -> Result<i32, RunError> {
    let kind = args.runner.kind();
    let cache = runner_setup::cache(&args.vm)?;
    // base < cache defaults (fill-if-unset) < --env.
    let base = env::base_env_with_ca(!args.vm.ca_certs.is_empty());
    let (cmd_env, links) = env::command_env(base, cache.is_some(), &args.env);
    let spec = Spec {
        symlinks: links,
        default_network: Some(NetworkArg::None),
        ..Spec::default()
    };
    let mut holds = Holds::default();
    let options = runner_setup::options(
        kind,
        &args.vm,
        cache.as_ref().map(|(c, _)| c),
        spec,
        started,
        &mut holds,
    )?;
    if let Some((c, note)) = &cache {
        eprintln!("{}", runner_setup::cache_note(kind, c, note));
    }
    let cmd = CommandSpec {
        argv: args.command.clone(),
        env: cmd_env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| GUEST_HOME.to_string()),
    };
    let mut session = options
        .start(&stop, &mut |e| {
            if let StartEvent::Notice(l) = e {
                eprintln!("vmbuild: {l}")
            }
        })
        .await?;
    let exit = match session.run(&cmd, &mut StdioSink, &stop).await {
        Ok(e) => e,
        Err(e) => {
            session.abort().await;
            return Err(e);
        }
    };
    let timings = session.finish().await?;
    if let (true, Some(t)) = (args.timings, timings) {
        eprintln!("vmbuild-timings: {}", t.phases().to_json());
    }
    drop(holds);
    Ok(exit.shell_code())
}
