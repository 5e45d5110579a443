use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

#[test]
fn new_changed_deleted_replaced_and_linked_entries_land() {
    let d = tempfile::tempdir().unwrap();
    let (vol, st) = (d.path().join("vol"), d.path().join("stage"));
    write(&vol.join("keep"), "keep");
    write(&vol.join("change"), "old");
    write(&vol.join("gone"), "bye");
    write(&vol.join("olddir/a"), "a");
    write(&vol.join("replaced/x"), "x");
    write(&vol.join("replaced/y"), "y");
    fs::create_dir_all(vol.join("was-a-dir/deep")).unwrap();
    write(&st.join("change"), "new");
    write(&st.join("new/file"), "n");
    write(&st.join(".wh.gone"), "");
    write(&st.join(".wh.olddir"), "");
    write(&st.join("renamed/a"), "a");
    write(&st.join("replaced/.wh..wh..opq"), "");
    write(&st.join("replaced/z"), "z");
    write(&st.join("was-a-dir"), "now a file");
    std::os::unix::fs::symlink("keep", st.join("link")).unwrap();
    fs::hard_link(st.join("new/file"), st.join("new/hard")).unwrap();
    fs::set_permissions(st.join("change"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = apply_changes(&st, &vol).unwrap();
    let read = |p: &str| fs::read_to_string(vol.join(p)).unwrap();
    assert_eq!(read("keep"), "keep");
    assert_eq!(read("change"), "new");
    assert_eq!(
        fs::metadata(vol.join("change")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(read("new/file"), "n");
    assert!(!vol.join("gone").exists() && !vol.join("olddir").exists());
    assert_eq!(read("renamed/a"), "a");
    let mut left: Vec<_> = fs::read_dir(vol.join("replaced"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["z"], "opaque dir replaced the old contents");
    assert_eq!(read("was-a-dir"), "now a file");
    assert_eq!(fs::read_link(vol.join("link")).unwrap(), Path::new("keep"));
    assert_eq!(
        fs::metadata(vol.join("new/file")).unwrap().ino(),
        fs::metadata(vol.join("new/hard")).unwrap().ino(),
        "hard link kept"
    );
    assert!(r.written >= 6 && r.removed >= 4, "{r:?}");
    assert!(!vol.join(".wh.gone").exists() && !vol.join("replaced/.wh..wh..opq").exists());
}

#[test]
fn symlinks_in_the_volume_are_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let (vol, st, outside) = (
        d.path().join("vol"),
        d.path().join("stage"),
        d.path().join("outside"),
    );
    write(&outside.join("precious"), "keep me");
    fs::create_dir_all(&vol).unwrap();
    // An earlier build left links pointing out of the volume.
    std::os::unix::fs::symlink(&outside, vol.join("esc")).unwrap();
    std::os::unix::fs::symlink(outside.join("precious"), vol.join("file-link")).unwrap();
    write(&st.join("esc/precious"), "overwritten?");
    write(&st.join(".wh.file-link"), "");
    apply_changes(&st, &vol).unwrap();
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    // The link was replaced by a real directory inside the volume.
    assert!(fs::symlink_metadata(vol.join("esc")).unwrap().is_dir());
    assert_eq!(
        fs::read_to_string(vol.join("esc/precious")).unwrap(),
        "overwritten?"
    );
    assert!(fs::symlink_metadata(vol.join("file-link")).is_err());
    assert!(
        outside.join("precious").exists(),
        "a whiteout removes the link, not its target"
    );
}
