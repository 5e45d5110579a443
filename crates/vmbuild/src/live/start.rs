//! A runner's start-up progress ([`vmbuild_image::Progress`] events: the
//! first-use kernel download and unpacking, packing and importing an
//! image into the Docker Engine) shown as [`Task`]s.

use vmbuild_image::Progress;
use vmbuild_runner::StartEvent;

use super::mode::Mode;
use super::task::Task;

/// The task of the operation in progress, if one is.
pub struct StartProgress {
    mode: Mode,
    task: Option<Task>,
}

impl StartProgress {
    /// Shows events in `mode` (usually [`super::mode()`]).
    pub fn new(mode: Mode) -> StartProgress {
        StartProgress { mode, task: None }
    }

    /// Takes one event; the plain lines to print (as notes), if any.
    pub fn event(&mut self, e: Progress<'_>) -> Vec<String> {
        let mut out = Vec::new();
        match e {
            Progress::Begin { what, total } => {
                out.extend(self.task.take().and_then(Task::finish));
                let (task, first) = Task::start(self.mode, what, total);
                self.task = Some(task);
                out.extend(first);
            }
            Progress::Bytes(n) => {
                out.extend(self.task.as_mut().and_then(|t| t.set_done(n)));
            }
            Progress::End => out.extend(self.task.take().and_then(Task::finish)),
        }
        out
    }
}

/// Shows one start event: a phase or notice as a note (with any live line
/// out of the way), progress as a task (its plain lines as notes).
pub fn note_event(shown: &mut StartProgress, e: StartEvent<'_>, note: &mut dyn FnMut(&str)) {
    match e {
        StartEvent::Phase(l) | StartEvent::Notice(l) => super::task::suspend(|| note(l)),
        StartEvent::Progress(p) => {
            for l in shown.event(p) {
                note(&l);
            }
        }
    }
}

impl Drop for StartProgress {
    /// A start that failed mid-operation leaves no live line behind.
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_tasks_and_their_lines() {
        let mut p = StartProgress::new(Mode::Plain { color: false });
        assert_eq!(
            p.event(Progress::Begin {
                what: "downloading k 1",
                total: Some(2048)
            }),
            ["downloading k 1 (2.0 KiB)"]
        );
        assert!(p.event(Progress::Bytes(1024)).is_empty());
        assert!(p.event(Progress::End).is_empty());
        assert!(p.task.is_none());
        assert_eq!(
            p.event(Progress::Begin {
                what: "unpacking k.deb",
                total: None
            }),
            ["unpacking k.deb"]
        );
        // Bytes without a task (a front end that missed Begin) are harmless.
        p.event(Progress::End);
        assert!(p.event(Progress::Bytes(1)).is_empty());
    }
}
