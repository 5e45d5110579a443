//! Flags -> runner options: the one place the CLI turns `--runner`, the VM
//! flags and a run's or build's needs into [`RunnerOptions`], after
//! checking that the runner supports what was asked
//! ([`RunnerKind::check`]).

use std::path::PathBuf;
use std::time::Instant;

use vmbuild_image::env::InUse;
use vmbuild_proto::{CacheMode, SymlinkSpec, GUEST_HOME};
use vmbuild_runner::{
    BwrapOptions, CacheShare, DockerOptions, Feature, KernelChoice, QemuOptions, RootImage,
    RunError, RunnerKind, RunnerOptions, SharedDir, VmOptions,
};

use crate::cli::{below_flag, CacheModeArg, NetworkArg, VmArgs};

pub const DEFAULT_CPUS: u32 = 1;
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

/// `--disk` for `build` when not given.
pub const DEFAULT_BUILD_DISK: u64 = 16 << 30;

/// What a run or build needs from its runner, whichever it is.
#[derive(Debug, Default)]
pub struct Spec {
    /// Shown at `/home/build` (a build's source dir; `None` for `run`).
    pub source: Option<PathBuf>,
    /// Guest directories made after the mounts.
    pub mkdirs: Vec<String>,
    /// Cache symlinks the guest makes (maven, cargo).
    pub symlinks: Vec<SymlinkSpec>,
    /// vCPUs and memory when no flag gives them (the pipeline's resources).
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
    /// The network when `--network` is not given.
    pub default_network: Option<NetworkArg>,
    /// `environment.contents.packages` is not empty.
    pub packages: bool,
    /// Cache volumes, held, as shares (mounted after the source).
    pub volumes: Vec<SharedDir>,
}

/// Things that must live as long as the run: a `--rootfs DIR` packed into
/// a temporary image, and cached images held against removal.
#[derive(Default)]
pub struct Holds {
    pub scratch: Option<tempfile::TempDir>,
    pub images: Vec<InUse>,
}

/// The features the flags and `spec` ask for that not every runner has
/// (only what was asked explicitly: a default is never an error).
pub fn requested(args: &VmArgs, spec: &Spec) -> Vec<Feature> {
    let mut f = Vec::new();
    if spec.packages {
        f.push(Feature::Packages);
    }
    if args.rootfs.is_some() {
        f.push(Feature::RootFs);
    }
    if !args.ca_certs.is_empty() {
        f.push(Feature::CaCerts);
    }
    if let Some(m) = args.cache_mode {
        f.push(Feature::CacheMode(cache_mode(m)));
    }
    if let Some(n) = args.network {
        f.push(Feature::Network(network(n)));
    }
    if !args.volumes.is_empty() {
        f.push(Feature::Volumes);
    }
    f
}

fn cache_mode(m: CacheModeArg) -> CacheMode {
    match m {
        CacheModeArg::Overlay => CacheMode::Overlay,
        CacheModeArg::Virtiofs => CacheMode::Virtiofs,
    }
}

fn network(n: NetworkArg) -> vmbuild_qemu::Network {
    match n {
        NetworkArg::User | NetworkArg::UserRestrictHost => vmbuild_qemu::Network::User,
        NetworkArg::None => vmbuild_qemu::Network::None,
    }
}

/// Validates `--cache-dir` (created if missing) and resolves its mode from
/// `--cache-mode` and `QEMU_USE_VIRTIOFS`; returns it with its one-line
/// note. The mode only matters to the qemu runner.
pub fn cache(args: &VmArgs) -> Result<Option<(CacheShare, String)>, RunError> {
    let flag = args.cache_mode.map(cache_mode);
    let Some(dir) = &args.cache_dir else {
        if flag.is_some() && args.volumes.is_empty() {
            return Err(RunError::Flag {
                flag: "--cache-mode".into(),
                why: "needs --cache-dir DIR or --cache SPEC".into(),
            });
        }
        return Ok(None);
    };
    let mode = share_mode(args)?;
    let host_dir = vmbuild_cache::prepare_cache_dir(dir)?;
    Ok(Some((
        CacheShare { host_dir, mode },
        vmbuild_cache::describe(mode, dir),
    )))
}

/// How the cache dir and volumes are shared: `--cache-mode`, else
/// `QEMU_USE_VIRTIOFS`, else the overlay mode.
pub fn share_mode(args: &VmArgs) -> Result<CacheMode, RunError> {
    Ok(vmbuild_cache::resolve_mode_from_env(
        args.cache_mode.map(cache_mode),
    )?)
}

/// The runner's note about the cache, as shown before the run.
pub fn cache_note(kind: RunnerKind, cache: &CacheShare, qemu_note: &str) -> String {
    match kind {
        RunnerKind::Qemu => qemu_note.to_string(),
        RunnerKind::Bubblewrap | RunnerKind::Docker => format!(
            "cache: {} (bind-mounted read-write; writes persist)",
            cache.host_dir.display()
        ),
    }
}

/// Checks `kind` against what was asked, then builds its options.
/// [`options`] for a run, build or test with `cache` as
/// [`cache`] returned it; the things to keep alive come back with them.
pub fn options_held(
    kind: RunnerKind,
    args: &VmArgs,
    cache: &Option<(CacheShare, String)>,
    spec: Spec,
    process_start: Instant,
) -> Result<(RunnerOptions, Holds), RunError> {
    let mut holds = Holds::default();
    let cache = cache.as_ref().map(|(c, _)| c);
    let options = options(kind, args, cache, spec, process_start, &mut holds)?;
    Ok((options, holds))
}

pub fn options(
    kind: RunnerKind,
    args: &VmArgs,
    cache: Option<&CacheShare>,
    spec: Spec,
    process_start: Instant,
    holds: &mut Holds,
) -> Result<RunnerOptions, RunError> {
    kind.check(&requested(args, &spec))?;
    Ok(match kind {
        RunnerKind::Qemu => {
            RunnerOptions::Qemu(Box::new(qemu(args, cache, spec, process_start, holds)?))
        }
        RunnerKind::Bubblewrap => RunnerOptions::Bubblewrap(BwrapOptions {
            bwrap: None,
            source_dir: spec.source,
            cache_dir: cache.map(|c| c.host_dir.clone()),
            volumes: spec.volumes,
            mkdirs: spec.mkdirs,
        }),
        RunnerKind::Docker => RunnerOptions::Docker(Box::new(docker(args, cache, spec, holds)?)),
    })
}

/// The docker runner's options: the cache and volumes bound read-write,
/// `--rootfs` (if any) as its root, the network (`--network`, else the
/// pipeline's, else none), `--cpus`/`--memory` (else the pipeline's
/// resources) as the container's limits (none when neither gives one).
pub fn docker(
    args: &VmArgs,
    cache: Option<&CacheShare>,
    spec: Spec,
    holds: &mut Holds,
) -> Result<DockerOptions, RunError> {
    let net = args
        .network
        .or(spec.default_network)
        .unwrap_or(NetworkArg::None);
    if net == NetworkArg::UserRestrictHost {
        return Err(RunError::Flag {
            flag: "--network".into(),
            why: "user-restrict-host is a QEMU network; the docker runner has none (no network) and user (the engine's bridge)".into(),
        });
    }
    Ok(DockerOptions {
        source_dir: spec.source,
        cache_dir: cache.map(|c| c.host_dir.clone()),
        volumes: spec.volumes,
        mkdirs: spec.mkdirs,
        // A directory goes in as it is (no erofs packing, whose bytes
        // differ run to run and would give a new key each time).
        root_dir: args.rootfs.clone().filter(|p| p.is_dir()),
        root_image: match &args.rootfs {
            Some(p) if p.is_dir() => None,
            _ => root_image(args, holds)?,
        },
        network: network(net),
        cpus: args.cpus.or(spec.cpus),
        memory_mib: args.memory.or(spec.memory_mib),
    })
}

/// The qemu runner's options. QEMU and (in virtiofs mode) virtiofsd are
/// looked up first: cheap checks that must not wait for a kernel download.
pub fn qemu(
    args: &VmArgs,
    cache: Option<&CacheShare>,
    spec: Spec,
    process_start: Instant,
    holds: &mut Holds,
) -> Result<QemuOptions, RunError> {
    let accel = match &args.accel {
        None => None,
        Some(a) => Some(
            a.parse::<vmbuild_qemu::Accel>()
                .map_err(|e| RunError::Flag {
                    flag: "--accel".into(),
                    why: e.to_string(),
                })?,
        ),
    };
    let qemu = vmbuild_qemu::find_qemu(vmbuild_qemu::Arch::current(), args.qemu.as_deref())?;
    let virtiofs_volumes = spec.volumes.iter().any(|v| v.mode == CacheMode::Virtiofs);
    if cache.is_some_and(|c| c.mode == CacheMode::Virtiofs) || virtiofs_volumes {
        vmbuild_cache::virtiofsd::find_virtiofsd_on_host()?;
    }
    // A build (it has a source dir) writes for real: a scratch disk by
    // default. `run` boots without one unless asked (loading ext4 under
    // TCG costs ~0.3 s).
    let default_disk = if spec.source.is_some() {
        DEFAULT_BUILD_DISK
    } else {
        0
    };
    let mut shares: Vec<SharedDir> = cache.iter().map(|c| c.shared_dir()).collect();
    if let Some(src) = spec.source {
        shares.push(SharedDir {
            name: "src".into(),
            host_dir: src,
            mode: CacheMode::Overlay,
            target: GUEST_HOME.into(),
            aliases: Vec::new(),
            owner: None,
            root_mode: None,
        });
    }
    shares.extend(spec.volumes);
    let net = args
        .network
        .or(spec.default_network)
        .unwrap_or(NetworkArg::None);
    Ok(QemuOptions {
        vm: VmOptions {
            qemu: Some(qemu),
            accel,
            cpus: below_flag(args.cpus, args.file_defaults.cpus, spec.cpus).unwrap_or(DEFAULT_CPUS),
            memory_mib: below_flag(args.memory, args.file_defaults.memory, spec.memory_mib)
                .unwrap_or(DEFAULT_MEMORY_MIB),
            shares,
            kernel_args: args.kernel_args.clone(),
            console_log: args.console_log.clone(),
            symlinks: spec.symlinks,
            mkdirs: spec.mkdirs,
            root_image: root_image(args, holds)?,
            network: network(net),
            ca_certs: crate::ca_certs::read(&args.ca_certs)?,
            boot_timeout: args.boot_timeout,
            unconfined: args.unsafe_no_confinement,
            restrict_host: net == NetworkArg::UserRestrictHost,
            disk_bytes: Some(args.disk.unwrap_or(default_disk)).filter(|b| *b > 0),
            snapshots: snapshot_store(args.cold),
        },
        kernel: KernelChoice {
            kernel: args.kernel.clone(),
            modules: args.kernel_modules.clone(),
        },
        process_start: Some(process_start),
    })
}

/// Where warm-start snapshots live: `$VMBUILD_SNAPSHOTS`, else
/// `<cache root>/snapshots`; `None` with `--cold` or without a cache root.
pub fn snapshot_store(cold: bool) -> Option<PathBuf> {
    if cold {
        return None;
    }
    if let Some(dir) = std::env::var_os("VMBUILD_SNAPSHOTS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    vmbuild_image::cache_root()
        .ok()
        .map(|r| r.join("snapshots"))
}

/// `--rootfs KEY|IMAGE|DIR`: a cached image (held), an image file, or a
/// directory packed into a temporary image (kept in `holds`).
fn root_image(args: &VmArgs, holds: &mut Holds) -> Result<Option<RootImage>, RunError> {
    let Some(path) = &args.rootfs else {
        return Ok(None);
    };
    if let Some(found) = crate::root_image_arg::cached_image(path) {
        let (image, held) = found?;
        holds.images.push(held);
        return Ok(Some(image));
    }
    let scratch = tempfile::Builder::new()
        .prefix("vmbuild-rootfs-")
        .tempdir()
        .map_err(|e| RunError::io("creating a temp dir for --rootfs", e))?;
    let image = crate::root_image_arg::resolve(path, scratch.path())?;
    holds.scratch = Some(scratch);
    Ok(Some(image))
}

/// Resolves kernel, busybox and initramfs off the async threads, printing
/// notices (first fetch, fallbacks) as they come (benchmarks boot VMs
/// themselves).
pub async fn assets(kernel: KernelChoice) -> Result<vmbuild_runner::BootAssets, RunError> {
    tokio::task::spawn_blocking(move || {
        let mut shown = crate::live::StartProgress::new(crate::live::mode());
        vmbuild_runner::vm::assets::prepare(&kernel, &mut |e| {
            crate::live::start::note_event(&mut shown, e, &mut |l| eprintln!("vmbuild: {l}"))
        })
    })
    .await
    .map_err(|e| RunError::io("asset preparation", std::io::Error::other(e.to_string())))?
}
