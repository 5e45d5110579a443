//! vmbuild: the command line. Parses, wires and prints; the work is done by
//! the library crates (see docs/architecture.md).

mod args;
mod bench;
mod bench_cache;
mod bench_transfer;
mod build;
mod ca_certs;
mod cache_cmd;
mod cache_transfer;
mod capped;
mod cli;
mod defaults;
mod doctor;
mod human;
mod image_cmd;
mod interactive;
mod live;
mod melange_flags;
mod oom;
mod packages;
mod progress;
mod root_image_arg;
mod run;
mod runner_setup;
mod shell;
mod snapshot_cmd;
mod step_volumes;
mod test_run;
mod transfer_cmd;
mod validate;
mod volumes;

use std::time::Instant;

use clap::Parser;
use vmbuild_runner::{RunError, Stopper, EXIT_SETUP};

/// Logs on stderr, coloured only when progress is (never on a pipe or in
/// JSON: plain lines there have no control characters).
fn init_logging(verbose: u8, color: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| live::StderrAroundBars)
        .with_ansi(color)
        .with_target(false)
        .init();
}

/// Prints a run error the way users see it: one line, then (for VM
/// failures) the last console lines.
fn report(e: &RunError) {
    eprintln!("vmbuild: error: {e}");
    if let Some(tail) = e.console_tail() {
        eprintln!("vmbuild: guest console (last lines):");
        for line in tail.lines() {
            eprintln!("  {line}");
        }
    }
}

/// A run's or build's exit code: its own, or the error's (reported as one
/// line, or as an `error` event under `--log-format json`).
fn exit_code(r: Result<i32, RunError>, json: bool) -> i32 {
    r.unwrap_or_else(|e| {
        if json {
            let v = serde_json::json!({
                "event": "error",
                "message": e.to_string(),
                "exit_code": e.exit_code(),
                "console_tail": e.console_tail(),
            });
            eprintln!("{v}");
        } else {
            report(&e);
        }
        e.exit_code()
    })
}

/// The exit code of a management command (`image`, `cache`, `bench`): 0, or 1 with
/// the error and its causes on one line (130 when Ctrl-C stopped it).
fn tool_exit_code(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vmbuild: error: {e:#}");
            match e.downcast_ref::<RunError>() {
                Some(RunError::Interrupted) => vmbuild_runner::error::EXIT_INTERRUPTED,
                _ => 1,
            }
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM set the interrupt flag; the run then stops
/// the VM and cleans up before exiting.
fn interrupt_channel() -> tokio::sync::watch::Receiver<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Registered here, not inside the task: from this call on, SIGINT and
    // SIGTERM stop the work cleanly rather than killing vmbuild, even
    // before the task first runs.
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::spawn(async move {
        tokio::select! {
            _ = recv(int.as_mut()) => {}
            _ = recv(term.as_mut()) => {}
        }
        let _ = tx.send(true);
        // Keep the sender alive so receivers never see a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}

/// The next delivery of `s`; never, without one.
async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Fills `run`'s, `build`'s and `image build`'s unset flags from the environment and the
/// defaults files (the project file next to the pipeline; for `run`, in
/// the current directory), and returns the colour choice (every command
/// has `--color`; a defaults file another command cannot read is ignored
/// for it, and reported by `config show`).
fn apply_defaults(
    command: &mut cli::Command,
    color: Option<live::ColorChoice>,
) -> anyhow::Result<live::ColorChoice> {
    let (runner, vm, distro, dir) = match command {
        cli::Command::Run(a) => (
            &mut a.runner,
            &mut a.vm,
            None,
            std::path::PathBuf::from("."),
        ),
        cli::Command::Build(a) => {
            let dir = project_dir(&a.config);
            (&mut a.runner, &mut a.vm, Some(&mut a.distro), dir)
        }
        cli::Command::Image(cli::ImageCommand::Build(a)) => {
            let dir = a.config.as_deref().map_or(".".into(), project_dir);
            let layers = defaults::Layers::load(&dir)?;
            defaults::apply_distro(&layers, &mut a.distro)?;
            return defaults::color(&layers, color);
        }
        _ => {
            let layers = defaults::Layers::load(std::path::Path::new(".")).unwrap_or_default();
            return defaults::color(&layers, color);
        }
    };
    let layers = defaults::Layers::load(&dir)?;
    defaults::apply(&layers, runner, vm)?;
    if let Some(d) = distro {
        defaults::apply_distro(&layers, d)?;
    }
    defaults::color(&layers, color)
}

/// Whether the command prints JSON events (`--log-format json`).
fn json_output(command: &cli::Command) -> bool {
    match command {
        cli::Command::Run(a) => a.log_format == cli::LogFormat::Json,
        cli::Command::Build(a) => a.log_format == cli::LogFormat::Json,
        _ => false,
    }
}

/// The directory whose `vmbuild.toml` applies to `path` (a pipeline file
/// or a directory).
fn project_dir(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => ".".into(),
    }
}

fn main() {
    let started = Instant::now();
    let argv: Vec<String> = std::env::args().collect();
    if let Some(message) = melange_flags::check(&argv) {
        eprintln!("vmbuild: error: {message}");
        std::process::exit(EXIT_SETUP);
    }
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_SETUP } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let mut cli = cli;
    match apply_defaults(&mut cli.command, cli.color) {
        Ok(color) => {
            let mode = live::mode::init(color, json_output(&cli.command));
            init_logging(cli.verbose, mode.color());
        }
        Err(e) => {
            eprintln!("vmbuild: error: {e:#}");
            std::process::exit(EXIT_SETUP);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmbuild: error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_SETUP);
        }
    };
    let code = rt.block_on(async move {
        match cli.command {
            cli::Command::Run(args) => {
                let stop = Stopper::new(args.timeout, interrupt_channel());
                let json = args.log_format == cli::LogFormat::Json;
                exit_code(run::run(args, started, stop).await, json)
            }
            cli::Command::Build(args) => {
                let json = args.log_format == cli::LogFormat::Json;
                exit_code(
                    build::build(*args, started, interrupt_channel()).await,
                    json,
                )
            }
            cli::Command::Doctor => doctor::doctor(),
            cli::Command::Config(cli::ConfigCommand::Show { path }) => {
                let dir = project_dir(path.as_deref().unwrap_or(std::path::Path::new(".")));
                tool_exit_code(defaults::Layers::load(&dir).and_then(|l| {
                    defaults::show(&l, &mut std::io::stdout().lock()).map_err(Into::into)
                }))
            }
            cli::Command::Validate(args) => validate::validate(&args, cli.verbose > 0),
            cli::Command::Snapshot(c) => {
                tool_exit_code(tokio::task::block_in_place(|| snapshot_cmd::snapshot(c)))
            }
            cli::Command::Image(c) => {
                tool_exit_code(tokio::task::block_in_place(|| image_cmd::image(c)))
            }
            cli::Command::Cache(
                c @ (cli::CacheCommand::Export { .. } | cli::CacheCommand::Import { .. }),
            ) => {
                let stop = Stopper::new(None, interrupt_channel());
                tool_exit_code(transfer_cmd::transfer(c, &stop).await)
            }
            cli::Command::Cache(c) => {
                tool_exit_code(tokio::task::block_in_place(|| cache_cmd::cache(c)))
            }
            cli::Command::Bench(b) => tool_exit_code(bench::bench(b).await),
            cli::Command::Completions { shell } => shell::print(&shell::completions(shell)),
            cli::Command::Schema => {
                shell::print(vmbuild_config::schema::pipeline_schema().as_bytes())
            }
            cli::Command::Assets { dir } => tool_exit_code(shell::assets(&dir)),
        }
    });
    // Dropping the runtime here would wait for blocking tasks; everything
    // we own was already cleaned up by the run.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
