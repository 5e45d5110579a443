//! Safe export of build outputs from the (untrusted) guest to `--output-dir`.
//!
//! The guest runs `tar -C /home/build/out -cf - .` and its stdout is fed, in
//! order, to a [`TarExtractor`] (an [`OutputSink`]). The extractor unpacks the
//! stream on its own thread into a fresh [`StagingDir`] next to the output
//! directory; only after the build AND the stream succeeded does the caller
//! [`StagingDir::commit`] it, which swaps it into place atomically. A failed
//! build or a bad stream therefore never leaves a half-written output that
//! looks complete.
//!
//! The stream is treated as hostile. We do NOT use `tar::Entry::unpack_in`:
//! it silently skips `..` entries instead of failing, strips a leading `/`,
//! follows symlinks created by the archive itself as long as the canonical
//! result stays inside the destination (check-then-use by path, so the check
//! and the write are separate lookups), overwrites existing entries (a symlink
//! may replace a file), writes unknown entry types as regular files, and the
//! tar crate's GNU long-name / pax handling reads those headers into memory
//! without a size limit. Instead, the stream is read in raw mode and every
//! entry is validated before anything is written for it:
//!
//! - its name must be relative, without `..` or NUL (`.` components and
//!   repeated or trailing `/` are normalised away; the `.` root is allowed);
//! - every parent is opened component by component from a directory fd with
//!   `O_NOFOLLOW | O_DIRECTORY` (openat), so a symlink anywhere in the parent
//!   chain is refused with an error naming the entry, and nothing can be
//!   written outside the staging directory;
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, symlinks and hard
//!   links with `symlinkat`/`linkat`: an existing name is never replaced
//!   (only a directory entry may repeat an existing directory);
//! - symlink targets are stored verbatim (they are data, never followed by us);
//! - a hard link must point to a regular file extracted earlier (checked with
//!   `AT_SYMLINK_NOFOLLOW`, linked without following);
//! - regular files, directories, symlinks and hard links are created; device
//!   nodes and fifos are skipped with a warning; anything else is refused;
//! - permission bits are kept but setuid/setgid/sticky are stripped: the
//!   outputs belong to whoever runs vmbuild, and a setuid bit chosen by the
//!   guest must not become a setuid binary owned by the host user. Ownership
//!   from the archive is not applied. Mtimes are applied; directories get
//!   their mode and mtime at the end, deepest first, after their contents;
//! - at most [`MAX_ENTRIES`] entries (an inode bomb guard), at most
//!   [`ExportLimits::max_bytes`] of file content (`--max-output-size`, a disk
//!   filler guard: an entry whose declared size goes past it is refused
//!   before a byte of it is written) and at most 64 KiB per long-name/pax
//!   header (a memory bomb guard).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustix::fs::Mode;

use crate::output::OutputSink;

mod apply;
mod pax;
mod staging;
mod unpack;

pub use apply::{apply_changes, ApplyReport};
pub use staging::{staging_dir, StagingDir};
use unpack::{unpack_stream, DIR_FLAGS};

/// Most entries one output stream may create (files, dirs, links and skipped
/// specials together). Stops a hostile or runaway build from exhausting the
/// host's inodes; a build with more outputs should archive them itself.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Default for `--max-output-size`: most bytes of file content one output
/// stream may write on the host.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// What one output stream may create on the host. Exceeding either stops
/// the extraction; nothing lands in the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Entries (files, dirs, links, skipped specials together).
    pub max_entries: u64,
    /// Bytes of regular file content (`--max-output-size`).
    pub max_bytes: u64,
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits {
            max_entries: MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Largest GNU long-name/long-link or pax header accepted (PATH_MAX is 4 KiB).
const MAX_META_BYTES: u64 = 64 * 1024;
/// How much of the guest tar's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// How much of that tail an error message shows.
const STDERR_IN_MESSAGE: usize = 2 * 1024;
/// Chunks buffered between `stdout()` and the unpacking thread. With the
/// control channel's frame sizes this keeps a few MiB in flight at most.
const CHANNEL_CHUNKS: usize = 64;
const COPY_BUF: usize = 128 * 1024;

/// Why exporting the outputs failed. Whatever the cause, the output
/// directory itself has not been touched (only [`StagingDir::commit`] does).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("refused build output entry `{entry}`: {reason}; the output directory was left unchanged. Outputs may only be plain files, directories, symlinks and hard links inside /home/build/out")]
    Refused { entry: String, reason: String },
    #[error("the build output stream is not a valid tar archive: {reason}; the output directory was left unchanged{}", stderr_suffix(.guest_stderr))]
    BadStream {
        reason: String,
        guest_stderr: String,
    },
    #[error("the build output has more than {limit} entries; refusing to create that many files (pack them into an archive in the build instead); the output directory was left unchanged")]
    TooManyEntries { limit: u64 },
    #[error("the build output is larger than --max-output-size ({limit} bytes; `{entry}` went past it); the output directory was left unchanged: raise --max-output-size or write less to /home/build/out")]
    TooLarge { limit: u64, entry: String },
    #[error("output directory {} is a symlink; vmbuild replaces the output directory as a whole and does not follow a symlink there: pass the real path or remove the link", .path.display())]
    OutputIsSymlink { path: PathBuf },
    #[error("output directory {} exists and is not a directory; remove it or choose another --output-dir", .path.display())]
    OutputNotDirectory { path: PathBuf },
    #[error("invalid output directory {}: {reason}", .path.display())]
    InvalidOutputDir { path: PathBuf, reason: String },
    #[error("the output extraction thread crashed; this is a vmbuild bug, please report it")]
    ExtractorPanicked,
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        return String::new();
    }
    let start = s.len().saturating_sub(STDERR_IN_MESSAGE);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    format!("; guest tar said: {}", printable(&s[start..]))
}

/// `s` with its control characters (newlines, escape sequences) escaped:
/// what the guest or a cache registry sent is shown on one line and cannot
/// drive the user's terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn io_err(context: impl Into<String>, source: impl Into<io::Error>) -> ExportError {
    ExportError::Io {
        context: context.into(),
        source: source.into(),
    }
}

/// The tar crate's reasons quote header fields: hostile bytes, made
/// [`printable`].
fn bad_stream(reason: impl std::fmt::Display) -> ExportError {
    ExportError::BadStream {
        reason: printable(&reason.to_string()),
        guest_stderr: String::new(),
    }
}

/// What an export created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the root not included).
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Device nodes and fifos left out (each logged as a warning).
    pub skipped: u64,
}

/// Unpacks a tar stream fed through [`OutputSink::stdout`] into a staging
/// directory, on a dedicated thread fed by a bounded channel: memory stays
/// bounded, and `stdout()` blocks while the disk catches up (so call it where
/// blocking briefly is fine). If the thread stopped (bad stream), further
/// data is dropped and [`finish`](Self::finish) returns the error. Dropping
/// the extractor without `finish` cancels and waits for the thread.
pub struct TarExtractor {
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<Result<ExportReport, ExportError>>>,
    cancel: Arc<AtomicBool>,
    stderr: Vec<u8>,
}

impl std::fmt::Debug for TarExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarExtractor")
            .field("running", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

impl TarExtractor {
    /// Starts extracting into `staging`, which must be an existing, empty
    /// directory (see [`staging_dir`]).
    pub fn new(staging: &Path) -> Result<Self, ExportError> {
        Self::with_limits(staging, ExportLimits::default())
    }

    /// Like [`new`](Self::new) with a different entry limit.
    pub fn with_max_entries(staging: &Path, max_entries: u64) -> Result<Self, ExportError> {
        let limits = ExportLimits {
            max_entries,
            ..ExportLimits::default()
        };
        Self::with_limits(staging, limits)
    }

    /// Like [`new`](Self::new) with other limits.
    pub fn with_limits(staging: &Path, limits: ExportLimits) -> Result<Self, ExportError> {
        Self::start(staging, limits, false)
    }

    /// Like [`with_limits`](Self::with_limits) for a stream of several tar
    /// archives one after another (each with its end-of-archive blocks, as
    /// `tar --ignore-zeros` reads them): the chunks of a cache import,
    /// extracted in order into one tree, so a hard link may point to a file
    /// of an earlier archive and directories get their modes last.
    pub fn for_concatenated(staging: &Path, limits: ExportLimits) -> Result<Self, ExportError> {
        Self::start(staging, limits, true)
    }

    fn start(
        staging: &Path,
        limits: ExportLimits,
        concatenated: bool,
    ) -> Result<Self, ExportError> {
        let ctx = || format!("opening output staging directory {}", staging.display());
        let root =
            rustix::fs::open(staging, DIR_FLAGS, Mode::empty()).map_err(|e| io_err(ctx(), e))?;
        let mut listing = std::fs::read_dir(staging).map_err(|e| io_err(ctx(), e))?;
        if listing.next().is_some() {
            return Err(io_err(
                ctx(),
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the staging directory is not empty",
                ),
            ));
        }
        let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
        let cancel = Arc::new(AtomicBool::new(false));
        let reader = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            cancel: cancel.clone(),
        };
        let staging = staging.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("vmbuild-export".into())
            .spawn(move || unpack_stream(root, staging, reader, limits, concatenated))
            .map_err(|e| io_err("starting the output extraction thread", e))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            cancel,
            stderr: Vec::new(),
        })
    }

    /// The last 64 KiB the guest tar wrote to stderr.
    pub fn guest_stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Ends the stream and waits for the extraction to complete. `Ok` means
    /// the stream was a complete, valid archive and everything was written.
    /// The caller must still check that the guest `tar` command succeeded
    /// before committing the staging directory.
    pub fn finish(mut self) -> Result<ExportReport, ExportError> {
        self.tx = None; // end of stream
        let result = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) | None => Err(ExportError::ExtractorPanicked),
        };
        result.map_err(|e| match e {
            ExportError::BadStream { reason, .. } => ExportError::BadStream {
                reason,
                guest_stderr: self.guest_stderr(),
            },
            other => other,
        })
    }
}

impl OutputSink for TarExtractor {
    fn stdout(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // Fails (instead of blocking forever) once the thread has stopped.
            if tx.send(bytes.to_vec()).is_err() {
                tracing::debug!("output extraction stopped early; dropping the rest of the stream");
                self.tx = None;
            }
        }
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
        if self.stderr.len() > STDERR_TAIL_BYTES {
            let excess = self.stderr.len() - STDERR_TAIL_BYTES;
            self.stderr.drain(..excess);
        }
    }
}

impl Drop for TarExtractor {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.cancel.store(true, Ordering::Relaxed);
            self.tx = None;
            let _ = thread.join();
        }
    }
}

/// The unpacking thread's input: chunks from the channel as a `Read`.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    /// The sender was dropped: the stream ended.
    eof: bool,
    cancel: Arc<AtomicBool>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("output export cancelled"));
        }
        while self.pos == self.buf.len() {
            if self.eof {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => self.eof = true,
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
