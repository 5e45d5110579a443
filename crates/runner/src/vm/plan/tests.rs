use std::path::Path;

use vmbuild_cache::{CacheShare, SharedDir};
use vmbuild_proto::{CacheMode, MountSpec, NetworkSpec, RootSpec};
use vmbuild_qemu::{Accel, Arch, Drive, DriveFormat, HostOs, Network, Share, ShareKind};

use super::*;

fn host() -> HostChoice {
    HostChoice {
        qemu: "/usr/bin/qemu-system-x86_64".into(),
        os: HostOs::Linux,
        arch: Arch::X86_64,
        accel: Accel::Tcg,
        tsc_khz: Some(2_000_000),
        version: QemuVersion::new(7, 2, 22),
        sandbox: true,
    }
}

fn boot() -> BootFiles {
    BootFiles {
        kernel: "/k/vmlinux".into(),
        initrd: "/k/initramfs.cpio".into(),
    }
}

fn plan_of(opts: VmOptions) -> VmPlan {
    plan(&opts, &host(), &boot(), Path::new("/run/x")).expect("plan")
}

fn cache(mode: CacheMode) -> SharedDir {
    CacheShare {
        host_dir: "/srv/cache".into(),
        mode,
    }
    .shared_dir()
}

fn source() -> SharedDir {
    SharedDir {
        name: "src".into(),
        host_dir: "/src".into(),
        mode: CacheMode::Overlay,
        target: "/home/build".into(),
        aliases: vec![],
        owner: None,
        root_mode: None,
    }
}

fn argv_text(p: &VmPlan) -> String {
    vmbuild_qemu::build_argv(&p.qemu)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn no_cache_plans_no_share_no_mount_no_daemon() {
    let p = plan_of(VmOptions::default());
    assert!(p.qemu.shares.is_empty());
    assert!(p.setup.mounts.is_empty());
    assert!(p.daemons.is_empty());
    assert!(p.qemu.drives.is_empty());
    assert_eq!(p.setup.mkdirs, ["/home/build"]);
    assert_eq!(p.setup.hostname.as_deref(), Some("vmbuild"));
    assert_eq!(p.qemu.control_socket, Path::new("/run/x/ctl.sock"));
    assert_eq!(p.qemu.qmp_socket, Path::new("/run/x/qmp.sock"));
    assert_eq!(p.qemu.console_log, Path::new("/run/x/console.log"));
    let argv = argv_text(&p);
    assert!(
        !argv.contains("virtio-9p") && !argv.contains("vhost-user-fs"),
        "{argv}"
    );
}

#[test]
fn overlay_cache_is_a_read_only_9p_share_mounted_at_the_cache_dir() {
    let p = plan_of(VmOptions {
        shares: vec![cache(CacheMode::Overlay)],
        ..VmOptions::default()
    });
    assert_eq!(
        p.qemu.shares,
        [Share {
            tag: "vmbuild-cache".into(),
            host_path: "/srv/cache".into(),
            kind: ShareKind::NineP { read_only: true },
        }]
    );
    assert_eq!(
        p.setup.mounts,
        [MountSpec {
            tag: "vmbuild-cache".into(),
            mode: CacheMode::Overlay,
            target: "/var/cache/vmbuild".into(),
            aliases: vec!["/var/cache/melange".into()],
            msize: Some(512_000),
            owner: None,
            root_mode: None,
        }]
    );
    assert!(p.daemons.is_empty());
    let argv = argv_text(&p);
    assert!(argv.contains("mount_tag=vmbuild-cache"), "{argv}");
    assert!(argv.contains("readonly=on"), "{argv}");
}

#[test]
fn virtiofs_cache_gets_a_daemon_on_a_socket_in_the_run_dir() {
    let p = plan_of(VmOptions {
        shares: vec![cache(CacheMode::Virtiofs)],
        ..VmOptions::default()
    });
    let socket = Path::new("/run/x/virtiofs-cache.sock");
    assert_eq!(
        p.daemons,
        [DaemonPlan {
            tag: "vmbuild-cache".into(),
            shared_dir: "/srv/cache".into(),
            socket: socket.into(),
            log: "/run/x/virtiofsd-cache.log".into(),
        }]
    );
    assert_eq!(
        p.qemu.shares[0].kind,
        ShareKind::Virtiofs {
            socket: socket.into()
        }
    );
    assert_eq!(p.setup.mounts[0].mode, CacheMode::Virtiofs);
    assert!(argv_text(&p).contains("vhost-user-fs-device"));
}

#[test]
fn two_caches_are_two_shares_two_mounts_and_one_daemon_each_in_virtiofs_mode() {
    let mut gomod = cache(CacheMode::Virtiofs);
    gomod.name = "gomod".into();
    gomod.host_dir = "/srv/gomod".into();
    gomod.target = "/root/go/pkg/mod".into();
    gomod.aliases = vec![];
    let p = plan_of(VmOptions {
        shares: vec![cache(CacheMode::Virtiofs), gomod],
        ..VmOptions::default()
    });
    let tags: Vec<_> = p.qemu.shares.iter().map(|s| s.tag.as_str()).collect();
    assert_eq!(tags, ["vmbuild-cache", "vmbuild-gomod"]);
    let targets: Vec<_> = p.setup.mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/var/cache/vmbuild", "/root/go/pkg/mod"]);
    let sockets: Vec<_> = p.daemons.iter().map(|d| d.socket.clone()).collect();
    assert_eq!(
        sockets,
        [
            Path::new("/run/x/virtiofs-cache.sock"),
            Path::new("/run/x/virtiofs-gomod.sock")
        ]
    );
}

#[test]
fn source_dir_is_a_read_only_share_with_an_overlay_at_home() {
    let p = plan_of(VmOptions {
        shares: vec![cache(CacheMode::Overlay), source()],
        mkdirs: vec!["/home/build/out".into()],
        ..VmOptions::default()
    });
    assert_eq!(p.qemu.shares[1].tag, "vmbuild-src");
    assert_eq!(p.qemu.shares[1].kind, ShareKind::NineP { read_only: true });
    assert_eq!(p.setup.mounts[1].target, "/home/build");
    assert_eq!(p.setup.mounts[1].mode, CacheMode::Overlay);
    assert_eq!(p.setup.mkdirs, ["/home/build", "/home/build/out"]);
}

#[test]
fn root_image_is_a_read_only_first_disk_and_a_root_spec() {
    let p = plan_of(VmOptions {
        root_image: Some(RootImage {
            path: "/img/env.erofs".into(),
            fstype: "erofs".into(),
        }),
        ..VmOptions::default()
    });
    assert_eq!(
        p.qemu.drives,
        [Drive {
            path: "/img/env.erofs".into(),
            read_only: true,
            format: DriveFormat::Raw,
        }]
    );
    assert_eq!(
        p.setup.root,
        Some(RootSpec {
            device: "/dev/vda".into(),
            fstype: "erofs".into()
        })
    );
}

#[test]
fn network_none_has_no_nic_and_user_tells_the_guest_the_slirp_addresses() {
    let none = plan_of(VmOptions::default());
    assert_eq!(none.setup.network, None);
    assert_eq!(none.qemu.network, Network::None);
    assert!(!argv_text(&none).contains("-netdev"));
    let user = plan_of(VmOptions {
        network: Network::User,
        ..VmOptions::default()
    });
    assert_eq!(
        user.setup.network,
        Some(NetworkSpec {
            address: "10.0.2.15/24".into(),
            gateway: "10.0.2.2".into(),
            dns: vec!["10.0.2.3".into()],
        })
    );
    assert!(argv_text(&user).contains("-netdev"));
}

#[test]
fn options_reach_the_qemu_config() {
    let p = plan_of(VmOptions {
        cpus: 2,
        memory_mib: 2048,
        kernel_args: vec!["loglevel=7".into()],
        console_log: Some("/keep/console.log".into()),
        ca_certs: Some("PEM".into()),
        ..VmOptions::default()
    });
    assert_eq!((p.qemu.cpus, p.qemu.memory_mib), (2, 2048));
    assert_eq!(p.qemu.kernel_cmdline_extra, ["loglevel=7"]);
    assert_eq!(p.qemu.console_log, Path::new("/keep/console.log"));
    assert_eq!(p.qemu.kernel, Path::new("/k/vmlinux"));
    assert_eq!(p.setup.ca_certs.as_deref(), Some("PEM"));
}

#[test]
fn bad_shares_are_refused() {
    let mut bad = cache(CacheMode::Overlay);
    bad.name = "Has/Slash".into();
    let o = VmOptions {
        shares: vec![bad],
        ..VmOptions::default()
    };
    assert_eq!(
        plan(&o, &host(), &boot(), Path::new("/r")).unwrap_err(),
        PlanError::BadShareName("Has/Slash".into())
    );
    let o = VmOptions {
        shares: vec![cache(CacheMode::Overlay), cache(CacheMode::Virtiofs)],
        ..VmOptions::default()
    };
    assert_eq!(
        plan(&o, &host(), &boot(), Path::new("/r")).unwrap_err(),
        PlanError::DuplicateShare("cache".into())
    );
    let mut rel = source();
    rel.target = "home".into();
    let o = VmOptions {
        shares: vec![rel],
        ..VmOptions::default()
    };
    assert_eq!(
        plan(&o, &host(), &boot(), Path::new("/r")).unwrap_err(),
        PlanError::RelativeTarget("home".into())
    );
}

#[test]
fn a_scratch_disk_is_the_drive_after_the_root_image_and_the_guest_is_told_its_device() {
    let run = Path::new("/run/x");
    let opts = VmOptions {
        disk_bytes: Some(16 << 30),
        ..VmOptions::default()
    };
    let p = plan(&opts, &host(), &boot(), run).unwrap();
    let sc = p.scratch.clone().unwrap();
    assert_eq!(
        (sc.path.as_path(), sc.bytes),
        (Path::new("/run/x/scratch.img"), 16 << 30)
    );
    assert_eq!(p.qemu.drives.len(), 1);
    assert!(!p.qemu.drives[0].read_only, "the scratch disk is writable");
    assert_eq!(p.setup.scratch.as_ref().unwrap().device, "/dev/vda");

    let with_root = VmOptions {
        root_image: Some(RootImage {
            path: "/img/env.erofs".into(),
            fstype: "erofs".into(),
        }),
        ..opts
    };
    let p = plan(&with_root, &host(), &boot(), run).unwrap();
    assert_eq!(p.qemu.drives.len(), 2);
    assert!(p.qemu.drives[0].read_only && !p.qemu.drives[1].read_only);
    assert_eq!(p.setup.scratch.as_ref().unwrap().device, "/dev/vdb");
    assert!(
        argv_text(&p).contains("file=/run/x/scratch.img,id=drive1,format=raw"),
        "{}",
        argv_text(&p)
    );

    let none = plan(&VmOptions::default(), &host(), &boot(), run).unwrap();
    assert!(none.scratch.is_none() && none.setup.scratch.is_none() && none.qemu.drives.is_empty());
}
