//! Build progress for people and for CI: a live step list on a terminal,
//! one JSON event per line otherwise (or with `--log-format json`), and a
//! full plain-text log with `--log-file`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use vmbuild_runner::pipeline::{BuildObserver, Step, StepResult, Stream};

/// Splits chunks into whole lines per stream (a chunk may end mid-line or
/// mid UTF-8 sequence).
#[derive(Default)]
struct Lines {
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Lines {
    fn push(&mut self, stream: Stream, bytes: &[u8], mut emit: impl FnMut(Stream, &str)) {
        let buf = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        buf.extend_from_slice(bytes);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            emit(stream, &String::from_utf8_lossy(&line[..line.len() - 1]));
        }
    }

    fn flush(&mut self, mut emit: impl FnMut(Stream, &str)) {
        for (stream, buf) in [
            (Stream::Stdout, &mut self.out),
            (Stream::Stderr, &mut self.err),
        ] {
            if !buf.is_empty() {
                emit(stream, &String::from_utf8_lossy(buf));
                buf.clear();
            }
        }
    }
}

fn status_word(r: &StepResult) -> String {
    match (r.exit.code, r.exit.signal) {
        (Some(0), _) => "ok".into(),
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "failed".into(),
    }
}

/// `[✔] compile  12.3s`, with the step's output indented under its header.
pub struct TextProgress<W: Write + Send> {
    pub w: W,
    lines: Lines,
}

impl<W: Write + Send> TextProgress<W> {
    pub fn new(w: W) -> Self {
        Self {
            w,
            lines: Lines::default(),
        }
    }
}

impl<W: Write + Send> BuildObserver for TextProgress<W> {
    fn step_started(&mut self, index: usize, total: usize, step: &Step) {
        let indent = "  ".repeat(step.depth);
        let _ = writeln!(
            self.w,
            "{indent}[{}/{}] {} ...",
            index + 1,
            total,
            step.name
        );
    }
    fn output(&mut self, _index: usize, stream: Stream, bytes: &[u8]) {
        let w = &mut self.w;
        self.lines.push(stream, bytes, |_, line| {
            let _ = writeln!(w, "    │ {line}");
        });
        let _ = w.flush();
    }
    fn step_finished(&mut self, _index: usize, step: &Step, r: &StepResult) {
        let w = &mut self.w;
        self.lines.flush(|_, line| {
            let _ = writeln!(w, "    │ {line}");
        });
        let mark = if r.ok() { "✔" } else { "✘" };
        let indent = "  ".repeat(step.depth);
        let extra = if r.ok() {
            String::new()
        } else {
            format!(" ({})", status_word(r))
        };
        let _ = writeln!(
            w,
            "{indent}[{mark}] {}  {:.1}s{extra}",
            step.name,
            r.duration.as_secs_f64()
        );
        let _ = w.flush();
    }
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.w, "vmbuild: {text}");
        let _ = self.w.flush();
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One JSON object per line: `step_started`, `output` (one per line of
/// output), `step_finished`, `note`.
pub struct JsonProgress<W: Write + Send> {
    pub w: W,
    lines: Lines,
}

impl<W: Write + Send> JsonProgress<W> {
    pub fn new(w: W) -> Self {
        Self {
            w,
            lines: Lines::default(),
        }
    }

    fn emit(w: &mut W, v: serde_json::Value) {
        let _ = writeln!(w, "{v}");
        let _ = w.flush();
    }
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

impl<W: Write + Send> BuildObserver for JsonProgress<W> {
    fn step_started(&mut self, index: usize, total: usize, step: &Step) {
        let v = serde_json::json!({"event": "step_started", "time_ms": now_ms() as u64, "index": index, "total": total, "name": step.name, "depth": step.depth});
        Self::emit(&mut self.w, v);
    }
    fn output(&mut self, index: usize, stream: Stream, bytes: &[u8]) {
        let w = &mut self.w;
        self.lines.push(stream, bytes, |s, line| {
            Self::emit(w, serde_json::json!({"event": "output", "index": index, "stream": stream_name(s), "line": line}));
        });
    }
    fn step_finished(&mut self, index: usize, step: &Step, r: &StepResult) {
        let w = &mut self.w;
        self.lines.flush(|s, line| {
            Self::emit(w, serde_json::json!({"event": "output", "index": index, "stream": stream_name(s), "line": line}));
        });
        let v = serde_json::json!({
            "event": "step_finished", "time_ms": now_ms() as u64, "index": index, "name": step.name,
            "status": if r.ok() { "ok" } else { "failed" }, "exit_code": r.exit.code, "signal": r.exit.signal,
            "duration_ms": r.duration.as_millis() as u64,
        });
        Self::emit(&mut self.w, v);
    }
    fn note(&mut self, text: &str) {
        Self::emit(
            &mut self.w,
            serde_json::json!({"event": "note", "time_ms": now_ms() as u64, "text": text}),
        );
    }
}

/// Sends every event to two observers (the screen and `--log-file`).
pub struct Tee<A: BuildObserver, B: BuildObserver>(pub A, pub B);

impl<A: BuildObserver, B: BuildObserver> BuildObserver for Tee<A, B> {
    fn step_started(&mut self, i: usize, t: usize, s: &Step) {
        self.0.step_started(i, t, s);
        self.1.step_started(i, t, s);
    }
    fn output(&mut self, i: usize, st: Stream, b: &[u8]) {
        self.0.output(i, st, b);
        self.1.output(i, st, b);
    }
    fn step_finished(&mut self, i: usize, s: &Step, r: &StepResult) {
        self.0.step_finished(i, s, r);
        self.1.step_finished(i, s, r);
    }
    fn note(&mut self, text: &str) {
        self.0.note(text);
        self.1.note(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vmbuild_proto::{CommandSpec, ExitInfo};

    fn step() -> Step {
        Step {
            name: "compile".into(),
            depth: 0,
            command: CommandSpec {
                argv: vec![],
                env: vec![],
                cwd: "/".into(),
                binds: Vec::new(),
                user: None,
            },
            timeout: None,
            shell: None,
        }
    }

    fn result(code: i32) -> StepResult {
        StepResult {
            exit: ExitInfo {
                code: Some(code),
                signal: None,
                started_us: 0,
                ended_us: 0,
                oom: None,
            },
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn text_shows_a_step_list_with_output_under_each_step() {
        let mut p = TextProgress::new(Vec::new());
        p.step_started(0, 2, &step());
        p.output(0, Stream::Stdout, b"hel");
        p.output(0, Stream::Stdout, b"lo\nwor");
        p.step_finished(0, &step(), &result(0));
        p.step_finished(1, &step(), &result(2));
        let s = String::from_utf8(p.w).unwrap();
        assert_eq!(
            s,
            "[1/2] compile ...\n    │ hello\n    │ wor\n[✔] compile  1.5s\n[✘] compile  1.5s (exit 2)\n"
        );
    }

    #[test]
    fn json_is_one_event_per_line_and_one_output_event_per_line() {
        let mut p = JsonProgress::new(Vec::new());
        p.step_started(0, 1, &step());
        // A UTF-8 character split across chunks stays whole.
        p.output(0, Stream::Stderr, b"caf\xc3");
        p.output(0, Stream::Stderr, b"\xa9\nnext\n");
        p.step_finished(0, &step(), &result(0));
        let s = String::from_utf8(p.w).unwrap();
        let events: Vec<serde_json::Value> = s
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[0]["event"], "step_started");
        assert_eq!(events[1]["line"], "café");
        assert_eq!(events[1]["stream"], "stderr");
        assert_eq!(events[2]["line"], "next");
        assert_eq!(events[3]["status"], "ok");
        assert_eq!(events[3]["duration_ms"], 1500);
    }
}
