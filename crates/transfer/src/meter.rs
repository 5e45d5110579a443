//! Progress of a long transfer: counters that the transfer bumps from any
//! thread and a caller reads as often as it likes (bytes, blobs, rate).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Shared progress counters, and the cancel flag a caller sets on Ctrl-C.
#[derive(Debug)]
pub struct Meter {
    phase: Mutex<(String, Instant)>,
    bytes: AtomicU64,
    total_bytes: AtomicU64,
    blobs: AtomicU64,
    total_blobs: AtomicU64,
    cancel: AtomicBool,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            phase: Mutex::new((String::new(), Instant::now())),
            bytes: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            blobs: AtomicU64::new(0),
            total_blobs: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
        }
    }
}

/// A reading of a [`Meter`].
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub phase: String,
    pub bytes: u64,
    pub total_bytes: u64,
    pub blobs: u64,
    pub total_blobs: u64,
    /// Bytes per second since the phase began.
    pub rate: f64,
}

impl Meter {
    /// Starts a phase (`"packing"`, `"pushing"`, `"pulling"`) of
    /// `total_blobs` blobs and `total_bytes` bytes.
    pub fn phase(&self, name: &str, total_blobs: u64, total_bytes: u64) {
        if let Ok(mut p) = self.phase.lock() {
            *p = (name.to_string(), Instant::now());
        }
        self.bytes.store(0, Relaxed);
        self.blobs.store(0, Relaxed);
        self.total_blobs.store(total_blobs, Relaxed);
        self.total_bytes.store(total_bytes, Relaxed);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }

    pub fn blob_done(&self) {
        self.blobs.fetch_add(1, Relaxed);
    }

    /// Asks the transfer to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Relaxed);
    }

    /// Fails with [`crate::TransferError::Interrupted`] once cancelled.
    pub fn check(&self) -> Result<(), crate::TransferError> {
        if self.cancel.load(Relaxed) {
            Err(crate::TransferError::Interrupted)
        } else {
            Ok(())
        }
    }

    pub fn read(&self) -> Reading {
        let (phase, since) = self
            .phase
            .lock()
            .map(|p| p.clone())
            .unwrap_or_else(|_| (String::new(), Instant::now()));
        let secs = since.elapsed().as_secs_f64().max(1e-3);
        let bytes = self.bytes.load(Relaxed);
        Reading {
            phase,
            bytes,
            total_bytes: self.total_bytes.load(Relaxed),
            blobs: self.blobs.load(Relaxed),
            total_blobs: self.total_blobs.load(Relaxed),
            rate: bytes as f64 / secs,
        }
    }
}
