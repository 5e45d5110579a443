//! Progress of long host-side work, decided in one place: a live
//! indicatif bar or spinner on a terminal, plain lines now and then
//! otherwise (no control characters), coloured or not.
//!
//! - [`mod@mode`]: which of those, from the terminal, `--color`, `NO_COLOR`
//!   and `--log-format` (set once by `main`, read by every operation);
//! - [`mod@line`]: the plain lines' wording;
//! - [`task`]: one operation (bytes of a total, or a spinner);
//! - [`start`]: a runner's start-up progress events (kernel download,
//!   Docker import) as tasks;
//! - [`tool_log`]: a tool's output (mmdebstrap) condensed to its phases,
//!   its whole log kept in a file.
//!
//! Plain lines are returned to the caller, which prints them where its
//! other notes go (`vmbuild: ...` on stderr, or a build's JSON events).
//! Anything else written to stderr while a live line shows goes through
//! [`suspend`] (the log lines do: [`StderrAroundBars`]).

/// stderr for the log (tracing) lines, written with the live lines out of
/// the way so a warning never lands in the middle of a bar.
pub struct StderrAroundBars;

impl std::io::Write for StderrAroundBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub mod line;
pub mod mode;
pub mod start;
pub mod task;
pub mod tool_log;

pub use mode::{mode, ColorChoice, Mode};
pub use start::StartProgress;
pub use task::{suspend, Task};
pub use tool_log::ToolLog;
