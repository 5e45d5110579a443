//! What this host knows of each volume's exports, kept beside the volumes
//! (`<cache root>/.transfer/<key>.json`): the digest of every chunk of the
//! last export or import by its fingerprint (so a re-export packs only
//! what changed), and which export the volume was last synced with (so an
//! import of an unchanged export transfers nothing). A missing or
//! unreadable record only costs time: everything is packed again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record of one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Chunk fingerprint -> its layer (digest, compressed size).
    pub chunks: BTreeMap<String, (String, u64)>,
    /// The export the volume's content last matched.
    pub synced: Option<Synced>,
}

/// An export a volume matched, by the volume's digest in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    pub digest: String,
    /// The export's creation time (seconds since the epoch).
    pub created: u64,
}

/// The record key of a named volume (`name`) or a plain directory
/// (`dir-<hash of its absolute path>`).
pub fn key_for(name: Option<&str>, dir: &Path) -> String {
    match name {
        Some(n) => n.to_string(),
        None => {
            use sha2::{Digest, Sha256};
            let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            let h = Sha256::digest(abs.as_os_str().as_encoded_bytes());
            format!("dir-{}", &hex::encode(h)[..16])
        }
    }
}

fn path(records: &Path, key: &str) -> PathBuf {
    records.join(format!("{key}.json"))
}

/// The record of `key`; empty when there is none or it cannot be read.
pub fn load(records: &Path, key: &str) -> Record {
    std::fs::read(path(records, key))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the record of `key` (a temporary file renamed into place).
pub fn save(records: &Path, key: &str, r: &Record) -> std::io::Result<()> {
    std::fs::create_dir_all(records)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(records)?;
    tmp.write_all(&serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
    tmp.persist(path(records, key)).map_err(|e| e.error)?;
    Ok(())
}

/// Forgets `key` (its volume was removed).
pub fn forget(records: &Path, key: &str) {
    let _ = std::fs::remove_file(path(records, key));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_bad_records() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path(), "v"), Record::default());
        let mut r = Record::default();
        r.chunks.insert("f".into(), ("sha256:x".into(), 3));
        r.synced = Some(Synced {
            digest: "sha256:y".into(),
            created: 7,
        });
        save(d.path(), "v", &r).unwrap();
        assert_eq!(load(d.path(), "v"), r);
        std::fs::write(d.path().join("v.json"), b"{not json").unwrap();
        assert_eq!(load(d.path(), "v"), Record::default());
        forget(d.path(), "v");
        assert!(!d.path().join("v.json").exists());
        assert_eq!(key_for(Some("gomod"), Path::new("/x")), "gomod");
        let k = key_for(None, Path::new("/srv/cache"));
        assert!(k.starts_with("dir-") && k.len() == 20, "{k}");
        assert_ne!(k, key_for(None, Path::new("/srv/cache2")));
    }
}
