//! The export's format: one OCI image manifest per export, an artifact in
//! the OCI image spec's sense (`artifactType`
//! `application/vnd.vmbuild.cache.v1`), whose config blob names the
//! volumes and the vmbuild version, and whose layers are the volumes'
//! chunks (`application/vnd.oci.image.layer.v1.tar+zstd`, each annotated
//! with its volume), volume by volume, in listing order.
//!
//! Everything read back is hostile input: sizes are bounded, digests must
//! be `sha256:` and 64 lowercase hex digits (they become file names in a
//! local layout), and the layers must match the config's volume list.

use serde::{Deserialize, Serialize};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.vmbuild.cache.v1";
/// The config blob's media type.
pub const CONFIG_TYPE: &str = "application/vnd.vmbuild.cache.config.v1+json";
/// The layer annotation naming a chunk's volume.
pub const VOLUME_ANNOTATION: &str = "dev.vmbuild.volume";
/// The OCI image manifest media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Largest manifest or config read back.
pub const MAX_JSON: u64 = 8 << 20;
/// Most layers in one export.
pub const MAX_LAYERS: usize = 200_000;

/// The config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheConfig {
    /// The vmbuild version that wrote the export.
    pub vmbuild_version: String,
    /// When it was written, seconds since the Unix epoch.
    pub created: u64,
    pub volumes: Vec<VolumeInfo>,
}

/// One exported volume in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// The volume id (`--cache id=NAME`), or `cache-dir` for `--cache-dir`.
    pub name: String,
    /// sha256 of its layer digests, in order: equal digests, equal content.
    pub digest: String,
    /// How many layers, from the first after the previous volume's.
    pub layers: usize,
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries (files, dirs, links).
    pub entries: u64,
}

/// A layer as the export lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
}

/// A parsed, checked export.
#[derive(Debug, Clone)]
pub struct Export {
    pub config: CacheConfig,
    /// The layers of each volume of `config.volumes`, same order.
    pub layers: Vec<Vec<Layer>>,
}

/// What is wrong with an export read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// The reasons quote what was read back (serde and oci-spec quote bad
/// values): made printable, so a hostile export cannot drive the terminal.
fn bad(why: impl Into<String>) -> FormatError {
    FormatError(vmbuild_runner::export::printable(&why.into()))
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The digest of a volume: sha256 over its layer digests, in order.
pub fn volume_digest(layers: &[Layer]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for l in layers {
        h.update(l.digest.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn descriptor(media: MediaType, digest: &str, size: u64) -> Result<Descriptor, FormatError> {
    let d: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| bad(format!("digest {digest}: {e}")))?;
    Ok(Descriptor::new(media, size, d))
}

/// The manifest JSON for `config` (serialized as `config_json`) and the
/// layers of each volume.
pub fn manifest(
    config_json: &[u8],
    config: &CacheConfig,
    layers: &[Vec<Layer>],
) -> Result<Vec<u8>, FormatError> {
    let mut descs = Vec::new();
    for (v, ls) in config.volumes.iter().zip(layers) {
        for l in ls {
            let mut d = descriptor(MediaType::ImageLayerZstd, &l.digest, l.size)?;
            d.set_annotations(Some(
                [(VOLUME_ANNOTATION.to_string(), v.name.clone())].into(),
            ));
            descs.push(d);
        }
    }
    let cfg = descriptor(
        MediaType::Other(CONFIG_TYPE.into()),
        &digest_of(config_json),
        config_json.len() as u64,
    )?;
    let m = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(ARTIFACT_TYPE.into()))
        .config(cfg)
        .layers(descs)
        .build()
        .map_err(|e| bad(format!("building the manifest: {e}")))?;
    serde_json::to_vec(&m).map_err(|e| bad(format!("writing the manifest: {e}")))
}

/// The config blob's descriptor from a manifest, checked to be ours.
pub fn config_of(manifest_json: &[u8]) -> Result<(ImageManifest, Layer), FormatError> {
    let m: ImageManifest = serde_json::from_slice(manifest_json)
        .map_err(|e| bad(format!("the manifest is not an OCI image manifest: {e}")))?;
    let cfg = m.config();
    let ours = m.artifact_type().as_ref().map(|t| t.to_string()) == Some(ARTIFACT_TYPE.into())
        || cfg.media_type().to_string() == CONFIG_TYPE;
    if !ours {
        return Err(bad(format!(
            "it is not a vmbuild cache export (artifactType {}, config {}); was it written by vmbuild --cache-to?",
            m.artifact_type().as_ref().map_or("none".into(), |t| t.to_string()),
            cfg.media_type()
        )));
    }
    let digest = cfg.digest().to_string();
    if !valid_digest(&digest) || cfg.size() > MAX_JSON {
        return Err(bad(format!(
            "bad config descriptor {digest} ({} bytes)",
            cfg.size()
        )));
    }
    Ok((
        m.clone(),
        Layer {
            digest,
            size: cfg.size(),
        },
    ))
}

/// Checks `manifest` against its config blob `config_json` and splits the
/// layers by volume.
pub fn export_of(manifest: &ImageManifest, config_json: &[u8]) -> Result<Export, FormatError> {
    let config: CacheConfig = serde_json::from_slice(config_json)
        .map_err(|e| bad(format!("the export's config is not vmbuild's: {e}")))?;
    let layers = manifest.layers();
    if layers.len() > MAX_LAYERS {
        return Err(bad(format!(
            "{} layers (at most {MAX_LAYERS})",
            layers.len()
        )));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for (i, v) in config.volumes.iter().enumerate() {
        if config.volumes[..i].iter().any(|o| o.name == v.name) {
            return Err(bad(format!("volume {} is listed twice", v.name)));
        }
        if v.name.is_empty() || v.name.starts_with('.') || v.name.contains(['/', '\0']) {
            return Err(bad(format!("bad volume name {:?}", v.name)));
        }
        let end = at
            .checked_add(v.layers)
            .filter(|e| *e <= layers.len())
            .ok_or_else(|| {
                bad(format!(
                    "volume {} lists more layers than the manifest has",
                    v.name
                ))
            })?;
        let mut ls = Vec::new();
        for d in &layers[at..end] {
            let digest = d.digest().to_string();
            if !valid_digest(&digest) {
                return Err(bad(format!("layer digest {digest} is not sha256")));
            }
            if d.media_type() != &MediaType::ImageLayerZstd {
                return Err(bad(format!(
                    "layer {digest} has media type {}",
                    d.media_type()
                )));
            }
            let named = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(VOLUME_ANNOTATION));
            if named != Some(&v.name) {
                return Err(bad(format!(
                    "layer {digest} is not annotated as volume {}",
                    v.name
                )));
            }
            ls.push(Layer {
                digest,
                size: d.size(),
            });
        }
        if volume_digest(&ls) != v.digest {
            return Err(bad(format!(
                "volume {}'s digest does not match its layers",
                v.name
            )));
        }
        out.push(ls);
        at = end;
    }
    if at != layers.len() {
        return Err(bad(format!(
            "{} layer(s) belong to no volume",
            layers.len() - at
        )));
    }
    Ok(Export {
        config,
        layers: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> Layer {
        Layer {
            digest: digest_of(&[n]),
            size: 10 + n as u64,
        }
    }

    fn sample() -> (CacheConfig, Vec<Vec<Layer>>) {
        let layers = vec![vec![layer(1), layer(2)], vec![layer(3)]];
        let config = CacheConfig {
            vmbuild_version: "0.1.0".into(),
            created: 1,
            volumes: vec![
                VolumeInfo {
                    name: "gomod".into(),
                    digest: volume_digest(&layers[0]),
                    layers: 2,
                    bytes: 5,
                    entries: 3,
                },
                VolumeInfo {
                    name: "npm".into(),
                    digest: volume_digest(&layers[1]),
                    layers: 1,
                    bytes: 1,
                    entries: 1,
                },
            ],
        };
        (config, layers)
    }

    /// Found by fuzzing (cache_manifest): oci-spec quotes a bad digest,
    /// here one with a DEL and an escape sequence in it.
    #[test]
    fn a_hostile_value_is_quoted_escaped() {
        let (config, layers) = sample();
        let cj = serde_json::to_vec(&config).unwrap();
        let mj = String::from_utf8(manifest(&cj, &config, &layers).unwrap()).unwrap();
        let bad = mj.replacen("sha256:", "sha256:\\u001b[2J\\u007f", 1);
        let e = config_of(bad.as_bytes()).unwrap_err().0;
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("\\u{1b}[2J\\u{7f}"), "{e}");
    }

    #[test]
    fn round_trip() {
        let (config, layers) = sample();
        let cj = serde_json::to_vec(&config).unwrap();
        let mj = manifest(&cj, &config, &layers).unwrap();
        let text = String::from_utf8(mj.clone()).unwrap();
        assert!(text.contains(ARTIFACT_TYPE), "{text}");
        assert!(
            text.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
            "{text}"
        );
        let (m, cfg) = config_of(&mj).unwrap();
        assert_eq!(cfg.digest, digest_of(&cj));
        let e = export_of(&m, &cj).unwrap();
        assert_eq!(e.config, config);
        assert_eq!(e.layers, layers);
    }

    #[test]
    fn mismatches_are_refused() {
        let (config, layers) = sample();
        let cj = serde_json::to_vec(&config).unwrap();
        let mj = manifest(&cj, &config, &layers).unwrap();
        let (m, _) = config_of(&mj).unwrap();
        // A config that claims other layers for a volume.
        let mut c2 = config.clone();
        c2.volumes[0].digest = volume_digest(&layers[1]);
        let e = export_of(&m, &serde_json::to_vec(&c2).unwrap()).unwrap_err();
        assert!(e.0.contains("does not match"), "{e}");
        let mut c3 = config.clone();
        c3.volumes[1].layers = 5;
        assert!(export_of(&m, &serde_json::to_vec(&c3).unwrap()).is_err());
        let mut c4 = config.clone();
        c4.volumes.pop();
        let e = export_of(&m, &serde_json::to_vec(&c4).unwrap()).unwrap_err();
        assert!(e.0.contains("belong to no volume"), "{e}");
        let mut c5 = config;
        c5.volumes[0].name = "../x".into();
        assert!(export_of(&m, &serde_json::to_vec(&c5).unwrap()).is_err());
        // Someone else's image.
        let e = config_of(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#).unwrap_err();
        assert!(e.0.contains("not a vmbuild cache export"), "{e}");
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(valid_digest(&digest_of(b"x")));
        for d in ["sha256:../../etc", "sha512:00", "sha256:ABCDEF", ""] {
            assert!(!valid_digest(d), "{d}");
        }
    }
}
