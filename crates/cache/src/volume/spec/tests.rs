use super::*;

fn parse(s: &str) -> Result<VolumeSpec, String> {
    s.parse::<VolumeSpec>().map_err(|e| e.to_string())
}

#[test]
fn a_full_spec_parses_with_buildkit_names() {
    let v = parse("id=gomod,target=/root/go/pkg/mod/,sharing=locked,uid=1000,gid=1000,mode=0755")
        .unwrap();
    assert_eq!(v.source, VolumeSource::Named("gomod".into()));
    assert_eq!(v.target, "/root/go/pkg/mod");
    assert_eq!(v.sharing, Sharing::Locked);
    assert_eq!(
        (v.uid, v.gid, v.mode),
        (Some(1000), Some(1000), Some(0o755))
    );
    assert_eq!(v.persist, None);
    let v = parse("src=/srv/apt,target=/var/cache/apt,sharing=private,persist=never").unwrap();
    assert_eq!(v.source, VolumeSource::HostDir("/srv/apt".into()));
    assert_eq!(v.sharing, Sharing::Private);
    assert_eq!(v.persist, Some(Persist::Never));
    assert_eq!(parse("id=a,target=/x").unwrap().sharing, Sharing::Shared);
}

#[test]
fn bad_specs_say_what_to_write() {
    for (spec, says) in [
        ("id=a/b,target=/x", "not a path"),
        ("id=..,target=/x", "letters, digits"),
        ("id=a,target=x", "absolute"),
        ("id=a,target=/", "must not be /"),
        ("id=a,target=/a/../etc", "'..'"),
        ("id=a,target=/proc/x", "under /proc"),
        ("id=a,target=/dev", "under /dev"),
        ("id=a,target=/sys", "under /sys"),
        (
            "id=a,target=/x,sharing=exclusive",
            "shared, locked or private",
        ),
        (
            "id=a,target=/x,persist=sometimes",
            "never, on-success or always",
        ),
        ("id=a,target=/x,mode=999", "octal"),
        ("id=a,target=/x,uid=me", "not a number"),
        ("id=a,target=/x,colour=red", "unknown key"),
        ("id=a", "needs target"),
        ("target=/x", "needs id=NAME"),
        ("id=a,src=/b,target=/x", "not both"),
        ("id=a,target", "KEY=VALUE"),
    ] {
        let e = parse(spec).expect_err(spec);
        assert!(e.contains(says) && e.contains(spec), "{spec}: {e}");
    }
}

#[test]
fn persistence_follows_the_cache_mode() {
    let v = |p: &str| parse(&format!("id=a,target=/x{p}")).unwrap();
    assert_eq!(v("").persist_in(CacheMode::Overlay), Ok(Persist::Never));
    assert_eq!(v("").persist_in(CacheMode::Virtiofs), Ok(Persist::Always));
    assert_eq!(
        v(",persist=always").persist_in(CacheMode::Virtiofs),
        Ok(Persist::Always)
    );
    assert!(v(",persist=on-success")
        .persist_in(CacheMode::Virtiofs)
        .unwrap_err()
        .contains("not possible in virtiofs mode"));
    assert!(v(",persist=always")
        .persist_in(CacheMode::Overlay)
        .unwrap_err()
        .contains("--cache-mode virtiofs"));
    assert_eq!(
        v(",persist=on-success").persist_in(CacheMode::Overlay),
        Ok(Persist::OnSuccess)
    );
}
