//! A guest trying to change the host through its shares: the overlay-mode
//! cache is untouched whatever the guest does to it (rm, chmod, mknod; the
//! busybox guest has no setfattr), and in virtiofs mode
//! `..`, absolute and relative symlinks and /proc/self/fd all resolve in
//! the guest, never to the host directory around the share.

use crate::harness::{stderr, stdout, tree_digest, Vmb};

#[test]
fn overlay_cache_survives_rm_chmod_and_mknod() {
    let v = Vmb::new();
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir(cache.path().join("dir")).unwrap();
    std::fs::write(cache.path().join("dir/file"), "data").unwrap();
    std::fs::write(cache.path().join("top"), "top").unwrap();
    let before = tree_digest(cache.path());
    let c = cache.path().to_string_lossy().into_owned();
    let script = "c=/var/cache/vmbuild; \
        chmod 0777 $c/top $c/dir && echo chmod-ok; \
        mknod $c/dev b 8 0 && echo mknod-ok; \
        rm -rf $c/* && echo rm-ok; ls -A $c | wc -l";
    let o = v.run(&["run", "--cache-dir", &c, "--", "sh", "-c", script]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for done in ["chmod-ok", "mknod-ok", "rm-ok"] {
        assert!(out.contains(done), "{done} in {out}");
    }
    assert!(
        out.trim_end().ends_with('0'),
        "the guest saw its cache emptied: {out}"
    );
    assert_eq!(
        tree_digest(cache.path()),
        before,
        "the host's cache changed"
    );
}

#[test]
fn virtiofs_paths_resolve_in_the_guest_never_around_the_share() {
    let v = Vmb::new();
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("host-secret"), "TOPSECRET\n").unwrap();
    let share = outer.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let s = share.to_string_lossy().into_owned();
    let script = "c=/var/cache/vmbuild; \
        cat $c/../host-secret; \
        ln -s ../host-secret $c/rel; cat $c/rel; \
        ln -s /etc/hostname $c/abs; echo abs=$(cat $c/abs); \
        exec 3<$c; ls /proc/self/fd/3/..; cat /proc/self/fd/3/../host-secret; \
        echo end";
    let o = v.run(&[
        "run",
        "--cache-mode",
        "virtiofs",
        "--cache-dir",
        &s,
        "--",
        "sh",
        "-c",
        script,
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("abs=vmbuild"),
        "the absolute link is the guest's file: {out}"
    );
    assert!(out.contains("end"), "{out}: {}", stderr(&o));
    assert!(!out.contains("TOPSECRET"), "left the share: {out}");
    // The links are data in the share; nothing outside it changed.
    assert_eq!(
        std::fs::read_link(share.join("abs")).unwrap().to_str(),
        Some("/etc/hostname")
    );
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside.len(), 2, "{outside:?}");
}
