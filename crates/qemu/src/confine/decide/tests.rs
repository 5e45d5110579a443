use super::*;

fn facts(euid: u32) -> ConfineFacts {
    ConfineFacts {
        euid,
        account: (64_012, 64_012, Some("vmbuild".into())),
        sandbox: true,
        sandbox_error: None,
        cgroups: Ok(CgroupLayout::V1 {
            memory: "/sys/fs/cgroup/memory".into(),
            pids: "/sys/fs/cgroup/pids".into(),
        }),
        kvm_gid: Some(108),
        restricted_account: Some((64_013, 64_013, None)),
    }
}

fn needs(accel: Accel, nine_p: bool) -> VmNeeds {
    VmNeeds {
        memory_mib: 1024,
        accel,
        read_search: nine_p.then(|| "read-only 9p export".to_string()),
        memfd: false,
        disk_bytes: 0,
        restrict_host: false,
    }
}

#[test]
fn root_runs_qemu_as_the_account_with_only_read_search_for_9p() {
    let p = decide(&facts(0), &needs(Accel::Tcg, true), false);
    assert_eq!(
        p.summary(),
        "uid 64012 (vmbuild), keeps only CAP_DAC_READ_SEARCH (read-only 9p export), \
         seccomp sandbox, cgroup v1 memory 2.2G pids 256, nofile 4096, core 0, files up to 64M, nproc 4096"
    );
    let c = p.confinement(vec!["/cg/cgroup.procs".into()]).unwrap();
    assert_eq!(
        c.ids,
        Some(Ids {
            uid: 64_012,
            gid: 64_012,
            groups: vec![]
        })
    );
    assert_eq!(c.keep, [Capability::CAP_DAC_READ_SEARCH]);
    assert_eq!(c.cgroup_procs, [PathBuf::from("/cg/cgroup.procs")]);
    assert!(p.notes.is_empty(), "{:?}", p.notes);
}

#[test]
fn without_a_9p_export_qemu_keeps_nothing_and_kvm_adds_its_group() {
    let p = decide(&facts(0), &needs(Accel::Kvm, false), false);
    let c = p.confinement(vec![]).unwrap();
    assert!(c.keep.is_empty());
    assert_eq!(c.ids.unwrap().groups, [108]);
    assert!(p.summary().contains("no capabilities"), "{}", p.summary());
    assert_eq!(p.cgroup.unwrap().1.memory_bytes, (1024 + 256) << 20);
}

#[test]
fn a_normal_user_keeps_its_uid_no_caps_no_cgroup_no_nproc() {
    let p = decide(&facts(1000), &needs(Accel::Tcg, true), false);
    assert_eq!(p.user, QemuUser::Caller { uid: 1000 });
    let c = p.confinement(vec![]).unwrap();
    assert_eq!(c.ids, None);
    assert!(c.keep.is_empty(), "read search is not ours to give");
    assert!(!c.rlimits.iter().any(|(r, _)| *r == Resource::Nproc));
    assert_eq!(p.notes, ["no cgroup: vmbuild is not root"]);
}

#[test]
fn what_is_missing_is_said() {
    let mut f = facts(0);
    f.sandbox = false;
    f.sandbox_error = Some("-sandbox is not supported by this QEMU binary".into());
    f.cgroups = Err("/sys/fs/cgroup/memory is not writable".into());
    f.account = (64_012, 64_012, None);
    let p = decide(&f, &needs(Accel::Tcg, false), false);
    let s = p.summary();
    assert!(
        s.contains("NO seccomp sandbox") && s.contains("no cgroup"),
        "{s}"
    );
    assert!(s.contains("useradd --system vmbuild"), "{s}");
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert!(p.notes[0].contains("not supported by this QEMU binary"));
    assert!(p.notes[1].contains("not writable"));
}

#[test]
fn the_opt_out_gives_up_nothing_and_says_so() {
    let p = decide(&facts(0), &needs(Accel::Tcg, true), true);
    assert_eq!(p.confinement(vec![]), None);
    assert!(!p.sandbox && p.cgroup.is_none());
    assert!(p.summary().starts_with("UNCONFINED"));
}

#[test]
fn files_are_capped_at_64m_or_the_guest_ram_memfd() {
    let fsize = |memfd, memory_mib| {
        let n = VmNeeds {
            memory_mib,
            memfd,
            ..needs(Accel::Tcg, false)
        };
        let p = decide(&facts(1000), &n, false);
        p.rlimits
            .iter()
            .find(|(r, _)| *r == Resource::Fsize)
            .map(|(_, v)| *v)
    };
    assert_eq!(fsize(false, 4096), Some(64 << 20));
    assert_eq!(fsize(true, 4096), Some(4096 << 20));
    assert_eq!(fsize(true, 32), Some(64 << 20));
    let with_disk = VmNeeds {
        disk_bytes: 16 << 30,
        ..needs(Accel::Tcg, false)
    };
    let p = decide(&facts(0), &with_disk, false);
    assert!(
        p.rlimits.contains(&(Resource::Fsize, 16 << 30)),
        "{:?}",
        p.rlimits
    );
}

#[test]
fn restrict_host_runs_qemu_as_its_own_uid_with_a_firewall_rule_and_needs_root() {
    let n = VmNeeds {
        restrict_host: true,
        ..needs(Accel::Tcg, false)
    };
    let p = decide(&facts(0), &n, false);
    assert_eq!(p.firewall_uid, Some(64_013));
    assert!(matches!(p.user, QemuUser::Dropped { uid: 64_013, .. }));
    assert_eq!(p.refused, None);
    assert!(
        p.summary().contains("host services unreachable"),
        "{}",
        p.summary()
    );

    let p = decide(&facts(1000), &n, false);
    assert!(p.refused.unwrap().contains("needs vmbuild to run as root"));
    let mut taken = facts(0);
    taken.restricted_account = None;
    assert!(decide(&taken, &n, false)
        .refused
        .unwrap()
        .contains("is taken"));
    assert!(
        decide(&facts(0), &n, true).refused.is_some(),
        "not with the opt-out"
    );
    assert_eq!(
        decide(&facts(0), &needs(Accel::Tcg, false), false).firewall_uid,
        None
    );
}
