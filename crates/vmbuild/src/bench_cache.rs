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
/// Untimed, in the overlay VM after its own runs: remounts the cache the way
/// vmbuild did before (9p `cache=loose`), with a fresh tmpfs upper, so both
/// 9p cache modes are measured side by side in one boot.
const REMOUNT_LOOSE: &str = "set -e; C=/var/cache/vmbuild; L=/run/vmbuild/lower/vmbuild-cache; \
    R=/run/vmbuild/rw/vmbuild-cache; rm -rf $C/w-small $C/w-big; umount $C; umount $L; \
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose vmbuild-cache $L; \
    mkdir -p $R/upper-loose $R/work-loose; \
    mount -t overlay -o lowerdir=$L,upperdir=$R/upper-loose,workdir=$R/work-loose overlay $C";

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

/// Times [`OPS`] in one VM; the overlay VM measures them a second time on a
/// `cache=loose` remount (one column per pass).
async fn in_guest(a: &BenchCacheArgs, mode: CacheMode, cache: &Path) -> Result<Vec<Vec<f64>>> {
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
        binds: Vec::new(),
        user: None,
    };
    let mut outcome = Ok(());
    let pass = std::iter::once(PREP).chain(OPS.iter().map(|(_, op)| *op));
    let loose_pass = match mode {
        CacheMode::Overlay => Some(std::iter::once(REMOUNT_LOOSE).chain(pass.clone())),
        CacheMode::Virtiofs => None,
    };
    for s in pass.chain(loose_pass.into_iter().flatten()) {
        let untimed = s == PREP || s == REMOUNT_LOOSE;
        let mut sink = BufferSink::default();
        match vm
            .run(&run(script(s, c, "/tmp/bench")), &mut sink, &stop)
            .await
        {
            Ok(e) if e.code == Some(0) => {
                if !untimed {
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
    outcome.map(|_| results.chunks(OPS.len()).map(<[f64]>::to_vec).collect())
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
    let (ov, loose) = match &ov[..] {
        [now, loose] => (now.clone(), loose.clone()),
        _ => bail!("the overlay VM measured {} passes, not 2", ov.len()),
    };
    let vf = in_guest(&a, CacheMode::Virtiofs, &cache).await?.concat();
    println!(
        "vmbuild bench cache: {} MiB guest memory, {} vCPU(s)",
        a.vm.memory
            .unwrap_or(crate::runner_setup::DEFAULT_MEMORY_MIB),
        a.vm.cpus.unwrap_or(crate::runner_setup::DEFAULT_CPUS)
    );
    println!(
        "  {:<20} {:>10} {:>22} {:>22} {:>22}",
        "operation", "native", "overlay (9p, no cache)", "9p cache=loose (old)", "virtiofs (rw)"
    );
    for (i, (name, _)) in OPS.iter().enumerate() {
        let cell = |t: f64| format!("{:>10.0}ms {:>8.1}x", t, t / nat[i]);
        println!(
            "  {:<20} {:>8.0}ms {} {} {}",
            name,
            nat[i],
            cell(ov[i]),
            cell(loose[i]),
            cell(vf[i])
        );
    }
    println!("  (ratios are to native; lower is better; the overlay writes land in guest tmpfs)");
    Ok(())
}
