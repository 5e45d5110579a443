//! `vmbuild bench transfer`: cache export and import against the plain
//! baseline `tar -c DIR | zstd -T0 > FILE` and its reverse, on a generated
//! cache of mixed files, side by side in one run (medians of `--runs`);
//! then a re-export after a 1% change (new files worth 1% of the cache,
//! and a few rewritten small ones), against the full export. With
//! `--registry`, exports to and imports from a registry are compared with
//! the baseline's tarball moved through the same registry by curl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use vmbuild_transfer::{target, Direction, ExportOptions, Meter, Source};

use crate::cli::BenchTransferArgs;

/// Deterministic bytes: half of each file incompressible, half text-like.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let half = buf.len() / 2;
        for b in buf[..half].chunks_mut(8) {
            let v = self.next().to_le_bytes();
            b.copy_from_slice(&v[..b.len()]);
        }
        const WORDS: [&[u8]; 6] = [
            b"import ",
            b"module ",
            b"version ",
            b"= \"1.2.3\"\n",
            b"sha256:",
            b"0123456789abcdef",
        ];
        let mut i = half;
        while i < buf.len() {
            let w = WORDS[(self.next() % 6) as usize];
            let n = w.len().min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
    }
}

/// A cache of `mib` MiB: 40% in small files (1-20 KiB) over many
/// directories, 60% in files of 1-32 MiB.
fn make_cache(dir: &Path, mib: u64, seed: u64) -> Result<u64> {
    let mut g = Gen(seed | 1);
    let total = mib << 20;
    let mut small_left = total * 2 / 5;
    let mut written = 0;
    let mut i = 0u64;
    while small_left > 0 {
        let size = (1024 + g.next() % (19 * 1024)).min(small_left);
        let d = dir.join(format!("pkgs/p{:03}/v{}", i % 300, i % 7));
        std::fs::create_dir_all(&d)?;
        let mut buf = vec![0u8; size as usize];
        g.fill(&mut buf);
        std::fs::write(d.join(format!("f{i}.dat")), &buf)?;
        small_left -= size;
        written += size;
        i += 1;
    }
    let mut k = 0;
    while written < total {
        let size = ((1 + g.next() % 32) << 20).min(total - written);
        let d = dir.join("blobs");
        std::fs::create_dir_all(&d)?;
        let mut buf = vec![0u8; size as usize];
        g.fill(&mut buf);
        std::fs::write(d.join(format!("b{k}.bin")), &buf)?;
        written += size;
        k += 1;
    }
    Ok(written)
}

/// New files worth 1% of `mib`, and 5 rewritten small files.
fn change_one_percent(dir: &Path, mib: u64) -> Result<()> {
    let mut g = Gen(99);
    let d = dir.join("pkgs/new-release");
    std::fs::create_dir_all(&d)?;
    let mut left = (mib << 20) / 100;
    let mut i = 0;
    while left > 0 {
        let size = (8 << 10).min(left);
        let mut buf = vec![0u8; size as usize];
        g.fill(&mut buf);
        std::fs::write(d.join(format!("n{i}.dat")), &buf)?;
        left -= size;
        i += 1;
    }
    for j in 0..5 {
        std::fs::write(
            dir.join(format!("pkgs/p{j:03}/v{j}/f{j}.dat")),
            format!("rewritten {j}"),
        )?;
    }
    Ok(())
}

/// Writes back what earlier steps left dirty, so each timed step starts
/// from the same state and pays only for its own writes.
fn settle() {
    let _ = Command::new("sync").status();
}

fn sh(script: &str) -> Result<f64> {
    settle();
    let t0 = Instant::now();
    let st = Command::new("sh")
        .args(["-c", script])
        .status()
        .context("running sh")?;
    if !st.success() {
        bail!("`{script}` failed: {st} (apt-get install zstd?)");
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn sh_out(script: &str) -> Result<String> {
    let o = Command::new("sh")
        .args(["-c", script])
        .output()
        .context("running sh")?;
    if !o.status.success() {
        bail!("`{script}` failed: {}", o.status);
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn export(spec: &str, src: &Path, records: &Path) -> Result<(f64, String)> {
    let spec = target::parse(spec, Direction::To)?;
    settle();
    let t0 = Instant::now();
    let mut store = vmbuild_transfer::open(&spec, Direction::To, &[])?;
    let s = vmbuild_transfer::export(
        &[Source {
            name: "bench".into(),
            dir: src.to_path_buf(),
            key: "bench".into(),
        }],
        store.as_mut(),
        &ExportOptions {
            level: spec.compression_level,
            records,
            meter: &Meter::default(),
        },
    )?;
    Ok((t0.elapsed().as_secs_f64(), s.to_string()))
}

fn import(spec: &str, dest: &Path, records: &Path) -> Result<f64> {
    let spec = target::parse(spec, Direction::From)?;
    settle();
    let t0 = Instant::now();
    let mut store = vmbuild_transfer::open(&spec, Direction::From, &[])?;
    let e = vmbuild_transfer::read_export(store.as_mut())?;
    let d = vmbuild_transfer::Dest {
        name: "bench".into(),
        dir: dest.to_path_buf(),
        key: "bench".into(),
        force: true,
    };
    vmbuild_transfer::import(store.as_mut(), &e, &[d], records, &Meter::default())?;
    Ok(t0.elapsed().as_secs_f64())
}

fn fresh(p: &Path) -> Result<PathBuf> {
    let _ = std::fs::remove_dir_all(p);
    Ok(p.to_path_buf())
}

pub fn transfer(a: BenchTransferArgs) -> Result<()> {
    let runs = a.runs.max(1);
    let scratch = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("vmbuild-bench-")
            .tempdir_in("/var/tmp")?,
    };
    let s = scratch.path();
    let src = s.join("cache");
    let bytes = make_cache(&src, a.size_mib, 7)?;
    let files = vmbuild_transfer::walk::list(&src)?.entries.len();
    eprintln!(
        "bench transfer: a {} cache of {files} entries in {}",
        crate::human::human_size(bytes),
        s.display()
    );
    let tarball = s.join("cache.tar.zst");
    let (srcs, tb) = (src.display().to_string(), tarball.display().to_string());
    // Every run exports to an empty target: a new layout dir, a new
    // repository in the registry.
    let targets = |run: usize| {
        let layout = s.join(format!("layout-{run}"));
        let mut t = vec![(
            "type=local".to_string(),
            format!("type=local,dest={}", layout.display()),
            format!("type=local,src={}", layout.display()),
        )];
        if let Some(r) = &a.registry {
            let r = format!("{r}-{}-{run}:bench", std::process::id());
            t.push((
                format!("registry {}", a.registry.as_deref().unwrap_or("")),
                format!("type=registry,ref={r}"),
                format!("type=registry,ref={r}"),
            ));
        }
        t
    };

    let mut base_exp = Vec::new();
    let mut base_imp = Vec::new();
    // With a registry, the baseline also moves its one tarball through it
    // with curl (one monolithic upload; one download piped into zstd | tar).
    let mut up = Vec::new();
    let mut down = Vec::new();
    let mut ours: Vec<(Vec<f64>, Vec<f64>)> = targets(0)
        .iter()
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    for run in 0..runs {
        base_exp.push(sh(&format!(
            "tar -C {srcs} -cf - . | zstd -T0 -3 -q -f -o {tb}"
        ))?);
        let out = fresh(&s.join("base-out"))?;
        std::fs::create_dir_all(&out)?;
        base_imp.push(sh(&format!(
            "zstd -d -T0 -q -c {tb} | tar -C {} -xf -",
            out.display()
        ))?);
        if let Some(r) = &a.registry {
            let (host, repo) = r.split_once('/').context("--registry is REGISTRY/REPO")?;
            let repo = format!("{repo}-base-{}-{run}", std::process::id());
            let digest = sh_out(&format!("sha256sum {tb} | cut -d' ' -f1"))?;
            up.push(sh(&format!(
                "loc=$(curl -fsS -i -X POST http://{host}/v2/{repo}/blobs/uploads/ | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p'); \
                 curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @{tb} \"$loc&digest=sha256:{digest}\" >/dev/null"
            ))?);
            let out = fresh(&s.join("base-out"))?;
            std::fs::create_dir_all(&out)?;
            down.push(sh(&format!(
                "curl -fsS http://{host}/v2/{repo}/blobs/sha256:{digest} | zstd -d -q | tar -C {} -xf -",
                out.display()
            ))?);
        }
        for (i, (_, to, from)) in targets(run).iter().enumerate() {
            // A full export each time: fresh records, an empty target.
            let (t, summary) = export(to, &src, &fresh(&s.join(format!("rec-{run}-{i}")))?)?;
            if run == 0 {
                eprintln!("  {summary}");
            }
            ours[i].0.push(t);
            let back = fresh(&s.join("back"))?;
            ours[i]
                .1
                .push(import(from, &back, &fresh(&s.join("rec-import"))?)?);
        }
    }
    println!(
        "cache transfer, {} ({files} entries), median of {runs}:",
        crate::human::human_size(bytes)
    );
    let (be, bi) = (median(base_exp), median(base_imp));
    println!("  baseline tar | zstd -T0 -3   export {be:6.2} s   import {bi:6.2} s");
    let through = (!up.is_empty()).then(|| (median(up.clone()) + be, median(down.clone())));
    if let Some((ue, ui)) = through {
        println!("  baseline + curl via registry export {ue:6.2} s   import {ui:6.2} s");
    }
    for (k, ((name, _, _), (e, i))) in targets(0).iter().zip(ours).enumerate() {
        let (e, i) = (median(e), median(i));
        let (de, di) = match (k, through) {
            (1, Some((ue, ui))) => (ue, ui),
            _ => (be, bi),
        };
        println!(
            "  {name:<28} export {e:6.2} s ({:.2}x)   import {i:6.2} s ({:.2}x)",
            e / de,
            i / di
        );
    }

    // Re-export after a 1% change, against a full export, same target.
    let (_, to, _) = &targets(runs)[0];
    let records = fresh(&s.join("rec-inc"))?;
    let (full, _) = export(to, &src, &records)?;
    change_one_percent(&src, a.size_mib)?;
    let (inc, summary) = export(to, &src, &records)?;
    println!(
        "  re-export after a 1% change: {inc:.2} s vs full {full:.2} s ({:.3}x); {summary}",
        inc / full
    );
    Ok(())
}
