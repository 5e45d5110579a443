use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Names of the temp dirs in `dir`.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// A store in `root/<name>` with complete entries `keys`.
fn store_with(root: &Path, keys: &[&str]) -> Store {
    let store = Store::new(root.join("s"));
    for k in keys {
        store
            .ensure(k, |d| {
                std::fs::write(d.join("f"), k).map_err(io_err("test"))
            })
            .unwrap();
    }
    store
}

#[test]
fn builds_once_then_reuses() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path().join("kernels"));
    let dir = store.entry("k_1");
    let first = store
        .ensure("k_1", |d| {
            std::fs::write(d.join("f"), "x").unwrap();
            Ok::<_, StoreError>(7)
        })
        .unwrap();
    assert_eq!(first, Some(7));
    assert!(is_complete(&dir));
    assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "x");
    let second = store
        .ensure("k_1", |_| -> Result<i32, StoreError> { panic!("rebuilt") })
        .unwrap();
    assert_eq!(second, None);
}

#[test]
fn failed_build_leaves_nothing_and_incomplete_dir_is_replaced() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path());
    let dir = store.entry("e");
    let r = store.ensure("e", |d| -> Result<(), StoreError> {
        std::fs::write(d.join("half"), "x").unwrap();
        Err(io_err("building")(std::io::Error::other("failed")))
    });
    assert!(r.is_err());
    assert!(!dir.exists());
    assert!(temps(t.path()).is_empty(), "{:?}", temps(t.path()));

    let stale = t.path().join(".tmp-e#killed");
    std::fs::create_dir(&stale).unwrap(); // a builder killed mid-way
    let unrelated = t.path().join(".tmp-e-2#xyz"); // entry "e-2"
    std::fs::create_dir(&unrelated).unwrap();
    std::fs::create_dir(&dir).unwrap(); // e.g. from an older, crashed version
    std::fs::write(dir.join("stale"), "x").unwrap();
    store
        .ensure("e", |d| {
            std::fs::write(d.join("new"), "y").map_err(io_err("writing"))
        })
        .unwrap();
    assert!(dir.join("new").exists() && !dir.join("stale").exists());
    assert!(!stale.exists() && unrelated.exists());
}

#[test]
fn concurrent_builders_build_once() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path());
    let builds = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, builds) = (store.clone(), builds.clone());
            std::thread::spawn(move || {
                store
                    .ensure("e", |d| {
                        builds.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        std::fs::write(d.join("f"), "x").map_err(io_err("writing"))
                    })
                    .unwrap();
                assert!(store.entry("e").join("f").exists());
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(builds.load(Ordering::SeqCst), 1);
}

#[test]
fn keys_are_the_complete_entries() {
    let t = tempfile::tempdir().unwrap();
    assert!(Store::new(t.path().join("none")).keys().unwrap().is_empty());
    let store = store_with(t.path(), &["b", "a", "ab"]);
    std::fs::create_dir(store.entry("incomplete")).unwrap();
    std::fs::create_dir(store.dir().join(".tmp-a#x")).unwrap();
    assert_eq!(store.keys().unwrap(), ["a", "ab", "b"]);
    let short_only = store.with_keys(|k| k.len() == 1);
    assert_eq!(short_only.keys().unwrap(), ["a", "b"]);
}

#[test]
fn held_entries_are_not_removed() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with(t.path(), &["a"]);
    assert!(store.hold("nothing").unwrap().is_none());
    let held = store.hold("a").unwrap().expect("a is complete");
    let second = store.hold("a").unwrap().expect("holds are shared");
    assert_eq!(store.remove("a").unwrap(), Removal::Held);
    drop(held);
    assert_eq!(store.remove("a").unwrap(), Removal::Held, "still held");
    drop(second);
    assert_eq!(store.remove("a").unwrap(), Removal::Removed);
    assert!(!store.entry("a").exists());
    assert!(temps(store.dir()).is_empty());
    assert_eq!(store.remove("a").unwrap(), Removal::Missing);
    assert!(store.hold("a").unwrap().is_none(), "removed");
}

#[test]
fn prune_skips_held_entries_and_dry_run_says_exactly_that() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with(t.path(), &["a", "b", "c"]);
    let all = || vec!["a", "b", "c", "gone"];
    let in_use = store.hold("b").unwrap().unwrap();
    let building = store.try_lock("c").unwrap().unwrap();
    let dry = store.prune(all(), |k| k, true).unwrap();
    assert_eq!(dry, ["a"]);
    assert_eq!(
        store.keys().unwrap(),
        ["a", "b", "c"],
        "dry run removes nothing"
    );
    let real = store.prune(all(), |k| k, false).unwrap();
    assert_eq!(real, dry);
    assert_eq!(store.keys().unwrap(), ["b", "c"]);
    drop((in_use, building));
    assert_eq!(store.prune(all(), |k| k, true).unwrap(), ["b", "c"]);
    assert_eq!(store.prune(all(), |k| k, false).unwrap(), ["b", "c"]);
    assert!(store.keys().unwrap().is_empty());
}

#[test]
fn stale_temps_are_removed_unless_their_build_runs() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path()).with_keys(|k| k.len() == 2);
    let stale = t.path().join(".tmp-k1#abc");
    let running = t.path().join(".tmp-k2#def");
    let unrelated = t.path().join(".tmp-other#x");
    for d in [&stale, &running, &unrelated] {
        std::fs::create_dir_all(d.join("rootfs/usr")).unwrap();
    }
    let _building = store.try_lock("k2").unwrap().unwrap();
    store.clean_stale_temps();
    assert!(!stale.exists());
    assert!(running.exists());
    assert!(unrelated.exists());
}

#[test]
fn real_prune_cleans_stale_temps_and_uses_the_tree_remover() {
    static REMOVED: AtomicUsize = AtomicUsize::new(0);
    let t = tempfile::tempdir().unwrap();
    let store = Store::new(t.path()).with_tree_remover(|p| {
        REMOVED.fetch_add(1, Ordering::SeqCst);
        std::fs::remove_dir_all(p).unwrap();
    });
    let stale = t.path().join(".tmp-k#killed");
    std::fs::create_dir(&stale).unwrap();
    store.prune(Vec::<String>::new(), |k| k, true).unwrap();
    assert!(stale.exists(), "a dry run removes nothing");
    store.prune(Vec::<String>::new(), |k| k, false).unwrap();
    assert!(!stale.exists());
    assert_eq!(REMOVED.load(Ordering::SeqCst), 1);
}

#[test]
fn touch_updates_last_used() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with(t.path(), &["a"]);
    let before = SystemTime::now() - Duration::from_secs(1);
    store.touch("a").unwrap();
    let used = std::fs::metadata(store.entry("a").join(LAST_USED_FILE))
        .and_then(|m| m.modified())
        .unwrap();
    assert!(used >= before, "{used:?}");
}

#[test]
fn try_begin_never_waits_and_commit_replaces_the_entry() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with(t.path(), &["k"]);
    let b = store.try_begin("k").unwrap().expect("nobody holds k");
    // A second builder, or a user holding the entry, makes try_begin pass.
    assert!(store.try_begin("k").unwrap().is_none());
    std::fs::write(b.dir().join("f"), "new").unwrap();
    b.commit().unwrap();
    assert!(store.is_complete("k"));
    assert_eq!(
        std::fs::read_to_string(store.entry("k").join("f")).unwrap(),
        "new"
    );
    assert!(temps(store.dir()).is_empty());
    let _held = store.hold("k").unwrap().expect("complete");
    assert!(store.try_begin("k").unwrap().is_none());
}

#[test]
fn a_dropped_build_leaves_no_entry() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with(t.path(), &[]);
    let b = store.try_begin("k").unwrap().expect("free");
    std::fs::write(b.dir().join("f"), "half").unwrap();
    drop(b);
    assert!(!store.is_complete("k"));
    assert!(temps(store.dir()).is_empty());
}
