//! `type=registry`: an OCI registry through the `oci-client` crate (the
//! OCI Distribution spec's client). HEAD before every upload, a
//! cross-repository mount from the `--cache-from` repositories of the same
//! registry before a real upload, large blobs streamed from disk, transient
//! failures (connection errors, 5xx, 429) retried with backoff, and every
//! pulled blob's digest checked.
//!
//! Runs its own tokio runtime (two workers): callers are synchronous
//! (packing and unpacking are CPU work on their own threads). An import
//! fetches up to [`PARALLEL`] blobs ahead into files while it unpacks.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::auth::{credentials, Credentials};
use crate::format::{self, Layer};
use crate::meter::Meter;
use crate::store::{Store, Upload, Verify};
use crate::TransferError;

/// Attempts per request when the failure is transient.
const ATTEMPTS: u32 = 4;
/// Requests in flight at once.
const PARALLEL: usize = 4;

/// A registry repository and tag.
pub struct Registry {
    rt: tokio::runtime::Runtime,
    client: Client,
    reference: Reference,
    given: String,
    auth: RegistryAuth,
    auth_from: String,
    /// Same-registry repositories to mount blobs from.
    mount_from: Vec<Reference>,
    plain_http: bool,
    /// Blobs being fetched ahead into `spool`, by digest.
    ahead: HashMap<String, tokio::task::JoinHandle<Result<PathBuf, String>>>,
    spool: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("ref", &self.given)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects (lazily) to `reference`, over plain http if `plain_http`,
    /// trusting `ca_file` too. Credentials as [`credentials`] finds them.
    pub fn new(
        reference: &str,
        plain_http: bool,
        ca_file: Option<&PathBuf>,
    ) -> Result<Self, TransferError> {
        let parsed: Reference = reference.parse().map_err(|e| TransferError::Registry {
            registry: reference.into(),
            why: format!("not an image reference: {e}"),
        })?;
        let registry = parsed.resolve_registry().to_string();
        let mut config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            max_concurrent_upload: PARALLEL,
            // One PUT per blob (sizes are known): fewer round trips than chunked PATCHes.
            use_monolithic_push: true,
            max_concurrent_download: PARALLEL,
            user_agent: concat!("vmbuild/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        if let Some(ca) = ca_file {
            let data = std::fs::read(ca).map_err(TransferError::io(format!(
                "reading ca-file {}",
                ca.display()
            )))?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        // Two workers: blobs fetched ahead keep downloading while the
        // caller unpacks the current one.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(TransferError::io("starting the registry client"))?;
        let Credentials { auth, from } = credentials(&registry);
        Ok(Self {
            rt,
            client: Client::new(config),
            reference: parsed,
            given: reference.to_string(),
            auth,
            auth_from: from,
            mount_from: Vec::new(),
            plain_http,
            ahead: HashMap::new(),
            spool: None,
        })
    }

    /// Repositories to try a cross-repository mount from before uploading
    /// (the `--cache-from` refs); those on another registry are ignored.
    pub fn mount_from(&mut self, refs: &[String]) {
        self.mount_from = refs
            .iter()
            .filter_map(|r| r.parse::<Reference>().ok())
            .filter(|r| {
                r.resolve_registry() == self.reference.resolve_registry()
                    && r.repository() != self.reference.repository()
            })
            .collect();
    }

    fn registry(&self) -> String {
        self.reference.registry().to_string()
    }

    /// Our one-line error for a client error.
    fn error(&self, e: &OciDistributionError) -> TransferError {
        match e {
            e if refused(e) => TransferError::Unauthorized {
                registry: self.registry(),
                how: self.auth_from.clone(),
            },
            OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
                let mut cause: &dyn std::error::Error = r;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                TransferError::Registry {
                    registry: self.registry(),
                    why: format!(
                        "cannot reach it ({}); is the address right and the registry up? (plain http: {})",
                        one_line(&cause.to_string()),
                        if self.plain_http { "yes" } else { "no; insecure=true for a plain-http registry" }
                    ),
                }
            }
            other => TransferError::Registry {
                registry: self.registry(),
                why: one_line(&other.to_string()),
            },
        }
    }
}

/// Whether the registry's error envelope has a code containing one of
/// `words` (lowercase: `unauthorized`, `denied`, `unknown`...).
fn envelope_says(e: &OciDistributionError, words: &[&str]) -> bool {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            let c = format!("{:?}", x.code).to_ascii_lowercase();
            words.iter().any(|w| c.contains(w))
        }),
        _ => false,
    }
}

/// Whether the registry refused our credentials (or their absence).
fn refused(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => true,
        OciDistributionError::RequestError(r) => {
            matches!(r.status().map(|s| s.as_u16()), Some(401 | 403))
        }
        e => envelope_says(e, &["unauthorized", "denied"]),
    }
}

/// What the registry said, on one line with no control character, cut at
/// 300 bytes.
fn one_line(s: &str) -> String {
    let s = vmbuild_runner::export::printable(&s.split_whitespace().collect::<Vec<_>>().join(" "));
    if s.len() > 300 {
        format!("{}...", &s[..s.floor_char_boundary(300)])
    } else {
        s
    }
}

/// Whether a failure may pass on a retry.
fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect() || r.is_timeout() || r.is_request() || r.is_body()
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// Runs `op` up to [`ATTEMPTS`] times while it fails transiently, waiting
/// 0.5 s, 1 s, 2 s between tries.
async fn retry<T, F, Fut>(mut op: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let mut wait = Duration::from_millis(500);
    let mut tries = 1;
    loop {
        match op().await {
            Err(e) if tries < ATTEMPTS && transient(&e) => {
                tracing::debug!("retrying after a transient registry failure: {e}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

impl Store for Registry {
    fn place(&self) -> String {
        self.given.clone()
    }

    fn ping(&mut self, write: bool) -> Result<(), TransferError> {
        let (client, r, auth) = (&self.client, &self.reference, &self.auth);
        let op = if write {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        self.rt
            .block_on(retry(|| client.auth(r, auth, op)))
            .map(drop)
            .map_err(|e| self.error(&e))
    }

    fn have(&mut self, digests: &[String], meter: &Meter) -> Result<Vec<bool>, TransferError> {
        // Authenticated by `ping`, which an export calls first.
        let (client, r) = (&self.client, &self.reference);
        let found = self.rt.block_on(async {
            futures_util::stream::iter(digests)
                .map(|d| async move {
                    meter.check().map_err(Err)?;
                    retry(|| client.blob_exists(r, d)).await.map_err(Ok)
                })
                .buffered(PARALLEL)
                .try_collect::<Vec<bool>>()
                .await
        });
        found.map_err(|e| match e {
            Ok(e) => self.error(&e),
            Err(e) => e,
        })
    }

    fn upload(&mut self, blobs: &[Upload<'_>], meter: &Meter) -> Result<(), TransferError> {
        let (client, r, mounts) = (&self.client, &self.reference, &self.mount_from);
        let done = self.rt.block_on(async {
            futures_util::stream::iter(blobs)
                .map(|b| async move {
                    meter.check().map_err(Err)?;
                    for from in mounts {
                        if client.mount_blob(r, from, b.digest).await.is_ok()
                            && client.blob_exists(r, b.digest).await.unwrap_or(false)
                        {
                            meter.add_bytes(b.size);
                            meter.blob_done();
                            return Ok(());
                        }
                    }
                    retry(|| async {
                        let f = tokio::fs::File::open(b.file).await?;
                        let stream = file_stream(f);
                        client
                            .push_blob_stream(r, stream, b.digest, Some(b.size))
                            .await
                    })
                    .await
                    .map_err(Ok)?;
                    meter.add_bytes(b.size);
                    meter.blob_done();
                    Ok(())
                })
                .buffer_unordered(PARALLEL)
                .try_collect::<Vec<()>>()
                .await
        });
        done.map(drop).map_err(|e| match e {
            Ok(e) => self.error(&e),
            Err(e) => e,
        })
    }

    fn put_manifest(&mut self, manifest: &[u8]) -> Result<(), TransferError> {
        let body = bytes::Bytes::copy_from_slice(manifest);
        let (client, r) = (&self.client, &self.reference);
        let ct = http::HeaderValue::from_static(format::MANIFEST_TYPE);
        self.rt
            .block_on(retry(|| {
                client.push_manifest_raw(r, body.clone(), ct.clone())
            }))
            .map(drop)
            .map_err(|e| self.error(&e))
    }

    fn manifest(&mut self) -> Result<Vec<u8>, TransferError> {
        let (client, r, auth) = (&self.client, &self.reference, &self.auth);
        let got = self.rt.block_on(retry(|| {
            client.pull_manifest_raw(r, auth, &[format::MANIFEST_TYPE])
        }));
        match got {
            Ok((bytes, _digest)) => Ok(bytes.to_vec()),
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => {
                Err(TransferError::NotFound {
                    place: self.place(),
                })
            }
            Err(e) if envelope_says(&e, &["unknown", "notfound"]) => Err(TransferError::NotFound {
                place: self.place(),
            }),
            Err(OciDistributionError::ServerError { code: 404, .. }) => {
                Err(TransferError::NotFound {
                    place: self.place(),
                })
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    fn prefetch(&mut self, layers: &[Layer], spool: &Path) {
        let Ok(dir) = tempfile::Builder::new().prefix(".pull-").tempdir_in(spool) else {
            return; // downloads stream one by one instead
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        for l in layers {
            if self.ahead.contains_key(&l.digest) {
                continue;
            }
            let (client, r, gate) = (self.client.clone(), self.reference.clone(), gate.clone());
            let path = dir.path().join(&l.digest[7..]);
            let desc = descriptor(l);
            let task = self.rt.spawn(async move {
                let _turn = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let once = || async {
                    let f = tokio::fs::File::create(&path).await?;
                    client.pull_blob(&r, &desc, f).await
                };
                retry(once).await.map_err(|e| one_line(&e.to_string()))?;
                Ok(path)
            });
            self.ahead.insert(l.digest.clone(), task);
        }
        self.spool = Some(dir);
    }

    fn download(
        &mut self,
        layer: &Layer,
        out: &mut dyn Write,
        meter: &Meter,
    ) -> Result<(), TransferError> {
        if let Some(task) = self.ahead.remove(&layer.digest) {
            let fetched = self.rt.block_on(task);
            if let Ok(Ok(path)) = fetched {
                // Fetched and checked by the client; checked again as it is read.
                let mut f = std::fs::File::open(&path)
                    .map_err(TransferError::io(format!("reading {}", path.display())))?;
                let r = crate::store::verify_from(&mut f, &path, layer, out, self.place(), meter);
                let _ = std::fs::remove_file(&path);
                return r;
            }
            // A failed fetch ahead: try once more, streaming, for the real error.
        }
        self.stream(layer, out, meter)
    }
}

fn descriptor(layer: &Layer) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        digest: layer.digest.clone(),
        size: layer.size as i64,
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        ..Default::default()
    }
}

impl Registry {
    /// Streams one blob from the registry into `out`.
    fn stream(
        &mut self,
        layer: &Layer,
        out: &mut dyn Write,
        meter: &Meter,
    ) -> Result<(), TransferError> {
        let desc = descriptor(layer);
        let place = self.place();
        let (client, r) = (&self.client, &self.reference);
        let mut v = Verify::new(layer, out, place);
        let res: Result<(), TransferError> = self.rt.block_on(async {
            let mut stream = retry(|| client.pull_blob_stream(r, &desc))
                .await
                .map_err(|e| self.error(&e))?;
            while let Some(chunk) = stream.next().await {
                meter.check()?;
                let chunk = chunk.map_err(|e| TransferError::Registry {
                    registry: self.registry(),
                    why: format!(
                        "reading blob {}: {}",
                        layer.digest,
                        one_line(&e.to_string())
                    ),
                })?;
                v.put(&chunk)?;
                meter.add_bytes(chunk.len() as u64);
            }
            Ok(())
        });
        res?;
        v.finish()?;
        meter.blob_done();
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Blobs fetched ahead and not used (an import that failed or was
        // cancelled): stop their downloads before the spool dir goes.
        for (_, t) in self.ahead.drain() {
            t.abort();
        }
    }
}

/// A file as a stream of `Bytes` for an upload.
fn file_stream(
    f: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static {
    tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).map_err(OciDistributionError::IoError)
}
