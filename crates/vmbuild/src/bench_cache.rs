//! `vmbuild bench cache`: reading and writing the shared cache from inside
//! the guest in both modes, against the same operations run natively on the
//! host with the same (static busybox) binary, in one run.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use vmbuild_proto::{CacheMode, CommandSpec};
use vmbuild_runner::{env, BufferSink, CacheShare, Stopper, Timings, Vm};

use crate::cli::BenchCacheArgs;

const SMALL_FILES: usize = 2000;
const SMALL_SIZE: usize = 4096;

/// The measured operations: name and a script using `$C` (the cache dir)
/// and `$T` (a scratch dir outside the cache).
const OPS: &[(&str, &str)] = &[
    // Through a pipe into dd: `cat > /dev/null` may splice and skip the copy.
    (
        "read 2000 x 4 KiB",
        "cat $C/small/* | dd of=/dev/null bs=64k 2>/dev/null",
    ),
    (
        "read 1 x 256 MiB",
        "dd if=$C/big of=/dev/null bs=1M 2>/dev/null",
    ),
    ("write 2000 x 4 KiB", "cp -r $T/small $C/w-small"),
    (
        "write 1 x 256 MiB",
        "dd if=/dev/zero of=$C/w-big bs=1M count=256 2>/dev/null",
    ),
];
/// Untimed: copies the small files to scratch so the write test has a source.
const PREP: &str = "rm -rf $T/small $C/w-small $C/w-big; mkdir -p $T; cp -r $C/small $T/small";

fn make_cache(dir: &Path) -> Result<()> {
    let small = dir.join("small");
    std::fs::create_dir_all(&small)?;
    let mut block = vec![0u8; SMALL_SIZE];
    for i in 0..SMALL_FILES {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::fs::write(small.join(format!("f{i:04}")), &block)?;
    }
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut big = std::fs::File::create(dir.join("big"))?;
    for _ in 0..256 {
        std::io::Write::write_all(&mut big, &chunk)?;
    }
    Ok(())
}

fn script(op: &str, c: &str, t: &str) -> String {
    format!("set -e; C={c}; T={t}; {op}")
}

/// Native: the same scripts under the host's copy of the guest's busybox.
fn native(busybox: &Path, cache: &Path, scratch: &Path) -> Result<Vec<f64>> {
    let (c, t) = (cache.display().to_string(), scratch.display().to_string());
    let sh = |s: String| -> Result<f64> {
        let t0 = Instant::now();
        let st = std::process::Command::new(busybox)
            .args(["sh", "-c", &s])
            .status()?;
        if !st.success() {
            bail!("native `{s}` failed: {st}");
        }
        Ok(t0.elapsed().as_secs_f64() * 1000.0)
    };
    sh(script(PREP, &c, &t))?;
    OPS.iter().map(|(_, op)| sh(script(op, &c, &t))).collect()
}

async fn in_guest(a: &BenchCacheArgs, mode: CacheMode, cache: &Path) -> Result<Vec<f64>> {
    let mut holds = crate::runner_setup::Holds::default();
    let mut q = crate::runner_setup::qemu(
        &a.vm,
        None,
        crate::runner_setup::Spec::default(),
        Instant::now(),
        &mut holds,
    )?;
    q.vm.shares = vec![CacheShare {
        host_dir: cache.to_path_buf(),
        mode,
    }
    .shared_dir()];
    let assets = crate::runner_setup::assets(q.kernel.clone()).await?;
    let stop = Stopper::never();
    let opts = q.vm.validate()?;
    let mut vm = Vm::boot(&opts, &assets.boot_files(), &stop, Timings::default()).await?;
    let mut results = Vec::new();
    let c = vmbuild_proto::GUEST_CACHE_DIR;
    let run = |s: String| CommandSpec {
        argv: vec!["sh".into(), "-c".into(), s],
        env: env::base_env(),
        cwd: "/".into(),
    };
    let mut outcome = Ok(());
    for (i, s) in std::iter::once(PREP)
        .chain(OPS.iter().map(|(_, op)| *op))
        .enumerate()
    {
        let mut sink = BufferSink::default();
        match vm
            .run(&run(script(s, c, "/tmp/bench")), &mut sink, &stop)
            .await
        {
            Ok(e) if e.code == Some(0) => {
                if i > 0 {
                    results.push((e.ended_us - e.started_us) as f64 / 1000.0);
                }
            }
            Ok(e) => {
                outcome = Err(anyhow::anyhow!(
                    "`{s}` failed in the guest ({e:?}): {}",
                    String::from_utf8_lossy(&sink.stderr)
                ));
                break;
            }
            Err(e) => {
                vm.abort().await;
                return Err(e.into());
            }
        }
    }
    vm.shutdown().await?;
    outcome.map(|_| results)
}

pub async fn cache(a: BenchCacheArgs) -> Result<()> {
    let tmp = tempfile::tempdir().context("temp dir")?;
    let cache = tmp.path().join("cache");
    make_cache(&cache).context("creating the benchmark cache")?;
    let root = vmbuild_image::cache_root()?;
    let busybox = vmbuild_image::busybox(&root, &mut |l: &str| eprintln!("vmbuild: {l}"))?;
    eprintln!("measuring natively, then in the guest (overlay, virtiofs)...");
    let nat = native(&busybox, &cache, &tmp.path().join("scratch"))?;
    let ov = in_guest(&a, CacheMode::Overlay, &cache).await?;
    let vf = in_guest(&a, CacheMode::Virtiofs, &cache).await?;
    println!(
        "vmbuild bench cache: {} MiB guest memory, {} vCPU(s)",
        a.vm.memory
            .unwrap_or(crate::runner_setup::DEFAULT_MEMORY_MIB),
        a.vm.cpus.unwrap_or(crate::runner_setup::DEFAULT_CPUS)
    );
    println!(
        "  {:<20} {:>10} {:>22} {:>22}",
        "operation", "native", "overlay (9p ro+ovl)", "virtiofs (rw)"
    );
    for (i, (name, _)) in OPS.iter().enumerate() {
        println!(
            "  {:<20} {:>8.0}ms {:>10.0}ms {:>8.1}x {:>10.0}ms {:>8.1}x",
            name,
            nat[i],
            ov[i],
            ov[i] / nat[i],
            vf[i],
            vf[i] / nat[i]
        );
    }
    println!("  (ratios are to native; lower is better; the overlay writes land in guest tmpfs)");
    Ok(())
}
