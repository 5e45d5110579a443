//! Build-once-and-reuse of environment images.

use std::path::Path;
use std::time::{Instant, SystemTime};

use vmbuild_store::Store;

use super::builder::EnvBuilder;
use super::image::{read_entry, short, unix_secs, EnvImage, ImageMeta, META_FILE};
use super::mmdebstrap::MmdebstrapBuilder;
use super::spec::{EnvSpec, RECIPE_VERSION};
use super::store::image_store;
use crate::error::io_err;
use crate::provision::write_atomic;
use crate::ImageError;

/// The image for `spec`, built with mmdebstrap unless it is cached; `true`
/// when it was built by this call. See [`ensure_env_image_with`].
pub fn ensure_env_image(
    cache_root: &Path,
    spec: &EnvSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<(EnvImage, bool), ImageError> {
    ensure_env_image_with(cache_root, spec, &MmdebstrapBuilder::default(), progress)
}

/// The image for `spec` from `<cache_root>/images/<key>/`, built with
/// `builder` if missing; `true` when this call built it.
///
/// Concurrent callers (threads or processes) asking for the same new image
/// build it once: the others wait on the entry's lock (reporting "waiting
/// for another vmbuild building image KEY") and then use it. A failed or
/// killed build leaves nothing behind; leftovers of killed builds of any
/// key are removed before a build. Every call stamps the entry's last use.
pub fn ensure_env_image_with(
    cache_root: &Path,
    spec: &EnvSpec,
    builder: &dyn EnvBuilder,
    progress: &mut dyn FnMut(&str),
) -> Result<(EnvImage, bool), ImageError> {
    spec.validate()?;
    let spec = spec.normalized();
    let key = spec.key();
    let store = image_store(cache_root);
    let dir = store.entry(&key);
    // A complete entry that cannot be read (damaged, or removed under us)
    // is deleted and built again, once.
    let mut retried = false;
    loop {
        let built = ensure_built(&store, &spec, &key, builder, progress)?;
        if let Err(e) = store.touch(&key) {
            tracing::warn!(%e, "cannot record the use of an environment image");
        }
        match read_entry(&dir) {
            Ok(img) => {
                if let Some(meta) = &built {
                    progress(&format!(
                        "image {}: done in {:.0}s, {} MiB ({}, from {} MiB of files)",
                        short(&key),
                        meta.build_seconds,
                        mib(meta.image_bytes),
                        meta.format.fs_type(),
                        mib(meta.rootfs_bytes)
                    ));
                }
                return Ok((img, built.is_some()));
            }
            Err(e) if !retried && built.is_none() => {
                retried = true;
                tracing::warn!(%e, "rebuilding an unreadable environment image");
                progress(&format!(
                    "image {}: unreadable ({e}); rebuilding",
                    short(&key)
                ));
                let lock = store.lock(&key)?;
                store.delete(&key, &lock)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Make sure `images/<key>` is complete; its metadata when built now.
fn ensure_built(
    store: &Store,
    spec: &EnvSpec,
    key: &str,
    builder: &dyn EnvBuilder,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<ImageMeta>, ImageError> {
    if !store.is_complete(key) {
        // Probe the lock only to tell the user why we wait; ensure takes
        // it for real.
        if store.try_lock(key)?.is_none() {
            progress(&format!(
                "waiting for another vmbuild building image {}",
                short(key)
            ));
        }
        store.clean_stale_temps();
    }
    let started = Instant::now();
    store.ensure(key, |out| {
        let made = builder.build(spec, key, out, progress)?;
        let image = out.join(made.format.file_name());
        let image_bytes = std::fs::metadata(&image)
            .map_err(io_err(format!("the builder made no {}", image.display())))?
            .len();
        let meta = ImageMeta {
            recipe: RECIPE_VERSION,
            key: key.to_string(),
            spec: spec.clone(),
            format: made.format,
            created: unix_secs(SystemTime::now()),
            build_seconds: started.elapsed().as_secs_f64(),
            rootfs_bytes: made.rootfs_bytes,
            image_bytes,
            tools: made.tools,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| ImageError::Io {
            context: format!("encoding {META_FILE}"),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&out.join(META_FILE), &json)?;
        Ok(meta)
    })
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{BuildOutput, ImageFormat};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Writes a small fake image; counts its builds; can be slow or fail.
    struct Fake {
        builds: Arc<AtomicUsize>,
        delay: Duration,
        fail: bool,
        /// Told when a build starts (the entry's lock is then held).
        started: Option<std::sync::mpsc::Sender<()>>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                builds: Arc::new(AtomicUsize::new(0)),
                delay: Duration::ZERO,
                fail: false,
                started: None,
            }
        }
    }

    impl EnvBuilder for Fake {
        fn build(
            &self,
            spec: &EnvSpec,
            _key: &str,
            out: &Path,
            progress: &mut dyn FnMut(&str),
        ) -> Result<BuildOutput, ImageError> {
            self.builds.fetch_add(1, Ordering::SeqCst);
            progress("fake: building");
            if let Some(tx) = &self.started {
                tx.send(()).unwrap();
            }
            std::fs::write(out.join("rootfs.erofs"), spec.packages.join(",")).unwrap();
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(ImageError::UnknownPackage {
                    name: "x".into(),
                    suite: spec.suite.clone(),
                });
            }
            Ok(BuildOutput {
                format: ImageFormat::Erofs,
                rootfs_bytes: 1234,
                tools: [("fake".to_string(), "1".to_string())].into(),
            })
        }
    }

    #[test]
    fn builds_once_then_reuses_and_records() {
        let t = tempfile::tempdir().unwrap();
        let fake = Fake::new();
        let spec = EnvSpec::new(["python3-pip", "python3", "python3"]);
        let mut lines = Vec::new();
        let (img, built) =
            ensure_env_image_with(t.path(), &spec, &fake, &mut |l| lines.push(l.to_string()))
                .unwrap();
        assert!(built);
        assert_eq!(img.key, spec.key());
        assert_eq!(img.spec.packages, ["python3", "python3-pip"], "normalized");
        assert_eq!(
            img.path,
            t.path().join("images").join(&img.key).join("rootfs.erofs")
        );
        assert_eq!(
            std::fs::read_to_string(&img.path).unwrap(),
            "python3,python3-pip"
        );
        assert_eq!(img.size, 19);
        assert!(lines.iter().any(|l| l == "fake: building"));
        assert!(lines.last().unwrap().contains("done in"), "{lines:?}");
        let meta: ImageMeta =
            serde_json::from_slice(&std::fs::read(img.path.with_file_name(META_FILE)).unwrap())
                .unwrap();
        assert_eq!(
            (meta.recipe, meta.rootfs_bytes, meta.image_bytes),
            (RECIPE_VERSION, 1234, 19)
        );
        assert_eq!(meta.tools["fake"], "1");

        let first_use = img.last_used;
        std::thread::sleep(Duration::from_millis(20));
        let reordered = EnvSpec::new(["python3", "python3-pip"]);
        let (again, built) =
            ensure_env_image_with(t.path(), &reordered, &fake, &mut |_| {}).unwrap();
        assert!(!built);
        assert_eq!(again.key, img.key);
        assert!(again.last_used > first_use, "last use stamped");
        assert_eq!(fake.builds.load(Ordering::SeqCst), 1);

        let (other, built) =
            ensure_env_image_with(t.path(), &EnvSpec::new(["hello"]), &fake, &mut |_| {}).unwrap();
        assert!(built);
        assert_ne!(other.key, img.key);
        assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn unreadable_entry_is_rebuilt() {
        let t = tempfile::tempdir().unwrap();
        let fake = Fake::new();
        let spec = EnvSpec::new(["hello"]);
        let (img, _) = ensure_env_image_with(t.path(), &spec, &fake, &mut |_| {}).unwrap();
        std::fs::write(img.path.with_file_name(META_FILE), "{ damaged").unwrap();
        let mut lines = Vec::new();
        let (again, built) =
            ensure_env_image_with(t.path(), &spec, &fake, &mut |l| lines.push(l.to_string()))
                .unwrap();
        assert!(built);
        assert_eq!(again.key, img.key);
        assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
        assert!(lines[0].contains("unreadable"), "{lines:?}");
    }

    #[test]
    fn invalid_spec_is_rejected_before_building() {
        let t = tempfile::tempdir().unwrap();
        let fake = Fake::new();
        let e = ensure_env_image_with(t.path(), &EnvSpec::new(["./evil.deb"]), &fake, &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::InvalidEnvSpec {
                    field: "package",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(fake.builds.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn failed_build_leaves_nothing_and_stale_temps_go() {
        let t = tempfile::tempdir().unwrap();
        let images = t.path().join("images");
        // A killed build of another key.
        let stale = images.join(format!(".tmp-{}#zz", "a".repeat(64)));
        std::fs::create_dir_all(stale.join("work/rootfs")).unwrap();
        let mut fake = Fake::new();
        fake.fail = true;
        let e = ensure_env_image_with(t.path(), &EnvSpec::new(["hello"]), &fake, &mut |_| {})
            .unwrap_err();
        assert!(matches!(e, ImageError::UnknownPackage { .. }));
        let names: Vec<String> = std::fs::read_dir(&images)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn threads_build_once_and_the_waiters_say_so() {
        let t = tempfile::tempdir().unwrap();
        let spec = EnvSpec::new(["python3"]);
        let builds = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let spawn = |started: Option<std::sync::mpsc::Sender<()>>| {
            let (root, spec, builds) = (t.path().to_path_buf(), spec.clone(), builds.clone());
            std::thread::spawn(move || {
                let fake = Fake {
                    builds,
                    delay: Duration::from_millis(500),
                    fail: false,
                    started,
                };
                let mut lines = Vec::new();
                let (img, built) =
                    ensure_env_image_with(&root, &spec, &fake, &mut |l| lines.push(l.to_string()))
                        .unwrap();
                (img.key, built, lines)
            })
        };
        let first = spawn(Some(started_tx));
        started_rx.recv().unwrap(); // the first thread is building, lock held
        let others: Vec<_> = (0..3).map(|_| spawn(None)).collect();
        let first = first.join().unwrap();
        assert!(first.1, "the first thread built it");
        let waiting = format!(
            "waiting for another vmbuild building image {}",
            &spec.key()[..12]
        );
        for h in others {
            let (key, built, lines) = h.join().unwrap();
            assert_eq!(key, first.0);
            assert!(!built);
            assert!(lines.contains(&waiting), "{lines:?}");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }
}
