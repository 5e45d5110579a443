//! QEMU's confinement, read from the host while a VM runs
//! (docs/security.md): an unprivileged uid, no capability beyond
//! CAP_DAC_READ_SEARCH, no new privileges, QEMU's seccomp filter, its own
//! cgroup with the memory and pids limits — and still reading a cache of
//! root-only files in the default (9p) mode. The cgroup is gone afterwards.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{processes_mentioning, wait_with_limit, Vmb};

fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{key} not in {status}"))
}

/// The v1 controller path of `pid`'s cgroup, e.g. `/vmbuild/vmbuild-AbC`.
fn cgroup_of(pid: u32, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            ctl.split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {text}"))
}

#[test]
fn qemu_runs_unprivileged_sandboxed_and_limited_and_reads_root_only_cache_files() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the e2e tests as root"
    );
    let v = Vmb::new();
    let outside = tempfile::tempdir().unwrap();
    let cache = outside.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("secret"), "root only\n").unwrap();
    std::fs::set_permissions(cache.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cache_arg = cache.to_string_lossy().into_owned();
    let mut child = v.spawn(&[
        "run",
        "--memory",
        "512",
        "--cache-dir",
        &cache_arg,
        "--",
        "sh",
        "-c",
        "cat /var/cache/vmbuild/secret; echo ready; sleep 3",
    ]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("ready") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "vmbuild ended early: {seen}"
        );
        seen.push_str(&line);
    }
    assert_eq!(seen, "root only\nready\n");

    let qemu: Vec<u32> = processes_mentioning(v.tmp.path())
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("qemu-system"))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(qemu.len(), 1, "one QEMU for this run");
    let pid = qemu[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = field(&status, "Uid:");
    assert!(!uid.starts_with('0'), "QEMU runs as root: {uid}");
    let eff = u64::from_str_radix(&field(&status, "CapEff:"), 16).unwrap();
    assert_eq!(
        eff & !(1 << 2),
        0,
        "capabilities beyond CAP_DAC_READ_SEARCH: {eff:x}"
    );
    assert_eq!(
        u64::from_str_radix(&field(&status, "CapBnd:"), 16).unwrap() & !(1 << 2),
        0
    );
    assert_eq!(field(&status, "NoNewPrivs:"), "1");
    assert_eq!(field(&status, "Seccomp:"), "2", "QEMU's seccomp filter");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(nofile.split_whitespace().any(|w| w == "4096"), "{nofile}");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");

    let mem_dir = PathBuf::from("/sys/fs/cgroup/memory")
        .join(cgroup_of(pid, "memory").trim_start_matches('/'));
    let pids_dir =
        PathBuf::from("/sys/fs/cgroup/pids").join(cgroup_of(pid, "pids").trim_start_matches('/'));
    assert!(
        mem_dir.starts_with("/sys/fs/cgroup/memory/vmbuild/"),
        "{}",
        mem_dir.display()
    );
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    // 512 MiB guest + 256 MiB QEMU + 1 GiB TCG translation cache.
    assert_eq!(
        read(&mem_dir.join("memory.limit_in_bytes")),
        ((512u64 + 256 + 1024) << 20).to_string()
    );
    assert_eq!(read(&pids_dir.join("pids.max")), "256");
    assert!(read(&pids_dir.join("cgroup.procs"))
        .lines()
        .any(|l| l == pid.to_string()));

    let st = wait_with_limit(&mut child, Duration::from_secs(60));
    assert!(st.success(), "{st:?}");
    v.assert_clean();
    assert!(
        !mem_dir.exists() && !pids_dir.exists(),
        "the VM's cgroup is removed"
    );
}
