//! The environment image store under `<cache_root>/images/`: a
//! [`vmbuild_store::Store`] keyed by [`super::EnvSpec::key`], with listing,
//! removal and pruning of [`EnvImage`]s on top.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use vmbuild_store::{Removal, Store};

use super::build_tree::{cleanup_helper, remove_tree};
use super::image::{read_entry, short, EnvImage};
use super::prune::select_prune;
use crate::ImageError;

/// `<cache_root>/images`.
pub fn images_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("images")
}

/// The store of environment images in `cache_root`. Its keys are image
/// keys; a killed build's leftovers may belong to subordinate uids, so
/// they are removed through mmdebstrap's unshare helper when not root.
pub(crate) fn image_store(cache_root: &Path) -> Store {
    Store::new(images_dir(cache_root))
        .with_keys(is_key)
        .with_tree_remover(|path| remove_tree(path, cleanup_helper().as_deref()))
}

/// Whether `name` looks like a key (64 lowercase hex digits).
fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every complete image in the cache, least recently used first. Damaged
/// entries are skipped with a warning.
pub fn list_images(cache_root: &Path) -> Result<Vec<EnvImage>, ImageError> {
    let store = image_store(cache_root);
    let mut out = Vec::new();
    for key in store.keys()? {
        match read_entry(&store.entry(&key)) {
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
    match image_store(cache_root).remove(&img.key)? {
        Removal::Removed => Ok(img),
        Removal::Held => Err(ImageError::ImageInUse {
            key: short(&img.key).to_string(),
        }),
        // removed by someone else between the lookup and the lock
        Removal::Missing => Err(ImageError::NoSuchImage {
            prefix: key_or_prefix.to_string(),
        }),
    }
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
/// and return them. Images in use by a build (or being removed by another
/// vmbuild) are skipped; with `dry_run` nothing is removed, but in-use
/// images are skipped the same way, so the result is exactly what a real
/// prune would remove. A real prune also removes leftovers of killed builds.
pub fn prune_images(
    cache_root: &Path,
    older_than: Option<Duration>,
    max_total: Option<u64>,
    dry_run: bool,
) -> Result<Vec<EnvImage>, ImageError> {
    let all = list_images(cache_root)?;
    let chosen: Vec<EnvImage> = select_prune(&all, SystemTime::now(), older_than, max_total)
        .into_iter()
        .map(|i| all[i].clone())
        .collect();
    Ok(image_store(cache_root).prune(chosen, |i| &i.key, dry_run)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::image::{ImageMeta, LAST_USED_FILE, META_FILE};
    use crate::env::{EnvSpec, ImageFormat};
    use std::fs::File;
    use std::time::UNIX_EPOCH;
    use vmbuild_store::COMPLETE_MARKER;

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

    /// Three images of 100 bytes, used in this order: `[old, mid, new]`.
    fn old_mid_new(root: &Path) -> [String; 3] {
        [("old", 1000), ("mid", 2000), ("new", 3000)].map(|(p, used)| fake(root, p, 100, used))
    }

    /// The keys `list_images` shows, least recently used first.
    fn listed(root: &Path) -> Vec<String> {
        list_images(root)
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect()
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
        let [old, mid, new] = old_mid_new(t.path());
        let dry = prune_images(t.path(), None, Some(150), true).unwrap();
        assert_eq!(dry.iter().map(|i| &i.key).collect::<Vec<_>>(), [&old, &mid]);
        assert_eq!(list_images(t.path()).unwrap().len(), 3);

        // An image being removed elsewhere (lock held) is skipped.
        let store = image_store(t.path());
        let held = store.try_lock(&old).unwrap().unwrap();
        assert!(store.try_lock(&old).unwrap().is_none());
        let removed = prune_images(t.path(), None, Some(150), false).unwrap();
        assert_eq!(removed.iter().map(|i| &i.key).collect::<Vec<_>>(), [&mid]);
        drop(held);
        assert_eq!(listed(t.path()), [old.clone(), new.clone()]);

        let removed = prune_images(t.path(), None, None, false).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(list_images(t.path()).unwrap().is_empty());
    }

    #[test]
    fn prune_dry_run_lists_exactly_what_prune_removes() {
        let t = tempfile::tempdir().unwrap();
        let [old, mid, new] = old_mid_new(t.path());
        // `old` is in use by a build: a dry run must not offer it.
        let in_use = image_store(t.path()).hold(&old).unwrap().unwrap();
        let dry = prune_images(t.path(), None, None, true).unwrap();
        assert_eq!(dry.iter().map(|i| &i.key).collect::<Vec<_>>(), [&mid, &new]);
        assert_eq!(list_images(t.path()).unwrap().len(), 3);
        let removed = prune_images(t.path(), None, None, false).unwrap();
        assert_eq!(removed, dry);
        drop(in_use);
        assert_eq!(listed(t.path()), [old]);
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
        let store = image_store(t.path());
        let _building = store.try_lock(&k2).unwrap().unwrap();
        store.clean_stale_temps();
        assert!(!stale.exists());
        assert!(running.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn touch_updates_last_used() {
        let t = tempfile::tempdir().unwrap();
        let k = fake(t.path(), "aaa", 1, 1);
        let before = SystemTime::now() - Duration::from_secs(1);
        image_store(t.path()).touch(&k).unwrap();
        let img = list_images(t.path()).unwrap().remove(0);
        assert!(img.last_used >= before, "{:?}", img.last_used);
    }
}
