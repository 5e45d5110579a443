//! A cache import of a hostile chunk (what whoever can write the cache
//! registry controls): the bytes are the tar inside a one-volume export,
//! cut into two zstd chunks; the import either lands inside the volume or
//! fails on one line with no control character, leaving the volume as it was — never a panic, never anything
//! created beside the volume, the layout and the records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmbuild_transfer::format::{self, CacheConfig, Layer, VolumeInfo};
use vmbuild_transfer::layout::Layout;
use vmbuild_transfer::{import, read_export, Dest, Meter, Store};

fuzz_target!(|data: &[u8]| {
    let host = tempfile::tempdir().expect("tempdir");
    let dir = host.path().join("layout");
    let mut store = Layout::create(&dir, "latest").expect("layout");
    let blobs = dir.join("blobs/sha256");
    let (a, b) = data.split_at(data.len() / 2);
    let mut layers = Vec::new();
    for chunk in [a, b] {
        let z = zstd::encode_all(chunk, 1).expect("zstd");
        let digest = format::digest_of(&z);
        std::fs::write(blobs.join(&digest[7..]), &z).expect("blob");
        layers.push(Layer {
            digest,
            size: z.len() as u64,
        });
    }
    let config = CacheConfig {
        vmbuild_version: "0".into(),
        created: 1,
        volumes: vec![VolumeInfo {
            name: "v".into(),
            digest: format::volume_digest(&layers),
            layers: layers.len(),
            bytes: 1 << 20,
            entries: 200,
        }],
    };
    let cj = serde_json::to_vec(&config).expect("config");
    std::fs::write(blobs.join(&format::digest_of(&cj)[7..]), &cj).expect("config blob");
    let m = format::manifest(&cj, &config, &[layers]).expect("manifest");
    store.put_manifest(&m).expect("tag");

    let vol = host.path().join("vol");
    std::fs::create_dir(&vol).expect("vol");
    std::fs::write(vol.join("keep"), b"mine").expect("keep");
    let mut store = Layout::open(&dir, "latest");
    let export = read_export(&mut store).expect("a well-formed export reads");
    let dest = Dest {
        name: "v".into(),
        dir: vol.clone(),
        key: "v".into(),
        force: true,
    };
    let records = host.path().join("records");
    let r = import(&mut store, &export, &[dest], &records, &Meter::default());
    if let Err(e) = &r {
        assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
        assert_eq!(std::fs::read(vol.join("keep")).ok().as_deref(), Some(&b"mine"[..]));
        assert_eq!(std::fs::read_dir(&vol).expect("vol").count(), 1, "a failed import changed the volume");
    }
    let mut beside: Vec<_> = std::fs::read_dir(host.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    beside.sort();
    beside.retain(|n| n != "records");
    assert_eq!(beside, ["layout", "vol"], "nothing may appear beside the volume");
});
