//! `vmbuild doctor`: what was found on this host, and how to fix what is not.

use vmbuild_qemu::{Arch, HostOs};

struct Report {
    missing: usize,
}

impl Report {
    fn ok(&self, what: &str, detail: impl std::fmt::Display) {
        println!("  ok       {what:<11} {detail}");
    }
    fn info(&self, what: &str, detail: impl std::fmt::Display) {
        println!("  info     {what:<11} {detail}");
    }
    fn missing(&mut self, what: &str, detail: impl std::fmt::Display, fix: &str) {
        self.missing += 1;
        println!(
            "  MISSING  {what:<11} {detail}\n           {:<11} fix: {fix}",
            ""
        );
    }
}

/// Prints the report; exit code 0 when everything `vmbuild run` needs is
/// there, 1 otherwise.
pub fn doctor() -> i32 {
    let mut r = Report { missing: 0 };
    let facts = vmbuild_qemu::probe_host();
    println!("vmbuild doctor");
    let (accel, why) = vmbuild_qemu::choose_accel(&facts);
    match vmbuild_qemu::find_qemu(facts.arch, None) {
        Ok(q) => {
            let v =
                vmbuild_qemu::qemu_version(&q).unwrap_or_else(|e| format!("version unknown: {e}"));
            r.ok("qemu", format!("{} ({v})", q.display()));
            doctor_confinement(&r, &q, accel);
        }
        Err(e) => r.missing("qemu", e, &vmbuild_qemu::install_hint(facts.os, facts.arch)),
    }
    r.ok("accel", format!("{accel} — {why}"));
    match facts.tsc_khz {
        Some(k) => r.info(
            "tsc",
            format!("{k} kHz (passed as tsc_early_khz under TCG)"),
        ),
        None => r.info("tsc", "unknown"),
    }
    doctor_kernel(&mut r);
    match vmbuild_runner::vm::assets::locate_init() {
        Ok(init) => r.ok("guest init", init.describe()),
        Err(e) => r.missing("guest init", e, "unset VMBUILD_INIT"),
    }
    match vmbuild_cache::virtiofsd::find_virtiofsd_on_host() {
        Ok(p) => {
            r.ok(
                "virtiofsd",
                format!("{} (needed only for --cache-mode virtiofs)", p.display()),
            );
            let n = vmbuild_qemu::virtiofsd::nofile_limit();
            r.info(
                "virtiofsd",
                format!("namespace sandbox, seccomp (kill), --rlimit-nofile {n}{}", if n < 1_000_000 {
                    " (vmbuild cannot raise the hard limit: no CAP_SYS_RESOURCE; QEMU's C virtiofsd then serves at most about that many files, the Rust one more)"
                } else { "" }),
            );
        }
        Err(e) => r.info(
            "virtiofsd",
            format!("not found (needed only for --cache-mode virtiofs): {e}"),
        ),
    }
    match crate::runner_setup::snapshot_store(false) {
        Some(dir) => {
            let saved = vmbuild_runner::vm::snapshot::Snapshots::open(&dir)
                .map(|s| s.keys().len())
                .unwrap_or(0);
            r.info(
                "warm start",
                format!(
                    "{saved} saved guest(s) in {} (vmbuild snapshot ls; --cold to always boot)",
                    dir.display()
                ),
            )
        }
        None => r.info(
            "warm start",
            "off: no cache root (set HOME or XDG_CACHE_HOME)",
        ),
    }
    match which::which("bwrap") {
        Ok(p) => r.ok("bubblewrap", p.display()),
        Err(_) => r.info(
            "bubblewrap",
            "not found (needed only for --runner bubblewrap): apt-get install bubblewrap",
        ),
    }
    doctor_docker(&r);
    match which::which("mkfs.ext4") {
        Ok(p) => r.ok("mkfs.ext4", format!("{} (for --disk scratch disks)", p.display())),
        Err(_) => r.info(
            "mkfs.ext4",
            "not found (needed for --disk, on by default for build): apt-get install e2fsprogs, or pass --disk 0",
        ),
    }
    for (tool, pkg) in [("mmdebstrap", "mmdebstrap"), ("mkfs.erofs", "erofs-utils")] {
        match which::which(tool) {
            Ok(p) => r.ok(tool, format!("{} (for environment images)", p.display())),
            Err(_) => r.info(
                tool,
                format!("not found (needed only for environment.contents.packages): apt-get install {pkg}"),
            ),
        }
    }
    if facts.os == HostOs::MacOs && facts.arch == Arch::Aarch64 {
        r.info(
            "note",
            "Apple Silicon: pass an arm64 kernel with --kernel (the pinned kernel is amd64)",
        );
    }
    if r.missing == 0 {
        println!("everything `vmbuild run` needs is here");
        0
    } else {
        println!("{} thing(s) missing; see the fix lines above", r.missing);
        1
    }
}

/// The Docker Engine of `--runner docker`: where it answers, its version,
/// the API version vmbuild negotiated, storage driver and data root; or
/// why it is not usable (info only: the runner is optional).
fn doctor_docker(r: &Report) {
    let info = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let e = vmbuild_runner::docker::Engine::connect().await?;
            e.info().await
        })
    });
    match info {
        Ok(i) => r.ok(
            "docker",
            format!(
                "engine {} at {} (API {}, storage driver {}, data root {})",
                i.version, i.address, i.api_version, i.storage_driver, i.data_root
            ),
        ),
        Err(e) => r.info(
            "docker",
            format!("not usable (needed only for --runner docker): {e}"),
        ),
    }
}

/// What QEMU runs with for a default VM (1024 MiB) with a `--cache-dir`
/// (a read-only 9p export), and what is not in effect (docs/security.md).
fn doctor_confinement(r: &Report, qemu: &std::path::Path, accel: vmbuild_qemu::Accel) {
    use vmbuild_qemu::confine::{self, probe};
    let found = match probe::probe(qemu, probe::default_cache_dir().as_deref()) {
        Ok(p) => p,
        Err(e) => return r.info("confinement", format!("QEMU could not be probed: {e}")),
    };
    let facts = confine::facts::gather(&found);
    let needs = confine::VmNeeds {
        memory_mib: 1024,
        accel,
        read_search: Some("read-only 9p export of --cache-dir and the build source".into()),
        memfd: false,
        // `--disk`'s default: QEMU writes the scratch disk, so its file
        // size limit is that large.
        disk_bytes: 16 << 30,
        restrict_host: false,
    };
    let plan = confine::decide(&facts, &needs, false);
    r.ok("confinement", format!("qemu: {}", plan.summary()));
    for note in &plan.notes {
        r.info("confinement", note);
    }
    if facts.euid == 0 && facts.account.2.as_deref() != Some(confine::user::USER_NAME) {
        r.info(
            "confinement",
            "no `vmbuild` account: QEMU runs as an unused uid; `useradd --system vmbuild` names it",
        );
    }
}

fn doctor_kernel(r: &mut Report) {
    let pin = match vmbuild_image::kernel_pin() {
        Ok(p) => p,
        Err(e) => {
            return r.missing(
                "kernel",
                e,
                "reinstall vmbuild (its kernel pin is unreadable)",
            )
        }
    };
    if let Some(k) = std::env::var_os("VMBUILD_KERNEL") {
        return r.info(
            "kernel",
            format!("VMBUILD_KERNEL={} (overrides the pin)", k.to_string_lossy()),
        );
    }
    let cached = vmbuild_image::cache_root()
        .and_then(|root| vmbuild_image::pinned_kernel_dir(&root))
        .ok()
        .and_then(|(dir, complete)| complete.then_some(dir));
    match cached {
        Some(d) => r.ok(
            "kernel",
            format!(
                "{} {} (cached in {})",
                pin.package,
                pin.version,
                d.display()
            ),
        ),
        None if which::which("apt-get").is_ok() => r.info(
            "kernel",
            format!(
                "{} {} not fetched yet; the first run fetches it with apt-get download",
                pin.package, pin.version
            ),
        ),
        None => r.missing(
            "kernel",
            format!(
                "{} {} not fetched and apt-get is not available",
                pin.package, pin.version
            ),
            "pass --kernel PATH --kernel-modules DIR (or VMBUILD_KERNEL / VMBUILD_KERNEL_MODULES)",
        ),
    }
}
