//! Images held by a running build: a shared `flock` on the entry's lock
//! file from the moment a build picks an image until its VM is gone.
//! Builders and removers take that lock exclusively, so `image rm` refuses
//! and `image prune` skips an image in use instead of deleting it between
//! the build choosing it and QEMU opening it.

use std::path::Path;

use vmbuild_store::Lock;

use super::builder::EnvBuilder;
use super::ensure::ensure_env_image_with;
use super::image::{read_entry, EnvImage};
use super::mmdebstrap::MmdebstrapBuilder;
use super::spec::EnvSpec;
use super::store::{find_image, image_store};
use crate::ImageError;

/// An image held for a build; `image rm` and `prune` leave it alone until
/// this is dropped.
#[derive(Debug)]
pub struct InUse {
    image: EnvImage,
    _lock: Lock,
}

impl InUse {
    /// The image held.
    pub fn image(&self) -> &EnvImage {
        &self.image
    }
}

/// How often an image removed between being found and being held is
/// looked up (or built) again before giving up.
const ATTEMPTS: usize = 3;

/// [`super::ensure_env_image`], held for use; `true` when this call built it.
pub fn ensure_env_image_in_use(
    cache_root: &Path,
    spec: &EnvSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<(InUse, bool), ImageError> {
    ensure_env_image_in_use_with(cache_root, spec, &MmdebstrapBuilder::default(), progress)
}

/// [`ensure_env_image_with`], held for use.
pub fn ensure_env_image_in_use_with(
    cache_root: &Path,
    spec: &EnvSpec,
    builder: &dyn EnvBuilder,
    progress: &mut dyn FnMut(&str),
) -> Result<(InUse, bool), ImageError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let (image, built) = ensure_env_image_with(cache_root, spec, builder, progress)?;
        match hold(cache_root, &image.key)? {
            Some(lock) => return Ok((InUse { image, _lock: lock }, built)),
            None => last = Some(image.key),
        }
    }
    Err(removed_under_us(last.unwrap_or_default()))
}

/// The cached image whose key is `key_or_prefix` or starts with it, held
/// for use, its last use stamped now.
pub fn find_image_in_use(cache_root: &Path, key_or_prefix: &str) -> Result<InUse, ImageError> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let image = find_image(cache_root, key_or_prefix)?;
        if let Some(lock) = hold(cache_root, &image.key)? {
            let store = image_store(cache_root);
            if let Err(e) = store.touch(&image.key) {
                tracing::warn!(%e, "cannot record the use of an environment image");
            }
            let image = read_entry(&store.entry(&image.key))?;
            return Ok(InUse { image, _lock: lock });
        }
        last = image.key;
    }
    Err(removed_under_us(last))
}

fn removed_under_us(key: String) -> ImageError {
    ImageError::NoSuchImage {
        prefix: format!("{key} (removed while this build was starting)"),
    }
}

/// A shared lock on `key`'s entry ([`vmbuild_store::Store::hold`]), or
/// `None` when the entry is gone once the lock is held (removed
/// meanwhile). Waits while a removal of the same key runs (those are
/// short; builds of a complete key do not happen).
fn hold(cache_root: &Path, key: &str) -> Result<Option<Lock>, ImageError> {
    Ok(image_store(cache_root).hold(key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{prune_images, remove_image, BuildOutput, ImageFormat};

    struct Fake;

    impl EnvBuilder for Fake {
        fn build(
            &self,
            spec: &EnvSpec,
            _key: &str,
            out: &Path,
            _progress: &mut dyn FnMut(&str),
        ) -> Result<BuildOutput, ImageError> {
            std::fs::write(out.join("rootfs.erofs"), spec.packages.join(",")).unwrap();
            Ok(BuildOutput {
                format: ImageFormat::Erofs,
                rootfs_bytes: 1,
                tools: Default::default(),
            })
        }
    }

    #[test]
    fn an_image_in_use_is_neither_removed_nor_pruned() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let spec = EnvSpec::new(["hello"]);
        let (held, built) = ensure_env_image_in_use_with(root, &spec, &Fake, &mut |_| {}).unwrap();
        assert!(built);
        let key = held.image().key.clone();
        assert!(held.image().path.is_file());

        // A second build may use it at the same time (the lock is shared),
        // found by the short key `image ls` shows.
        let again = find_image_in_use(root, &key[..12]).unwrap();
        assert_eq!(again.image().key, key);

        let err = remove_image(root, &key[..8]).unwrap_err();
        assert!(matches!(err, ImageError::ImageInUse { .. }), "{err}");
        let pruned = prune_images(root, None, Some(0), false).unwrap();
        assert!(pruned.is_empty(), "pruned an image in use: {pruned:?}");
        drop(held);
        assert!(
            matches!(remove_image(root, &key), Err(ImageError::ImageInUse { .. })),
            "still held by the second user"
        );
        drop(again);
        assert_eq!(remove_image(root, &key).unwrap().key, key);
        assert!(matches!(
            find_image_in_use(root, &key),
            Err(ImageError::NoSuchImage { .. })
        ));
    }

    #[test]
    fn removal_between_build_and_hold_means_building_again() {
        // The hold sees an entry that is gone once the lock is taken (as if
        // `image rm` ran in between) and the next attempt rebuilds it.
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let spec = EnvSpec::new(["hello"]);
        let key = spec.normalized().key();
        assert!(hold(root, &key).unwrap().is_none(), "nothing built yet");
        let (held, _) = ensure_env_image_in_use_with(root, &spec, &Fake, &mut |_| {}).unwrap();
        assert!(hold(root, &key).unwrap().is_some());
        drop(held);
        remove_image(root, &key).unwrap();
        let (held, built) = ensure_env_image_in_use_with(root, &spec, &Fake, &mut |_| {}).unwrap();
        assert!(built, "rebuilt after removal");
        assert!(held.image().path.is_file());
    }
}
