//! Export and import against a real registry (Debian's docker-registry on
//! loopback) and an OCI layout dir: byte-exact round trips, incremental
//! re-exports measured in the registry's storage, no transfer for an
//! unchanged import, tampered and hostile chunks refused, concurrent
//! exporters, skopeo interop.

mod support;

use std::path::Path;

use support::{make_volume, tree, TestRegistry};
use vmbuild_transfer::{
    export, import, open, read_export, records, target, Dest, Direction, ExportOptions, Meter,
    Outcome, Source, TransferError,
};

fn source(name: &str, dir: &Path) -> Source {
    Source {
        name: name.into(),
        dir: dir.to_path_buf(),
        key: name.into(),
    }
}

fn dest(name: &str, dir: &Path, force: bool) -> Dest {
    Dest {
        name: name.into(),
        dir: dir.to_path_buf(),
        key: name.into(),
        force,
    }
}

fn spec(s: &str, d: Direction) -> vmbuild_transfer::CacheRef {
    target::parse(s, d).unwrap()
}

fn push(
    spec_s: &str,
    sources: &[Source],
    records: &Path,
) -> Result<vmbuild_transfer::ExportSummary, TransferError> {
    let mut store = open(&spec(spec_s, Direction::To), Direction::To, &[])?;
    let meter = Meter::default();
    export(
        sources,
        store.as_mut(),
        &ExportOptions {
            level: 3,
            records,
            meter: &meter,
        },
    )
}

fn pull(spec_s: &str, dests: &[Dest], records: &Path) -> Result<Vec<Outcome>, TransferError> {
    let mut store = open(&spec(spec_s, Direction::From), Direction::From, &[])?;
    let e = read_export(store.as_mut())?;
    import(store.as_mut(), &e, dests, records, &Meter::default())
}

#[test]
fn registry_round_trip_is_byte_exact_and_incremental() {
    let reg = TestRegistry::start(None);
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    make_volume(&vol, 2000, 100 << 20);
    let want = tree(&vol);
    let records_a = host.path().join("records-a");
    let r = format!("type=registry,ref={}", reg.reference("acme/cache:main"));

    let s = push(&r, &[source("gomod", &vol)], &records_a).unwrap();
    assert_eq!(s.volumes, 1);
    assert!(s.pushed_blobs > 2, "{s}");
    assert_eq!(s.present_blobs, 0, "{s}");
    let line = s.to_string();
    assert!(
        line.contains("1 volume,") && line.contains("pushed") && line.contains("already there"),
        "{line}"
    );

    // Re-export of the unchanged volume: nothing packed, nothing pushed.
    let again = push(&r, &[source("gomod", &vol)], &records_a).unwrap();
    assert_eq!((again.packed, again.pushed_blobs), (0, 0), "{again}");

    // One small file changed: the registry grows by at most 5% of the volume.
    let before = reg.stored_bytes();
    std::fs::write(vol.join("pkgs/d07/f00007.txt"), b"changed").unwrap();
    let want_changed = tree(&vol);
    let inc = push(&r, &[source("gomod", &vol)], &records_a).unwrap();
    let grew = reg.stored_bytes() - before;
    let volume_bytes = support::du(&vol);
    assert!(inc.pushed_blobs >= 1 && inc.packed <= 2, "{inc}");
    assert!(
        grew * 20 <= volume_bytes,
        "registry grew {grew} bytes for a {volume_bytes}-byte volume ({inc})"
    );

    // A fresh runner: empty volume dir, its own records. Byte-exact.
    std::fs::remove_dir_all(&vol).unwrap();
    let records_b = host.path().join("records-b");
    let out = pull(&r, &[dest("gomod", &vol, false)], &records_b).unwrap();
    assert!(matches!(out[0], Outcome::Imported { .. }), "{out:?}");
    assert_eq!(tree(&vol), want_changed);
    assert_ne!(want, want_changed);

    // Importing the same export again transfers no blob.
    let gets = reg.blob_gets();
    let out = pull(&r, &[dest("gomod", &vol, false)], &records_b).unwrap();
    assert_eq!(
        out,
        vec![Outcome::UpToDate {
            name: "gomod".into()
        }]
    );
    assert_eq!(reg.blob_gets(), gets + 1, "only the config blob is read");

    // And the imported volume re-exports without packing anything.
    let re = push(&r, &[source("gomod", &vol)], &records_b).unwrap();
    assert_eq!((re.packed, re.pushed_blobs), (0, 0), "{re}");
}

#[test]
fn local_layout_round_trip_and_skopeo_into_a_registry_and_back() {
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    make_volume(&vol, 300, 5 << 20);
    let want = tree(&vol);
    let layout = host.path().join("layout");
    let records = host.path().join("records");
    push(
        &format!("type=local,dest={},tag=main", layout.display()),
        &[source("npm", &vol)],
        &records,
    )
    .unwrap();
    for f in ["oci-layout", "index.json", "blobs/sha256"] {
        assert!(layout.join(f).exists(), "{f}");
    }
    let back = host.path().join("back");
    let out = pull(
        &format!("type=local,src={},tag=main", layout.display()),
        &[dest("npm", &back, false)],
        &host.path().join("r2"),
    )
    .unwrap();
    assert!(matches!(out[0], Outcome::Imported { .. }));
    assert_eq!(tree(&back), want);
    // A tag that is not there.
    let e = pull(
        &format!("type=local,src={},tag=other", layout.display()),
        &[dest("npm", &back, false)],
        &records,
    )
    .unwrap_err();
    assert!(matches!(e, TransferError::NotFound { .. }), "{e}");

    // skopeo copies the layout into a registry; vmbuild imports it from there.
    let reg = TestRegistry::start(None);
    let dst = reg.reference("copied/cache:main");
    let st = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:main", layout.display()))
        .arg(format!("docker://{dst}"))
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(
        st.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let again = host.path().join("again");
    pull(
        &format!("type=registry,ref={dst}"),
        &[dest("npm", &again, false)],
        &host.path().join("r3"),
    )
    .unwrap();
    assert_eq!(tree(&again), want);
}

#[test]
fn tampered_blob_is_refused_and_the_volume_is_unchanged() {
    let reg = TestRegistry::start(None);
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    make_volume(&vol, 200, 0);
    let r = format!("type=registry,ref={}", reg.reference("t/cache:1"));
    push(&r, &[source("v", &vol)], &host.path().join("ra")).unwrap();

    // The local volume differs; the registry's first chunk is tampered with.
    let local = host.path().join("local");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("mine"), b"keep me").unwrap();
    let local_tree = tree(&local);
    let mut store = open(&spec(&r, Direction::From), Direction::From, &[]).unwrap();
    let e = read_export(store.as_mut()).unwrap();
    let blob = reg.blob_file(&e.layers[0][0].digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let err = import(
        store.as_mut(),
        &e,
        &[dest("v", &local, true)],
        &host.path().join("rb"),
        &Meter::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            TransferError::Corrupt { .. } | TransferError::Registry { .. }
        ),
        "{msg}"
    );
    assert!(
        !msg.contains('\n') && msg.contains(&e.layers[0][0].digest[..20]),
        "{msg}"
    );
    assert_eq!(tree(&local), local_tree, "volume unchanged");
    let leftovers: Vec<_> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("vmbuild-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_exports_to_one_ref_leave_one_complete_export() {
    let reg = TestRegistry::start(None);
    let host = tempfile::tempdir().unwrap();
    let (a, b) = (host.path().join("a"), host.path().join("b"));
    make_volume(&a, 400, 3 << 20);
    make_volume(&b, 500, 0);
    std::fs::write(b.join("only-in-b"), b"b").unwrap();
    let (ta, tb) = (tree(&a), tree(&b));
    let r = format!("type=registry,ref={}", reg.reference("race/cache:main"));
    for round in 0..3 {
        std::thread::scope(|s| {
            let ra = host.path().join(format!("ra{round}"));
            let rb = host.path().join(format!("rb{round}"));
            let (r1, r2) = (r.clone(), r.clone());
            let (a, b) = (&a, &b);
            let h1 = s.spawn(move || push(&r1, &[source("v", a)], &ra));
            let h2 = s.spawn(move || push(&r2, &[source("v", b)], &rb));
            h1.join().unwrap().unwrap();
            h2.join().unwrap().unwrap();
        });
        let got = host.path().join(format!("got{round}"));
        pull(
            &r,
            &[dest("v", &got, false)],
            &host.path().join(format!("rg{round}")),
        )
        .unwrap();
        let t = tree(&got);
        assert!(t == ta || t == tb, "round {round}: a mix of both exports");
    }
}

#[test]
fn missing_volume_and_missing_ref_are_reported() {
    let reg = TestRegistry::start(None);
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    make_volume(&vol, 10, 0);
    let r = format!("type=registry,ref={}", reg.reference("m/cache:1"));
    push(&r, &[source("v", &vol)], &host.path().join("r")).unwrap();
    let out = pull(
        &r,
        &[dest("other", &host.path().join("o"), false)],
        &host.path().join("r2"),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Absent {
            name: "other".into()
        }]
    );
    let e = pull(
        &format!("type=registry,ref={}", reg.reference("m/cache:nope")),
        &[],
        &host.path().join("r2"),
    )
    .unwrap_err();
    assert!(matches!(e, TransferError::NotFound { .. }), "{e}");
    // A local volume made here is kept by --cache-from, replaced when forced.
    let mine = host.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("x"), b"local").unwrap();
    let out = pull(&r, &[dest("v", &mine, false)], &host.path().join("r3")).unwrap();
    assert_eq!(out, vec![Outcome::KeptLocal { name: "v".into() }]);
    let out = pull(&r, &[dest("v", &mine, true)], &host.path().join("r3")).unwrap();
    assert!(matches!(out[0], Outcome::Imported { .. }));
    assert_eq!(tree(&mine), tree(&vol));
    // Nothing listens here.
    let e = pull(
        "type=registry,ref=127.0.0.1:9/x/y:z",
        &[],
        &host.path().join("r4"),
    )
    .unwrap_err();
    assert!(matches!(e, TransferError::Registry { .. }), "{e}");
    assert!(!e.to_string().contains('\n'));
    let _ = records::load(&host.path().join("r"), "v");
}

#[test]
fn a_push_to_a_new_repository_mounts_blobs_from_the_cache_from_one() {
    let reg = TestRegistry::start(None);
    let host = tempfile::tempdir().unwrap();
    let vol = host.path().join("vol");
    make_volume(&vol, 300, 6 << 20);
    let main = reg.reference("acme/cache:main");
    push(
        &format!("type=registry,ref={main}"),
        &[source("v", &vol)],
        &host.path().join("ra"),
    )
    .unwrap();
    let log = |needle: &str| {
        std::fs::read_to_string(&reg.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    };
    let patches_before = log("\"PATCH /v2/");
    // A branch's first export: same content, another repository; the
    // records are fresh, so every chunk is packed, then mounted, not sent.
    let branch = format!(
        "type=registry,ref={}",
        reg.reference("acme/branch-cache:feature")
    );
    let spec = target::parse(&branch, Direction::To).unwrap();
    let mut store = open(&spec, Direction::To, std::slice::from_ref(&main)).unwrap();
    let s = export(
        &[source("v", &vol)],
        store.as_mut(),
        &ExportOptions {
            level: 3,
            records: &host.path().join("rb"),
            meter: &Meter::default(),
        },
    )
    .unwrap();
    assert!(s.pushed_blobs > 1, "{s}");
    assert!(
        log("mount=sha256") >= s.pushed_blobs,
        "no cross-repository mounts in the registry log"
    );
    // At most the export's own new config blob is uploaded.
    assert!(
        log("\"PATCH /v2/") <= patches_before + 1,
        "chunk data was uploaded again"
    );
    let got = host.path().join("got");
    pull(&branch, &[dest("v", &got, false)], &host.path().join("rc")).unwrap();
    assert_eq!(tree(&got), tree(&vol));
}
