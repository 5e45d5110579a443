//! An interactive shell in the container (`--interactive`): one exec with
//! a terminal (`Tty`, stdin attached), the user's terminal in raw mode
//! meanwhile, typed bytes written to the exec's stdin, window changes sent
//! as exec resizes, and its output written to stdout and nowhere else.

use bollard::exec::{ResizeExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use vmbuild_proto::{CommandSpec, ExitInfo, WindowSize};

use super::engine::api;
use super::{plan, Container, DockerError, POLL};
use crate::bwrap::boottime_us;
use crate::error::RunError;
use crate::stop::Stopper;
use crate::terminal::{self, Input, RawMode, Resizes};

const DURING: &str = "in the interactive shell";

impl Container {
    /// Runs `cmd` as a step would run (same environment, working directory,
    /// root in the container) in an exec with a terminal, relayed to the
    /// user's terminal (stdin must be one), until it exits; its status. The
    /// terminal is restored however this ends; on `stop` the container is
    /// removed.
    pub async fn run_tty(
        &mut self,
        cmd: &CommandSpec,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        super::refuse_run_as(cmd)?;
        let started_us = boottime_us();
        let raw = RawMode::enter()?;
        let ran = tokio::select! {
            biased;
            e = stop.fired(DURING) => Err(e),
            r = self.tty_inner(cmd) => r,
        };
        drop(raw);
        self.exited(ran, started_us).await
    }

    async fn tty_inner(&mut self, cmd: &CommandSpec) -> Result<i32, RunError> {
        let id = self.prepare_cwd(cmd).await?;
        let mut config = plan::exec_config(cmd);
        config.tty = Some(true);
        config.attach_stdin = Some(true);
        let docker = &self.engine.docker;
        let exec = docker
            .create_exec(&id, config)
            .await
            .map_err(api("creating the shell's exec"))?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: true,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(api("starting the shell"))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(DockerError::Api {
                during: "starting the shell".into(),
                why: "the engine did not attach its terminal".into(),
            }
            .into());
        };
        let resize = |s: WindowSize| ResizeExecOptions {
            height: s.rows,
            width: s.cols,
        };
        // The engine may refuse a resize before the exec runs; the next
        // SIGWINCH tries again.
        let _ = docker
            .resize_exec(&exec.id, resize(terminal::window_size()))
            .await;
        let mut typed = Input::start()?;
        let mut resizes = Resizes::watch();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        let code = loop {
            tokio::select! {
                item = output.next(), if open => match item {
                    Some(Ok(o)) => terminal::write_out(&o.into_bytes()),
                    _ => open = false,
                },
                b = typed.recv() => {
                    // The shell closed its stdin: typing goes nowhere.
                    let _ = input.write_all(&b).await;
                    let _ = input.flush().await;
                }
                s = resizes.next() => {
                    let _ = docker.resize_exec(&exec.id, resize(s)).await;
                }
                _ = poll.tick() => {
                    if let Some(c) = self.exit_code(&exec.id).await? {
                        break c;
                    }
                }
            }
        };
        drop(typed);
        self.helper(&id, &plan::KILL_LEFTOVERS).await?;
        while open {
            match tokio::time::timeout(super::DRAIN_GRACE, output.next()).await {
                Ok(Some(Ok(o))) => terminal::write_out(&o.into_bytes()),
                _ => open = false,
            }
        }
        Ok(code)
    }
}
