//! Where exports are kept: an OCI registry ([`crate::registry`]) or an OCI
//! image layout directory ([`crate::layout`]), behind one interface that
//! speaks in content-addressed blobs and one tagged manifest.
//!
//! The order of writes is what keeps concurrent exporters safe: blobs
//! first, the manifest last (one atomic write: a registry's manifest PUT,
//! a layout's `index.json` rename), so a tag never points at a manifest
//! whose blobs are missing. Readers resolve the tag once and then read
//! only by digest, so they see one complete export.

use std::io::Write;
use std::path::Path;

use crate::format::Layer;
use crate::meter::Meter;
use crate::TransferError;

/// A blob to upload from a local file.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub digest: &'a str,
    pub size: u64,
    pub file: &'a Path,
}

/// An export store.
pub trait Store: Send {
    /// The store as users name it: `ghcr.io/acme/app-cache:main` or
    /// `DIR:tag`.
    fn place(&self) -> String;
    /// Checks that the store answers (and takes our credentials for
    /// writing when `write`), before any work is spent on it.
    fn ping(&mut self, _write: bool) -> Result<(), TransferError> {
        Ok(())
    }
    /// Which of `digests` the store has, same order.
    fn have(&mut self, digests: &[String], meter: &Meter) -> Result<Vec<bool>, TransferError>;
    /// Uploads `blobs`, which it does not have.
    fn upload(&mut self, blobs: &[Upload<'_>], meter: &Meter) -> Result<(), TransferError>;
    /// Writes `manifest` (JSON) and points the tag at it.
    fn put_manifest(&mut self, manifest: &[u8]) -> Result<(), TransferError>;
    /// The tagged manifest's JSON; [`TransferError::NotFound`] without one.
    fn manifest(&mut self) -> Result<Vec<u8>, TransferError>;
    /// Says which blobs [`download`](Self::download) will be asked for
    /// next, in order, so a remote store can fetch several at once into
    /// files under `spool` (a directory on the volumes' filesystem).
    fn prefetch(&mut self, _layers: &[Layer], _spool: &Path) {}
    /// Streams blob `layer` into `out`, failing with
    /// [`TransferError::Corrupt`] unless its bytes hash to its digest and
    /// have its size.
    fn download(
        &mut self,
        layer: &Layer,
        out: &mut dyn Write,
        meter: &Meter,
    ) -> Result<(), TransferError>;
}

/// A writer that checks a blob against its descriptor as it streams: at
/// most `size` bytes, and at the end exactly `size` bytes hashing to
/// `digest`. When the consumer fails first (a tampered chunk that does not
/// decompress), the rest is still hashed so a bad digest is reported as
/// [`TransferError::Corrupt`], which is what happened.
pub struct Verify<'a> {
    hash: sha2::Sha256,
    bytes: u64,
    out: &'a mut dyn Write,
    failed: Option<std::io::Error>,
    layer: &'a Layer,
    place: String,
}

impl<'a> Verify<'a> {
    pub fn new(layer: &'a Layer, out: &'a mut dyn Write, place: String) -> Self {
        use sha2::Digest;
        Self {
            hash: sha2::Sha256::new(),
            bytes: 0,
            out,
            failed: None,
            layer,
            place,
        }
    }

    fn corrupt(&self, why: String) -> TransferError {
        TransferError::Corrupt {
            place: self.place.clone(),
            digest: self.layer.digest.clone(),
            why,
        }
    }

    /// Takes `buf`, failing once the blob is longer than declared.
    pub fn put(&mut self, buf: &[u8]) -> Result<(), TransferError> {
        use sha2::Digest;
        if self.bytes + buf.len() as u64 > self.layer.size {
            return Err(self.corrupt(format!("longer than its {} bytes", self.layer.size)));
        }
        self.bytes += buf.len() as u64;
        self.hash.update(buf);
        if self.failed.is_none() {
            if let Err(e) = self.out.write_all(buf) {
                self.failed = Some(e);
            }
        }
        Ok(())
    }

    /// Checks the size and digest, then the consumer's outcome.
    pub fn finish(mut self) -> Result<(), TransferError> {
        use sha2::Digest;
        if self.bytes != self.layer.size {
            return Err(self.corrupt(format!("{} bytes, not {}", self.bytes, self.layer.size)));
        }
        let digest = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
        if digest != self.layer.digest {
            return Err(self.corrupt(format!("its bytes hash to {digest}")));
        }
        if self.failed.is_none() {
            if let Err(e) = self.out.flush() {
                self.failed = Some(e);
            }
        }
        match self.failed.take() {
            None => Ok(()),
            Some(e) => Err(TransferError::Io {
                context: format!("{}: unpacking blob {}", self.place, self.layer.digest),
                source: e,
            }),
        }
    }
}

/// Streams the local file `f` (at `path`) through a [`Verify`] of `layer`
/// into `out`, counting into `meter`.
pub fn verify_from(
    f: &mut std::fs::File,
    path: &Path,
    layer: &Layer,
    out: &mut dyn Write,
    place: String,
    meter: &Meter,
) -> Result<(), TransferError> {
    use std::io::Read;
    let mut v = Verify::new(layer, out, place);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        meter.check()?;
        let n = f
            .read(&mut buf)
            .map_err(TransferError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        v.put(&buf[..n])?;
        meter.add_bytes(n as u64);
    }
    v.finish()?;
    meter.blob_done();
    Ok(())
}
