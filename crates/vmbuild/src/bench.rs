//! `vmbuild bench boot`: how long `vmbuild run -- true` takes end to end,
//! cold (`--cold`: a real boot, with where the time goes) and warm
//! (restored from a snapshot, docs/warm-start.md), and how both compare to
//! the floor (bare QEMU booting the same kernel into an initramfs that
//! powers off at once), measured interleaved in one run so machine noise
//! hits all alike. Each round also runs `vmbuild run --cold
//! --unsafe-no-confinement -- true`, so what QEMU's confinement costs
//! (docs/security.md) is measured side by side.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::{BenchBootArgs, BenchCommand, VmArgs};

pub async fn bench(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Boot(a) => boot(a).await,
        BenchCommand::Cache(a) => crate::bench_cache::cache(a).await,
        BenchCommand::Runners(a) => tokio::task::block_in_place(|| runners(a)),
        BenchCommand::Transfer(a) => {
            tokio::task::block_in_place(|| crate::bench_transfer::transfer(a))
        }
    }
}

/// `vmbuild bench runners`: each pipeline built `runs` times under each
/// runner, interleaved (round by round) so machine noise hits every runner
/// alike, after one untimed warm-up round; each build is a whole `vmbuild build` process (start, steps,
/// export, teardown), timed from spawn to exit.
fn runners(a: crate::cli::BenchRunnersArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let configs = if a.configs.is_empty() {
        vec![std::path::PathBuf::from("examples/hello/vmbuild.yaml")]
    } else {
        a.configs.clone()
    };
    let exe = std::env::current_exe().context("finding the vmbuild binary")?;
    let scratch = tempfile::Builder::new()
        .prefix("vmbuild-bench-runners-")
        .tempdir()
        .context("creating a scratch dir")?;
    let names: Vec<String> = a.runners.iter().map(|r| r.kind().to_string()).collect();
    let mut hosts = Vec::new();
    for r in &a.runners {
        hosts.push(host_address(r.kind())?);
    }
    let mut times = vec![vec![Vec::new(); names.len()]; configs.len()];
    // (config, runner) pairs the runner cannot build, with its reason.
    let mut unsupported: Vec<((usize, usize), String)> = Vec::new();
    // Round 0 is an untimed warm-up: first fetches, environment image
    // builds and engine imports happen there, once.
    for round in 0..=a.runs {
        for (ci, cfg) in configs.iter().enumerate() {
            for (ri, runner) in names.iter().enumerate() {
                if unsupported.iter().any(|(k, _)| *k == (ci, ri)) {
                    continue;
                }
                let out = scratch.path().join(format!("out-{round}-{ci}-{runner}"));
                let extra: Vec<String> = a
                    .extra
                    .iter()
                    .map(|e| e.replace("{host}", &hosts[ri]))
                    .collect();
                let t0 = Instant::now();
                let o = Command::new(&exe)
                    .arg("build")
                    .arg(cfg)
                    .args(["--runner", runner, "--output-dir"])
                    .arg(&out)
                    .args(&extra)
                    .output()
                    .context("running vmbuild build")?;
                let secs = t0.elapsed().as_secs_f64();
                let err = String::from_utf8_lossy(&o.stderr);
                if o.status.code() == Some(vmbuild_runner::EXIT_SETUP)
                    && err.contains("runner does not support")
                {
                    let last = err.lines().last().unwrap_or_default();
                    let why = last.trim_start_matches("vmbuild: error: ").to_string();
                    unsupported.push(((ci, ri), why));
                    continue;
                }
                if !o.status.success() {
                    bail!(
                        "{} under {runner} failed ({}): {}",
                        cfg.display(),
                        o.status,
                        err.trim()
                    );
                }
                if round > 0 {
                    times[ci][ri].push(secs);
                }
            }
        }
    }
    println!(
        "{:<36}  {:<11}  {:>9}  {:>9}  (wall s, {} build(s) each)",
        "PIPELINE", "RUNNER", "MEDIAN", "MIN", a.runs
    );
    for (ci, cfg) in configs.iter().enumerate() {
        for (ri, runner) in names.iter().enumerate() {
            if let Some((_, why)) = unsupported.iter().find(|(k, _)| *k == (ci, ri)) {
                println!(
                    "{:<36}  {:<11}  n/a: {why}",
                    cfg.display().to_string(),
                    runner
                );
                continue;
            }
            let t = &times[ci][ri];
            let min = t.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{:<36}  {:<11}  {:>9.2}  {:>9.2}",
                cfg.display().to_string(),
                runner,
                median(t),
                min
            );
        }
    }
    Ok(())
}

/// How a build under `kind` reaches a service on the host's loopback or
/// bridge (`{host}` in `--extra`): QEMU's user network maps 10.0.2.2 to the
/// host; a docker container uses the engine's bridge gateway; bubblewrap
/// has no network (loopback only).
fn host_address(kind: vmbuild_runner::RunnerKind) -> Result<String> {
    Ok(match kind {
        vmbuild_runner::RunnerKind::Qemu => "10.0.2.2".into(),
        vmbuild_runner::RunnerKind::Bubblewrap => "127.0.0.1".into(),
        vmbuild_runner::RunnerKind::Docker => tokio::runtime::Handle::current()
            .block_on(async {
                vmbuild_runner::docker::Engine::connect()
                    .await?
                    .bridge_gateway()
                    .await
            })
            .context("finding the docker bridge's address")?,
    })
}

/// The flags of `vm` that shape a boot, to pass to `vmbuild run`.
fn vm_flags(vm: &VmArgs) -> Vec<String> {
    let mut f = Vec::new();
    let mut opt = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            f.push(name.to_string());
            f.push(v);
        }
    };
    opt("--cpus", vm.cpus.map(|c| c.to_string()));
    opt("--memory", vm.memory.map(|m| m.to_string()));
    opt("--accel", vm.accel.clone());
    opt(
        "--network",
        vm.network.map(|n| match n {
            crate::cli::NetworkArg::User => "user".into(),
            crate::cli::NetworkArg::UserRestrictHost => "user,restrict-host".into(),
            crate::cli::NetworkArg::None => "none".into(),
        }),
    );
    opt(
        "--rootfs",
        vm.rootfs.as_ref().map(|p| p.display().to_string()),
    );
    opt(
        "--kernel",
        vm.kernel.as_ref().map(|p| p.display().to_string()),
    );
    opt(
        "--kernel-modules",
        vm.kernel_modules.as_ref().map(|p| p.display().to_string()),
    );
    opt("--qemu", vm.qemu.as_ref().map(|p| p.display().to_string()));
    for a in &vm.kernel_args {
        f.push("--kernel-arg".into());
        f.push(a.clone());
    }
    f
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Extracts the phases JSON from `vmbuild run --timings` stderr.
fn parse_timings(stderr: &str) -> Option<serde_json::Value> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("vmbuild-timings: "))?;
    serde_json::from_str(line).ok()
}

async fn boot(a: BenchBootArgs) -> Result<()> {
    if a.runs < 5 {
        bail!("--runs must be at least 5 (got {})", a.runs);
    }
    let exe = std::env::current_exe().context("locating the vmbuild binary")?;
    let mut holds = crate::runner_setup::Holds::default();
    let q = crate::runner_setup::qemu(
        &a.vm,
        None,
        crate::runner_setup::Spec::default(),
        Instant::now(),
        &mut holds,
    )?;
    let vm = q.vm.clone().validate()?;
    let assets = crate::runner_setup::assets(q.kernel.clone()).await?;
    let cache_root = vmbuild_image::cache_root()?;
    let busybox = vmbuild_image::busybox(&cache_root, &mut |l: &str| eprintln!("vmbuild: {l}"))?;
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    let floor_initrd = tmp.path().join("floor.cpio");
    vmbuild_runner::vm::floor::floor_initramfs(&busybox, &floor_initrd)?;
    let flags = vm_flags(&a.vm);

    // One untimed run of each to warm the page cache; the first (warm
    // mode) also saves the snapshot the warm runs restore.
    let warm = Command::new(&exe)
        .arg("run")
        .args(&flags)
        .args(["--", "true"])
        .output()?;
    if !warm.status.success() {
        bail!(
            "vmbuild run -- true failed: {}",
            String::from_utf8_lossy(&warm.stderr).trim()
        );
    }
    vmbuild_runner::vm::floor::boot_floor(&vm, &assets.kernel.image, &floor_initrd).await?;

    let keys = [
        "host_setup_ms",
        "kernel_to_init_ms",
        "init_to_command_ms",
        "commands_ms",
        "command_end_to_exit_ms",
    ];
    let mut wall = Vec::new();
    let mut restored = Vec::new();
    let mut unconfined = Vec::new();
    let mut floor = Vec::new();
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    for i in 0..a.runs {
        let t0 = Instant::now();
        let out = Command::new(&exe)
            .arg("run")
            .args(["--timings", "--cold"])
            .args(&flags)
            .args(["--", "true"])
            .output()?;
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("run {} failed: {}", i + 1, err.trim());
        }
        let t = parse_timings(&err).context("vmbuild run --timings printed no timings")?;
        for (k, v) in keys.iter().zip(phases.iter_mut()) {
            v.push(t[*k].as_f64().unwrap_or(0.0));
        }
        wall.push(took);
        restored.push(timed_run(&exe, &flags, &[])?);
        unconfined.push(timed_run(
            &exe,
            &flags,
            &["--cold", "--unsafe-no-confinement"],
        )?);
        let f =
            vmbuild_runner::vm::floor::boot_floor(&vm, &assets.kernel.image, &floor_initrd).await?;
        floor.push(f.as_secs_f64() * 1000.0);
        eprintln!(
            "  run {:>2}: cold {took:7.0} ms   warm {:7.0} ms   cold unconfined {:7.0} ms   floor {:7.0} ms",
            i + 1,
            restored[i],
            unconfined[i],
            floor[i]
        );
    }
    let (m, fm, wm) = (median(&wall), median(&floor), median(&restored));
    println!("vmbuild bench boot: {} runs each, interleaved", a.runs);
    println!(
        "  kernel: {} ({})",
        assets.kernel.release,
        assets.kernel.image.display()
    );
    println!("  `vmbuild run --cold -- true`, process start to exit (median): {m:.0} ms");
    println!(
        "    min {:.0} ms, max {:.0} ms",
        wall.iter().cloned().fold(f64::MAX, f64::min),
        wall.iter().cloned().fold(0.0, f64::max)
    );
    println!("    phases (medians):");
    for (k, v) in keys.iter().zip(phases.iter()) {
        println!(
            "      {:<24} {:7.1} ms",
            k.trim_end_matches("_ms"),
            median(v)
        );
    }
    let accounted: f64 = phases.iter().map(|v| median(v)).sum();
    println!(
        "      {:<24} {:7.1} ms",
        "other (QEMU start, exit)",
        (m - accounted).max(0.0)
    );
    let um = median(&unconfined);
    println!(
        "  cold with --unsafe-no-confinement (UNSAFE, comparison only) (median): {um:.0} ms; \
         confinement costs {:+.0} ms ({:+.1}%)",
        m - um,
        (m - um) / um * 100.0
    );
    println!("  floor: bare QEMU, same kernel, busybox /init that powers off (median): {fm:.0} ms");
    println!("  ratio cold/floor: {:.2}x", m / fm);
    println!(
        "  `vmbuild run -- true` warm (restored from a snapshot), process start to exit (median): {wm:.0} ms \
         (min {:.0}, max {:.0})",
        restored.iter().cloned().fold(f64::MAX, f64::min),
        restored.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "  ratio warm/floor: {:.2}x   warm/cold: {:.2}x",
        wm / fm,
        wm / m
    );
    Ok(())
}

/// Wall time of `vmbuild run EXTRA FLAGS -- true` in ms.
fn timed_run(exe: &std::path::Path, flags: &[String], extra: &[&str]) -> Result<f64> {
    let t0 = Instant::now();
    let out = Command::new(exe)
        .arg("run")
        .args(extra)
        .args(flags)
        .args(["--", "true"])
        .output()?;
    let took = t0.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "vmbuild run {} -- true failed: {}",
            extra.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn timings_line_is_found_among_other_stderr() {
        let t = parse_timings("noise\nvmbuild-timings: {\"total_ms\":12.5}\n").unwrap();
        assert_eq!(t["total_ms"].as_f64(), Some(12.5));
        assert!(parse_timings("nothing here").is_none());
    }
}
