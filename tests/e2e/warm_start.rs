//! Warm start (docs/warm-start.md): a run restored from a snapshot behaves
//! like a booted one, never shares entropy or a stale clock, binds this
//! run's shares, disks and network, and a missing, changed or damaged
//! snapshot means a cold boot that saves a good one.
//!
//! The run semantics in both modes (output, 10 MiB, background process,
//! timeout, Ctrl-C) are the `_cold`/`_warm` pairs in `run_basics` and
//! `run_failures`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;

use crate::harness::{snapshot_count, stderr, stdout, Boot, Vmb};

/// A harness with its own snapshot store (empty at first).
fn private_store() -> (Vmb, tempfile::TempDir) {
    let store = tempfile::Builder::new()
        .prefix("vmb-snapshots-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("store dir");
    let mut v = Vmb::new();
    v.env.push((
        "VMBUILD_SNAPSHOTS".into(),
        store.path().display().to_string(),
    ));
    (v, store)
}

/// `vmbuild run --timings ARGS -- sh -c SCRIPT`, checked to succeed.
fn run_sh(v: &Vmb, args: &[&str], script: &str) -> Output {
    let mut a = vec!["run", "--timings"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--", "sh", "-c", script]);
    let o = v.run(&a);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    o
}

/// Whether the run's `--timings` line says it was restored.
fn restored(o: &Output) -> bool {
    let err = stderr(o);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("vmbuild-timings: "))
        .unwrap_or_else(|| panic!("no timings line in: {err}"));
    line.contains("\"restored\":true")
}

/// The only entry of a store with one snapshot.
fn only_entry(store: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(store)
        .expect("store")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(".complete").exists())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn two_restored_runs_never_share_entropy_or_temp_names_and_keep_the_host_clock() {
    let v = Vmb::booting(Boot::Warm);
    let script = "head -c 32 /dev/urandom | od -x | head -2; mktemp; \
                  cat /proc/sys/kernel/random/boot_id; date +%s";
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // The snapshot is at least 4 s old when restored, so a guest that kept
    // its saved clock would read at least 3 s before `before`.
    crate::harness::warm_store();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let before = now();
    let a = run_sh(&v, &[], script);
    let after = now();
    let b = run_sh(&v, &[], script);
    assert!(
        restored(&a) && restored(&b),
        "both runs restore the primed snapshot"
    );
    let (oa, ob) = (stdout(&a), stdout(&b));
    let la: Vec<&str> = oa.lines().collect();
    let lb: Vec<&str> = ob.lines().collect();
    assert_eq!(la.len(), 5, "{oa}");
    assert_ne!(la[..2], lb[..2], "urandom bytes repeat across restores");
    assert_ne!(la[2], lb[2], "mktemp names repeat across restores");
    assert_ne!(la[3], lb[3], "boot_id repeats across restores");
    let guest: u64 = la[4].parse().expect("date +%s");
    assert!(
        guest + 1 >= before && guest <= after + 1,
        "guest clock {guest}, host {before}..{after}: a restored guest must not keep the snapshot's time"
    );
}

#[test]
fn a_cold_run_saves_and_the_next_restores_with_this_runs_cache_dir() {
    let (v, store) = private_store();
    let cache_a = tempfile::tempdir().unwrap();
    let cache_b = tempfile::tempdir().unwrap();
    std::fs::write(cache_a.path().join("marker"), "A\n").unwrap();
    std::fs::write(cache_b.path().join("marker"), "B\n").unwrap();
    let a = cache_a.path().to_string_lossy().into_owned();
    let b = cache_b.path().to_string_lossy().into_owned();
    let script = "cat /var/cache/vmbuild/marker; echo new > /var/cache/vmbuild/written";
    let first = run_sh(&v, &["--cache-dir", &a], script);
    assert!(!restored(&first), "nothing to restore yet");
    assert_eq!(stdout(&first), "A\n");
    assert_eq!(snapshot_count(store.path()), 1, "the cold run saved one");
    let second = run_sh(&v, &["--cache-dir", &b], script);
    assert!(restored(&second), "stderr: {}", stderr(&second));
    assert_eq!(
        stdout(&second),
        "B\n",
        "the restored guest mounts this run's cache dir"
    );
    // Overlay mode after a restore still discards the guest's writes.
    assert!(!cache_b.path().join("written").exists());
    assert_eq!(
        snapshot_count(store.path()),
        1,
        "restoring saves nothing new"
    );
}

#[test]
fn a_root_image_and_the_network_work_after_a_restore() {
    let (v, store) = private_store();
    let busybox =
        vmbuild_image::busybox(&vmbuild_image::cache_root().unwrap(), &mut |_| {}).unwrap();
    let make_root = |marker: &str| {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(&busybox, bin.join("busybox")).unwrap();
        for applet in ["sh", "cat", "wget"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for d in ["etc", "tmp", "proc", "sys", "dev", "run", "home/build"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        std::fs::write(root.path().join("etc/marker"), marker).unwrap();
        root
    };
    let (port, hits) = crate::network::serve_once_per_connection();
    let script = format!("cat /etc/marker; wget -q -O- http://10.0.2.2:{port}/");
    let mut outs = Vec::new();
    for marker in ["first root\n", "second root\n"] {
        let root = make_root(marker);
        let r = root.path().to_string_lossy().into_owned();
        let o = run_sh(&v, &["--rootfs", &r, "--network", "user"], &script);
        assert_eq!(stdout(&o), format!("{marker}hello-from-host\n"));
        outs.push(o);
    }
    assert!(!restored(&outs[0]) && restored(&outs[1]));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(snapshot_count(store.path()), 1);
}

#[test]
fn memory_and_vcpus_make_their_own_snapshots() {
    let (v, store) = private_store();
    for (n, args) in [
        &["--memory", "512M"][..],
        &["--memory", "768M"],
        &["--memory", "768M", "--cpus", "2"],
    ]
    .iter()
    .enumerate()
    {
        let o = run_sh(&v, args, "nproc; grep MemTotal /proc/meminfo");
        assert!(!restored(&o), "{args:?} has no snapshot yet");
        assert_eq!(snapshot_count(store.path()), n + 1, "after {args:?}");
    }
    let o = run_sh(&v, &["--memory", "768M", "--cpus", "2"], "nproc");
    assert!(restored(&o));
    assert_eq!(stdout(&o), "2\n");

    // Another kernel file (here a copy of the same one: a rebuilt kernel
    // changes at least its size, time or inode) means another snapshot.
    let kdir = std::fs::read_dir(vmbuild_image::cache_root().unwrap().join("kernels"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("vmlinux").is_file())
        .expect("the pinned kernel is cached");
    let modules = std::fs::read_dir(kdir.join("lib/modules"))
        .unwrap()
        .flatten()
        .next()
        .expect("its modules")
        .path();
    let copy = tempfile::tempdir().unwrap();
    let k = copy.path().join("vmlinux");
    std::fs::copy(kdir.join("vmlinux"), &k).unwrap();
    let (k, m) = (k.display().to_string(), modules.display().to_string());
    let kernel_args = ["--memory", "512M", "--kernel", &k, "--kernel-modules", &m];
    let o = run_sh(&v, &kernel_args, "true");
    assert!(!restored(&o), "a new kernel file has no snapshot yet");
    assert_eq!(snapshot_count(store.path()), 4);
    assert!(restored(&run_sh(&v, &kernel_args, "true")));
    assert!(restored(&run_sh(
        &v,
        &["--memory", "768M", "--cpus", "2"],
        "true"
    )));

    // `vmbuild snapshot ls` names each machine, most recently used first;
    // `prune --keep 1` keeps that one.
    let ls = v.run(&["snapshot", "ls"]);
    let text = stdout(&ls);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[0].ends_with("-m 768M -smp 2"), "{text}");
    assert!(text.contains("-m 512M -smp 1"), "{text}");
    let pruned = v.run(&["snapshot", "prune", "--keep", "1"]);
    assert_eq!(pruned.status.code(), Some(0), "{}", stderr(&pruned));
    assert_eq!(
        stdout(&pruned)
            .lines()
            .filter(|l| l.starts_with("removed "))
            .count(),
        3
    );
    assert_eq!(snapshot_count(store.path()), 1);
    let o = run_sh(&v, &["--memory", "768M", "--cpus", "2"], "true");
    assert!(restored(&o), "the most recently used one was kept");
}

#[test]
fn a_truncated_or_garbage_snapshot_means_a_cold_boot_that_replaces_it() {
    let (v, store) = private_store();
    let first = run_sh(&v, &[], "echo ok");
    assert!(!restored(&first));
    let entry = only_entry(store.path());
    let stream = entry.join("vmstate");
    let good = std::fs::read(&stream).unwrap();

    // Truncated: caught before QEMU starts.
    std::fs::write(&stream, &good[..good.len() / 2]).unwrap();
    let o = run_sh(&v, &[], "echo ok");
    assert!(!restored(&o) && stdout(&o) == "ok\n", "{}", stderr(&o));
    let replaced = only_entry(store.path()).join("vmstate");
    // A new save (its size varies a little from boot to boot).
    assert!(std::fs::metadata(&replaced).unwrap().len() > good.len() as u64 * 9 / 10);
    assert!(
        restored(&run_sh(&v, &[], "true")),
        "the replacement restores"
    );

    // Garbage of the right size: QEMU rejects it, or the checksum does.
    let stream = only_entry(store.path()).join("vmstate");
    let mut junk = std::fs::read(&stream).unwrap();
    for b in junk.iter_mut().step_by(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(&stream, &junk).unwrap();
    let o = run_sh(&v, &["-v"], "echo ok");
    assert!(!restored(&o), "a damaged snapshot must never be resumed");
    assert_eq!(stdout(&o), "ok\n");
    assert!(stderr(&o).contains("warm start failed"), "{}", stderr(&o));
    let replaced = only_entry(store.path()).join("vmstate");
    assert_ne!(
        std::fs::read(&replaced).unwrap(),
        junk,
        "replaced by a good one"
    );
    assert!(restored(&run_sh(&v, &[], "true")));
}

#[test]
fn virtiofs_mode_boots_cold_and_works() {
    let (v, store) = private_store();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_string_lossy().into_owned();
    for _ in 0..2 {
        let mut cmd = v.cmd();
        cmd.env("QEMU_USE_VIRTIOFS", "1").args([
            "run",
            "--timings",
            "--cache-dir",
            &c,
            "--",
            "sh",
            "-c",
            "echo persisted > /var/cache/vmbuild/f",
        ]);
        let o = cmd.output().expect("spawn");
        v.assert_clean();
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        assert!(!restored(&o));
    }
    assert_eq!(
        std::fs::read_to_string(cache.path().join("f")).unwrap(),
        "persisted\n"
    );
    assert_eq!(snapshot_count(store.path()), 0, "virtiofs cannot be saved");
}

#[test]
fn two_concurrent_first_runs_save_one_snapshot_and_leave_nothing() {
    let (v, store) = private_store();
    let a = v.spawn(&["run", "--memory", "640M", "--", "echo", "a"]);
    let b = v.spawn(&["run", "--memory", "640M", "--", "echo", "b"]);
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(stdout(&oa), "a\n", "{}", stderr(&oa));
    assert_eq!(stdout(&ob), "b\n", "{}", stderr(&ob));
    v.assert_clean();
    assert_eq!(snapshot_count(store.path()), 1);
    let names: Vec<String> = std::fs::read_dir(store.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(names.is_empty(), "half-saved snapshots left: {names:?}");
}

#[test]
fn a_restored_build_gives_the_same_outputs_as_a_cold_one() {
    use crate::build::{build, check_outputs, project, THREE_STEPS};
    let (v, store) = private_store();
    let p = project(THREE_STEPS);
    let outs = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for (name, extra) in [
        ("first", &["-v"][..]),
        ("warm", &["-v"]),
        ("cold", &["--cold"]),
    ] {
        let out = outs.path().join(name);
        let o = build(&v, p.path(), &out, extra);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        check_outputs(&out);
        let restored = stderr(&o).contains("restored in");
        assert_eq!(restored, name == "warm", "{name}: {}", stderr(&o));
        digests.push(crate::harness::tree_digest(&out));
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "same outputs");
    assert_eq!(
        snapshot_count(store.path()),
        1,
        "one build shape, one snapshot"
    );
}
