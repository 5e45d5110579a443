//! The snapshot store: `<cache root>/snapshots/<key>/` (a `vmbuild_store`
//! entry, so builds are atomic and in-use entries are never pruned), each
//! holding
//!
//! ```text
//! vmstate     the QEMU migration stream of the saved guest
//! meta.json   {format, description, stream_bytes, sha256}
//! ```
//!
//! Nothing in it is trusted blindly: before a restore the description must
//! equal the one computed for this run and the stream must have its
//! recorded size; its SHA-256 is checked while QEMU loads it, before the
//! guest gets anything of the run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vmbuild_store::{Building, Lock, Store};

use super::key;

/// The migration stream's file name in an entry.
pub const STREAM: &str = "vmstate";
/// The metadata's file name in an entry.
pub const META: &str = "meta.json";
/// How many snapshots are kept (least recently used go first): one per
/// machine shape a user runs, each about 90 MB for a 1 GiB guest.
pub const MAX_SNAPSHOTS: usize = 6;

/// What an entry records about its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// The [`key::describe`] text the key was made from.
    pub description: String,
    pub stream_bytes: u64,
    /// Hex SHA-256 of the stream.
    pub sha256: String,
}

/// A usable snapshot, held (shared lock) so it is not pruned while loaded.
#[derive(Debug)]
pub struct Saved {
    pub key: String,
    pub stream: PathBuf,
    pub meta: Meta,
    _hold: Lock,
}

/// The snapshot store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: Store,
}

/// What looking a key up found.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing saved for this key (or it is being replaced right now).
    Missing,
    Found(Saved),
    /// An entry that must not be used, and why (it is replaced on the next
    /// save).
    Bad(String),
}

impl Snapshots {
    /// The store in `dir` (created if missing).
    pub fn open(dir: &Path) -> std::io::Result<Snapshots> {
        std::fs::create_dir_all(dir)?;
        Ok(Snapshots {
            store: Store::new(dir),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Looks up `key`, checking its metadata against `description`.
    pub fn lookup(&self, key: &str, description: &str) -> Lookup {
        let hold = match self.store.hold(key) {
            Ok(Some(h)) => h,
            Ok(None) => return Lookup::Missing,
            Err(e) => return Lookup::Bad(format!("cannot lock it: {e}")),
        };
        let dir = self.store.entry(key);
        let meta: Meta = match std::fs::read(dir.join(META))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return Lookup::Bad(format!("unreadable {META}: {e}")),
        };
        if let Some(why) = mismatch(&meta, description) {
            return Lookup::Bad(why);
        }
        let stream = dir.join(STREAM);
        match std::fs::metadata(&stream) {
            Ok(m) if m.len() == meta.stream_bytes => {}
            Ok(m) => {
                return Lookup::Bad(format!(
                    "{STREAM} has {} bytes, {} were saved",
                    m.len(),
                    meta.stream_bytes
                ))
            }
            Err(e) => return Lookup::Bad(format!("{STREAM}: {e}")),
        }
        if let Err(e) = self.store.touch(key) {
            tracing::debug!("recording the use of snapshot {key}: {e}");
        }
        Lookup::Found(Saved {
            key: key.to_string(),
            stream,
            meta,
            _hold: hold,
        })
    }

    /// Starts saving `key` unless another run saves, uses or removes it now.
    pub fn begin(&self, key: &str) -> Option<Building> {
        match self.store.try_begin(key) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("cannot start saving snapshot {key}: {e}");
                None
            }
        }
    }

    /// Removes `key`'s entry (unless in use), e.g. after it failed to load.
    pub fn discard(&self, key: &str) {
        if let Err(e) = self.store.remove(key) {
            tracing::debug!("removing snapshot {key}: {e}");
        }
    }

    /// The keys of complete entries.
    pub fn keys(&self) -> Vec<String> {
        self.store.keys().unwrap_or_default()
    }

    /// Every complete entry with its size, last use and a summary of the
    /// machine it was saved for, most recently used first.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let mut out: Vec<SnapshotInfo> = self
            .keys()
            .into_iter()
            .map(|key| {
                let dir = self.store.entry(&key);
                let bytes = std::fs::metadata(dir.join(STREAM)).map_or(0, |m| m.len());
                let machine = std::fs::read(dir.join(META))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                    .map_or_else(
                        || "(unreadable meta.json)".into(),
                        |m| summary(&m.description),
                    );
                SnapshotInfo {
                    last_used: last_used(&dir),
                    key,
                    bytes,
                    machine,
                }
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.last_used));
        out
    }

    /// Removes the least recently used entries beyond `keep` (held ones
    /// stay); returns the removed keys.
    pub fn prune_to(&self, keep: usize) -> Vec<String> {
        let mut used: Vec<(std::time::SystemTime, String)> = self
            .keys()
            .into_iter()
            .map(|k| (last_used(&self.store.entry(&k)), k))
            .collect();
        used.sort();
        let excess = used.len().saturating_sub(keep);
        let doomed: Vec<String> = used.into_iter().take(excess).map(|(_, k)| k).collect();
        self.store
            .prune(doomed, |k| k.as_str(), false)
            .unwrap_or_default()
    }
}

/// One line of `vmbuild snapshot ls`.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub key: String,
    /// Size of the migration stream.
    pub bytes: u64,
    pub last_used: std::time::SystemTime,
    /// e.g. `-m 1024M -smp 1, 2 x 9p, 1 x disk, net`.
    pub machine: String,
}

/// A short summary of a [`key::describe`] text: memory, vCPUs and devices.
pub fn summary(description: &str) -> String {
    let lines: Vec<&str> = description.lines().collect();
    let after = |flag: &str| {
        lines
            .windows(2)
            .find(|w| w[0] == flag)
            .map_or("?", |w| w[1])
    };
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    let mut s = format!("-m {} -smp {}", after("-m"), after("-smp"));
    for (n, what) in [
        (count("virtio-9p-device"), "9p"),
        (count("virtio-blk-device"), "disk"),
        (count("virtio-net-device"), "net"),
    ] {
        if n > 0 {
            s.push_str(&format!(", {n} x {what}"));
        }
    }
    s
}

fn last_used(entry: &Path) -> std::time::SystemTime {
    let f = entry.join(vmbuild_store::LAST_USED_FILE);
    std::fs::metadata(&f)
        .or_else(|_| std::fs::metadata(entry))
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Why `meta` does not fit `description`, if it does not.
pub fn mismatch(meta: &Meta, description: &str) -> Option<String> {
    if meta.format != key::FORMAT {
        return Some(format!(
            "saved in format {}, this vmbuild uses {}",
            meta.format,
            key::FORMAT
        ));
    }
    if meta.description != description {
        return Some("saved for a different machine (description differs)".into());
    }
    None
}

/// Checks the stream against its recorded hash (blocking; run it beside
/// QEMU's load).
pub fn verify(saved_stream: &Path, meta: &Meta) -> Result<(), String> {
    let got = vmbuild_image::kernel::deb::sha256_file(saved_stream)
        .map_err(|e| format!("checking {STREAM}: {e}"))?;
    if got == meta.sha256 {
        Ok(())
    } else {
        Err(format!("{STREAM} does not match its recorded SHA-256"))
    }
}

/// Writes `meta` into an entry being built.
pub fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(META), json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn save(s: &Snapshots, key: &str, desc: &str, stream: &[u8]) {
        let b = s.begin(key).expect("free");
        std::fs::write(b.dir().join(STREAM), stream).unwrap();
        let meta = Meta {
            format: key::FORMAT,
            description: desc.into(),
            stream_bytes: stream.len() as u64,
            sha256: hex::encode(Sha256::digest(stream)),
        };
        write_meta(b.dir(), &meta).unwrap();
        b.commit().unwrap();
    }

    #[test]
    fn a_saved_snapshot_is_found_held_and_verifies() {
        let t = tempfile::tempdir().unwrap();
        let s = Snapshots::open(&t.path().join("snapshots")).unwrap();
        assert!(matches!(s.lookup("k", "d"), Lookup::Missing));
        save(&s, "k", "d", b"QEVM-stream");
        let Lookup::Found(saved) = s.lookup("k", "d") else {
            panic!("not found")
        };
        verify(&saved.stream, &saved.meta).unwrap();
        // Held: neither pruned nor discarded under its user.
        assert!(s.prune_to(0).is_empty());
        s.discard("k");
        assert_eq!(s.keys(), vec!["k".to_string()]);
        drop(saved);
        assert_eq!(s.prune_to(0), vec!["k".to_string()]);
    }

    #[test]
    fn truncated_garbage_and_mismatching_snapshots_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = Snapshots::open(t.path()).unwrap();
        save(&s, "k", "d", b"QEVM-stream");
        assert!(
            matches!(s.lookup("k", "other"), Lookup::Bad(w) if w.contains("different machine"))
        );
        let stream = s.store.entry("k").join(STREAM);
        std::fs::write(&stream, b"QEVM").unwrap();
        assert!(matches!(s.lookup("k", "d"), Lookup::Bad(w) if w.contains("bytes")));
        // Same size, other bytes: only the hash notices.
        std::fs::write(&stream, b"XXXX-stream").unwrap();
        let Lookup::Found(saved) = s.lookup("k", "d") else {
            panic!("size matches")
        };
        assert!(verify(&saved.stream, &saved.meta).is_err());
        std::fs::write(s.store.entry("k").join(META), b"{").unwrap();
        drop(saved);
        assert!(matches!(s.lookup("k", "d"), Lookup::Bad(w) if w.contains(META)));
    }

    #[test]
    fn summary_names_memory_vcpus_and_devices() {
        let d = "vmbuild-snapshot format 1\n-smp\n2\n-m\n768M\n-device\nvirtio-9p-device,fsdev=fs0,mount_tag=*\n-device\nvirtio-9p-device,fsdev=fs1,mount_tag=*\n-device\nvirtio-blk-device,drive=drive0";
        assert_eq!(summary(d), "-m 768M -smp 2, 2 x 9p, 1 x disk");
    }

    #[test]
    fn pruning_keeps_the_most_recently_used() {
        let t = tempfile::tempdir().unwrap();
        let s = Snapshots::open(t.path()).unwrap();
        for k in ["a", "b", "c"] {
            save(&s, k, "d", b"x");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Using "a" makes it the most recent.
        drop(s.lookup("a", "d"));
        let removed = s.prune_to(2);
        assert_eq!(removed, vec!["b".to_string()]);
        assert_eq!(s.keys(), vec!["a".to_string(), "c".to_string()]);
    }
}
