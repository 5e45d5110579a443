//! Acting on the host's `Setup`: hostname, network, the root image, and
//! the shared cache mounts (9p read-only + overlay, or virtiofs read-write)
//! with their alias symlinks, directories and default links.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use vmbuild_proto::{CacheMode, MountSpec, Setup, GUEST_CA_BUNDLE};

use crate::error::{InitError, Result};
use crate::modules::load_group_logged;
use crate::mounts::{mkdir_p, mount_fs};
use crate::overlay::{copy_root_owner, first_accepted, overlay_attempts};
use crate::root::GuestRoot;

/// Default 9p message size (the cap of the guest kernel).
pub const DEFAULT_MSIZE: u32 = 512_000;
/// Where read-only 9p lowers are mounted.
pub const LOWER_ROOT: &str = "/run/vmbuild/lower";
/// Where each overlay's tmpfs (holding upper/ and work/) is mounted.
pub const RW_ROOT: &str = "/run/vmbuild/rw";
/// Applies `setup` and returns the root commands run in; progress lines go
/// to `log`. Any error is fatal. Order: hostname, network, the root image,
/// the init's /etc files and CA bundle, then the shares, directories and links (all of
/// them guest paths inside that root).
pub fn apply(setup: &Setup, log: &mut dyn FnMut(String)) -> Result<GuestRoot> {
    // Check every path before the first mount: a bad request changes nothing.
    for (what, p) in setup_paths(setup) {
        absolute(what, p)?;
    }
    if let Some(h) = &setup.hostname {
        nix::unistd::sethostname(h)
            .map_err(|e| InitError::sys(format!("setting hostname '{h}'"), e))?;
    }
    let resolv = match &setup.network {
        Some(n) => Some(crate::net::resolv_conf(&crate::net::configure(n, log)?.dns)),
        None => None,
    };
    let root = match &setup.root {
        Some(spec) => crate::sysroot::mount_image(spec, log)?,
        None => GuestRoot::initramfs(),
    };
    let wrote = crate::etc::write_etc(&root, setup.hostname.as_deref(), resolv.as_deref())?;
    if !wrote.is_empty() {
        log(format!("wrote {}", wrote.join(" ")));
    }
    if let Some(certs) = &setup.ca_certs {
        crate::etc::add_ca_certs(&root, certs)?;
        let n = certs.matches("-----BEGIN CERTIFICATE-----").count();
        log(format!("added {n} CA certificate(s) to {GUEST_CA_BUNDLE}"));
    }
    let on_disk = setup.scratch.is_some();
    if let Some(sc) = &setup.scratch {
        crate::scratch::mount(sc, log)?;
    }
    for m in &setup.mounts {
        let guest_target = absolute("mount target", &m.target)?;
        let target = root.host(&guest_target)?;
        validate_tag(&m.tag)?;
        match m.mode {
            CacheMode::Overlay => {
                load_group_logged("9p", log)?;
                load_group_logged("overlay", log)?;
                log(mount_overlay(m, &target, on_disk)?)
            }
            CacheMode::Virtiofs => {
                load_group_logged("virtiofs", log)?;
                mkdir_p(&target)?;
                mount_fs(&m.tag, &target, "virtiofs", MsFlags::empty(), "")?;
                log(format!(
                    "virtiofs tag '{}' mounted read-write at {}",
                    m.tag,
                    target.display()
                ));
            }
        }
        set_root_owner_mode(&target, m.owner, m.root_mode)?;
        for a in &m.aliases {
            let alias = root.host_nofollow(&absolute("alias", a)?)?;
            make_alias(&alias, &guest_target)?;
        }
    }
    let home = Path::new(vmbuild_proto::GUEST_HOME);
    if on_disk && !setup.mounts.iter().any(|m| Path::new(&m.target) == home) {
        crate::scratch::home_on_scratch(&root, home)?;
        log(format!("{} on the scratch disk", home.display()));
    }
    // After the mounts: a directory may live on one (e.g. /home/build/out).
    for d in &setup.mkdirs {
        mkdir_p(&root.host(&absolute("mkdirs entry", d)?)?)?;
    }
    for l in &setup.symlinks {
        let link = absolute("symlink", &l.link)?;
        let target = absolute("symlink target", &l.target)?;
        if make_default_link(&root, &link, &target)? {
            log(format!("linked {} -> {}", link.display(), target.display()));
        }
    }
    Ok(root)
}

/// Gives a mount's root the requested owner and mode (BuildKit's cache
/// mount `uid`, `gid`, `mode`), so a non-root build user can write to it.
/// In overlay mode this changes the tmpfs upper only; in virtiofs mode the
/// host directory itself.
fn set_root_owner_mode(target: &Path, owner: Option<(u32, u32)>, mode: Option<u32>) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(target, Some(uid), Some(gid))
            .map_err(|e| InitError::io(format!("chown {uid}:{gid} {}", target.display()), e))?;
    }
    if let Some(m) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(m & 0o7777))
            .map_err(|e| InitError::io(format!("chmod {m:o} {}", target.display()), e))?;
    }
    Ok(())
}

/// Every guest path of `setup`, with what it is.
fn setup_paths(setup: &Setup) -> impl Iterator<Item = (&'static str, &String)> {
    let mounts = setup.mounts.iter().flat_map(|m| {
        std::iter::once(("mount target", &m.target)).chain(m.aliases.iter().map(|a| ("alias", a)))
    });
    let links = setup
        .symlinks
        .iter()
        .flat_map(|l| [("symlink", &l.link), ("symlink target", &l.target)]);
    mounts
        .chain(setup.mkdirs.iter().map(|d| ("mkdirs entry", d)))
        .chain(links)
}

/// Creates `link` -> `target` (and the `target` directory) inside `root`
/// unless something already exists at `link`: these are defaults, and
/// whatever a rootfs or an earlier step put there wins. Both are guest
/// paths; the link's text is `target` as commands see it. Returns whether
/// it linked.
pub fn make_default_link(root: &GuestRoot, link: &Path, target: &Path) -> Result<bool> {
    let link_at = root.host_nofollow(link)?;
    if link_at.symlink_metadata().is_ok() {
        return Ok(false);
    }
    mkdir_p(&root.host(target)?)?;
    if let Some(parent) = link_at.parent() {
        mkdir_p(parent)?;
    }
    std::os::unix::fs::symlink(target, &link_at).map_err(|e| {
        InitError::io(
            format!(
                "creating the link {} -> {}",
                link_at.display(),
                target.display()
            ),
            e,
        )
    })?;
    Ok(true)
}

fn absolute(what: &str, p: &str) -> Result<PathBuf> {
    let path = PathBuf::from(p);
    if !path.is_absolute() {
        return Err(InitError::Invalid(format!(
            "{what} '{p}' is not an absolute path"
        )));
    }
    Ok(path)
}

/// Tags become path components and mount options: keep them plain.
pub fn validate_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag != "."
        && tag != ".."
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(InitError::Invalid(format!(
            "mount tag '{tag}' must be non-empty [A-Za-z0-9._-]"
        )))
    }
}

/// 9p mount options. No `cache=` option: the kernel's default (no page
/// cache, every read goes to the host) is the one that stays coherent when
/// the host changes a file during the run; `cache=loose` served a file
/// shrunk, grown or renamed over on the host cut to its old size or padded
/// with NULs. `cache=mmap` is as coherent for read(2) and adds nothing on a
/// read-only lower (docs/benchmarks.md has the cost).
pub fn ninep_options(msize: u32) -> String {
    format!("trans=virtio,version=9p2000.L,msize={msize}")
}

/// The per-tag directories of an overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    pub lower: PathBuf,
    pub rw: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl OverlayDirs {
    pub fn for_tag(tag: &str) -> Self {
        let rw = Path::new(RW_ROOT).join(tag);
        Self {
            lower: Path::new(LOWER_ROOT).join(tag),
            upper: rw.join("upper"),
            work: rw.join("work"),
            rw,
        }
    }
}

/// 9p read-only lower + an upper on tmpfs (or, `on_disk`, on the scratch
/// disk already mounted at [`RW_ROOT`]) + overlay at `target`. Returns a
/// log line saying which options worked.
fn mount_overlay(m: &MountSpec, target: &Path, on_disk: bool) -> Result<String> {
    let dirs = OverlayDirs::for_tag(&m.tag);
    let msize = m.msize.unwrap_or(DEFAULT_MSIZE);

    mkdir_p(&dirs.lower)?;
    mount_fs(
        &m.tag,
        &dirs.lower,
        "9p",
        MsFlags::MS_RDONLY,
        &ninep_options(msize),
    )?;

    mkdir_p(&dirs.rw)?;
    if !on_disk {
        mount_fs("tmpfs", &dirs.rw, "tmpfs", MsFlags::empty(), "mode=0755")?;
    }
    mkdir_p(&dirs.upper)?;
    mkdir_p(&dirs.work)?;
    copy_root_owner(&dirs.lower, &dirs.upper)?;

    mkdir_p(target)?;
    let attempts = overlay_attempts(&dirs.lower, &dirs.upper, &dirs.work)?;
    let options: Vec<String> = attempts.iter().map(|(o, _)| o.clone()).collect();
    let ov = first_accepted(&options, |o| {
        mount_fs("overlay", target, "overlay", MsFlags::empty(), o)
    })?;
    let ov_note = attempts[ov].1;
    Ok(format!(
        "9p tag '{}' (msize={msize}, no page cache) read-only with a {} overlay at {} ({ov_note})",
        m.tag,
        if on_disk { "scratch-disk" } else { "tmpfs" },
        target.display()
    ))
}

/// Makes `alias` a symlink to `target`: creates its parent, replaces an
/// existing symlink or empty directory, refuses anything else.
pub fn make_alias(alias: &Path, target: &Path) -> Result<()> {
    if let Some(parent) = alias.parent() {
        mkdir_p(parent)?;
    }
    let ctx = |what: &str| format!("{what} alias {} -> {}", alias.display(), target.display());
    match alias.symlink_metadata() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(InitError::io(ctx("inspecting"), e)),
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(alias).ok().as_deref() == Some(target) {
                return Ok(());
            }
            std::fs::remove_file(alias).map_err(|e| InitError::io(ctx("replacing"), e))?;
        }
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir(alias)
                .map_err(|e| InitError::io(ctx("replacing (it must be an empty directory)"), e))?;
        }
        Ok(_) => {
            return Err(InitError::Invalid(format!(
                "{}: it exists and is not a directory",
                ctx("creating")
            )))
        }
    }
    std::os::unix::fs::symlink(target, alias).map_err(|e| InitError::io(ctx("creating"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::{overlay_options, OVERLAY_EXTRA};

    #[test]
    fn ninep_options_have_no_cache_mode() {
        // cache=loose (or fscache) would serve stale pages after the host
        // changes a file: docs/cache.md, tests/e2e/cache_coherence.rs.
        assert_eq!(
            ninep_options(512_000),
            "trans=virtio,version=9p2000.L,msize=512000"
        );
    }

    #[test]
    fn overlay_options_in_order_and_optional_extra() {
        let d = OverlayDirs::for_tag("cache");
        assert_eq!(d.lower, Path::new("/run/vmbuild/lower/cache"));
        assert_eq!(d.upper, Path::new("/run/vmbuild/rw/cache/upper"));
        assert_eq!(
            overlay_options(&d.lower, &d.upper, &d.work, OVERLAY_EXTRA).unwrap(),
            "lowerdir=/run/vmbuild/lower/cache,upperdir=/run/vmbuild/rw/cache/upper,\
             workdir=/run/vmbuild/rw/cache/work,redirect_dir=on,xino=off,index=off"
        );
        let tries = overlay_attempts(&d.lower, &d.upper, &d.work).unwrap();
        let opts: Vec<&str> = tries.iter().map(|(o, _)| o.as_str()).collect();
        assert!(opts[0].ends_with(",redirect_dir=on,xino=off,index=off"));
        assert!(opts[1].ends_with("/work,redirect_dir=on"), "{}", opts[1]);
        assert!(opts[2].ends_with("/work"), "{}", opts[2]);
        assert!(overlay_options(&d.lower, &d.upper, &d.work, "")
            .unwrap()
            .ends_with("/work"));
        let e = overlay_options(Path::new("/a,b"), &d.upper, &d.work, "").unwrap_err();
        assert!(e.to_string().contains("lowerdir"), "{e}");
    }

    #[test]
    fn tags_are_plain_names() {
        assert!(validate_tag("cache").is_ok());
        assert!(validate_tag("cache-2.x_y").is_ok());
        for bad in ["", "..", "a/b", "a,b", "a b"] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn alias_created_and_replaces_empty_dir_or_stale_link() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("cache");
        let alias = d.path().join("var/cache/melange");
        make_alias(&alias, &target).unwrap();
        assert_eq!(std::fs::read_link(&alias).unwrap(), target);
        make_alias(&alias, &target).unwrap(); // idempotent

        std::fs::remove_file(&alias).unwrap();
        std::fs::create_dir(&alias).unwrap();
        make_alias(&alias, &target).unwrap();
        assert_eq!(std::fs::read_link(&alias).unwrap(), target);

        let other = d.path().join("other");
        make_alias(&alias, &other).unwrap();
        assert_eq!(std::fs::read_link(&alias).unwrap(), other);
    }

    #[test]
    fn alias_refuses_non_empty_dir_and_files() {
        let d = tempfile::tempdir().unwrap();
        let alias = d.path().join("full");
        std::fs::create_dir(&alias).unwrap();
        std::fs::write(alias.join("f"), b"x").unwrap();
        assert!(make_alias(&alias, Path::new("/t")).is_err());
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(make_alias(&file, Path::new("/t")).is_err());
        assert!(alias.join("f").exists(), "must not delete user data");
    }

    #[test]
    fn relative_paths_in_setup_are_refused() {
        let setup = Setup {
            mkdirs: vec!["rel/dir".into()],
            ..Default::default()
        };
        let e = apply(&setup, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("rel/dir"), "{e}");
        let setup = Setup {
            symlinks: vec![vmbuild_proto::SymlinkSpec {
                link: "/home/build/.m2/repository".into(),
                target: "cache/m2".into(),
            }],
            ..Default::default()
        };
        let e = apply(&setup, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("cache/m2"), "{e}");
    }

    #[test]
    fn default_links_are_made_once_and_never_replace_anything() {
        let d = tempfile::tempdir().unwrap();
        let root = GuestRoot::initramfs();
        let link = d.path().join("home/.m2/repository");
        let target = d.path().join("cache/m2repository");
        assert!(make_default_link(&root, &link, &target).unwrap());
        assert!(target.is_dir());
        assert_eq!(std::fs::read_link(&link).unwrap(), target);
        assert!(
            !make_default_link(&root, &link, &target).unwrap(),
            "second time is a no-op"
        );
        let own = d.path().join("home/.cargo/registry");
        std::fs::create_dir_all(&own).unwrap();
        assert!(!make_default_link(&root, &own, &d.path().join("cache/cargo/registry")).unwrap());
        assert!(
            own.is_dir() && !own.is_symlink(),
            "an existing directory is left alone"
        );
    }

    #[test]
    fn default_links_inside_an_image_root_point_at_guest_paths() {
        let d = tempfile::tempdir().unwrap();
        // /home is an absolute link inside the image: it must resolve there.
        std::fs::create_dir_all(d.path().join("var/home")).unwrap();
        std::os::unix::fs::symlink("/var/home", d.path().join("home")).unwrap();
        let root = GuestRoot::at(d.path());
        let link = Path::new("/home/build/.m2/repository");
        let target = Path::new("/var/cache/vmbuild/m2repository");
        assert!(make_default_link(&root, link, target).unwrap());
        let made = d.path().join("var/home/build/.m2/repository");
        assert_eq!(std::fs::read_link(&made).unwrap(), target);
        assert!(d.path().join("var/cache/vmbuild/m2repository").is_dir());
    }
}
