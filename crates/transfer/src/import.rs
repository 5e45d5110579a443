//! Importing volumes: read the tagged manifest once, then its config and
//! chunks by digest (one complete export, whatever others push meanwhile),
//! each chunk checked against its digest, decompressed and unpacked by the
//! hardened unpacker of build outputs (no `..`, no absolute names, no
//! write through a symlink, no device nodes, setuid/setgid stripped, an
//! entry limit) into a staging directory beside the volume, which is
//! swapped in only when every chunk of the volume was good. The caller
//! holds the volume's exclusive lock around [`import`].

use std::io::Write;
use std::path::{Path, PathBuf};

use vmbuild_cache::volume::human_size as human;
use vmbuild_runner::export::{staging_dir, ExportLimits, TarExtractor};
use vmbuild_runner::OutputSink;

use crate::chunk;
use crate::format::{self, Export, Layer};
use crate::meter::Meter;
use crate::records::{self, Synced};
use crate::store::Store;
use crate::target::DEFAULT_LEVEL;
use crate::walk;
use crate::TransferError;

/// A volume to import into.
#[derive(Debug, Clone)]
pub struct Dest {
    /// Its name in the export.
    pub name: String,
    pub dir: PathBuf,
    /// Its record's key ([`records::key_for`]).
    pub key: String,
    /// Replace a volume that has content this host made itself (an
    /// explicit `vmbuild cache import`); without it (`--cache-from`) only a
    /// missing or empty volume, or one last synced with an older export,
    /// is replaced.
    pub force: bool,
}

/// What became of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported {
        name: String,
        bytes: u64,
        entries: u64,
        blobs: usize,
        blob_bytes: u64,
    },
    /// Already matched this export: nothing transferred.
    UpToDate { name: String },
    /// The local volume is newer than the export (or was made here and
    /// never synced): kept.
    KeptLocal { name: String },
    /// The export has no such volume.
    Absent { name: String },
}

impl Outcome {
    pub fn name(&self) -> &str {
        match self {
            Outcome::Imported { name, .. }
            | Outcome::UpToDate { name }
            | Outcome::KeptLocal { name }
            | Outcome::Absent { name } => name,
        }
    }

    /// One line, e.g. `gomod: imported 412 MiB (2,000 entries) from 57 blobs (160 MiB)`.
    pub fn line(&self) -> String {
        match self {
            Outcome::Imported {
                name,
                bytes,
                entries,
                blobs,
                blob_bytes,
            } => format!(
                "{name}: imported {} ({entries} entries) from {blobs} blob(s) ({})",
                human(*bytes),
                human(*blob_bytes)
            ),
            Outcome::UpToDate { name } => {
                format!("{name}: already up to date, nothing transferred")
            }
            Outcome::KeptLocal { name } => {
                format!("{name}: kept the local volume (newer than the export, or made here)")
            }
            Outcome::Absent { name } => format!("{name}: not in the export"),
        }
    }
}

/// Reads and checks the tagged export of `store`.
pub fn read_export(store: &mut dyn Store) -> Result<Export, TransferError> {
    let place = store.place();
    let fmt = |e: format::FormatError| TransferError::Format {
        place: place.clone(),
        why: e.0,
    };
    let manifest = store.manifest()?;
    let (m, cfg) = format::config_of(&manifest).map_err(fmt)?;
    let mut config = Vec::new();
    store.download(&cfg, &mut config, &Meter::default())?;
    format::export_of(&m, &config).map_err(fmt)
}

/// Bytes free for an unprivileged writer on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let probe = dir.ancestors().find(|p| p.exists())?;
    let s = rustix::fs::statvfs(probe).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Imports the volumes `dests` from `export` (read from `store`), each
/// as [`Dest::force`] allows; `records` is the records directory.
pub fn import(
    store: &mut dyn Store,
    export: &Export,
    dests: &[Dest],
    records: &Path,
    meter: &Meter,
) -> Result<Vec<Outcome>, TransferError> {
    let mut out = Vec::new();
    for d in dests {
        meter.check()?;
        let Some(vi) = export.config.volumes.iter().position(|v| v.name == d.name) else {
            out.push(Outcome::Absent {
                name: d.name.clone(),
            });
            continue;
        };
        let info = &export.config.volumes[vi];
        let layers = &export.layers[vi];
        let mut record = records::load(records, &d.key);
        let exists = std::fs::symlink_metadata(&d.dir).is_ok();
        let empty = std::fs::read_dir(&d.dir).map_or(true, |mut r| r.next().is_none());
        if exists
            && record
                .synced
                .as_ref()
                .is_some_and(|s| s.digest == info.digest)
        {
            out.push(Outcome::UpToDate {
                name: d.name.clone(),
            });
            continue;
        }
        let older = record
            .synced
            .as_ref()
            .is_some_and(|s| s.created < export.config.created);
        if exists && !empty && !d.force && !older {
            out.push(Outcome::KeptLocal {
                name: d.name.clone(),
            });
            continue;
        }
        if let Some(free) = free_bytes(&d.dir) {
            if info.bytes > free {
                return Err(TransferError::Format {
                    place: store.place(),
                    why: format!(
                        "volume {} needs {} but only {} is free at {}",
                        d.name,
                        human(info.bytes),
                        human(free),
                        d.dir.display()
                    ),
                });
            }
        }
        let blob_bytes: u64 = layers.iter().map(|l| l.size).sum();
        meter.phase(
            &format!("pulling {}", d.name),
            layers.len() as u64,
            blob_bytes,
        );
        std::fs::create_dir_all(records)
            .map_err(TransferError::io(format!("creating {}", records.display())))?;
        let report = unpack_volume(store, records, d, layers, info.entries, info.bytes, meter)?;
        // The chunks of what now lies there are the export's: a re-export
        // of the unchanged volume at the default level packs nothing.
        record.chunks.clear();
        if let Ok(listing) = walk::list(&d.dir) {
            let plan = chunk::plan(&listing.entries);
            if plan.len() == layers.len() {
                for (r, l) in plan.into_iter().zip(layers) {
                    record.chunks.insert(
                        chunk::fingerprint(&listing.entries[r], DEFAULT_LEVEL),
                        (l.digest.clone(), l.size),
                    );
                }
            }
        }
        record.synced = Some(Synced {
            digest: info.digest.clone(),
            created: export.config.created,
        });
        if let Err(e) = records::save(records, &d.key, &record) {
            tracing::warn!("could not save the import record of {}: {e}", d.name);
        }
        out.push(Outcome::Imported {
            name: d.name.clone(),
            bytes: report.bytes,
            entries: report.files + report.dirs + report.symlinks + report.hardlinks,
            blobs: layers.len(),
            blob_bytes,
        });
    }
    Ok(out)
}

/// Feeds decompressed tar bytes to the unpacker, failing once more than
/// `limit` bytes came (a decompression bomb).
struct ToExtractor<'a> {
    x: &'a mut TarExtractor,
    left: u64,
}

impl Write for ToExtractor<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the chunks unpack to more than the export says the volume holds",
            ));
        }
        self.left -= buf.len() as u64;
        self.x.stdout(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn unpack_volume(
    store: &mut dyn Store,
    spool: &Path,
    d: &Dest,
    layers: &[Layer],
    entries: u64,
    bytes: u64,
    meter: &Meter,
) -> Result<vmbuild_runner::export::ExportReport, TransferError> {
    let place = store.place();
    let unpack_err = |source| TransferError::Unpack {
        place: place.clone(),
        volume: d.name.clone(),
        source,
    };
    let staging = staging_dir(&d.dir).map_err(unpack_err)?;
    let limits = ExportLimits {
        max_entries: entries.saturating_add(16),
        max_bytes: bytes,
    };
    let mut x = TarExtractor::for_concatenated(staging.path(), limits).map_err(unpack_err)?;
    // Headers, long names and padding: generous, but bounded by the
    // export's own claims.
    let limit = bytes
        .saturating_add(entries.saturating_mul(4096))
        .saturating_add(layers.len() as u64 * 16384)
        .saturating_add(1 << 20);
    let mut sink = ToExtractor {
        x: &mut x,
        left: limit,
    };
    store.prefetch(layers, spool);
    for l in layers {
        let mut z = zstd::stream::write::Decoder::new(&mut sink)
            .map_err(TransferError::io("starting zstd"))?;
        store.download(l, &mut z, meter)?;
        z.flush().map_err(|e| TransferError::Corrupt {
            place: place.clone(),
            digest: l.digest.clone(),
            why: format!("does not decompress: {e}"),
        })?;
    }
    let report = x.finish().map_err(unpack_err)?;
    staging.commit(&d.dir).map_err(unpack_err)?;
    Ok(report)
}
