//! `type=local`: an OCI image layout directory (OCI image spec,
//! `image-layout.md`: `oci-layout`, `index.json`, `blobs/sha256/<hex>`),
//! the export tagged in `index.json` with
//! `org.opencontainers.image.ref.name`, so standard tools read it
//! (`skopeo copy oci:DIR:TAG docker://...`) and CI caches
//! (`actions/cache`) carry it as plain files.
//!
//! Blobs are written to a temporary name and renamed into place; the
//! manifest last, then `index.json` is rewritten (temporary file + rename)
//! under an exclusive `flock` on `oci-layout`, so concurrent exporters to
//! one directory each leave a complete export and readers never see a
//! half-written index.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use rustix::fs::{flock, FlockOperation};

use crate::format::{self, Layer};
use crate::meter::Meter;
use crate::store::{Store, Upload};
use crate::TransferError;

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory and the tag of our export in it.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    tag: String,
}

impl Layout {
    /// Opens `dir` for reading; it need not exist yet (then there is no
    /// export).
    pub fn open(dir: &Path, tag: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
        }
    }

    /// Opens `dir` for writing, making it a layout if it is not one.
    pub fn create(dir: &Path, tag: &str) -> Result<Self, TransferError> {
        let ctx = || format!("making OCI layout {}", dir.display());
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(TransferError::io(ctx()))?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            atomic_write(&layout, LAYOUT.as_bytes()).map_err(TransferError::io(ctx()))?;
        }
        Ok(Self::open(dir, tag))
    }

    fn blob(&self, digest: &str) -> Result<PathBuf, TransferError> {
        match digest.strip_prefix("sha256:") {
            Some(hex) if format::valid_digest(digest) => {
                Ok(self.dir.join("blobs/sha256").join(hex))
            }
            _ => Err(TransferError::Format {
                place: self.place(),
                why: format!("digest {digest} is not sha256"),
            }),
        }
    }

    fn read_index(&self) -> Result<Option<ImageIndex>, TransferError> {
        let path = self.dir.join("index.json");
        let bytes = match read_limited(&path, format::MAX_JSON) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TransferError::io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TransferError::Format {
                place: self.place(),
                why: format!("index.json is not an OCI image index: {e}"),
            })
    }
}

fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(out)
}

/// Writes `path` through a temporary file in the same directory.
fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Store for Layout {
    fn place(&self) -> String {
        format!("{}:{}", self.dir.display(), self.tag)
    }

    fn have(&mut self, digests: &[String], _meter: &Meter) -> Result<Vec<bool>, TransferError> {
        digests
            .iter()
            .map(|d| Ok(self.blob(d)?.is_file()))
            .collect()
    }

    fn upload(&mut self, blobs: &[Upload<'_>], meter: &Meter) -> Result<(), TransferError> {
        for b in blobs {
            meter.check()?;
            let dest = self.blob(b.digest)?;
            let ctx = || format!("writing {} to {}", b.digest, self.dir.display());
            let dir = dest.parent().unwrap_or(&self.dir);
            // A hard link when the packed file is on the same filesystem
            // (no second write of the blob), else a copy; either way under
            // a temporary name, renamed into place.
            let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), &b.digest[7..]));
            let _ = std::fs::remove_file(&tmp);
            if std::fs::hard_link(b.file, &tmp).is_err() {
                std::fs::copy(b.file, &tmp).map_err(TransferError::io(ctx()))?;
            }
            if let Err(e) = std::fs::rename(&tmp, &dest) {
                let _ = std::fs::remove_file(&tmp);
                return Err(TransferError::io(ctx())(e));
            }
            meter.add_bytes(b.size);
            meter.blob_done();
        }
        Ok(())
    }

    fn put_manifest(&mut self, manifest: &[u8]) -> Result<(), TransferError> {
        let digest = format::digest_of(manifest);
        let ctx = || format!("writing the export's manifest to {}", self.dir.display());
        atomic_write(&self.blob(&digest)?, manifest).map_err(TransferError::io(ctx()))?;
        let lock = File::open(self.dir.join("oci-layout")).map_err(TransferError::io(ctx()))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| TransferError::io(ctx())(e.into()))?;
        let mut index = self.read_index()?.unwrap_or_default();
        index.set_schema_version(2);
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) != Some(&self.tag))
            .cloned()
            .collect();
        let mut d = Descriptor::new(
            MediaType::ImageManifest,
            manifest.len() as u64,
            digest
                .parse::<oci_spec::image::Digest>()
                .map_err(|e| TransferError::Format {
                    place: self.place(),
                    why: e.to_string(),
                })?,
        );
        d.set_annotations(Some([(REF_NAME.to_string(), self.tag.clone())].into()));
        manifests.push(d);
        index.set_manifests(manifests);
        let json = serde_json::to_vec_pretty(&index).map_err(|e| TransferError::Format {
            place: self.place(),
            why: e.to_string(),
        })?;
        atomic_write(&self.dir.join("index.json"), &json).map_err(TransferError::io(ctx()))
    }

    fn manifest(&mut self) -> Result<Vec<u8>, TransferError> {
        let not_found = || TransferError::NotFound {
            place: self.place(),
        };
        let index = self.read_index()?.ok_or_else(not_found)?;
        let entry = index
            .manifests()
            .iter()
            .rev()
            .find(|d| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) == Some(&self.tag))
            .ok_or_else(not_found)?;
        let layer = Layer {
            digest: entry.digest().to_string(),
            size: entry.size(),
        };
        if layer.size > format::MAX_JSON {
            return Err(TransferError::Format {
                place: self.place(),
                why: format!("the manifest is {} bytes", layer.size),
            });
        }
        let mut out = Vec::new();
        self.download(&layer, &mut out, &Meter::default())?;
        Ok(out)
    }

    fn download(
        &mut self,
        layer: &Layer,
        out: &mut dyn Write,
        meter: &Meter,
    ) -> Result<(), TransferError> {
        let path = self.blob(&layer.digest)?;
        let mut f = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TransferError::Corrupt {
                place: self.place(),
                digest: layer.digest.clone(),
                why: "missing from blobs/sha256".into(),
            },
            _ => TransferError::io(format!("reading {}", path.display()))(e),
        })?;
        crate::store::verify_from(&mut f, &path, layer, out, self.place(), meter)
    }
}
