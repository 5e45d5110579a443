//! Turns the shared VM flags into runner options (validating them).

use vmbuild_image::rootfs::InUse;
use vmbuild_proto::CacheMode;
use vmbuild_runner::{CacheShare, KernelChoice, RunError, VmOptions};

use crate::cli::{CacheModeArg, NetworkArg, VmArgs};

pub const DEFAULT_CPUS: u32 = 1;
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

pub struct Prepared {
    pub opts: VmOptions,
    /// Holds a `--rootfs DIR` packed into a temporary image for the run.
    pub scratch: Option<tempfile::TempDir>,
    /// The cached environment image the VM boots, held for the run so
    /// `image rm`/`prune` leave it alone.
    pub image_hold: Option<InUse>,
    pub kernel: KernelChoice,
    /// The one-line cache mode note, printed once everything is checked.
    pub cache_note: Option<String>,
}

/// `default_network` applies when `--network` is not given: builds get a
/// network (as melange's do), `run` does not.
pub fn prepare(args: &VmArgs, default_network: NetworkArg) -> Result<Prepared, RunError> {
    let accel = match &args.accel {
        None => None,
        Some(a) => Some(
            a.parse::<vmbuild_qemu::Accel>()
                .map_err(|e| RunError::InvalidInput(format!("--accel: {e}")))?,
        ),
    };
    // QEMU first: a cheap check that must not wait for a kernel download.
    let qemu = vmbuild_qemu::find_qemu(vmbuild_qemu::Arch::current(), args.qemu.as_deref())?;
    let (cache, cache_note) = match prepare_cache(args)? {
        Some((share, note)) => {
            if share.mode == CacheMode::Virtiofs {
                // Fail before any download or boot when virtiofsd is missing.
                vmbuild_cache::virtiofsd::find_virtiofsd_on_host()?;
            }
            (Some(share), Some(note))
        }
        None => (None, None),
    };
    Ok(Prepared {
        opts: VmOptions {
            qemu: Some(qemu),
            accel,
            cpus: args.cpus.unwrap_or(DEFAULT_CPUS),
            memory_mib: args.memory.unwrap_or(DEFAULT_MEMORY_MIB),
            cache,
            kernel_args: args.kernel_args.clone(),
            console_log: args.console_log.clone(),
            network: match args.network.unwrap_or(default_network) {
                NetworkArg::User => vmbuild_qemu::Network::User,
                NetworkArg::None => vmbuild_qemu::Network::None,
            },
            ca_certs: crate::ca_certs::read(&args.ca_certs)?,
            ..VmOptions::default()
        },
        kernel: KernelChoice {
            kernel: args.kernel.clone(),
            modules: args.kernel_modules.clone(),
        },
        cache_note,
        scratch: None,
        image_hold: None,
    })
    .and_then(|mut p| {
        if let Some((image, held)) = args
            .rootfs
            .as_deref()
            .and_then(crate::rootfs_arg::cached_image)
            .transpose()?
        {
            p.opts.rootfs = Some(image);
            p.image_hold = Some(held);
        } else if let Some(path) = &args.rootfs {
            let scratch = tempfile::Builder::new()
                .prefix("vmbuild-rootfs-")
                .tempdir()
                .map_err(|e| RunError::io("creating a temp dir for --rootfs", e))?;
            p.opts.rootfs = Some(crate::rootfs_arg::resolve(path, scratch.path())?);
            p.scratch = Some(scratch);
        }
        Ok(p)
    })
}

/// Validates `--cache-dir` (created if missing) and resolves the mode from
/// `--cache-mode` and `QEMU_USE_VIRTIOFS`; returns it with its one-line note.
pub fn prepare_cache(args: &VmArgs) -> Result<Option<(CacheShare, String)>, RunError> {
    let flag = args.cache_mode.map(|m| match m {
        CacheModeArg::Overlay => CacheMode::Overlay,
        CacheModeArg::Virtiofs => CacheMode::Virtiofs,
    });
    let Some(dir) = &args.cache_dir else {
        if flag.is_some() {
            return Err(RunError::InvalidInput(
                "--cache-mode needs --cache-dir DIR".into(),
            ));
        }
        return Ok(None);
    };
    let mode = vmbuild_cache::resolve_mode_from_env(flag)?;
    let host_dir = vmbuild_cache::prepare_cache_dir(dir)?;
    Ok(Some((
        CacheShare { host_dir, mode },
        vmbuild_cache::describe(mode, dir),
    )))
}

/// Resolves kernel, busybox and initramfs off the async threads, printing
/// notices (first fetch, fallbacks) as they come.
pub async fn assets(kernel: KernelChoice) -> Result<vmbuild_runner::BootAssets, RunError> {
    tokio::task::spawn_blocking(move || {
        vmbuild_runner::assets::prepare(&kernel, &mut |line: &str| eprintln!("vmbuild: {line}"))
    })
    .await
    .map_err(|e| RunError::InvalidInput(format!("asset preparation panicked: {e}")))?
}
