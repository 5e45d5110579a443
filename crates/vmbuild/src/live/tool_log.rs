//! A tool's output (an environment image build: mmdebstrap, then
//! packing) condensed to its phases: in [`Mode::Bar`] one spinner line with
//! the elapsed time, the current phase and the latest tool line; in
//! [`Mode::Plain`] one line per phase, returned for the caller to print.
//! The tools' whole output goes to a log file, named on failure and
//! removed on success.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::mode::Mode;
use super::task::Task;

/// The phase a tool output line starts, if it starts one: vmbuild's own
/// `image KEY: ...` notes, and mmdebstrap's `I: ...` lines (its phases:
/// apt-get update, downloading, extracting, installing ...). Other lines
/// (apt's `Get:`, dpkg's `Unpacking`, warnings) are detail.
pub fn phase_of(line: &str) -> Option<String> {
    let line = line.trim();
    if line.starts_with("image ") || line.starts_with("waiting for another vmbuild") {
        return Some(line.to_string());
    }
    let rest = line.strip_prefix("I: ")?;
    let rest = rest.trim_end_matches('.').trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

/// A tool-driven operation's progress (see the module docs).
pub struct ToolLog {
    task: Task,
    mode: Mode,
    log: Option<(PathBuf, std::fs::File)>,
    phase: String,
}

impl ToolLog {
    /// Starts showing `what` in `mode`; the log file is made in `log_dir`
    /// when it can be.
    pub fn new(mode: Mode, log_dir: &Path, what: &str) -> ToolLog {
        let (task, _) = Task::start(mode, what, None);
        let log = std::fs::create_dir_all(log_dir)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix("image-build-")
                    .suffix(".log")
                    .tempfile_in(log_dir)
            })
            .and_then(|f| f.keep().map_err(|e| e.error))
            .map(|(file, path)| (path, file))
            .map_err(|e| tracing::warn!(%e, dir = %log_dir.display(), "no build log file"))
            .ok();
        ToolLog {
            task,
            mode,
            log,
            phase: what.to_string(),
        }
    }

    /// One line of output from the work; in plain mode the line to print
    /// when it starts a new phase.
    pub fn line(&mut self, line: &str) -> Option<String> {
        if let Some((_, f)) = &mut self.log {
            let _ = writeln!(f, "{line}");
        }
        let plain = matches!(self.mode, Mode::Plain { .. });
        match phase_of(line) {
            Some(p) if plain => (p != self.phase).then(|| {
                self.phase.clone_from(&p);
                super::line::paint(p, self.mode.color())
            }),
            Some(p) => {
                self.task.set_what(&p);
                self.phase = p;
                None
            }
            None if plain => None,
            None => {
                self.task
                    .set_what(&format!("{} · {}", self.phase, line.trim()));
                None
            }
        }
    }

    /// Ends the live line. On success the log is removed; on failure the
    /// line naming it (the error quotes its last lines) is returned.
    pub fn finish(self, ok: bool) -> Option<String> {
        self.task.finish();
        let (path, file) = self.log?;
        drop(file);
        if ok {
            let _ = std::fs::remove_file(&path);
            None
        } else {
            Some(format!("the build's full log: {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmdebstrap_and_vmbuild_phases_are_told_from_detail() {
        assert_eq!(
            phase_of("I: running apt-get update...").as_deref(),
            Some("running apt-get update")
        );
        assert_eq!(
            phase_of("I: installing remaining packages inside the chroot...").as_deref(),
            Some("installing remaining packages inside the chroot")
        );
        assert_eq!(
            phase_of("image 1a2b3c4d: packing erofs (80 MiB of files)").as_deref(),
            Some("image 1a2b3c4d: packing erofs (80 MiB of files)")
        );
        for detail in [
            "Get:1 http://deb.debian.org/debian bookworm InRelease",
            "W: something",
            "I: ",
            "Unpacking libc6",
        ] {
            assert_eq!(phase_of(detail), None, "{detail}");
        }
    }

    #[test]
    fn plain_mode_keeps_the_whole_log_until_success() {
        let d = tempfile::tempdir().unwrap();
        let plain = Mode::Plain { color: false };
        let mut live = ToolLog::new(plain, d.path(), "image x");
        assert_eq!(
            live.line("I: running apt-get update...").as_deref(),
            Some("running apt-get update")
        );
        assert_eq!(
            live.line("Get:1 http://deb.debian.org/debian bookworm InRelease"),
            None,
            "detail stays in the log"
        );
        assert_eq!(live.line("I: running apt-get update..."), None, "said once");
        let (path, _) = live.log.as_ref().map(|(p, f)| (p.clone(), f)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "I: running apt-get update...\nGet:1 http://deb.debian.org/debian bookworm InRelease\nI: running apt-get update...\n"
        );
        assert_eq!(live.finish(true), None);
        assert!(!path.exists(), "removed on success");
        let mut failed = ToolLog::new(plain, d.path(), "image y");
        failed.line("E: boom");
        let path = failed.log.as_ref().map(|(p, _)| p.clone()).unwrap();
        assert_eq!(
            failed.finish(false),
            Some(format!("the build's full log: {}", path.display()))
        );
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "E: boom\n",
            "kept on failure"
        );
    }
}
