//! Live progress for long host-side work (an environment image build):
//! on a terminal one spinner line (indicatif) with the elapsed time, the
//! current phase and the latest tool line; otherwise plain `vmbuild:
//! PHASE` lines, one per phase, with no control characters. The tools'
//! whole output goes to a log file, named on failure and removed on
//! success. No colour is ever used, so `NO_COLOR` holds trivially.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// A long operation's progress (see the module docs).
pub struct Live {
    bar: Option<indicatif::ProgressBar>,
    log: Option<(PathBuf, std::fs::File)>,
    phase: String,
}

impl Live {
    /// `tty`: draw a live line (stderr is a terminal and JSON was not
    /// asked for). The log file is made in `log_dir` when it can be.
    pub fn new(tty: bool, log_dir: &Path, what: &str) -> Live {
        let bar = tty.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {wide_msg}")
            {
                bar.set_style(style);
            }
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
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
        Live {
            bar,
            log,
            phase: what.to_string(),
        }
    }

    /// One line of output from the work.
    pub fn line(&mut self, line: &str) {
        if let Some((_, f)) = &mut self.log {
            let _ = writeln!(f, "{line}");
        }
        match (phase_of(line), &self.bar) {
            (Some(p), Some(bar)) => {
                bar.set_message(p.clone());
                self.phase = p;
            }
            (Some(p), None) => {
                if p != self.phase {
                    eprintln!("vmbuild: {p}");
                    self.phase = p;
                }
            }
            (None, Some(bar)) => bar.set_message(format!("{} · {}", self.phase, line.trim())),
            (None, None) => {}
        }
    }

    /// Ends the live line. On success the log is removed; on failure its
    /// path is printed (with its last lines, which the error also quotes).
    pub fn finish(self, ok: bool) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let Some((path, file)) = self.log else { return };
        drop(file);
        if ok {
            let _ = std::fs::remove_file(&path);
        } else {
            eprintln!("vmbuild: the build's full log: {}", path.display());
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
        let mut live = Live::new(false, d.path(), "image x");
        live.line("I: running apt-get update...");
        live.line("Get:1 http://deb.debian.org/debian bookworm InRelease");
        let (path, _) = live.log.as_ref().map(|(p, f)| (p.clone(), f)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "I: running apt-get update...\nGet:1 http://deb.debian.org/debian bookworm InRelease\n"
        );
        live.finish(true);
        assert!(!path.exists(), "removed on success");
        let mut failed = Live::new(false, d.path(), "image y");
        failed.line("E: boom");
        let path = failed.log.as_ref().map(|(p, _)| p.clone()).unwrap();
        failed.finish(false);
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "E: boom\n",
            "kept on failure"
        );
    }
}
