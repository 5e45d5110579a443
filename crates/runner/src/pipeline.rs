//! Running a build: steps in order in one VM (or sandbox), live events for
//! the UI, and on success the outputs exported into `--output-dir`.
//!
//! A step that exits non-zero stops the build (no later step runs, no
//! output is placed); a step over its timeout, Ctrl-C, or a VM failure
//! aborts it with the matching [`RunError`].

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use vmbuild_proto::{CommandSpec, ExitInfo};

use crate::error::RunError;
use crate::export::ExportError;
use crate::output::OutputSink;
use crate::runners::Session;
use crate::stop::Stopper;

/// One step, ready to run.
#[derive(Debug, Clone)]
pub struct Step {
    /// Display name (`group > step` for nested steps).
    pub name: String,
    /// Nesting depth, for indentation.
    pub depth: usize,
    pub command: CommandSpec,
    pub timeout: Option<Duration>,
    /// The shell to open on the user's terminal when this step fails
    /// (`vmbuild build --interactive`, melange's flag): exit 0 from it
    /// continues with the next step as if this one had passed, anything
    /// else fails the build here. `None`: a failure ends the build.
    pub shell: Option<CommandSpec>,
}

/// What the user is told before the shell opens (melange's words, nearly).
pub const SHELL_PROMPT: &str = "Type 'exit 0' to continue with the next step or 'exit 1' to abort";

/// Which stream an output chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a step ended.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub exit: ExitInfo,
    pub duration: Duration,
}

impl StepResult {
    pub fn ok(&self) -> bool {
        self.exit.code == Some(0)
    }
}

/// Receives the build's progress (terminal UI, JSON lines, log file).
pub trait BuildObserver: Send {
    fn step_started(&mut self, index: usize, total: usize, step: &Step);
    fn output(&mut self, index: usize, stream: Stream, bytes: &[u8]);
    fn step_finished(&mut self, index: usize, step: &Step, result: &StepResult);
    /// Phases around the steps ("booting", "exporting outputs", ...).
    fn note(&mut self, text: &str);
}

impl<T: BuildObserver + ?Sized> BuildObserver for Box<T> {
    fn step_started(&mut self, i: usize, t: usize, s: &Step) {
        (**self).step_started(i, t, s)
    }
    fn output(&mut self, i: usize, st: Stream, b: &[u8]) {
        (**self).output(i, st, b)
    }
    fn step_finished(&mut self, i: usize, s: &Step, r: &StepResult) {
        (**self).step_finished(i, s, r)
    }
    fn note(&mut self, text: &str) {
        (**self).note(text)
    }
}

/// How many output lines of a failed step are kept for the error.
pub const TAIL_LINES: usize = 20;

/// Forwards a step's output to the observer and keeps its last lines.
struct StepSink<'a> {
    index: usize,
    obs: &'a mut dyn BuildObserver,
    tail: Tail,
}

impl OutputSink for StepSink<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.tail.push(bytes);
        self.obs.output(self.index, Stream::Stdout, bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.tail.push(bytes);
        self.obs.output(self.index, Stream::Stderr, bytes);
    }
}

/// The last [`TAIL_LINES`] lines of interleaved output.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.lines.push_back(line);
                if self.lines.len() > TAIL_LINES {
                    self.lines.pop_front();
                }
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }

    pub fn text(&self) -> String {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        let skip = out.len().saturating_sub(TAIL_LINES);
        out[skip..].join("\n")
    }
}

/// How the steps went.
#[derive(Debug)]
pub enum StepsOutcome {
    AllPassed {
        durations: Vec<Duration>,
    },
    /// Step `index` exited non-zero; later steps did not run.
    Failed {
        index: usize,
        name: String,
        exit: ExitInfo,
        tail: String,
    },
}

/// Runs `steps` in order until one fails.
pub async fn run_steps(
    session: &mut Session,
    steps: &[Step],
    obs: &mut dyn BuildObserver,
    stop: &Stopper,
) -> Result<StepsOutcome, RunError> {
    run_steps_gated(session, steps, obs, stop, &mut NoGate).await
}

/// A boxed future borrowed for `'a`.
pub type GateFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), RunError>> + 'a>>;

/// Called around each step, e.g. to take a step-level volume's lock just
/// for that step.
pub trait StepGate {
    /// Before step `index` starts (may wait; must honour `stop`).
    fn before<'a>(
        &'a mut self,
        index: usize,
        stop: &'a Stopper,
        obs: &'a mut dyn BuildObserver,
    ) -> GateFuture<'a>;
    /// After step `index` ended, however it ended.
    fn after(&mut self, index: usize);
}

/// No gate.
pub struct NoGate;

impl StepGate for NoGate {
    fn before<'a>(
        &'a mut self,
        _: usize,
        _: &'a Stopper,
        _: &'a mut dyn BuildObserver,
    ) -> GateFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    fn after(&mut self, _: usize) {}
}

/// [`run_steps`] with `gate` called around each step.
pub async fn run_steps_gated(
    session: &mut Session,
    steps: &[Step],
    obs: &mut dyn BuildObserver,
    stop: &Stopper,
    gate: &mut dyn StepGate,
) -> Result<StepsOutcome, RunError> {
    let mut durations = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        gate.before(i, stop, &mut *obs).await?;
        obs.step_started(i, steps.len(), step);
        let t0 = Instant::now();
        let step_stop = stop.narrowed(step.timeout);
        let mut sink = StepSink {
            index: i,
            obs: &mut *obs,
            tail: Tail::default(),
        };
        let ran = session.run(&step.command, &mut sink, &step_stop).await;
        let exit = match ran {
            Ok(e) => e,
            Err(RunError::Timeout { after, .. }) => {
                gate.after(i);
                return Err(RunError::Timeout {
                    after,
                    during: format!("in step '{}'", step.name),
                });
            }
            Err(e) => {
                gate.after(i);
                return Err(e);
            }
        };
        let tail = sink.tail.text();
        let result = StepResult {
            exit,
            duration: t0.elapsed(),
        };
        obs.step_finished(i, step, &result);
        // The shell has the step's volumes: the gate lets go after it.
        let go_on = if result.ok() {
            Ok(false)
        } else {
            debug_shell(session, step, &result.exit, obs, stop).await
        };
        gate.after(i);
        if go_on? {
            durations.push(result.duration);
            continue;
        }
        if !result.ok() {
            return Ok(StepsOutcome::Failed {
                index: i,
                name: step.name.clone(),
                exit: result.exit,
                tail,
            });
        }
        durations.push(result.duration);
    }
    Ok(StepsOutcome::AllPassed { durations })
}

/// When `step` (just failed with `exit`) has a shell, opens it on the
/// user's terminal and says whether the build goes on (the shell exited
/// 0). The time spent in it moves `stop`'s deadline later: `--timeout`
/// counts build time, not the user's typing, and the shell itself has no
/// deadline (Ctrl-C is typed into it; SIGTERM still stops the build).
async fn debug_shell(
    session: &mut Session,
    step: &Step,
    exit: &ExitInfo,
    obs: &mut dyn BuildObserver,
    stop: &Stopper,
) -> Result<bool, RunError> {
    let Some(shell) = &step.shell else {
        return Ok(false);
    };
    obs.note(&format!(
        "step '{}' failed ({}); opening a shell in {} with its environment (--interactive)",
        step.name,
        status_text(exit),
        shell.cwd
    ));
    obs.note(SHELL_PROMPT);
    let t0 = Instant::now();
    let ran = session.run_tty(shell, &stop.without_deadline()).await;
    stop.push_back(t0.elapsed());
    let ended = ran?;
    if ended.code == Some(0) {
        obs.note(&format!(
            "the shell exited 0: continuing after step '{}' as if it had passed",
            step.name
        ));
        Ok(true)
    } else {
        obs.note(&format!(
            "the shell exited {}: the build fails at step '{}'",
            ended.shell_code(),
            step.name
        ));
        Ok(false)
    }
}

/// `exit code 2`, `signal 9`.
fn status_text(e: &ExitInfo) -> String {
    match (e.code, e.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    }
}

/// Streams `guest_dir` out of the backend as a tar archive into a staging
/// directory next to `output_dir` and, when the whole archive was good and
/// within `limits`, puts it in place of `output_dir` atomically. Nothing is
/// placed on any error: a half-written output never looks complete.
pub async fn export_outputs(
    session: &mut Session,
    guest_dir: &str,
    env: Vec<(String, String)>,
    output_dir: &Path,
    limits: crate::export::ExportLimits,
    stop: &Stopper,
) -> Result<crate::export::ExportReport, RunError> {
    let staging = crate::export::staging_dir(output_dir)?;
    let mut extractor = BlockingSink(crate::export::TarExtractor::with_limits(
        staging.path(),
        limits,
    )?);
    let cmd = CommandSpec {
        argv: vec![
            "tar".into(),
            "-C".into(),
            guest_dir.into(),
            "-cf".into(),
            "-".into(),
            ".".into(),
        ],
        env,
        cwd: "/".into(),
        binds: Vec::new(),
        user: None,
    };
    let exit = session.run(&cmd, &mut extractor, stop).await;
    let stderr = extractor.0.guest_stderr();
    let report = extractor.0.finish();
    let exit = exit?;
    // A limit stops the extraction while the guest's tar keeps writing (and
    // then fails on the closed pipe or not): the limit is the cause to name.
    let report = match report {
        Err(e @ (ExportError::TooLarge { .. } | ExportError::TooManyEntries { .. })) => {
            return Err(e.into())
        }
        other => other,
    };
    if exit.code != Some(0) {
        return Err(RunError::OutputPack {
            guest_dir: guest_dir.to_string(),
            code: exit.shell_code(),
            stderr: stderr.trim().to_string(),
        });
    }
    let report = report?;
    staging.commit(output_dir)?;
    Ok(report)
}

/// Runs a sink that may block (disk writes) without stalling the async
/// worker it is called on.
pub(crate) struct BlockingSink<S: OutputSink>(pub(crate) S);

impl<S: OutputSink> OutputSink for BlockingSink<S> {
    fn stdout(&mut self, bytes: &[u8]) {
        tokio::task::block_in_place(|| self.0.stdout(bytes))
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.0.stderr(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_across_chunks() {
        let mut t = Tail::default();
        for i in 0..30 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push(b"partial ");
        t.push(b"end");
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last(), Some(&"partial end"));
        assert_eq!(lines[0], "line 11");
    }
}
