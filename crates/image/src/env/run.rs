//! Running the build tools: output streamed line by line, the last lines
//! kept for error messages.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use vmbuild_proc::{Child, Output, Signal};

use crate::error::io_err;
use crate::ImageError;

/// How many output lines are kept for error reports.
const KEEP_LINES: usize = 60;

/// What a finished command left.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The command line, for messages.
    pub command: String,
    /// Whether it exited with status 0.
    pub ok: bool,
    /// Its exit status, for messages.
    pub status: String,
    /// Its last output lines (stdout and stderr interleaved).
    pub tail: Vec<String>,
}

/// The command line as a string, for messages.
pub(crate) fn display(program: &Path, args: &[OsString]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `program args` with stdin closed, `LC_ALL=C`, passing every output
/// line to `line` as it comes. The child is a [`vmbuild_proc::Child`] in its
/// own process group; it gets SIGTERM if this thread dies (mmdebstrap then
/// cleans up after itself).
pub(crate) fn run_streaming(
    program: &Path,
    args: &[OsString],
    line: &mut dyn FnMut(&str),
) -> Result<Finished, ImageError> {
    let command = display(program, args);
    tracing::debug!(%command, "running");
    let mut cmd = Command::new(program);
    cmd.args(args).env("LC_ALL", "C");
    let mut child = Child::spawn(cmd, Output::Piped, Signal::TERM)
        .map_err(|e| io_err(format!("running `{command}`"))(e.into_io_error()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .take_stdout()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .take_stderr()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).split(b'\n').map_while(Result::ok) {
                let l = String::from_utf8_lossy(&l);
                // Progress output redraws with \r: keep the last state.
                let l = l.rsplit('\r').next().unwrap_or_default().trim_end();
                if !l.is_empty() && tx.send(l.to_string()).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut tail = VecDeque::with_capacity(KEEP_LINES);
    for l in rx {
        line(&l);
        if tail.len() == KEEP_LINES {
            tail.pop_front();
        }
        tail.push_back(l);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait_blocking()
        .map_err(io_err(format!("waiting for `{command}`")))?;
    Ok(Finished {
        command,
        ok: status.success(),
        status: status.to_string(),
        tail: tail.into(),
    })
}

/// Run `program args` and return its first non-empty output line (both
/// streams), e.g. a version banner; `None` if it cannot run.
pub(crate) fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = [out.stdout, out.stderr].concat();
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, lines: &mut Vec<String>) -> Finished {
        let args = ["-c".into(), script.into()];
        run_streaming(Path::new("/bin/sh"), &args, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap()
    }

    #[test]
    fn streams_both_outputs_and_keeps_the_tail() {
        let mut lines = Vec::new();
        let f = sh(
            "echo out; echo err >&2; printf 'a\\rb\\n'; exit 3",
            &mut lines,
        );
        assert!(!f.ok);
        assert!(f.status.contains('3'), "{}", f.status);
        lines.sort();
        assert_eq!(lines, ["b", "err", "out"]);
        assert_eq!(f.tail.len(), 3);
        assert!(f
            .command
            .ends_with("-c echo out; echo err >&2; printf 'a\\rb\\n'; exit 3"));
    }

    #[test]
    fn tail_is_bounded() {
        let mut lines = Vec::new();
        let f = sh(
            "i=0; while [ $i -lt 100 ]; do echo $i; i=$((i+1)); done",
            &mut lines,
        );
        assert!(f.ok);
        assert_eq!(lines.len(), 100);
        assert_eq!(f.tail.len(), KEEP_LINES);
        assert_eq!(f.tail.last().map(String::as_str), Some("99"));
    }

    #[test]
    fn first_line_of_output() {
        assert_eq!(
            first_line(
                Path::new("/bin/sh"),
                &["-c", "echo; echo '  v1.2 '; echo x"]
            )
            .as_deref(),
            Some("v1.2")
        );
        assert_eq!(first_line(Path::new("/nonexistent/tool"), &[]), None);
    }
}
