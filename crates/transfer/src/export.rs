//! Exporting volumes: list each one, cut it into chunks, reuse the digest
//! of every chunk whose fingerprint is in the volume's record, pack the
//! others in parallel (one thread per core), upload only the blobs the
//! store does not have, then the config and, last, the manifest.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use vmbuild_cache::volume::human_size as human;

use crate::chunk;
use crate::format::{self, CacheConfig, Layer, VolumeInfo};
use crate::meter::Meter;
use crate::pack::{pack, Packed};
use crate::records::{self, Record, Synced};
use crate::store::{Store, Upload};
use crate::walk::{self, Listing};
use crate::TransferError;

/// A volume to export.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name in the export (`--cache id=NAME`, or `cache-dir`).
    pub name: String,
    pub dir: PathBuf,
    /// Its record's key ([`records::key_for`]).
    pub key: String,
}

/// Where and how.
#[derive(Debug)]
pub struct ExportOptions<'a> {
    /// zstd level of new chunks.
    pub level: i32,
    /// The records directory (`<cache root>/.transfer`); also where the
    /// packed chunks wait for their upload (removed afterwards).
    pub records: &'a Path,
    pub meter: &'a Meter,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub place: String,
    pub volumes: usize,
    /// Bytes of file content exported.
    pub bytes: u64,
    /// Chunks packed now (the others were known from the records).
    pub packed: usize,
    pub pushed_blobs: usize,
    pub pushed_bytes: u64,
    pub present_blobs: usize,
    /// Sockets, fifos and devices left out.
    pub skipped: u64,
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} volume{}, {}; pushed {} blob{} ({}), {} already there",
            self.place,
            self.volumes,
            if self.volumes == 1 { "" } else { "s" },
            human(self.bytes),
            self.pushed_blobs,
            if self.pushed_blobs == 1 { "" } else { "s" },
            human(self.pushed_bytes),
            self.present_blobs
        )?;
        if self.skipped > 0 {
            write!(f, "; {} socket(s)/fifo(s)/device(s) left out", self.skipped)?;
        }
        Ok(())
    }
}

/// One chunk of one volume.
struct Chunk {
    volume: usize,
    range: Range<usize>,
    /// Bytes of file content in it.
    bytes: u64,
    fingerprint: String,
    /// Known from the record, or packed now.
    layer: Option<Layer>,
    /// The packed file, when packed now.
    file: Option<PathBuf>,
}

/// Exports `sources` to `store`. Nothing is tagged unless every blob is
/// there first.
pub fn export(
    sources: &[Source],
    store: &mut dyn Store,
    opts: &ExportOptions<'_>,
) -> Result<ExportSummary, TransferError> {
    let meter = opts.meter;
    std::fs::create_dir_all(opts.records).map_err(TransferError::io(format!(
        "creating {}",
        opts.records.display()
    )))?;
    let spool = tempfile::Builder::new()
        .prefix(".spool-")
        .tempdir_in(opts.records)
        .map_err(TransferError::io(format!(
            "creating a spool dir in {}",
            opts.records.display()
        )))?;
    let mut summary = ExportSummary {
        place: store.place(),
        volumes: sources.len(),
        ..Default::default()
    };

    meter.phase("connecting", 0, 0);
    store.ping(true)?;
    // List and cut every volume; look each chunk up in its record.
    meter.phase("listing", 0, 0);
    let mut listings: Vec<Listing> = Vec::new();
    let mut chunks: Vec<Chunk> = Vec::new();
    for (vi, s) in sources.iter().enumerate() {
        meter.check()?;
        let listing = walk::list(&s.dir).map_err(TransferError::io(format!(
            "listing volume {} ({})",
            s.name,
            s.dir.display()
        )))?;
        let record = records::load(opts.records, &s.key);
        for range in chunk::plan(&listing.entries) {
            let entries = &listing.entries[range.clone()];
            let fingerprint = chunk::fingerprint(entries, opts.level);
            let bytes = walk::content_bytes(entries);
            let layer = record
                .chunks
                .get(&fingerprint)
                .filter(|(d, _)| format::valid_digest(d))
                .map(|(digest, size)| Layer {
                    digest: digest.clone(),
                    size: *size,
                });
            chunks.push(Chunk {
                volume: vi,
                range,
                bytes,
                fingerprint,
                layer,
                file: None,
            });
        }
        summary.bytes += listing.bytes();
        summary.skipped += listing.skipped;
        listings.push(listing);
    }

    // Known chunks the store lacks must be packed again (same bytes).
    let known: Vec<usize> = (0..chunks.len())
        .filter(|i| chunks[*i].layer.is_some())
        .collect();
    let digests: Vec<String> = known
        .iter()
        .filter_map(|i| chunks[*i].layer.as_ref().map(|l| l.digest.clone()))
        .collect();
    meter.phase("checking", digests.len() as u64, 0);
    let have = store.have(&digests, meter)?;
    for (i, has) in known.iter().zip(have) {
        if !has {
            chunks[*i].layer = None;
        }
    }

    // Pack what is not known to be there, in parallel.
    let todo: Vec<usize> = (0..chunks.len())
        .filter(|i| chunks[*i].layer.is_none())
        .collect();
    let todo_bytes: u64 = todo.iter().map(|i| chunks[*i].bytes).sum();
    meter.phase("packing", todo.len() as u64, todo_bytes);
    let packed = pack_all(
        &todo,
        &chunks,
        &listings,
        sources,
        spool.path(),
        opts.level,
        meter,
    )?;
    summary.packed = packed.len();
    for (i, (p, file)) in todo.iter().zip(packed) {
        chunks[*i].layer = Some(Layer {
            digest: p.digest,
            size: p.size,
        });
        chunks[*i].file = Some(file);
    }

    // Upload the packed blobs the store does not have (another exporter
    // may have pushed the same content meanwhile).
    let fresh: Vec<&Chunk> = chunks.iter().filter(|c| c.file.is_some()).collect();
    let fresh_digests: Vec<String> = fresh
        .iter()
        .filter_map(|c| c.layer.as_ref().map(|l| l.digest.clone()))
        .collect();
    meter.phase("checking", fresh_digests.len() as u64, 0);
    let fresh_have = store.have(&fresh_digests, meter)?;
    let mut uploads: Vec<Upload<'_>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (c, has) in fresh.iter().zip(fresh_have) {
        if let (Some(l), Some(f)) = (&c.layer, &c.file) {
            if !has && seen.insert(l.digest.clone()) {
                uploads.push(Upload {
                    digest: &l.digest,
                    size: l.size,
                    file: f,
                });
            }
        }
    }
    let up_bytes: u64 = uploads.iter().map(|u| u.size).sum();
    meter.phase("pushing", uploads.len() as u64, up_bytes);
    store.upload(&uploads, meter)?;
    summary.pushed_blobs = uploads.len();
    summary.pushed_bytes = up_bytes;
    summary.present_blobs = chunks.len() - uploads.len();

    // The config, then the manifest.
    let mut layers: Vec<Vec<Layer>> = vec![Vec::new(); sources.len()];
    for c in &chunks {
        if let Some(l) = &c.layer {
            layers[c.volume].push(l.clone());
        }
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let config = CacheConfig {
        vmbuild_version: env!("CARGO_PKG_VERSION").into(),
        created,
        volumes: sources
            .iter()
            .zip(&listings)
            .zip(&layers)
            .map(|((s, l), ls)| VolumeInfo {
                name: s.name.clone(),
                digest: format::volume_digest(ls),
                layers: ls.len(),
                bytes: l.bytes(),
                entries: l.entries.len() as u64,
            })
            .collect(),
    };
    let config_json = serde_json::to_vec(&config).map_err(|e| TransferError::Format {
        place: summary.place.clone(),
        why: e.to_string(),
    })?;
    let config_digest = format::digest_of(&config_json);
    let config_file = spool.path().join("config.json");
    std::fs::write(&config_file, &config_json)
        .map_err(TransferError::io("writing the export's config"))?;
    if !store.have(std::slice::from_ref(&config_digest), meter)?[0] {
        store.upload(
            &[Upload {
                digest: &config_digest,
                size: config_json.len() as u64,
                file: &config_file,
            }],
            meter,
        )?;
    }
    let manifest =
        format::manifest(&config_json, &config, &layers).map_err(|e| TransferError::Format {
            place: summary.place.clone(),
            why: e.0,
        })?;
    meter.check()?;
    store.put_manifest(&manifest)?;

    // Remember the chunks for the next export, and that the volumes match
    // this export.
    for (vi, s) in sources.iter().enumerate() {
        let mut r = Record::default();
        for c in chunks.iter().filter(|c| c.volume == vi) {
            if let Some(l) = &c.layer {
                r.chunks
                    .insert(c.fingerprint.clone(), (l.digest.clone(), l.size));
            }
        }
        r.synced = Some(Synced {
            digest: config.volumes[vi].digest.clone(),
            created,
        });
        if let Err(e) = records::save(opts.records, &s.key, &r) {
            tracing::warn!("could not save the export record of {}: {e}", s.name);
        }
    }
    Ok(summary)
}

/// Packs chunks `todo` into files in `spool`, on one thread per core.
fn pack_all(
    todo: &[usize],
    chunks: &[Chunk],
    listings: &[Listing],
    sources: &[Source],
    spool: &Path,
    level: i32,
    meter: &Meter,
) -> Result<Vec<(Packed, PathBuf)>, TransferError> {
    // Largest chunks first, so no thread is left packing one big file
    // alone at the end.
    let mut order: Vec<usize> = (0..todo.len()).collect();
    order.sort_by_key(|k| std::cmp::Reverse(chunks[todo[*k]].bytes));
    let next = AtomicUsize::new(0);
    type Slot = Option<Result<(Packed, PathBuf), TransferError>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..todo.len()).map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(todo.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(&k) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = meter.check().and_then(|()| {
                        let c = &chunks[todo[k]];
                        let src = &sources[c.volume];
                        let entries = &listings[c.volume].entries[c.range.clone()];
                        let file = spool.join(format!("chunk-{k}"));
                        let out = std::fs::File::create(&file)
                            .map_err(TransferError::io(format!("creating {}", file.display())))?;
                        let p = pack(
                            &src.dir,
                            entries,
                            level,
                            std::io::BufWriter::with_capacity(1 << 20, out),
                        )
                        .and_then(|(p, w)| w.into_inner().map(|_| p).map_err(|e| e.into_error()))
                        .map_err(TransferError::io(format!("packing volume {}", src.name)))?;
                        meter.add_bytes(c.bytes);
                        meter.blob_done();
                        Ok((p, file))
                    });
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all[k] = Some(r);
                    }
                    if failed {
                        meter.cancel();
                    }
                }
            });
        }
    });
    let all = results.into_inner().unwrap_or_default();
    // The first real failure, rather than the cancellations it caused.
    let mut out = Vec::new();
    let mut interrupted = None;
    for r in all {
        match r {
            Some(Ok(p)) => out.push(p),
            Some(Err(TransferError::Interrupted)) | None => {
                interrupted = Some(TransferError::Interrupted)
            }
            Some(Err(e)) => return Err(e),
        }
    }
    match interrupted {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
