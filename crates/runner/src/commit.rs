//! `persist=on-success`: after a build succeeded, what it changed in an
//! overlay-mode volume is streamed out of the guest (a tar in OCI layer
//! form), unpacked by the hardened extractor into a staging directory
//! beside the volume, and applied to the volume (see
//! [`crate::export::apply_changes`]). The guest never writes the host: it
//! can only propose changes inside that volume, checked like outputs (no
//! `..`, no writes through links, no device nodes, setuid stripped, an
//! entry limit) plus a byte limit. The caller holds the volume's exclusive
//! lock while this runs.

use std::path::Path;

use crate::error::RunError;
use crate::export::{apply_changes, ApplyReport, ExportReport, TarExtractor};
use crate::output::OutputSink;
use crate::pipeline::BlockingSink;
use crate::runners::Session;
use crate::stop::Stopper;

/// Most bytes of changes one volume may commit (16 GiB).
pub const MAX_COMMIT_BYTES: u64 = 16 << 30;

/// Forwards at most `left` bytes, then drops the rest and remembers it.
struct Limited<S: OutputSink> {
    inner: S,
    left: u64,
    over: bool,
}

impl<S: OutputSink> OutputSink for Limited<S> {
    fn stdout(&mut self, b: &[u8]) {
        if self.over || b.len() as u64 > self.left {
            self.over = true;
            return;
        }
        self.left -= b.len() as u64;
        self.inner.stdout(b);
    }
    fn stderr(&mut self, b: &[u8]) {
        self.inner.stderr(b);
    }
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct CommitReport {
    pub unpacked: ExportReport,
    pub applied: ApplyReport,
    /// What the guest said about entries it left out (device nodes, FIFOs).
    pub guest_notes: String,
}

fn failed(volume: &str, why: impl std::fmt::Display) -> RunError {
    RunError::Commit {
        volume: volume.to_string(),
        why: why.to_string(),
    }
}

/// Commits the changes of overlay mount `tag` to `volume_dir` (at most
/// `max_bytes` of stream). Nothing in the volume changes unless the whole
/// stream arrived and unpacked cleanly; then entries land one by one, each
/// atomically. `name` is the volume's name for messages.
pub async fn commit_changes(
    session: &mut Session,
    tag: &str,
    name: &str,
    volume_dir: &Path,
    max_bytes: u64,
    stop: &Stopper,
) -> Result<CommitReport, RunError> {
    let parent = volume_dir
        .parent()
        .ok_or_else(|| failed(name, "the volume has no parent directory"))?;
    let staging = tempfile::Builder::new()
        .prefix(".commit-")
        .tempdir_in(parent)
        .map_err(|e| {
            RunError::io(
                format!("creating a staging directory in {}", parent.display()),
                e,
            )
        })?;
    let extractor = TarExtractor::new(staging.path())?;
    let mut sink = Limited {
        inner: BlockingSink(extractor),
        left: max_bytes,
        over: false,
    };
    let exit = session.export_changes(tag, &mut sink, stop).await;
    let over = sink.over;
    let extractor = sink.inner.0;
    let stderr = extractor.guest_stderr();
    let unpacked = extractor.finish();
    let exit = exit?;
    if over {
        return Err(failed(
            name,
            format!("the changes are larger than {max_bytes} bytes; nothing was committed"),
        ));
    }
    if exit.code != Some(0) {
        return Err(failed(
            name,
            format!("the guest could not list them: {}", stderr.trim()),
        ));
    }
    let unpacked = unpacked.map_err(|e| failed(name, format!("{e}; nothing was committed")))?;
    let applied = tokio::task::block_in_place(|| apply_changes(staging.path(), volume_dir))
        .map_err(|e| failed(name, e))?;
    Ok(CommitReport {
        unpacked,
        applied,
        guest_notes: stderr,
    })
}
