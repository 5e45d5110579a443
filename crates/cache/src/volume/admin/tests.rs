use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::volume::{acquire, Acquired, HeldVolume, Sharing};

fn hold(root: &Path, id: &str, sharing: Sharing) -> HeldVolume {
    match acquire(root, id, sharing).unwrap() {
        Acquired::Held(h) => h,
        Acquired::Busy { holder } => panic!("busy (held by {holder:?})"),
    }
}

/// Volume `name` with `bytes` in one file, last used `used` seconds after
/// the epoch.
fn volume(root: &Path, name: &str, bytes: usize, used: u64) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data"), vec![7u8; bytes]).unwrap();
    let lock = File::create(lock_path(root, name)).unwrap();
    lock.set_modified(UNIX_EPOCH + Duration::from_secs(used))
        .unwrap();
}

fn names(v: &[Volume]) -> Vec<&str> {
    v.iter().map(|v| v.name.as_str()).collect()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn prune_skips_a_held_volume_and_the_dry_run_agrees() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    volume(r, "old", 100, 10);
    volume(r, "held", 100, 20);
    volume(r, "mid", 100, 30);
    volume(r, "new", 100, 40);
    let shared = hold(r, "held", Sharing::Shared);
    volume(r, "held", 100, 20); // taking it counted as a use: undo that
                                // 400 bytes, at most 200 may stay: LRU order is old, held, mid, new.
                                // held cannot go (its 100 still count), so mid goes in its place.
    let dry = prune(r, at(50), None, Some(200), true).unwrap();
    assert_eq!(names(&dry.removed), ["old", "mid"]);
    assert_eq!(names(&dry.held), ["held"]);
    assert_eq!(dry.held[0].holder, Holder::Shared(vec![std::process::id()]));
    assert!(r.join("old").is_dir(), "a dry run removes nothing");
    let real = prune(r, at(50), None, Some(200), false).unwrap();
    assert_eq!(names(&real.removed), names(&dry.removed));
    assert_eq!(names(&real.held), ["held"]);
    assert!(!r.join("old").exists() && !lock_path(r, "old").exists());
    assert!(!r.join("mid").exists());
    assert!(r.join("held/data").is_file() && r.join("new").is_dir());
    drop(shared);
    // By age: only what was not used for longer than 25 s (held, now free).
    let aged = prune(r, at(50), Some(Duration::from_secs(25)), None, false).unwrap();
    assert_eq!(names(&aged.removed), ["held"]);
    assert!(aged.held.is_empty());
}

#[test]
fn prune_treats_forks_as_volumes_of_their_own() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    volume(r, "npm", 10, 50);
    volume(r, "npm~1", 10, 5);
    let gone = prune(r, at(60), Some(Duration::from_secs(30)), None, false).unwrap();
    assert_eq!(names(&gone.removed), ["npm~1"]);
    assert!(r.join("npm").is_dir());
}

#[test]
fn rm_refuses_a_held_volume_naming_the_holder_and_removes_forks_and_locks() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let main = hold(r, "npm", Sharing::Private);
    let fork = hold(r, "npm", Sharing::Private);
    assert_eq!(fork.name, "npm~1");
    drop(main);
    match remove_volume(r, "npm") {
        Err(CacheError::VolumeHeld { name, holder }) => {
            assert_eq!((name.as_str(), holder), ("npm~1", Some(std::process::id())));
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(
        r.join("npm").is_dir() && r.join("npm~1").is_dir(),
        "nothing removed"
    );
    let msg = remove_volume(r, "npm").unwrap_err().to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(fork);
    volume(r, "npmx", 1, 1); // a longer id is not a fork
    assert_eq!(remove_volume(r, "npm").unwrap(), ["npm", "npm~1"]);
    let left: Vec<String> = std::fs::read_dir(r)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["npmx", "npmx.lock"]);
    assert!(matches!(
        remove_volume(r, "npm"),
        Err(CacheError::NoSuchVolume { .. })
    ));
}

#[test]
fn clear_removes_only_the_subpaths_and_refuses_escapes() {
    let root = tempfile::tempdir().unwrap();
    let v = root.path().join("cache");
    for d in ["pip/http", "npm", "go/pkg/mod"] {
        std::fs::create_dir_all(v.join(d)).unwrap();
    }
    std::fs::write(v.join("pip/http/x"), vec![0u8; 50]).unwrap();
    std::fs::write(v.join("npm/y"), b"y").unwrap();
    std::fs::write(v.join("go/pkg/mod/z"), b"z").unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"k").unwrap();
    std::os::unix::fs::symlink(&outside, v.join("link")).unwrap();

    for bad in [
        "../outside",
        "pip/../../outside",
        "/etc",
        "",
        ".",
        "link/keep",
    ] {
        assert!(
            matches!(
                clear_dir(&v, &[bad.into()]),
                Err(CacheError::BadSubpath { .. })
            ),
            "{bad:?} was not refused"
        );
    }
    // A bad subpath among good ones: nothing is removed.
    assert!(clear_dir(&v, &["pip".into(), "../outside".into()]).is_err());
    assert!(v.join("pip/http/x").exists());

    let done = clear_dir(&v, &["pip".into(), "go/pkg".into(), "absent".into()]).unwrap();
    assert_eq!(
        done[0],
        (
            "pip".into(),
            Some(Usage {
                bytes: 50,
                files: 1
            })
        )
    );
    assert_eq!(done[2], ("absent".into(), None));
    assert!(!v.join("pip").exists() && !v.join("go/pkg").exists());
    assert!(v.join("go").is_dir() && v.join("npm/y").is_file());
    // The symlink itself may go; its target stays.
    clear_dir(&v, &["link".into()]).unwrap();
    assert!(outside.join("keep").is_file());
    // No subpaths: everything in it, not the directory itself.
    clear_dir(&v, &[]).unwrap();
    assert_eq!(std::fs::read_dir(&v).unwrap().count(), 0);
}

#[test]
fn clear_lock_refuses_or_waits_for_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let locked = hold(&r, "apt", Sharing::Locked);
    match lock_exclusive(&r, "apt", false, |_| panic!("must not wait")) {
        Err(CacheError::VolumeHeld { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
        other => panic!("not refused: {other:?}"),
    }
    let r2 = r.clone();
    let waiter = std::thread::spawn(move || {
        let mut told = None;
        let l = lock_exclusive(&r2, "apt", true, |pid| told = Some(pid)).unwrap();
        (told, l)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "took the lock of a held volume");
    drop(locked);
    let (told, _lock) = waiter.join().unwrap();
    assert_eq!(told, Some(Some(std::process::id())));
}
