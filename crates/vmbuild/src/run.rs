//! `vmbuild run -- CMD...`

use std::time::Instant;

use vmbuild_proto::{CommandSpec, GUEST_HOME};
use vmbuild_runner::{env, RunError, StdioSink, Stopper, Timings, Vm};

use crate::cli::RunArgs;

/// Runs the command; `Ok(code)` is the guest command's shell exit code.
pub async fn run(args: RunArgs, started: Instant, stop: Stopper) -> Result<i32, RunError> {
    let mut prepared = crate::vm_setup::prepare(&args.vm, crate::cli::NetworkArg::None)?;
    let assets = crate::vm_setup::assets(prepared.kernel.clone()).await?;
    if let Some(note) = &prepared.cache_note {
        eprintln!("{note}");
    }

    // base < cache defaults (fill-if-unset) < --env; the defaults go in last
    // so they can see what the user set (e.g. NPM_CONFIG_CACHE in any case).
    let mut cmd_env = env::base_env_with_ca(prepared.opts.ca_certs.is_some());
    env::layer(&mut cmd_env, &args.env);
    if prepared.opts.cache.is_some() {
        prepared.opts.symlinks = env::apply_cache_defaults(&mut cmd_env);
    }
    let cmd = CommandSpec {
        argv: args.command.clone(),
        env: cmd_env,
        cwd: args
            .workdir
            .clone()
            .unwrap_or_else(|| GUEST_HOME.to_string()),
    };

    let timings = Timings {
        process_start: Some(started),
        ..Default::default()
    };
    let mut vm = Vm::boot(&prepared.opts, &assets, &stop, timings).await?;
    tracing::debug!(accel = %vm.info.accel, reason = %vm.info.accel_reason, kernel = %vm.hello.kernel_release, "guest up");
    let exit = match vm.run(&cmd, &mut StdioSink, &stop).await {
        Ok(e) => e,
        Err(e) => {
            vm.abort().await;
            return Err(e);
        }
    };
    if let Some(oom) = &exit.oom {
        let mib = prepared.opts.memory_mib;
        let text = crate::oom::message(oom, mib, crate::oom::MemoryFrom::RunFlag);
        eprintln!("vmbuild: {text}");
    }
    let timings = vm.shutdown().await?;
    if args.timings {
        eprintln!("vmbuild-timings: {}", timings.phases().to_json());
    }
    Ok(exit.shell_code())
}
