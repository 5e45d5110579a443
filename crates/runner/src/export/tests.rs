//! Tests for [`super`]: real tar streams (GNU tar, busybox) round-trip, and
//! hand-built hostile streams are refused without writing outside staging.

use super::pax::parse_pax_time;
use super::staging::replace_by_renames;
use super::unpack::{normalise, show, sort_deepest_first, split_parent, timestamps};
use super::*;
use rustix::fs::{AtFlags, Timespec, CWD};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::process::Command;
use std::time::Duration;

use tar::EntryType as T;

const BUSYBOX: &str = "/tmp/k/bb/bin/busybox";
const MTIME: u64 = 1_600_000_000;

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    stage: PathBuf,
    canary: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let stage = base.join("stage");
    let canary = base.join("canary");
    std::fs::create_dir(&stage).unwrap();
    std::fs::create_dir(&canary).unwrap();
    Fixture {
        _tmp: tmp,
        base,
        stage,
        canary,
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Nothing appeared next to the staging dir or in the canary dir.
fn assert_nothing_escaped(f: &Fixture) {
    assert!(
        names(&f.canary).is_empty(),
        "canary touched: {:?}",
        names(&f.canary)
    );
    let expected: BTreeSet<String> = ["stage", "canary"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names(&f.base), expected);
}

fn extract(stage: &Path, bytes: &[u8]) -> Result<ExportReport, ExportError> {
    let mut x = TarExtractor::new(stage)?;
    // Odd chunk size: headers and data straddle chunk boundaries.
    for chunk in bytes.chunks(1000) {
        x.stdout(chunk);
    }
    x.finish()
}

/// A hand-built archive: raw GNU headers, so any name or type can be written.
#[derive(Default)]
struct Stream(Vec<u8>);

impl Stream {
    fn raw(&mut self, name: &[u8], kind: T, link: &[u8], mode: u32, data: &[u8]) -> &mut Self {
        self.raw_sized(name, kind, link, mode, data, data.len() as u64)
    }

    fn raw_sized(
        &mut self,
        name: &[u8],
        kind: T,
        link: &[u8],
        mode: u32,
        data: &[u8],
        size: u64,
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name);
            g.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(MTIME);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), T::Regular, b"", 0o644, data)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name.as_bytes(), T::Directory, b"", 0o755, b"")
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), T::Symlink, target.as_bytes(), 0o777, b"")
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), T::Link, target.as_bytes(), 0o644, b"")
    }
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len.to_string().len() + rest > len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.raw(b"PaxHeaders/x", T::XHeader, b"", 0o644, &body)
    }
    fn end(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.0);
        v.extend_from_slice(&[0u8; 1024]);
        v
    }
}

fn refused(r: Result<ExportReport, ExportError>) -> (String, String) {
    match r {
        Err(ExportError::Refused { entry, reason }) => (entry, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(CWD, path, &timestamps(t), AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Files 0755/0644, relative and absolute symlinks, a hard link pair, nested
/// and empty dirs, a read-only dir, a >100 byte name; distinct mtimes.
fn build_tree(src: &Path) {
    let w = |p: &str, data: &str, mode: u32| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w("bin/tool", "#!/bin/sh\necho hi\n", 0o755);
    w("readme.txt", "hello\n", 0o644);
    w("nested/a/b/deep.txt", "deep\n", 0o600);
    w("hard1", "same inode\n", 0o640);
    std::fs::hard_link(src.join("hard1"), src.join("nested/hard2")).unwrap();
    let long = format!("{}/{}", "d".repeat(70), "f".repeat(80));
    w(&long, "long name\n", 0o644);
    std::fs::create_dir(src.join("empty")).unwrap();
    symlink("readme.txt", src.join("rel")).unwrap();
    symlink("../../readme.txt", src.join("nested/a/up")).unwrap();
    symlink("/etc/hostname", src.join("abs")).unwrap();
    w("ro/inside", "x", 0o444);
    std::fs::set_permissions(src.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    // mtimes bottom-up, all different, directories last.
    let mut all = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        all.push(d.clone());
        if std::fs::symlink_metadata(&d).unwrap().is_dir() {
            stack.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + i as i64 * 1000);
    }
}

/// Every path under `src` exists under `dst` with the same type, permission
/// bits, mtime, content / link target.
fn assert_same_tree(src: &Path, dst: &Path) {
    let mut stack = vec![PathBuf::new()];
    let mut count = 0;
    while let Some(rel) = stack.pop() {
        count += 1;
        let (s, d) = (src.join(&rel), dst.join(&rel));
        let sm = std::fs::symlink_metadata(&s).unwrap();
        let dm = std::fs::symlink_metadata(&d).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        assert_eq!(sm.file_type(), dm.file_type(), "{}", rel.display());
        assert_eq!(sm.mtime(), dm.mtime(), "mtime of {}", rel.display());
        if sm.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&s).unwrap(),
                std::fs::read_link(&d).unwrap()
            );
            continue;
        }
        assert_eq!(
            sm.mode() & 0o7777,
            dm.mode() & 0o7777,
            "mode of {}",
            rel.display()
        );
        if sm.is_dir() {
            stack.extend(
                std::fs::read_dir(&s)
                    .unwrap()
                    .map(|e| rel.join(e.unwrap().file_name())),
            );
        } else {
            assert_eq!(
                std::fs::read(&s).unwrap(),
                std::fs::read(&d).unwrap(),
                "{}",
                rel.display()
            );
        }
    }
    assert_eq!(
        count,
        names_recursive(dst),
        "extra entries in the extracted tree"
    );
}

fn names_recursive(dir: &Path) -> usize {
    let mut n = 1;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        n += if e.file_type().unwrap().is_dir() {
            names_recursive(&e.path())
        } else {
            1
        };
    }
    n
}

fn round_trip(tar_cmd: &[&str]) {
    let f = fixture();
    let src = f.base.join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src);
    set_mtime(&src, 1_400_000_000);
    let out = Command::new(tar_cmd[0])
        .args(&tar_cmd[1..])
        .args(["-C"])
        .arg(&src)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = extract(&f.stage, &out.stdout).unwrap();
    assert_same_tree(&src, &f.stage);
    let (h1, h2) = (f.stage.join("hard1"), f.stage.join("nested/hard2"));
    assert_eq!(
        std::fs::metadata(h1).unwrap().ino(),
        std::fs::metadata(h2).unwrap().ino()
    );
    assert_eq!(report.hardlinks, 1, "{report:?}");
    assert_eq!(report.symlinks, 3, "{report:?}");
    assert_eq!(report.files, 6, "{report:?}");
    assert_eq!(report.dirs, 7, "{report:?}");
    assert_eq!(report.skipped, 0);
    assert_eq!(report.bytes, 18 + 6 + 5 + 11 + 10 + 1);
}

#[test]
fn round_trip_gnu_tar() {
    round_trip(&["tar", "--format=gnu"]);
}

#[test]
fn round_trip_gnu_tar_pax_format() {
    round_trip(&["tar", "--format=pax"]);
}

#[test]
fn round_trip_busybox_tar() {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: {BUSYBOX} not found");
        return;
    }
    round_trip(&[BUSYBOX, "tar"]);
}

#[test]
fn refuses_names_escaping_staging() {
    for name in ["../x", "/abs", "a/../../x", "./../canary/x", "a/..", ".."] {
        let f = fixture();
        let bytes = Stream::default().dir("a").file(name, b"pwned").end();
        let (entry, reason) = refused(extract(&f.stage, &bytes));
        assert_eq!(entry, name);
        assert!(
            reason.contains("..") || reason.contains("absolute"),
            "{name}: {reason}"
        );
        assert_nothing_escaped(&f);
    }
}

#[test]
fn refuses_writing_through_a_symlink() {
    let f = fixture();
    let canary = f.canary.to_str().unwrap();
    let bytes = Stream::default()
        .symlink("link", canary)
        .file("link/passwd", b"pwned")
        .end();
    let err = extract(&f.stage, &bytes).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`link/passwd`") && msg.contains("symlink"),
        "{msg}"
    );
    assert_nothing_escaped(&f);
}

#[test]
fn refuses_writing_through_a_nested_symlink() {
    for (second, kind) in [
        ("d/link/x", T::Regular),
        ("d/link/sub/", T::Directory),
        ("d/link/s", T::Symlink),
    ] {
        let f = fixture();
        let bytes = Stream::default()
            .dir("d/")
            .symlink("d/link", "../..")
            .raw(second.as_bytes(), kind, b"target", 0o644, b"")
            .end();
        let (entry, reason) = refused(extract(&f.stage, &bytes));
        assert_eq!(entry, second);
        assert!(reason.contains("`d/link` is a symlink"), "{reason}");
        assert_nothing_escaped(&f);
    }
}

#[test]
fn refuses_bad_hard_links() {
    let cases: &[(&str, &str)] = &[
        ("../outside", ".."),
        ("/etc/passwd", "absolute"),
        ("sym", "is a symlink"),
        ("d", "is a directory"),
        ("missing", "does not exist"),
        ("lnk/secret", "cannot be reached"),
        (".", "archive root"),
    ];
    for (target, why) in cases {
        let f = fixture();
        std::fs::write(f.base.join("outside"), "secret").unwrap();
        std::fs::write(f.canary.join("secret"), "secret").unwrap();
        let canary = f.canary.to_str().unwrap();
        let bytes = Stream::default()
            .file("f", b"data")
            .symlink("sym", "f")
            .dir("d")
            .symlink("lnk", canary)
            .hardlink("h", target)
            .end();
        let (entry, reason) = refused(extract(&f.stage, &bytes));
        assert_eq!(entry, "h");
        assert!(reason.contains(why), "{target}: {reason}");
        assert!(!f.stage.join("h").exists());
        assert_eq!(
            std::fs::metadata(f.base.join("outside")).unwrap().nlink(),
            1
        );
        assert_eq!(
            std::fs::metadata(f.canary.join("secret")).unwrap().nlink(),
            1
        );
    }
}

#[test]
fn hard_link_shares_the_inode_of_an_extracted_file() {
    let f = fixture();
    let bytes = Stream::default()
        .dir("./d/")
        .file("./d/f", b"data")
        .hardlink("./h", "./d//f")
        .end();
    let report = extract(&f.stage, &bytes).unwrap();
    let a = std::fs::metadata(f.stage.join("d/f")).unwrap();
    let b = std::fs::metadata(f.stage.join("h")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!((report.files, report.hardlinks, report.dirs), (1, 1, 1));
}

#[test]
fn entries_never_replace_each_other() {
    type Build = dyn Fn(&mut Stream) -> &mut Stream;
    let cases: &[(&str, &Build)] = &[
        ("dir then symlink", &|s| s.dir("d").symlink("d", "/tmp")),
        ("file then symlink", &|s| {
            s.file("f", b"1").symlink("f", "/tmp")
        }),
        ("file then file", &|s| s.file("f", b"1").file("f", b"2")),
        ("symlink then file", &|s| {
            s.symlink("f", "x").file("f", b"2")
        }),
        ("file then dir", &|s| s.file("f", b"1").dir("f/")),
        ("file then hard link", &|s| {
            s.file("f", b"1").file("g", b"2").hardlink("f", "g")
        }),
    ];
    for (what, build) in cases {
        let f = fixture();
        let mut s = Stream::default();
        build(&mut s);
        let (_, reason) = refused(extract(&f.stage, &s.end()));
        assert!(reason.contains("already extracted"), "{what}: {reason}");
        assert_nothing_escaped(&f);
    }
    // A directory listed twice is fine (tar does that for `./`).
    let f = fixture();
    let bytes = Stream::default()
        .dir("./")
        .dir("d")
        .file("d/x", b"1")
        .dir("d/")
        .dir(".")
        .end();
    assert_eq!(extract(&f.stage, &bytes).unwrap().dirs, 1);
}

#[test]
fn truncated_streams_are_errors() {
    let mut s = Stream::default();
    s.file("a", &[7u8; 3000]);
    let full = s.end();
    let cuts = [
        (0, "truncated"),                 // nothing at all
        (512 + 1000, "ended inside `a`"), // inside the data
        (512 + 3072, "truncated"),        // after the entry, before the end marker
        (300, "failed to read entire block"),
    ];
    for (cut, want) in cuts {
        let f = fixture();
        match extract(&f.stage, &full[..cut]) {
            Err(ExportError::BadStream { reason, .. }) => {
                assert!(reason.contains(want), "{cut}: {reason}")
            }
            other => panic!("{cut}: {other:?}"),
        }
    }
    let f = fixture();
    assert_eq!(extract(&f.stage, &full).unwrap().bytes, 3000);
}

#[test]
fn failed_export_is_never_committed() {
    let f = fixture();
    let out = f.base.join("out");
    let staging = staging_dir(&out).unwrap();
    let partial = staging.path().to_path_buf();
    assert!(partial
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(".out.vmbuild-partial-"));
    let mut s = Stream::default();
    s.dir("ro").file("ro/a", &[1u8; 2000]);
    let bytes = s.end();
    let mut x = TarExtractor::new(staging.path()).unwrap();
    x.stdout(&bytes[..1500]);
    assert!(matches!(x.finish(), Err(ExportError::BadStream { .. })));
    assert!(
        partial.join("ro/a").exists(),
        "partial data stays in staging only"
    );
    drop(staging);
    assert!(!partial.exists());
    assert!(!out.exists());
    assert_eq!(
        names(&f.base),
        ["canary", "stage"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn devices_and_fifos_are_skipped() {
    let f = fixture();
    let bytes = Stream::default()
        .raw(b"fifo", T::Fifo, b"", 0o644, b"")
        .raw(b"null", T::Char, b"", 0o666, b"")
        .raw(b"sda", T::Block, b"", 0o660, b"")
        .file("real", b"x")
        .end();
    let report = extract(&f.stage, &bytes).unwrap();
    assert_eq!((report.skipped, report.files), (3, 1));
    assert_eq!(names(&f.stage), ["real".to_string()].into_iter().collect());
}

#[test]
fn unknown_entry_types_and_sparse_files_are_refused() {
    for (kind, want) in [
        (T::new(b'V'), "unsupported entry type `V`"),
        (T::GNUSparse, "sparse"),
    ] {
        let f = fixture();
        let bytes = Stream::default().raw(b"label", kind, b"", 0o644, b"").end();
        let (entry, reason) = refused(extract(&f.stage, &bytes));
        assert_eq!(entry, "label");
        assert!(reason.contains(want), "{reason}");
        assert_nothing_escaped(&f);
    }
}

#[test]
fn setuid_setgid_and_sticky_bits_are_stripped() {
    let f = fixture();
    let bytes = Stream::default()
        .raw(b"suid", T::Regular, b"", 0o6755, b"#!")
        .raw(b"tmp/", T::Directory, b"", 0o1777, b"")
        .end();
    extract(&f.stage, &bytes).unwrap();
    assert_eq!(
        std::fs::metadata(f.stage.join("suid")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(f.stage.join("tmp")).unwrap().mode() & 0o7777,
        0o777
    );
}

#[test]
fn missing_parents_are_created_and_mtimes_applied_after_contents() {
    let f = fixture();
    std::fs::set_permissions(&f.stage, std::fs::Permissions::from_mode(0o700)).unwrap();
    let bytes = Stream::default()
        .dir("d")
        .file("d/sub/x", b"1")
        .raw(b"d/late", T::Regular, b"", 0o600, b"2")
        .end();
    let report = extract(&f.stage, &bytes).unwrap();
    assert_eq!(report.dirs, 2);
    let d = std::fs::metadata(f.stage.join("d")).unwrap();
    assert_eq!(d.mtime(), MTIME as i64, "dir mtime set after its contents");
    assert_eq!(
        std::fs::metadata(f.stage.join("d/sub")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(f.stage.join("d/late")).unwrap().mode() & 0o777,
        0o600
    );
    // No root entry: the root gets 0755.
    assert_eq!(std::fs::metadata(&f.stage).unwrap().mode() & 0o777, 0o755);
}

#[test]
fn too_many_entries_are_refused() {
    let f = fixture();
    let bytes = Stream::default()
        .file("a", b"")
        .file("b", b"")
        .file("c", b"")
        .file("d", b"")
        .end();
    let mut x = TarExtractor::with_max_entries(&f.stage, 3).unwrap();
    x.stdout(&bytes);
    let err = x.finish().unwrap_err();
    assert!(
        matches!(err, ExportError::TooManyEntries { limit: 3 }),
        "{err}"
    );
    assert!(!f.stage.join("d").exists());
    let f = fixture();
    let mut x = TarExtractor::with_max_entries(&f.stage, 4).unwrap();
    x.stdout(&bytes);
    assert_eq!(x.finish().unwrap().files, 4);
}

#[test]
fn output_past_max_bytes_is_refused_before_the_entry_is_written() {
    let bytes = Stream::default()
        .file("a", &[1u8; 600])
        .file("b", &[2u8; 500])
        .end();
    let limits = |max_bytes| ExportLimits {
        max_entries: 10,
        max_bytes,
    };
    let f = fixture();
    let mut x = TarExtractor::with_limits(&f.stage, limits(1000)).unwrap();
    x.stdout(&bytes);
    let err = x.finish().unwrap_err();
    assert!(
        matches!(&err, ExportError::TooLarge { limit: 1000, entry } if entry == "b"),
        "{err}"
    );
    assert!(err.to_string().contains("--max-output-size"), "{err}");
    assert!(
        !f.stage.join("b").exists(),
        "nothing of the entry past the limit"
    );
    let f = fixture();
    let mut x = TarExtractor::with_limits(&f.stage, limits(1100)).unwrap();
    x.stdout(&bytes);
    assert_eq!(x.finish().unwrap().bytes, 1100, "exactly the limit is fine");
}

#[test]
fn oversized_long_name_header_is_refused_without_reading_it() {
    let f = fixture();
    let mut s = Stream::default();
    s.raw_sized(b"././@LongLink", T::GNULongName, b"", 0o644, b"", 1 << 40);
    let msg = extract(&f.stage, &s.0).unwrap_err().to_string();
    assert!(msg.contains("at most 65536"), "{msg}");
}

#[test]
fn gnu_long_names_and_links() {
    let f = fixture();
    let long = format!("{}/{}", "a".repeat(120), "b".repeat(130));
    let bytes = Stream::default()
        .raw(
            b"././@LongLink",
            T::GNULongName,
            b"",
            0o644,
            format!("{}\0", "a".repeat(120)).as_bytes(),
        )
        .raw(b"ignored", T::Directory, b"", 0o755, b"")
        .raw(
            b"././@LongLink",
            T::GNULongName,
            b"",
            0o644,
            format!("{long}\0").as_bytes(),
        )
        .raw(b"ignored", T::Regular, b"", 0o644, b"long")
        .raw(
            b"././@LongLink",
            T::GNULongLink,
            b"",
            0o644,
            long.as_bytes(),
        )
        .raw(b"short", T::Symlink, b"ignored", 0o777, b"")
        .end();
    extract(&f.stage, &bytes).unwrap();
    assert_eq!(std::fs::read(f.stage.join(&long)).unwrap(), b"long");
    assert_eq!(
        std::fs::read_link(f.stage.join("short")).unwrap(),
        Path::new(&long)
    );
}

#[test]
fn pax_path_linkpath_and_mtime_are_honoured() {
    let f = fixture();
    let long = "p".repeat(200);
    let bytes = Stream::default()
        .pax(&[
            ("path", long.as_bytes()),
            ("mtime", b"1700000000.25"),
            ("uid", b"0"),
            ("atime", b"1"),
        ])
        .file("short", b"pax")
        .pax(&[("linkpath", b"target with\nnewline")])
        .symlink("l", "ignored")
        .raw(b"g", T::XGlobalHeader, b"", 0o644, b"12 comment=\n")
        .end();
    extract(&f.stage, &bytes).unwrap();
    let m = std::fs::metadata(f.stage.join(&long)).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(
        std::fs::read_link(f.stage.join("l")).unwrap(),
        Path::new("target with\nnewline")
    );
    assert!(!f.stage.join("short").exists() && !f.stage.join("g").exists());
}

#[test]
fn pax_that_could_desynchronise_or_hide_escapes_is_refused() {
    let f = fixture();
    let bytes = Stream::default()
        .pax(&[("size", b"5")])
        .file("x", b"0123456789")
        .end();
    assert!(refused(extract(&f.stage, &bytes)).1.contains("size"));
    let f = fixture();
    let bytes = Stream::default()
        .pax(&[("path", b"../escape")])
        .file("innocent", b"x")
        .end();
    assert_eq!(refused(extract(&f.stage, &bytes)).0, "../escape");
    assert_nothing_escaped(&f);
    let f = fixture();
    let bytes = Stream::default()
        .pax(&[("GNU.sparse.major", b"1")])
        .file("x", b"")
        .end();
    assert!(extract(&f.stage, &bytes)
        .unwrap_err()
        .to_string()
        .contains("sparse"));
    let f = fixture();
    let bytes = Stream::default()
        .raw(b"PaxHeaders/x", T::XHeader, b"", 0o644, b"99 path=x\n")
        .file("x", b"")
        .end();
    assert!(extract(&f.stage, &bytes)
        .unwrap_err()
        .to_string()
        .contains("malformed pax"));
    let f = fixture();
    let bytes = Stream::default().pax(&[("path", b"x")]).end();
    assert!(extract(&f.stage, &bytes)
        .unwrap_err()
        .to_string()
        .contains("describes no entry"));
}

#[test]
fn root_entry_must_be_a_directory_and_names_must_be_clean() {
    for (name, kind) in [
        (&b"."[..], T::Regular),
        (b"./", T::Symlink),
        (b"f/", T::Regular),
        (b"a\0b", T::Regular),
    ] {
        let f = fixture();
        let bytes = Stream::default().raw(name, kind, b"x", 0o644, b"").end();
        let r = extract(&f.stage, &bytes);
        // A NUL in a header field ends the name; everything else is refused.
        if name == b"a\0b" {
            assert!(f.stage.join("a").exists() && r.is_ok());
        } else {
            refused(r);
        }
    }
}

#[test]
fn data_after_the_end_marker_is_refused_but_zero_padding_is_fine() {
    let f = fixture();
    let mut bytes = Stream::default().file("a", b"1").end();
    bytes.extend_from_slice(&[0u8; 9000]);
    extract(&f.stage, &bytes).unwrap();
    let f = fixture();
    let mut bytes = Stream::default().file("a", b"1").end();
    bytes.extend_from_slice(&Stream::default().file("smuggled", b"2").end());
    let msg = extract(&f.stage, &bytes).unwrap_err().to_string();
    assert!(msg.contains("after the end-of-archive marker"), "{msg}");
}

#[test]
fn bad_stream_errors_quote_the_guest_tar_stderr() {
    let f = fixture();
    let mut x = TarExtractor::new(&f.stage).unwrap();
    x.stderr(&vec![b'.'; 100_000]);
    x.stderr(b"tar: ./secret: Permission denied\n");
    assert_eq!(x.guest_stderr().len(), STDERR_TAIL_BYTES);
    x.stdout(&[1u8; 100]);
    let msg = x.finish().unwrap_err().to_string();
    assert!(
        msg.contains("guest tar said:") && msg.ends_with("Permission denied"),
        "{msg}"
    );
    assert!(msg.len() < 3000, "message is bounded: {}", msg.len());
}

#[test]
fn stdout_does_not_block_once_extraction_failed() {
    let f = fixture();
    let stage = f.stage.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut x = TarExtractor::new(&stage).unwrap();
        x.stdout(&Stream::default().file("../x", b"").end());
        for _ in 0..(CHANNEL_CHUNKS * 20) {
            x.stdout(&[0xffu8; 4096]);
        }
        let _ = done_tx.send(x.finish());
    });
    let r = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("stdout() blocked after the extractor stopped");
    refused(r);
}

#[test]
fn dropping_the_extractor_mid_stream_stops_the_thread() {
    let f = fixture();
    let mut x = TarExtractor::new(&f.stage).unwrap();
    let mut s = Stream::default();
    s.raw_sized(b"big", T::Regular, b"", 0o644, &[], 1 << 30);
    x.stdout(&s.0);
    x.stdout(&[0u8; 10_000]);
    drop(x); // cancels and joins the thread: must return promptly
}

#[test]
fn new_refuses_a_non_empty_staging_dir() {
    let f = fixture();
    std::fs::write(f.stage.join("old"), "x").unwrap();
    let msg = TarExtractor::new(&f.stage).unwrap_err().to_string();
    assert!(msg.contains("not empty") && msg.contains("stage"), "{msg}");
}

#[test]
fn normalise_accepts_dot_prefixes_and_refuses_escapes() {
    assert_eq!(normalise(b"./a//b/").unwrap(), b"a/b");
    assert_eq!(normalise(b"./").unwrap(), b"");
    assert_eq!(normalise(b"a/./b").unwrap(), b"a/b");
    for bad in [&b""[..], b"/a", b"a/../b", b"..", b"a\0"] {
        assert!(normalise(bad).is_err(), "{}", show(bad));
    }
    assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
    assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
}

#[test]
fn directories_are_finished_children_first() {
    // Running as root hides permission problems, so check the order itself:
    // a parent made read-only or unsearchable first would block its children.
    let mut dirs: Vec<(Vec<u8>, ())> = ["", "a", "a/b/c", "z", "a/b"]
        .iter()
        .map(|s| (s.as_bytes().to_vec(), ()))
        .collect();
    sort_deepest_first(&mut dirs);
    let order: Vec<&[u8]> = dirs.iter().map(|(d, _)| d.as_slice()).collect();
    assert_eq!(order, [&b"a/b/c"[..], b"a/b", b"a", b"z", b""]);
}

#[test]
fn pax_times_parse_with_nanoseconds() {
    let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
    assert_eq!(t("12"), Some((12, 0)));
    assert_eq!(t("12.5"), Some((12, 500_000_000)));
    assert_eq!(t("12.1234567891"), Some((12, 123_456_789)));
    assert_eq!(t("-2.25"), Some((-3, 750_000_000)));
    assert_eq!(t("x"), None);
    assert_eq!(t("1.x"), None);
}

// ---- staging_dir / commit ----

fn staged(output: &Path, file: &str) -> StagingDir {
    let s = staging_dir(output).unwrap();
    std::fs::write(s.path().join(file), file).unwrap();
    s
}

#[test]
fn commit_creates_the_output_dir_and_its_parent() {
    let f = fixture();
    let out = f.base.join("new/parent/out");
    staged(&out, "a").commit(&out).unwrap();
    assert_eq!(names(&out), ["a".to_string()].into_iter().collect());
    assert_eq!(
        names(&f.base.join("new/parent")),
        ["out".to_string()].into_iter().collect()
    );
}

#[test]
fn commit_replaces_an_existing_output_dir() {
    let f = fixture();
    let out = f.base.join("out");
    std::fs::create_dir_all(out.join("old/ro")).unwrap();
    std::fs::set_permissions(out.join("old/ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    staged(&out, "new").commit(&out).unwrap();
    assert_eq!(names(&out), ["new".to_string()].into_iter().collect());
    assert_eq!(
        names(&f.base),
        ["canary", "out", "stage"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn replacing_by_renames_works_where_exchange_is_unsupported() {
    let f = fixture();
    let out = f.base.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("old"), "").unwrap();
    let mut s = staged(&out, "new");
    let old = replace_by_renames(s.path(), &out, &f.base, OsStr::new("out")).unwrap();
    s.committed = true;
    assert!(old
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(".out.vmbuild-old-"));
    assert_eq!(names(&out), ["new".to_string()].into_iter().collect());
    assert_eq!(names(&old), ["old".to_string()].into_iter().collect());
}

#[test]
fn commit_refuses_a_file_or_symlink_at_the_output_path() {
    let f = fixture();
    let file = f.base.join("file");
    std::fs::write(&file, "keep me").unwrap();
    assert!(matches!(
        staging_dir(&file),
        Err(ExportError::OutputNotDirectory { .. })
    ));
    let link = f.base.join("link");
    symlink(&f.canary, &link).unwrap();
    let err = staging_dir(&link).unwrap_err();
    assert!(matches!(err, ExportError::OutputIsSymlink { .. }), "{err}");
    assert!(err.to_string().contains("real path"));
    // Appearing after the staging dir was made: still refused at commit.
    let out = f.base.join("out");
    let s = staged(&out, "a");
    let partial = s.path().to_path_buf();
    symlink(&f.canary, &out).unwrap();
    assert!(matches!(
        s.commit(&out),
        Err(ExportError::OutputIsSymlink { .. })
    ));
    assert!(!partial.exists(), "an uncommitted staging dir is removed");
    assert!(names(&f.canary).is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn output_dir_must_name_a_directory() {
    for bad in ["/", "..", "x/.."] {
        let err = staging_dir(Path::new(bad)).unwrap_err();
        assert!(
            matches!(err, ExportError::InvalidOutputDir { .. }),
            "{bad}: {err}"
        );
    }
    let f = fixture();
    let s = staging_dir(&f.base.join("a/out")).unwrap();
    assert!(matches!(
        s.commit(&f.base.join("out")),
        Err(ExportError::InvalidOutputDir { .. })
    ));
}

#[test]
fn dropping_an_uncommitted_staging_dir_removes_it_even_if_read_only() {
    let f = fixture();
    let s = staged(&f.base.join("out"), "a");
    let p = s.path().to_path_buf();
    std::fs::create_dir(p.join("ro")).unwrap();
    std::fs::write(p.join("ro/x"), "").unwrap();
    std::fs::set_permissions(p.join("ro"), std::fs::Permissions::from_mode(0o500)).unwrap();
    symlink(&f.canary, p.join("link")).unwrap();
    std::fs::write(f.canary.join("keep"), "").unwrap();
    drop(s);
    assert!(!p.exists());
    assert!(
        f.canary.join("keep").exists(),
        "removal does not follow symlinks"
    );
}

/// Found by fuzzing (cache_import): the tar crate's error quotes a header
/// field, here a checksum field holding a newline and an escape sequence;
/// the error must stay one line and carry no control character.
#[test]
fn a_hostile_header_field_is_shown_escaped() {
    let mut s = Stream::default();
    s.file("a", b"x");
    let mut bytes = s.end();
    bytes[148..156].copy_from_slice(b"1\n\x1b[2J\0\0");
    let f = fixture();
    let e = extract(&f.stage, &bytes).unwrap_err().to_string();
    assert!(!e.chars().any(char::is_control), "{e:?}");
    assert!(e.contains("\\n\\u{1b}[2J"), "{e}");
}
