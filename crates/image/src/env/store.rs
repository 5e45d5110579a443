//! The image store under `<cache_root>/images/`: listing, removal, pruning,
//! last-use stamps and leftovers of killed builds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{flock, FlockOperation};

use super::build_tree::{cleanup_helper, remove_tree};
use super::image::{read_entry, short, EnvImage, LAST_USED_FILE};
use super::prune::select_prune;
use crate::error::io_err;
use crate::provision::{is_complete, open_lock_file};
use crate::ImageError;

/// `<cache_root>/images`.
pub fn images_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("images")
}

/// The lock file of `key`'s entry. [`crate::provision::ensure_dir`] locks
/// `.<entry name>.lock` next to the entry; everything here locks the same
/// file, so builds, removals and stale-temp cleanup of one key exclude
/// each other.
pub(crate) fn lock_path(images: &Path, key: &str) -> PathBuf {
    images.join(format!(".{key}.lock"))
}

/// Take `key`'s lock if nobody holds it. `None` when it is held (a build or
/// removal is running); released when the file is dropped.
pub(crate) fn try_lock(images: &Path, key: &str) -> Result<Option<File>, ImageError> {
    let path = lock_path(images, key);
    std::fs::create_dir_all(images).map_err(io_err(format!("creating {}", images.display())))?;
    let file =
        open_lock_file(&path).map_err(io_err(format!("opening lock file {}", path.display())))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(ImageError::Io {
            context: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Whether `name` looks like a key (64 lowercase hex digits).
fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Record a use of the entry `dir` now (the mtime of its `last-used`).
pub(crate) fn touch_last_used(dir: &Path) -> Result<(), ImageError> {
    let path = dir.join(LAST_USED_FILE);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    f.set_modified(SystemTime::now())
        .map_err(io_err(format!("touching {}", path.display())))
}

/// Every complete image in the cache, least recently used first. Damaged
/// entries are skipped with a warning.
pub fn list_images(cache_root: &Path) -> Result<Vec<EnvImage>, ImageError> {
    let images = images_dir(cache_root);
    let rd = match std::fs::read_dir(&images) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("listing {}", images.display()))(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(format!("listing {}", images.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        if !is_key(&name) || !is_complete(&dir) {
            continue;
        }
        match read_entry(&dir) {
            Ok(img) => out.push(img),
            Err(e) => tracing::warn!(%e, "skipping a damaged environment image"),
        }
    }
    out.sort_by(|a, b| (a.last_used, &a.key).cmp(&(b.last_used, &b.key)));
    Ok(out)
}

/// Remove the image whose key is `key_or_prefix` or starts with it (like
/// `docker rmi`: any unique prefix). An image a build is using (see
/// [`super::in_use`]) or that another vmbuild is removing is refused with
/// [`ImageError::ImageInUse`].
pub fn remove_image(cache_root: &Path, key_or_prefix: &str) -> Result<EnvImage, ImageError> {
    let img = find_image(cache_root, key_or_prefix)?;
    let images = images_dir(cache_root);
    let Some(_lock) = try_lock(&images, &img.key)? else {
        return Err(ImageError::ImageInUse {
            key: short(&img.key).to_string(),
        });
    };
    if !delete_entry(&images, &img.key)? {
        // removed by someone else between the lookup and the lock
        return Err(ImageError::NoSuchImage {
            prefix: key_or_prefix.to_string(),
        });
    }
    Ok(img)
}

/// The cached image whose key is `key_or_prefix` or starts with it (any
/// unique prefix, as `vmbuild image ls` shows them).
pub fn find_image(cache_root: &Path, key_or_prefix: &str) -> Result<EnvImage, ImageError> {
    let prefix = key_or_prefix.trim().to_ascii_lowercase();
    let no_such = || ImageError::NoSuchImage {
        prefix: key_or_prefix.to_string(),
    };
    if prefix.is_empty() {
        return Err(no_such());
    }
    let matches: Vec<EnvImage> = list_images(cache_root)?
        .into_iter()
        .filter(|i| i.key.starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [] => Err(no_such()),
        [one] => Ok(one.clone()),
        many => Err(ImageError::AmbiguousImage {
            prefix: key_or_prefix.to_string(),
            matches: many
                .iter()
                .map(|i| short(&i.key))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Remove images chosen by [`select_prune`] (least recently used first)
/// and return them; with `dry_run`, only return them. An image being
/// removed by another vmbuild at the same time is skipped. Also removes
/// leftovers of killed builds (not with `dry_run`).
pub fn prune_images(
    cache_root: &Path,
    older_than: Option<Duration>,
    max_total: Option<u64>,
    dry_run: bool,
) -> Result<Vec<EnvImage>, ImageError> {
    let images = images_dir(cache_root);
    if !dry_run {
        clean_stale_temps(&images);
    }
    let all = list_images(cache_root)?;
    let chosen: Vec<EnvImage> = select_prune(&all, SystemTime::now(), older_than, max_total)
        .into_iter()
        .map(|i| all[i].clone())
        .collect();
    if dry_run {
        return Ok(chosen);
    }
    let mut removed = Vec::new();
    for img in chosen {
        let Some(_lock) = try_lock(&images, &img.key)? else {
            tracing::info!(key = %img.key, "image is in use; not pruning it");
            continue;
        };
        if delete_entry(&images, &img.key)? {
            removed.push(img);
        }
    }
    Ok(removed)
}

/// Delete the entry of `key` (its lock must be held): renamed out of the
/// way first, so it disappears at once and a killed removal leaves only a
/// stale temp dir. `false` when there was no entry.
pub(crate) fn delete_entry(images: &Path, key: &str) -> Result<bool, ImageError> {
    let dir = images.join(key);
    let doomed = images.join(format!("{}rm-{}", temp_prefix(key), std::process::id()));
    match std::fs::rename(&dir, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(format!("moving {} away", dir.display()))(e)),
    }
    std::fs::remove_dir_all(&doomed).map_err(io_err(format!("removing {}", doomed.display())))?;
    Ok(true)
}

/// Prefix of the temp dirs of `key`'s entry (as [`crate::provision::ensure_dir`]
/// names them).
pub(crate) fn temp_prefix(key: &str) -> String {
    format!(".tmp-{key}#")
}

/// Remove temp dirs of builds or removals that were killed, for every key
/// whose lock is free (a held lock means that build is still running).
pub(crate) fn clean_stale_temps(images: &Path) {
    let Ok(rd) = std::fs::read_dir(images) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name
            .strip_prefix(".tmp-")
            .and_then(|r| r.split_once('#'))
            .map(|p| p.0)
        else {
            continue;
        };
        if !is_key(key) {
            continue;
        }
        match try_lock(images, key) {
            Ok(Some(_lock)) => {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing a stale temp dir");
                remove_tree(&path, cleanup_helper().as_deref());
            }
            Ok(None) => {} // its build is running
            Err(err) => tracing::warn!(%err, "cannot check a temp dir"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::COMPLETE_MARKER;
    use crate::env::image::{ImageMeta, META_FILE};
    use crate::env::{EnvSpec, ImageFormat};
    use std::time::UNIX_EPOCH;

    /// A fake complete entry for `pkg`, last used `used` seconds after the epoch.
    fn fake(root: &Path, pkg: &str, size: usize, used: u64) -> String {
        let spec = EnvSpec::new([pkg]);
        let key = spec.key();
        let dir = images_dir(root).join(&key);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rootfs.erofs"), vec![0u8; size]).unwrap();
        let meta = ImageMeta {
            recipe: 1,
            key: key.clone(),
            spec,
            format: ImageFormat::Erofs,
            created: 1000,
            build_seconds: 1.0,
            rootfs_bytes: 0,
            image_bytes: size as u64,
            tools: Default::default(),
        };
        std::fs::write(dir.join(META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
        File::create(dir.join(LAST_USED_FILE))
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(used))
            .unwrap();
        std::fs::write(dir.join(COMPLETE_MARKER), "").unwrap();
        key
    }

    #[test]
    fn lists_complete_entries_lru_first() {
        let t = tempfile::tempdir().unwrap();
        assert!(
            list_images(t.path()).unwrap().is_empty(),
            "no images dir yet"
        );
        let a = fake(t.path(), "aaa", 10, 5000);
        let b = fake(t.path(), "bbb", 20, 3000);
        let images = images_dir(t.path());
        // Not listed: incomplete, damaged, temp, lock files, non-key names.
        let c = fake(t.path(), "ccc", 1, 1);
        std::fs::remove_file(images.join(&c).join(COMPLETE_MARKER)).unwrap();
        let d = fake(t.path(), "ddd", 1, 1);
        std::fs::write(images.join(&d).join(META_FILE), "{").unwrap();
        std::fs::create_dir(images.join(format!(".tmp-{a}#x"))).unwrap();
        std::fs::write(images.join(format!(".{a}.lock")), "").unwrap();
        std::fs::create_dir(images.join("notakey")).unwrap();

        let l = list_images(t.path()).unwrap();
        assert_eq!(
            l.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            [&b, &a]
        );
        assert_eq!(l[0].size, 20);
        assert_eq!(l[0].spec.packages, ["bbb"]);
        assert_eq!(l[0].path, images.join(&b).join("rootfs.erofs"));
        assert_eq!(l[0].last_used, UNIX_EPOCH + Duration::from_secs(3000));
        assert_eq!(l[0].created, UNIX_EPOCH + Duration::from_secs(1000));
    }

    #[test]
    fn entry_whose_meta_names_another_key_is_damaged() {
        let t = tempfile::tempdir().unwrap();
        let a = fake(t.path(), "aaa", 1, 1);
        let images = images_dir(t.path());
        let other = "f".repeat(64);
        std::fs::rename(images.join(&a), images.join(&other)).unwrap();
        assert!(list_images(t.path()).unwrap().is_empty());
    }

    #[test]
    fn remove_by_unique_prefix() {
        let t = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..40)
            .map(|i| fake(t.path(), &format!("p{i}"), 1, i))
            .collect();
        // Find two keys sharing a first character, and one unique 6-char prefix.
        let first = &keys[0];
        let twin = keys[1..]
            .iter()
            .find(|k| k[..1] == first[..1])
            .expect("40 keys share a nibble");
        let e = remove_image(t.path(), &first[..1]).unwrap_err();
        assert!(matches!(e, ImageError::AmbiguousImage { .. }), "{e}");
        assert!(e.to_string().contains(&first[..12]) && e.to_string().contains(&twin[..12]));

        let removed = remove_image(t.path(), &first[..8].to_uppercase()).unwrap();
        assert_eq!(&removed.key, first);
        let images = images_dir(t.path());
        assert!(!images.join(first).exists());
        assert!(images.join(twin).exists());
        let left: Vec<_> = std::fs::read_dir(&images)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        for p in [first.as_str(), "", "zz"] {
            assert!(matches!(
                remove_image(t.path(), p),
                Err(ImageError::NoSuchImage { .. })
            ));
        }
    }

    #[test]
    fn prune_removes_lru_and_dry_run_keeps() {
        let t = tempfile::tempdir().unwrap();
        let old = fake(t.path(), "old", 100, 1000);
        let mid = fake(t.path(), "mid", 100, 2000);
        let new = fake(t.path(), "new", 100, 3000);
        let dry = prune_images(t.path(), None, Some(150), true).unwrap();
        assert_eq!(dry.iter().map(|i| &i.key).collect::<Vec<_>>(), [&old, &mid]);
        assert_eq!(list_images(t.path()).unwrap().len(), 3);

        // An image being removed elsewhere (lock held) is skipped.
        let images = images_dir(t.path());
        let held = try_lock(&images, &old).unwrap().unwrap();
        assert!(try_lock(&images, &old).unwrap().is_none());
        let removed = prune_images(t.path(), None, Some(150), false).unwrap();
        assert_eq!(removed.iter().map(|i| &i.key).collect::<Vec<_>>(), [&mid]);
        drop(held);
        let left: Vec<String> = list_images(t.path())
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(left, [old.clone(), new.clone()]);

        let removed = prune_images(t.path(), None, None, false).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(list_images(t.path()).unwrap().is_empty());
    }

    #[test]
    fn stale_temps_are_removed_unless_their_build_runs() {
        let t = tempfile::tempdir().unwrap();
        let images = images_dir(t.path());
        let (k1, k2) = ("1".repeat(64), "2".repeat(64));
        let stale = images.join(format!(".tmp-{k1}#abc"));
        let running = images.join(format!(".tmp-{k2}#def"));
        let unrelated = images.join(".tmp-other#x");
        for d in [&stale, &running, &unrelated] {
            std::fs::create_dir_all(d.join("rootfs/usr")).unwrap();
        }
        let _building = try_lock(&images, &k2).unwrap().unwrap();
        clean_stale_temps(&images);
        assert!(!stale.exists());
        assert!(running.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn touch_updates_last_used() {
        let t = tempfile::tempdir().unwrap();
        let k = fake(t.path(), "aaa", 1, 1);
        let before = SystemTime::now() - Duration::from_secs(1);
        touch_last_used(&images_dir(t.path()).join(&k)).unwrap();
        let img = list_images(t.path()).unwrap().remove(0);
        assert!(img.last_used >= before, "{:?}", img.last_used);
    }
}
