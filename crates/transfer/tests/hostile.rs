//! Hand-made hostile exports in an OCI layout: chunks that try to escape
//! the volume are refused and nothing is written outside it.

mod support;

use std::path::Path;

use vmbuild_transfer::format::{self, CacheConfig, Layer, VolumeInfo};
use vmbuild_transfer::layout::Layout;
use vmbuild_transfer::{import, read_export, Dest, Meter, Store, TransferError};

/// A raw tar (no path checks: the tar crate's Builder would refuse these
/// names) of `(name, kind, data)` entries.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Writes a one-volume export of `chunks` (raw tars) into a layout at `dir`.
fn hostile_export(dir: &Path, chunks: &[Vec<u8>]) {
    let mut store = Layout::create(dir, "latest").unwrap();
    let blobs = dir.join("blobs/sha256");
    let mut layers = Vec::new();
    for c in chunks {
        let z = zstd::encode_all(&c[..], 3).unwrap();
        let digest = format::digest_of(&z);
        std::fs::write(blobs.join(&digest[7..]), &z).unwrap();
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
            entries: 100,
        }],
    };
    let cj = serde_json::to_vec(&config).unwrap();
    std::fs::write(blobs.join(&format::digest_of(&cj)[7..]), &cj).unwrap();
    let m = format::manifest(&cj, &config, &[layers]).unwrap();
    store.put_manifest(&m).unwrap();
}

/// Imports volume `v` of the export at `layout` into `vol`. The records go
/// to `records` beside the layout, as in real use (`<cache root>/.transfer`):
/// inside it, their creation would change the layout directory's mtime.
fn try_import(layout: &Path, vol: &Path) -> Result<(), TransferError> {
    let mut store = Layout::open(layout, "latest");
    let e = read_export(&mut store)?;
    let d = Dest {
        name: "v".into(),
        dir: vol.to_path_buf(),
        key: "v".into(),
        force: true,
    };
    import(
        &mut store,
        &e,
        &[d],
        &layout.with_file_name("records"),
        &Meter::default(),
    )
    .map(drop)
}

#[test]
fn escaping_chunks_are_refused_and_nothing_lands_outside() {
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "symlink to /etc then a file through it",
            vec![raw_tar(&[
                ("evil", T::Symlink, b"", "/etc"),
                ("evil/passwd-vmbuild-test", T::Regular, b"pwned", ""),
            ])],
        ),
        (
            "a symlink in one chunk, a file through it in the next",
            vec![
                raw_tar(&[("evil", T::Symlink, b"", "/tmp")]),
                raw_tar(&[("evil/vmbuild-hostile-test", T::Regular, b"pwned", "")]),
            ],
        ),
        (
            "a ../ entry",
            vec![raw_tar(&[(
                "../outside-vmbuild-test",
                T::Regular,
                b"pwned",
                "",
            )])],
        ),
        (
            "an absolute entry",
            vec![raw_tar(&[(
                "/tmp/abs-vmbuild-test",
                T::Regular,
                b"pwned",
                "",
            )])],
        ),
        (
            "a device node",
            vec![
                raw_tar(&[("dev", T::Char, b"", "")]),
                raw_tar(&[("ok", T::Regular, b"1", "")]),
            ],
        ),
        (
            "a hard link to /etc/passwd",
            vec![raw_tar(&[("h", T::Link, b"", "/etc/passwd")])],
        ),
    ];
    for (what, chunks) in cases {
        let host = tempfile::tempdir().unwrap();
        let layout = host.path().join("layout");
        hostile_export(&layout, &chunks);
        let vol = host.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("keep"), b"mine").unwrap();
        let before = support::tree(host.path());
        let r = try_import(&layout, &vol);
        if what == "a device node" {
            // Skipped with a warning, as for build outputs; the rest lands.
            r.unwrap();
            assert!(!vol.join("dev").exists());
            assert!(vol.join("ok").exists());
            continue;
        }
        let e = r.expect_err(what).to_string();
        assert!(!e.contains('\n') && e.contains("volume v"), "{what}: {e}");
        let after: Vec<String> = support::tree(host.path())
            .into_iter()
            .filter(|l| !l.starts_with("records"))
            .collect();
        assert_eq!(before, after, "{what}: something changed");
        for p in [
            "/etc/passwd-vmbuild-test",
            "/tmp/vmbuild-hostile-test",
            "/tmp/abs-vmbuild-test",
        ] {
            assert!(!Path::new(p).exists(), "{what}: {p}");
        }
        assert!(!host.path().join("outside-vmbuild-test").exists());
    }
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_declared_size() {
    let host = tempfile::tempdir().unwrap();
    let layout = host.path().join("layout");
    // 64 MiB of zeros in one file, while the export claims 1 MiB.
    let big = vec![0u8; 64 << 20];
    hostile_export(
        &layout,
        &[raw_tar(&[("zeros", tar::EntryType::Regular, &big, "")])],
    );
    let vol = host.path().join("vol");
    let e = try_import(&layout, &vol).unwrap_err().to_string();
    assert!(e.contains("more than the export says"), "{e}");
    assert!(!vol.exists());
}
