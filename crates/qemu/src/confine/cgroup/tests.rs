use super::*;

const HYBRID: &str = "\
25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

const UNIFIED: &str = "\
25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

/// `(path, value, optional)` of each write of `p`, in order.
fn writes(p: &CgroupPlan) -> Vec<(PathBuf, &str, bool)> {
    p.writes
        .iter()
        .map(|w| (w.path.clone(), w.value.as_str(), w.optional))
        .collect()
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 1 << 30,
        pids: 256,
    }
}

#[test]
fn v1_controllers_win_on_a_hybrid_host() {
    let l = detect(HYBRID, |_| Some("memory pids".into()));
    assert_eq!(
        l,
        Some(CgroupLayout::V1 {
            memory: "/sys/fs/cgroup/memory".into(),
            pids: "/sys/fs/cgroup/pids".into()
        })
    );
}

#[test]
fn v2_needs_both_controllers_listed() {
    let seen = std::cell::RefCell::new(Vec::new());
    let l = detect(UNIFIED, |p| {
        seen.borrow_mut().push(p.to_path_buf());
        Some("cpuset cpu io memory hugetlb pids rdma".into())
    });
    assert_eq!(
        l,
        Some(CgroupLayout::V2 {
            root: "/sys/fs/cgroup".into()
        })
    );
    assert_eq!(*seen.borrow(), [PathBuf::from("/sys/fs/cgroup")]);
    assert_eq!(detect(UNIFIED, |_| Some("cpu io memory".into())), None);
    assert_eq!(detect(UNIFIED, |_| None), None);
    assert_eq!(detect("", |_| Some("memory pids".into())), None);
}

#[test]
fn escaped_mount_points_are_unescaped() {
    let mi = "35 30 0:31 / /sys/fs/cg\\040x/memory rw - cgroup cgroup rw,memory\n\
              36 30 0:32 / /sys/fs/cg\\040x/pids rw - cgroup cgroup rw,pids\n";
    assert_eq!(
        detect(mi, |_| None),
        Some(CgroupLayout::V1 {
            memory: "/sys/fs/cg x/memory".into(),
            pids: "/sys/fs/cg x/pids".into()
        })
    );
}

#[test]
fn v1_plan_sets_memory_and_pids_in_two_hierarchies() {
    let l = detect(HYBRID, |_| None).unwrap();
    let p = plan(&l, "vm-1", limits());
    let m = Path::new("/sys/fs/cgroup/memory/vmbuild/vm-1");
    let q = Path::new("/sys/fs/cgroup/pids/vmbuild/vm-1");
    assert_eq!(p.version, "v1");
    assert_eq!(
        p.mkdirs,
        [
            Path::new("/sys/fs/cgroup/memory/vmbuild"),
            m,
            Path::new("/sys/fs/cgroup/pids/vmbuild"),
            q
        ]
    );
    let writes = writes(&p);
    assert_eq!(
        writes,
        [
            (m.join("memory.limit_in_bytes"), "1073741824", false),
            (m.join("memory.memsw.limit_in_bytes"), "1073741824", true),
            (q.join("pids.max"), "256", false),
        ]
    );
    assert_eq!(p.procs, [m.join("cgroup.procs"), q.join("cgroup.procs")]);
    assert_eq!(p.remove, [m, q]);
}

#[test]
fn v2_plan_enables_controllers_down_to_the_vm() {
    let l = CgroupLayout::V2 {
        root: "/sys/fs/cgroup".into(),
    };
    let p = plan(&l, "vm-1", limits());
    let parent = Path::new("/sys/fs/cgroup/vmbuild");
    let vm = parent.join("vm-1");
    assert_eq!(p.version, "v2");
    assert_eq!(p.mkdirs, [parent.to_path_buf(), vm.clone()]);
    let writes = writes(&p);
    assert_eq!(
        writes,
        [
            (
                PathBuf::from("/sys/fs/cgroup/cgroup.subtree_control"),
                "+memory +pids",
                false
            ),
            (
                parent.join("cgroup.subtree_control"),
                "+memory +pids",
                false
            ),
            (vm.join("memory.max"), "1073741824", false),
            (vm.join("memory.swap.max"), "0", true),
            (vm.join("pids.max"), "256", false),
        ]
    );
    assert_eq!(p.procs, [vm.join("cgroup.procs")]);
    assert_eq!(p.remove, [vm]);
}

#[test]
fn oom_kill_count_reads_both_formats() {
    assert_eq!(
        live::oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
        2
    );
    assert_eq!(
        live::oom_kill_count("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n"),
        1
    );
    assert_eq!(live::oom_kill_count("oom 0\n"), 0);
}

#[test]
fn a_real_v1_or_v2_cgroup_is_made_limited_and_removed() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let layout = detect(&mountinfo, |p| {
        std::fs::read_to_string(p.join("cgroup.controllers")).ok()
    })
    .expect("a cgroup hierarchy with memory and pids (the test host has one)");
    let name = format!("test-{}", std::process::id());
    let p = plan(&layout, &name, limits());
    let remove = p.remove.clone();
    let cg = live::Cgroup::create(p).expect("create (as root)");
    let pids_max = remove
        .iter()
        .map(|d| d.join("pids.max"))
        .find(|f| f.exists())
        .expect("pids.max");
    assert_eq!(std::fs::read_to_string(pids_max).unwrap().trim(), "256");
    assert!(!cg.oom_killed());
    drop(cg);
    for d in remove {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn only_old_empty_cgroups_are_swept() {
    let d = tempfile::tempdir().unwrap();
    let old_empty = d.path().join("vmbuild-old");
    let old_busy = d.path().join("vmbuild-busy");
    let new_empty = d.path().join("vmbuild-new");
    for p in [&old_empty, &old_busy, &new_empty] {
        std::fs::create_dir(p).unwrap();
    }
    // A directory with an entry stands in for a cgroup with a task (EBUSY
    // there, ENOTEMPTY here: rmdir refuses either way).
    std::fs::write(old_busy.join("task"), "").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for p in [&old_empty, &old_busy] {
        std::fs::File::open(p)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    live::sweep_stale(d.path(), live::STALE_AFTER);
    assert!(!old_empty.exists());
    assert!(old_busy.exists() && new_empty.exists());
}
