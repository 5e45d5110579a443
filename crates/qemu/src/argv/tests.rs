use super::*;

fn cfg() -> VmConfig {
    VmConfig {
        qemu: "/usr/bin/qemu-system-x86_64".into(),
        host_os: HostOs::Linux,
        arch: Arch::X86_64,
        accel: Accel::Tcg,
        cpus: 1,
        memory_mib: 512,
        kernel: "/k/vmlinux".into(),
        initrd: "/k/initrd.cpio".into(),
        kernel_cmdline_extra: vec![],
        tsc_khz: None,
        console_log: "/run/vm/console.log".into(),
        control_socket: "/run/vm/ctl.sock".into(),
        qmp_socket: "/run/vm/qmp.sock".into(),
        shares: vec![],
        drives: vec![],
        network: Network::None,
        version: QemuVersion::new(7, 2, 22),
        sandbox: false,
    }
}

fn strings(argv: &[OsString]) -> Vec<String> {
    argv.iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
}

/// All values that follow `flag` in `argv`.
fn values(argv: &[String], flag: &str) -> Vec<String> {
    argv.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

fn one(argv: &[String], flag: &str) -> String {
    let v = values(argv, flag);
    assert_eq!(v.len(), 1, "{flag} should appear once in {argv:?}");
    v[0].clone()
}

#[test]
fn x86_tcg_full_command_line() {
    let argv = strings(&build_argv(&cfg()));
    let expected = [
        "-M",
        "microvm,acpi=on",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "512M",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-global",
        "virtio-mmio.force-legacy=false",
        "-kernel",
        "/k/vmlinux",
        "-initrd",
        "/k/initrd.cpio",
        "-append",
        "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests",
        "-chardev",
        "file,id=con,path=/run/vm/console.log",
        "-serial",
        "chardev:con",
        "-chardev",
        "socket,id=ctl,path=/run/vm/ctl.sock",
        "-device",
        "virtio-serial-device,id=vser",
        "-device",
        "virtserialport,bus=vser.0,chardev=ctl,name=org.vmbuild.ctl",
        "-chardev",
        "socket,id=qmp,path=/run/vm/qmp.sock",
        "-mon",
        "chardev=qmp,mode=control",
    ];
    assert_eq!(argv, expected);
    assert!(
        !argv.iter().any(|a| a.contains("/usr/bin/qemu")),
        "argv[0] must not be included"
    );
}

#[test]
fn control_port_uses_the_protocol_name() {
    let argv = strings(&build_argv(&cfg()));
    let port = format!("name={}", vmbuild_proto::CONTROL_PORT_NAME);
    assert!(values(&argv, "-device").iter().any(|d| d.ends_with(&port)));
}

#[test]
fn kvm_and_hvf_use_the_host_cpu() {
    for accel in [Accel::Kvm, Accel::Hvf] {
        let argv = strings(&build_argv(&VmConfig {
            accel,
            cpus: 4,
            ..cfg()
        }));
        assert_eq!(one(&argv, "-accel"), accel.name());
        assert_eq!(one(&argv, "-cpu"), "host");
        assert_eq!(one(&argv, "-smp"), "4");
    }
}

#[test]
fn aarch64_uses_virt_and_pl011_console_and_no_tsc() {
    let c = VmConfig {
        arch: Arch::Aarch64,
        accel: Accel::Hvf,
        host_os: HostOs::MacOs,
        tsc_khz: Some(2_400_000),
        ..cfg()
    };
    let argv = strings(&build_argv(&c));
    assert_eq!(one(&argv, "-M"), "virt,gic-version=max");
    assert_eq!(
        one(&argv, "-append"),
        "console=ttyAMA0 quiet panic=-1 reboot=t cryptomgr.notests"
    );
    assert_eq!(one(&argv, "-serial"), "chardev:con");
}

#[test]
fn cmdline_has_tsc_then_extras_in_order() {
    let c = VmConfig {
        tsc_khz: Some(2_596_126),
        kernel_cmdline_extra: vec!["rdinit=/init".into(), "vmbuild.debug=1".into()],
        ..cfg()
    };
    assert_eq!(
        kernel_cmdline(&c),
        "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests tsc_early_khz=2596126 rdinit=/init vmbuild.debug=1"
    );
    assert_eq!(
        one(&strings(&build_argv(&c)), "-append"),
        kernel_cmdline(&c)
    );
}

#[test]
fn tsc_is_only_passed_under_tcg() {
    for accel in [Accel::Kvm, Accel::Hvf] {
        let c = VmConfig {
            accel,
            tsc_khz: Some(2_596_126),
            ..cfg()
        };
        assert_eq!(
            kernel_cmdline(&c),
            "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests",
            "{accel}"
        );
    }
}

#[test]
fn ninep_read_only_and_read_write() {
    let c = VmConfig {
        shares: vec![
            Share {
                tag: "cache".into(),
                host_path: "/var/cache/vmbuild".into(),
                kind: ShareKind::NineP { read_only: true },
            },
            Share {
                tag: "src".into(),
                host_path: "/home/me/src".into(),
                kind: ShareKind::NineP { read_only: false },
            },
        ],
        ..cfg()
    };
    let argv = strings(&build_argv(&c));
    assert_eq!(
        values(&argv, "-fsdev"),
        [
            "local,id=fs0,path=/var/cache/vmbuild,security_model=none,multidevs=remap,readonly=on",
            "local,id=fs1,path=/home/me/src,security_model=none,multidevs=remap",
        ]
    );
    let devices = values(&argv, "-device");
    assert!(devices.contains(&"virtio-9p-device,fsdev=fs0,mount_tag=cache".to_string()));
    assert!(devices.contains(&"virtio-9p-device,fsdev=fs1,mount_tag=src".to_string()));
    // 9p alone needs no shared memory backend.
    assert!(values(&argv, "-object").is_empty());
    assert_eq!(one(&argv, "-M"), "microvm,acpi=on");
}

fn virtiofs_cfg(host_os: HostOs) -> VmConfig {
    VmConfig {
        host_os,
        memory_mib: 2048,
        shares: vec![Share {
            tag: "cache".into(),
            host_path: "/var/cache/vmbuild".into(),
            kind: ShareKind::Virtiofs {
                socket: "/run/vm/vfs.sock".into(),
            },
        }],
        ..cfg()
    }
}

#[test]
fn virtiofs_on_linux_uses_memfd_shared_memory() {
    let argv = strings(&build_argv(&virtiofs_cfg(HostOs::Linux)));
    assert_eq!(one(&argv, "-M"), "microvm,acpi=on,memory-backend=mem");
    assert_eq!(
        one(&argv, "-object"),
        "memory-backend-memfd,id=mem,size=2048M,share=on"
    );
    assert_eq!(one(&argv, "-m"), "2048M");
    assert!(values(&argv, "-chardev").contains(&"socket,id=vfs0,path=/run/vm/vfs.sock".to_string()));
    assert!(values(&argv, "-device")
        .contains(&"vhost-user-fs-device,chardev=vfs0,tag=cache".to_string()));
    assert_eq!(one(&argv, "-global"), "virtio-mmio.force-legacy=false");
}

#[test]
fn virtiofs_on_macos_uses_posix_shm() {
    let argv = strings(&build_argv(&virtiofs_cfg(HostOs::MacOs)));
    assert_eq!(
        one(&argv, "-object"),
        "memory-backend-shm,id=mem,size=2048M,share=on"
    );
}

#[test]
fn virtiofs_on_aarch64_adds_backend_to_virt() {
    let c = VmConfig {
        arch: Arch::Aarch64,
        ..virtiofs_cfg(HostOs::MacOs)
    };
    assert_eq!(
        one(&strings(&build_argv(&c)), "-M"),
        "virt,gic-version=max,memory-backend=mem"
    );
}

#[test]
fn commas_in_paths_and_tags_are_doubled() {
    let c = VmConfig {
        console_log: "/tmp/a,b/console.log".into(),
        control_socket: "/tmp/a,b/ctl.sock".into(),
        qmp_socket: "/tmp/a,b/qmp.sock".into(),
        shares: vec![
            Share {
                tag: "t,1".into(),
                host_path: "/data/x,y".into(),
                kind: ShareKind::NineP { read_only: true },
            },
            Share {
                tag: "t,2".into(),
                host_path: "/data/z".into(),
                kind: ShareKind::Virtiofs {
                    socket: "/tmp/a,b/vfs.sock".into(),
                },
            },
        ],
        ..cfg()
    };
    let argv = strings(&build_argv(&c));
    let chardevs = values(&argv, "-chardev");
    assert_eq!(
        chardevs,
        [
            "file,id=con,path=/tmp/a,,b/console.log",
            "socket,id=ctl,path=/tmp/a,,b/ctl.sock",
            "socket,id=qmp,path=/tmp/a,,b/qmp.sock",
            "socket,id=vfs1,path=/tmp/a,,b/vfs.sock",
        ]
    );
    assert_eq!(
        one(&argv, "-fsdev"),
        "local,id=fs0,path=/data/x,,y,security_model=none,multidevs=remap,readonly=on"
    );
    let devices = values(&argv, "-device");
    assert!(devices.contains(&"virtio-9p-device,fsdev=fs0,mount_tag=t,,1".to_string()));
    assert!(devices.contains(&"vhost-user-fs-device,chardev=vfs1,tag=t,,2".to_string()));
}

#[test]
fn drives_are_virtio_blk_in_order_with_explicit_format() {
    let c = VmConfig {
        drives: vec![
            Drive {
                path: "/img/env.erofs".into(),
                read_only: true,
                format: DriveFormat::Raw,
            },
            Drive {
                path: "/img/scratch,1.ext4".into(),
                read_only: false,
                format: DriveFormat::Raw,
            },
        ],
        ..cfg()
    };
    let argv = strings(&build_argv(&c));
    assert_eq!(
        values(&argv, "-drive"),
        [
            "if=none,file=/img/env.erofs,id=drive0,format=raw,readonly=on",
            "if=none,file=/img/scratch,,1.ext4,id=drive1,format=raw",
        ]
    );
    let devices = values(&argv, "-device");
    let blk: Vec<&String> = devices
        .iter()
        .filter(|d| d.starts_with("virtio-blk"))
        .collect();
    assert_eq!(
        blk,
        [
            "virtio-blk-device,drive=drive0",
            "virtio-blk-device,drive=drive1"
        ]
    );
}

#[test]
fn relative_drive_paths_cannot_be_read_as_a_protocol() {
    let c = VmConfig {
        drives: vec![Drive {
            path: "nbd:evil.erofs".into(),
            read_only: true,
            format: DriveFormat::Raw,
        }],
        ..cfg()
    };
    assert_eq!(
        one(&strings(&build_argv(&c)), "-drive"),
        "if=none,file=./nbd:evil.erofs,id=drive0,format=raw,readonly=on"
    );
}

#[test]
fn no_network_means_no_nic_and_user_means_slirp_on_virtio_net() {
    let none = strings(&build_argv(&cfg()));
    assert!(values(&none, "-netdev").is_empty());
    assert!(!none.iter().any(|a| a.contains("virtio-net")), "{none:?}");
    // -nodefaults: QEMU adds no NIC of its own either.
    assert!(none.contains(&"-nodefaults".to_string()));

    let user = strings(&build_argv(&VmConfig {
        network: Network::User,
        ..cfg()
    }));
    assert_eq!(one(&user, "-netdev"), "user,id=net0");
    assert!(values(&user, "-device").contains(&"virtio-net-device,netdev=net0".to_string()));
}

#[test]
fn kernel_and_initrd_paths_are_passed_verbatim() {
    // -kernel/-initrd/-append are not option lists: commas must NOT be doubled.
    let c = VmConfig {
        kernel: "/k,1/vmlinux".into(),
        initrd: "/k,1/i.cpio".into(),
        ..cfg()
    };
    let argv = strings(&build_argv(&c));
    assert_eq!(one(&argv, "-kernel"), "/k,1/vmlinux");
    assert_eq!(one(&argv, "-initrd"), "/k,1/i.cpio");
}

#[cfg(unix)]
#[test]
fn escaping_keeps_non_utf8_bytes() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let raw = OsStr::from_bytes(b"/tmp/\xff,x");
    assert_eq!(escape_opt_value(raw).into_vec(), b"/tmp/\xff,,x".to_vec());
}

#[test]
fn accel_display_and_parse() {
    for a in Accel::ALL {
        assert_eq!(a.to_string().parse::<Accel>().ok(), Some(a));
    }
    assert_eq!(" KVM ".parse::<Accel>().ok(), Some(Accel::Kvm));
    let err = "xen"
        .parse::<Accel>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("xen"), "{err}");
    assert!(err.contains("kvm, hvf, tcg"), "{err}");
}

#[test]
fn arch_names() {
    assert_eq!(Arch::X86_64.to_string(), "x86_64");
    assert_eq!(Arch::Aarch64.qemu_name(), "aarch64");
}

#[test]
fn the_sandbox_is_asked_for_on_7_2_and_10_x_and_qemu_never_drops_privileges_itself() {
    for version in [
        QemuVersion::new(7, 2, 22),
        QemuVersion::new(10, 0, 2),
        QemuVersion::new(10, 1, 0),
    ] {
        let argv = strings(&build_argv(&VmConfig {
            version,
            sandbox: true,
            ..cfg()
        }));
        assert_eq!(
            one(&argv, "-sandbox"),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "{version}"
        );
        // -runas/-chroot (gone in 10.0/9.0) and -run-with user= (their
        // replacement) would make QEMU call setuid under its own filter.
        for flag in ["-runas", "-chroot", "-run-with"] {
            assert!(values(&argv, flag).is_empty(), "{flag} in {argv:?}");
        }
    }
}

#[test]
fn no_sandbox_when_not_asked_or_the_release_predates_its_options() {
    for (version, sandbox) in [
        (QemuVersion::new(7, 2, 22), false),
        (QemuVersion::new(2, 11, 0), true),
    ] {
        let argv = strings(&build_argv(&VmConfig {
            version,
            sandbox,
            ..cfg()
        }));
        assert!(values(&argv, "-sandbox").is_empty(), "{version}: {argv:?}");
    }
    let argv = strings(&build_argv(&VmConfig {
        version: QemuVersion::new(2, 12, 0),
        sandbox: true,
        ..cfg()
    }));
    assert_eq!(values(&argv, "-sandbox").len(), 1);
}

#[test]
fn incoming_reads_the_stream_from_a_descriptor() {
    let a = incoming_args(INCOMING_FD);
    assert_eq!(
        strings(&a),
        vec!["-incoming".to_string(), "fd:3".to_string()]
    );
}
