//! QEMU's confinement, read from the host while a VM runs
//! (docs/security.md): an unprivileged uid, no capability beyond
//! CAP_DAC_READ_SEARCH, no new privileges, QEMU's seccomp filter, its own
//! cgroup with the memory and pids limits — and still reading a cache of
//! root-only files in the default (9p) mode. The cgroup is gone afterwards.
//! virtiofsd: seccomp-confined, in its VM's cgroup.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{processes_mentioning, read_until, wait_with_limit, Vmb};

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

/// The pid of the one QEMU running for `v`.
fn qemu_pid(v: &Vmb) -> u32 {
    let qemu: Vec<u32> = processes_mentioning(v.tmp.path())
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("qemu-system"))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(qemu.len(), 1, "one QEMU for this run: {qemu:?}");
    qemu[0]
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
    let seen = read_until(&mut out, "ready");
    assert_eq!(seen, "root only\nready\n");

    let pid = qemu_pid(&v);
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

/// What the host sees of one virtiofsd process: `Seccomp:`,
/// `NoNewPrivs:`, its open-file limit, and its memory and pids cgroups.
type DaemonState = (String, String, String, (String, String));

/// The [`DaemonState`]s of the live processes whose command line mentions
/// `needle` and `virtiofsd`.
fn virtiofsd_states(needle: &Path) -> Vec<DaemonState> {
    processes_mentioning(needle)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("virtiofsd"))
        .filter_map(|(pid, _)| {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
            let nofile = limits.lines().find(|l| l.starts_with("Max open files"))?;
            Some((
                field(&st, "Seccomp:"),
                field(&st, "NoNewPrivs:"),
                nofile.split_whitespace().nth(3)?.to_string(),
                (cgroup_of(pid, "memory"), cgroup_of(pid, "pids")),
            ))
        })
        .collect()
}

/// Boots with `cache` in virtiofs mode (`env` picks the flavour), runs
/// `script` (which prints `ready` and then sleeps), and returns the
/// command's output and the virtiofsd states seen while it slept, after
/// checking that every virtiofsd process sits in its QEMU's cgroups.
fn virtiofs_run(cache: &Path, env: &[(&str, &Path)], script: &str) -> (String, Vec<DaemonState>) {
    let v = Vmb::new();
    let cache_arg = cache.to_string_lossy().into_owned();
    let mut cmd = v.cmd();
    cmd.args([
        "run",
        "--cache-mode",
        "virtiofs",
        "--cache-dir",
        &cache_arg,
        "--",
        "sh",
        "-c",
        script,
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, val) in env {
        cmd.env(k, val);
    }
    let mut child = cmd.spawn().expect("spawn vmbuild");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let seen = read_until(&mut out, "ready");
    let states = virtiofsd_states(cache);
    let qemu = qemu_pid(&v);
    let vm = (cgroup_of(qemu, "memory"), cgroup_of(qemu, "pids"));
    assert!(vm.0.starts_with("/vmbuild/"), "{vm:?}");
    assert!(
        !states.is_empty() && states.iter().all(|s| s.3 == vm),
        "virtiofsd outside its VM's cgroups {vm:?}: {states:?}"
    );
    let st = wait_with_limit(&mut child, Duration::from_secs(300));
    assert!(st.success(), "{st:?}: {seen}");
    v.assert_clean();
    (seen, states)
}

#[test]
fn virtiofsd_is_seccomp_confined_in_its_vms_cgroup_and_the_rust_one_serves_200000_files() {
    // The C flavour (QEMU's, the default): its sandboxed worker runs under
    // its seccomp filter with no new privileges.
    let small = tempfile::tempdir().unwrap();
    std::fs::write(small.path().join("f"), "x").unwrap();
    let (out, states) = virtiofs_run(
        small.path(),
        &[],
        "cat /var/cache/vmbuild/f; echo; echo ready; sleep 2",
    );
    assert_eq!(out, "x\nready\n");
    assert!(
        states
            .iter()
            .any(|(seccomp, nnp, _, _)| seccomp == "2" && nnp == "1"),
        "C virtiofsd: {states:?}"
    );

    let Some(rust) = std::env::var_os("VMBUILD_TEST_RUST_VIRTIOFSD").map(PathBuf::from) else {
        panic!("VMBUILD_TEST_RUST_VIRTIOFSD unset (scripts/test.sh sets it)");
    };
    // 200 directories of 1,000 empty files: a node_modules-sized cache.
    let big = tempfile::tempdir().unwrap();
    for d in 0..200 {
        let dir = big.path().join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 1..=1000 {
            std::fs::File::create(dir.join(f.to_string())).unwrap();
        }
    }
    let script = "find /var/cache/vmbuild -type f | wc -l; cat /var/cache/vmbuild/d199/1000 && echo read-last; echo ready; sleep 2";
    let dir = rust.parent().unwrap();
    let (out, states) = virtiofs_run(big.path(), &[("QEMU_VIRTIOFS_PATH", dir)], script);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["200000", "read-last", "ready"]
    );
    assert!(
        states.iter().any(|(seccomp, _, _, _)| seccomp == "2"),
        "Rust virtiofsd (--seccomp=kill): {states:?}"
    );
    // --rlimit-nofile: 1,000,000 where vmbuild may raise the hard limit,
    // else the hard limit (this host's root lacks CAP_SYS_RESOURCE).
    let hard = hard_nofile();
    let want = 1_000_000u64.min(hard).to_string();
    let can_raise = 1_000_000u64.to_string();
    assert!(
        states
            .iter()
            .all(|(_, _, n, _)| *n == want || *n == can_raise),
        "{states:?} (hard limit {hard})"
    );
}

/// This process's hard open-file limit, from /proc.
fn hard_nofile() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

#[test]
fn a_fork_bomb_in_the_guest_stays_in_the_guest_and_the_run_ends() {
    let v = Vmb::new();
    let mut child = v.spawn(&[
        "run",
        "--timeout",
        "15s",
        "--",
        "sh",
        "-c",
        "echo bombing; b() { b | b & }; b; sleep 100",
    ]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "bombing\n");
    std::thread::sleep(Duration::from_secs(5));
    // The host still starts processes promptly, and QEMU's threads stay
    // under its cgroup's pids limit (guest processes are not host ones).
    let t = std::time::Instant::now();
    assert!(std::process::Command::new("/bin/true")
        .status()
        .unwrap()
        .success());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "host slow: {:?}",
        t.elapsed()
    );
    let pids_dir = PathBuf::from("/sys/fs/cgroup/pids")
        .join(cgroup_of(qemu_pid(&v), "pids").trim_start_matches('/'));
    let current: u32 = std::fs::read_to_string(pids_dir.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 256, "{current}");
    let st = wait_with_limit(&mut child, Duration::from_secs(60));
    // Stopped at --timeout (124), or the guest died of it (123).
    assert!(matches!(st.code(), Some(124 | 123)), "{st:?}");
    v.assert_clean();
}

#[test]
fn restrict_host_rejects_the_hosts_loopback_that_plain_user_networking_reaches() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = std::io::Write::write_all(&mut s, b"HTTP/1.0 200 OK\r\n\r\nhost-service\n");
        }
    });
    let url = format!("http://10.0.2.2:{port}/");
    let v = Vmb::new();
    let script =
        format!("wget -q -O- {url}; echo rc=$?; nslookup deb.debian.org >/dev/null && echo dns-ok");
    let o = v.run(&[
        "run",
        "--network",
        "user,restrict-host",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains("rc=1") && !out.contains("host-service"),
        "{out}"
    );
    assert!(
        err.contains("Connection refused"),
        "rejected at once: {err}"
    );
    assert!(out.contains("dns-ok"), "DNS still works: {out}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the host service saw nothing"
    );

    let o = v.run(&["run", "--network", "user", "--", "sh", "-c", &script]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("host-service"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// QEMU killed by its cgroup's memory limit is reported as that, and the
/// run ends cleanly. The limit (guest memory plus QEMU's overhead) cannot
/// be reached by a guest alone, so once the guest is up the test lowers it
/// to what QEMU uses now plus 64 MiB; the guest then touches 400 MiB.
#[test]
fn qemu_killed_by_its_cgroups_memory_limit_is_reported() {
    let v = Vmb::new();
    let mut child = v.spawn(&[
        "run",
        "--memory",
        "768",
        "--",
        "sh",
        "-c",
        "echo ready; sleep 2; dd if=/dev/zero of=/dev/null bs=400M count=1; echo survived",
    ]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(read_until(&mut out, "ready"), "ready\n");
    let mem_dir = PathBuf::from("/sys/fs/cgroup/memory")
        .join(cgroup_of(qemu_pid(&v), "memory").trim_start_matches('/'));
    let usage: u64 = std::fs::read_to_string(mem_dir.join("memory.usage_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let lower = (usage + (64 << 20)).to_string();
    std::fs::write(mem_dir.join("memory.limit_in_bytes"), &lower).unwrap();
    // With swap accounting, memory+swap too (never below memory alone).
    let _ = std::fs::write(mem_dir.join("memory.memsw.limit_in_bytes"), &lower);
    let st = wait_with_limit(&mut child, Duration::from_secs(120));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!rest.contains("survived"), "{rest}");
    assert!(!st.success(), "{st:?}");
    assert!(
        err.contains("QEMU was killed by its cgroup's memory limit"),
        "{st:?}: {err}"
    );
    v.assert_clean();
    assert!(!mem_dir.exists(), "the VM's cgroup is removed");
}
