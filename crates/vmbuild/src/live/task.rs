//! One long operation's progress: an indicatif bar (bytes of a known
//! total), byte counter or spinner in [`Mode::Bar`]; in [`Mode::Plain`]
//! the lines to print, at the start and at most every
//! [`line::PLAIN_EVERY`] after.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::line;
use super::mode::Mode;

/// How often a live bar redraws on its own (the spinner turns, the rate
/// and elapsed time move).
const TICK: Duration = Duration::from_millis(120);

/// Every live line of the process, drawn together on stderr, so anything
/// else printed there can step around them ([`suspend`]).
static SCREEN: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Runs `f` (which prints to stderr) with the live lines cleared, redrawn
/// after it; just `f` when none is shown.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    SCREEN.suspend(f)
}

/// A running operation (see the module docs).
pub struct Task {
    mode: Mode,
    bar: Option<ProgressBar>,
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Task {
    /// Starts showing `what` (bytes of `total` when given, else a
    /// spinner); the plain line to print, if any.
    pub fn start(mode: Mode, what: &str, total: Option<u64>) -> (Task, Option<String>) {
        let bar = match mode {
            Mode::Bar { color } => Some(live_bar(color, total)),
            Mode::Plain { .. } => None,
        };
        let now = Instant::now();
        let mut t = Task {
            mode,
            bar,
            what: String::new(),
            total,
            done: 0,
            started: now,
            last_line: now,
        };
        t.set_what(what);
        let first = t.plain(line::begin(what, total));
        (t, first)
    }

    /// Says what is happening now (the blob count moved, a new phase).
    pub fn set_what(&mut self, what: &str) {
        if what != self.what {
            what.clone_into(&mut self.what);
            if let Some(b) = &self.bar {
                b.set_message(what.to_string());
            }
        }
    }

    /// Bytes done so far; in plain mode a line when one is due.
    pub fn set_done(&mut self, done: u64) -> Option<String> {
        self.done = done;
        if let Some(b) = &self.bar {
            b.set_position(done);
            return None;
        }
        if self.last_line.elapsed() < line::PLAIN_EVERY {
            return None;
        }
        self.last_line = Instant::now();
        self.plain(line::bytes(
            &self.what,
            done,
            self.total,
            self.started.elapsed(),
        ))
    }

    /// Ends the task: the live line is cleared; in plain mode the last
    /// line when bytes were counted for longer than one line's interval.
    pub fn finish(self) -> Option<String> {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            return None;
        }
        let elapsed = self.started.elapsed();
        (self.done > 0 && elapsed >= line::PLAIN_EVERY)
            .then(|| self.plain(line::done(&self.what, self.done, elapsed)))
            .flatten()
    }

    /// A plain line in plain mode (painted with `--color always`).
    fn plain(&self, text: String) -> Option<String> {
        match self.mode {
            Mode::Plain { color } => Some(line::paint(text, color)),
            Mode::Bar { .. } => None,
        }
    }
}

/// The live line on stderr: a bar with size and rate when the total is
/// known, a byte counter or a spinner with the elapsed time otherwise.
fn live_bar(color: bool, total: Option<u64>) -> ProgressBar {
    let template = match (total, color) {
        (Some(_), true) => {
            "{spinner:.green} {wide_msg} {bar:16.cyan/blue} {bytes}/{total_bytes} {rate}"
        }
        (Some(_), false) => "{spinner} {wide_msg} [{bar:16}] {bytes}/{total_bytes} {rate}",
        (None, true) => "{spinner:.green} [{elapsed}] {wide_msg}",
        (None, false) => "{spinner} [{elapsed}] {wide_msg}",
    };
    let bar = SCREEN.add(ProgressBar::with_draw_target(
        total,
        ProgressDrawTarget::hidden(),
    ));
    match ProgressStyle::with_template(template) {
        Ok(style) => bar.set_style(style.progress_chars("=> ").with_key("rate", average_rate)),
        Err(e) => tracing::debug!(%e, "progress template"),
    }
    bar.enable_steady_tick(TICK);
    bar
}

/// `{rate}`: bytes per second since the task began, as the plain lines
/// say it (indicatif's own estimate jumps wildly when a transfer reports
/// in big steps).
fn average_rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let done = state.pos();
    let _ = write!(
        w,
        "{}/s",
        crate::human::human_size(line::rate(done, state.elapsed()))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Mode = Mode::Plain { color: false };

    #[test]
    fn plain_mode_says_the_start_then_at_most_every_few_seconds() {
        let (mut t, first) = Task::start(PLAIN, "downloading k 1", Some(4 << 20));
        assert_eq!(first.as_deref(), Some("downloading k 1 (4.0 MiB)"));
        assert_eq!(t.set_done(1 << 20), None, "too soon for another line");
        // As if the last line were long ago.
        t.last_line -= line::PLAIN_EVERY;
        t.started -= line::PLAIN_EVERY;
        let l = t.set_done(2 << 20).expect("a line is due");
        assert!(
            l.starts_with("downloading k 1: 2.0 MiB of 4.0 MiB, "),
            "{l}"
        );
        assert_eq!(t.set_done(3 << 20), None);
        let last = t.finish().expect("a closing line after a long transfer");
        assert!(last.starts_with("downloading k 1: 3.0 MiB in 3."), "{last}");
    }

    #[test]
    fn short_or_spinner_tasks_close_silently() {
        let (t, first) = Task::start(PLAIN, "unpacking x.deb", None);
        assert_eq!(first.as_deref(), Some("unpacking x.deb"));
        assert_eq!(t.finish(), None);
        let (mut t, _) = Task::start(PLAIN, "pulling", Some(10));
        t.set_done(10);
        assert_eq!(t.finish(), None, "done within one interval");
    }

    #[test]
    fn bar_mode_prints_no_plain_lines() {
        // Drawn to stderr only when it is a terminal; either way no lines.
        let (mut t, first) = Task::start(Mode::Bar { color: false }, "x", Some(10));
        assert_eq!(first, None);
        assert_eq!(t.set_done(5), None);
        assert_eq!(t.finish(), None);
    }
}
