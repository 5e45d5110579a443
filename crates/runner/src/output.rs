//! Where a command's output goes on the host.

use std::io::Write;

/// Receives a guest command's output as it arrives, in order per stream.
pub trait OutputSink: Send {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
}

/// Writes guest stdout to our stdout and guest stderr to our stderr,
/// flushing each chunk so output is live.
#[derive(Debug, Default)]
pub struct StdioSink;

impl OutputSink for StdioSink {
    fn stdout(&mut self, bytes: &[u8]) {
        let mut o = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) must not abort the run.
        let _ = o.write_all(bytes).and_then(|_| o.flush());
    }
    fn stderr(&mut self, bytes: &[u8]) {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(bytes).and_then(|_| e.flush());
    }
}

/// Collects output in memory (tests, and steps whose tail is shown on failure).
#[derive(Debug, Default, Clone)]
pub struct BufferSink {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl OutputSink for BufferSink {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
    }
}
