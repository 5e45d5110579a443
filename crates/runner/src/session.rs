//! One VM's life: boot, run commands, shut down — or abort on timeout and
//! Ctrl-C. Every await point also watches QEMU's exit and the [`Stopper`],
//! so nothing hangs; dropping a [`Vm`] kills QEMU and virtiofsd and removes
//! the run directory (sockets, logs), so nothing is left behind either.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use vmbuild_proto::{
    CacheMode, CommandSpec, ExitInfo, GuestMessage, Hello, HostMessage, MountSpec, NetworkSpec,
    RootSpec, Setup, GUEST_CACHE_ALIAS, GUEST_CACHE_DIR, GUEST_HOME,
};
use vmbuild_qemu::{Accel, Drive, DriveFormat, Network, Share, ShareKind, VmConfig};

use crate::assets::BootAssets;
use crate::control::{ControlChannel, Incoming};
use crate::error::{RunError, VmFailureKind};
use crate::output::OutputSink;
use crate::stop::Stopper;
use crate::timings::Timings;

/// 9p message size: the largest this guest kernel accepts (DESIGN.md).
pub const NINEP_MSIZE: u32 = 512_000;
/// How long a guest may take to power off after `Shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long QEMU gets to exit after QMP `quit` before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(2);
const CACHE_TAG: &str = "vmbuild-cache";
const SOURCE_TAG: &str = "vmbuild-src";

/// The host cache directory to share, already validated and absolute.
#[derive(Debug, Clone)]
pub struct CacheShare {
    pub host_dir: PathBuf,
    pub mode: CacheMode,
}

/// A root filesystem image commands run in instead of the initramfs's
/// busybox. Attached read-only; the guest puts a tmpfs overlay on it, so
/// the file never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImage {
    pub path: PathBuf,
    /// `erofs` or `ext4`.
    pub fstype: String,
}

/// The guest's hostname (also in its /etc/hosts, so it resolves).
pub const GUEST_HOSTNAME: &str = "vmbuild";
/// The guest device of the root image: it is the only (first) virtio disk.
pub const ROOT_DEVICE: &str = "/dev/vda";

/// What the VM looks like; the CLI fills this from flags and environment.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub qemu: Option<PathBuf>,
    /// `None`: detect (KVM/HVF when really usable, else TCG).
    pub accel: Option<Accel>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub cache: Option<CacheShare>,
    /// Extra kernel command-line arguments (appended last, so they win).
    pub kernel_args: Vec<String>,
    /// Keep the guest console here instead of in the run dir.
    pub console_log: Option<PathBuf>,
    /// Symlinks the guest creates during setup (cache defaults).
    pub symlinks: Vec<vmbuild_proto::SymlinkSpec>,
    /// A host directory shown at /home/build: read-only 9p with a tmpfs
    /// overlay, so the build can write but the host copy never changes.
    pub source: Option<PathBuf>,
    /// Extra guest directories created after the mounts.
    pub mkdirs: Vec<String>,
    /// Run commands in this image (`None`: the initramfs's busybox).
    pub rootfs: Option<RootImage>,
    /// The guest's NIC (`Network::None`: loopback only).
    pub network: Network,
    /// PEM certificates the guest trusts besides its root's own.
    pub ca_certs: Option<String>,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            qemu: None,
            accel: None,
            cpus: 1,
            memory_mib: 1024,
            cache: None,
            kernel_args: Vec::new(),
            console_log: None,
            symlinks: Vec::new(),
            source: None,
            mkdirs: Vec::new(),
            rootfs: None,
            network: Network::None,
            ca_certs: None,
        }
    }
}

/// The QEMU drives for `rootfs`: one read-only raw disk, with an absolute
/// path (checked to be a readable file, so a typo fails before QEMU starts).
pub(crate) fn root_drives(rootfs: Option<&RootImage>) -> Result<Vec<Drive>, RunError> {
    let Some(r) = rootfs else {
        return Ok(Vec::new());
    };
    if !vmbuild_proto::ROOT_FSTYPES.contains(&r.fstype.as_str()) {
        return Err(RunError::InvalidInput(format!(
            "root image {}: filesystem type '{}' is not supported; use one of: {}",
            r.path.display(),
            r.fstype,
            vmbuild_proto::ROOT_FSTYPES.join(", ")
        )));
    }
    let path = std::fs::canonicalize(&r.path)
        .and_then(|p| std::fs::File::open(&p).map(|_| p))
        .map_err(|e| {
            RunError::InvalidInput(format!(
                "root image {} cannot be read: {e}; build one (`vmbuild image build`) or fix the path",
                r.path.display()
            ))
        })?;
    if !path.is_file() {
        return Err(RunError::InvalidInput(format!(
            "root image {} is not a file (want an erofs or ext4 image)",
            r.path.display()
        )));
    }
    Ok(vec![Drive {
        path,
        read_only: true,
        format: DriveFormat::Raw,
    }])
}

/// What the guest init is told about the root image and the network.
pub(crate) fn guest_root_and_network(
    rootfs: Option<&RootImage>,
    network: Network,
) -> (Option<RootSpec>, Option<NetworkSpec>) {
    let root = rootfs.map(|r| RootSpec {
        device: ROOT_DEVICE.into(),
        fstype: r.fstype.clone(),
    });
    let net = match network {
        Network::None => None,
        Network::User => Some(NetworkSpec {
            address: vmbuild_qemu::SLIRP_GUEST_ADDRESS.into(),
            gateway: vmbuild_qemu::SLIRP_GATEWAY.into(),
            dns: vec![vmbuild_qemu::SLIRP_DNS.into()],
        }),
    };
    (root, net)
}

/// What was decided while booting, for `--verbose` and `doctor`.
#[derive(Debug, Clone)]
pub struct BootInfo {
    pub qemu: PathBuf,
    pub accel: Accel,
    pub accel_reason: String,
    pub argv: Vec<std::ffi::OsString>,
}

pub struct Vm {
    // Field order is drop order: processes die before their directory goes.
    qemu: vmbuild_qemu::QemuProcess,
    qmp: Option<vmbuild_qemu::Qmp>,
    ctl: ControlChannel,
    virtiofsd: Option<vmbuild_cache::Virtiofsd>,
    console_log: PathBuf,
    qemu_log: PathBuf,
    pub hello: Hello,
    pub info: BootInfo,
    pub timings: Timings,
    _rundir: tempfile::TempDir,
}

/// A directory for sockets and logs. Unix socket paths are limited to 108
/// bytes, so a long `$TMPDIR` falls back to `/tmp`.
fn make_rundir() -> Result<tempfile::TempDir, RunError> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 64 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix("vmbuild-")
        .tempdir_in(&base)
        .map_err(|e| {
            RunError::io(
                format!("cannot create a run directory in {}", base.display()),
                e,
            )
        })
}

fn bind(path: &Path) -> Result<UnixListener, RunError> {
    UnixListener::bind(path)
        .map_err(|e| RunError::io(format!("cannot listen on {}", path.display()), e))
}

fn read_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    vmbuild_qemu::console::tail(&text, lines)
}

/// Everything decided and bound before QEMU starts: the run dir, the two
/// listening sockets and the VM's configuration (no shares yet).
pub(crate) struct Launch {
    pub rundir: tempfile::TempDir,
    pub ctl_listener: UnixListener,
    pub qmp_listener: UnixListener,
    pub cfg: VmConfig,
    pub info: BootInfo,
}

impl Launch {
    pub fn prepare(opts: &VmOptions, kernel: &Path, initrd: &Path) -> Result<Launch, RunError> {
        let facts = vmbuild_qemu::probe_host();
        let (accel, accel_reason) = match opts.accel {
            Some(a) => (a, format!("{a}: requested with --accel")),
            None => vmbuild_qemu::choose_accel(&facts),
        };
        let qemu = vmbuild_qemu::find_qemu(facts.arch, opts.qemu.as_deref())?;
        let rundir = make_rundir()?;
        let dir = rundir.path();
        let control_socket = dir.join("ctl.sock");
        let qmp_socket = dir.join("qmp.sock");
        let drives = root_drives(opts.rootfs.as_ref())?;
        let ctl_listener = bind(&control_socket)?;
        let qmp_listener = bind(&qmp_socket)?;
        let cfg = VmConfig {
            qemu: qemu.clone(),
            host_os: facts.os,
            arch: facts.arch,
            accel,
            cpus: opts.cpus,
            memory_mib: opts.memory_mib,
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            kernel_cmdline_extra: opts.kernel_args.clone(),
            tsc_khz: facts.tsc_khz,
            console_log: opts
                .console_log
                .clone()
                .unwrap_or_else(|| dir.join("console.log")),
            control_socket,
            qmp_socket,
            shares: Vec::new(),
            drives,
            network: opts.network,
        };
        let info = BootInfo {
            qemu,
            accel,
            accel_reason,
            argv: Vec::new(),
        };
        Ok(Launch {
            rundir,
            ctl_listener,
            qmp_listener,
            cfg,
            info,
        })
    }
}

impl Vm {
    /// Boots a VM and brings the guest init to `Ready`.
    pub async fn boot(
        opts: &VmOptions,
        assets: &BootAssets,
        stop: &Stopper,
        mut timings: Timings,
    ) -> Result<Vm, RunError> {
        let Launch {
            rundir,
            ctl_listener,
            qmp_listener,
            mut cfg,
            info,
        } = Launch::prepare(opts, &assets.kernel.image, &assets.initramfs)?;
        let dir = rundir.path();
        let console_log = cfg.console_log.clone();
        let qemu_log = dir.join("qemu.log");

        let mut shares = Vec::new();
        let mut mkdirs = vec![GUEST_HOME.to_string()];
        mkdirs.extend(opts.mkdirs.iter().cloned());
        let (root, network) = guest_root_and_network(opts.rootfs.as_ref(), opts.network);
        let mut setup = Setup {
            mkdirs,
            symlinks: opts.symlinks.clone(),
            root,
            network,
            hostname: Some(GUEST_HOSTNAME.into()),
            ca_certs: opts.ca_certs.clone(),
            ..Default::default()
        };
        let mut virtiofsd = None;
        if let Some(cache) = &opts.cache {
            let kind = match cache.mode {
                CacheMode::Overlay => ShareKind::NineP { read_only: true },
                CacheMode::Virtiofs => {
                    let socket = dir.join("virtiofs.sock");
                    let d = vmbuild_cache::Virtiofsd::start_found(
                        &cache.host_dir,
                        &socket,
                        &dir.join("virtiofsd.log"),
                    )
                    .await?;
                    virtiofsd = Some(d);
                    ShareKind::Virtiofs { socket }
                }
            };
            shares.push(Share {
                tag: CACHE_TAG.into(),
                host_path: cache.host_dir.clone(),
                kind,
            });
            setup.mounts.push(MountSpec {
                tag: CACHE_TAG.into(),
                mode: cache.mode,
                target: GUEST_CACHE_DIR.into(),
                aliases: vec![GUEST_CACHE_ALIAS.into()],
                msize: Some(NINEP_MSIZE),
            });
        }

        if let Some(src) = &opts.source {
            shares.push(Share {
                tag: SOURCE_TAG.into(),
                host_path: src.clone(),
                kind: ShareKind::NineP { read_only: true },
            });
            setup.mounts.push(MountSpec {
                tag: SOURCE_TAG.into(),
                mode: CacheMode::Overlay,
                target: GUEST_HOME.into(),
                aliases: Vec::new(),
                msize: Some(NINEP_MSIZE),
            });
        }
        cfg.shares = shares;
        let argv = vmbuild_qemu::build_argv(&cfg);
        tracing::debug!(?argv, "starting QEMU");
        let mut qemu = vmbuild_qemu::QemuProcess::spawn(&cfg.qemu, &argv, &qemu_log)?;
        timings.qemu_spawned = Some(Instant::now());

        // QEMU connects to both sockets while it starts; it exits instead if
        // it cannot start (bad kernel, bad option...).
        let accepted = async {
            let qmp = vmbuild_qemu::Qmp::accept(&qmp_listener).await?;
            // The VM starts running right away (no -S); confirm it through
            // QMP before waiting on the guest, polling briefly if not yet.
            while !qmp.query_status().await? {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (ctl, _) = ctl_listener
                .accept()
                .await
                .map_err(|e| RunError::io("accepting the guest control connection from QEMU", e))?;
            Ok::<_, RunError>((qmp, ctl))
        };
        let (qmp, ctl) = tokio::select! {
            r = accepted => r?,
            status = qemu.wait() => return Err(start_failure(status, &qemu_log)),
            e = stop.fired("while starting QEMU") => return Err(e),
        };
        drop((ctl_listener, qmp_listener));
        let info = BootInfo { argv, ..info };
        let mut vm = Vm {
            qemu,
            qmp: Some(qmp),
            ctl: ControlChannel::new(ctl),
            virtiofsd,
            console_log,
            qemu_log,
            hello: Hello {
                init_version: String::new(),
                kernel_release: String::new(),
                init_start_us: 0,
                port_open_us: 0,
            },
            info,
            timings,
            _rundir: rundir,
        };

        match vm.next_message(stop, "while booting the guest").await? {
            GuestMessage::Hello(h) => {
                vm.timings.hello_at = Some(Instant::now());
                vm.timings.init_start_us = h.init_start_us;
                vm.timings.port_open_us = h.port_open_us;
                vm.hello = h;
            }
            other => return Err(protocol_error("Hello", &other)),
        }
        vm.ctl
            .send(&HostMessage::Setup(setup))
            .await
            .map_err(|e| RunError::io("sending setup to the guest", e))?;
        loop {
            match vm.next_message(stop, "while setting up the guest").await? {
                GuestMessage::Ready(r) => {
                    vm.timings.ready_us = r.uptime_us;
                    break;
                }
                GuestMessage::Log(l) => tracing::debug!(guest = %l),
                other => return Err(protocol_error("Ready", &other)),
            }
        }
        Ok(vm)
    }

    /// Runs one command to its exit status, streaming its output to `sink`.
    pub async fn run(
        &mut self,
        cmd: &CommandSpec,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        self.ctl
            .send(&HostMessage::Run(cmd.clone()))
            .await
            .map_err(|e| RunError::io("sending a command to the guest", e))?;
        loop {
            match self.next_message(stop, "while running the command").await? {
                GuestMessage::Stdout(b) => sink.stdout(&b),
                GuestMessage::Stderr(b) => sink.stderr(&b),
                GuestMessage::Log(l) => tracing::debug!(guest = %l),
                GuestMessage::Exited(e) => {
                    self.timings
                        .first_command_start_us
                        .get_or_insert(e.started_us);
                    self.timings.last_command_end_us = Some(e.ended_us);
                    self.timings.last_exited_at = Some(Instant::now());
                    return Ok(e);
                }
                other => return Err(protocol_error("output or exit status", &other)),
            }
        }
    }

    /// Asks the guest to sync and power off, and waits for QEMU to exit.
    pub async fn shutdown(mut self) -> Result<Timings, RunError> {
        let sent = self.ctl.send(&HostMessage::Shutdown).await;
        let exited = match sent {
            Ok(()) => tokio::time::timeout(SHUTDOWN_GRACE, self.qemu.wait())
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !exited {
            tracing::warn!("guest did not power off within {SHUTDOWN_GRACE:?}; stopping QEMU");
            self.quit().await;
        }
        self.timings.qemu_exited_at = Some(Instant::now());
        self.stop_virtiofsd().await;
        Ok(self.timings)
    }

    /// Stops the VM now (timeout, Ctrl-C, error): QMP `quit`, then SIGKILL.
    pub async fn abort(mut self) {
        self.quit().await;
        self.stop_virtiofsd().await;
    }

    async fn quit(&mut self) {
        if let Some(qmp) = self.qmp.as_mut() {
            let _ = tokio::time::timeout(QUIT_GRACE, qmp.quit()).await;
        }
        if tokio::time::timeout(QUIT_GRACE, self.qemu.wait())
            .await
            .is_err()
        {
            let _ = self.qemu.kill().await;
        }
    }

    async fn stop_virtiofsd(&mut self) {
        if let Some(mut d) = self.virtiofsd.take() {
            if let Err(e) = d.stop().await {
                tracing::warn!("stopping virtiofsd: {e}");
            }
        }
    }

    /// The next message from the guest, or why none will come.
    async fn next_message(
        &mut self,
        stop: &Stopper,
        during: &'static str,
    ) -> Result<GuestMessage, RunError> {
        let incoming = tokio::select! {
            biased;
            m = self.ctl.recv() => m,
            status = self.qemu.wait() => {
                tracing::debug!(?status, "QEMU exited");
                return Err(self.died(Some(status)).await);
            }
            e = stop.fired(during) => return Err(e),
        };
        match incoming {
            Some(Incoming::Message(GuestMessage::Fatal(msg))) => Err(RunError::Vm {
                kind: VmFailureKind::InitFatal,
                detail: msg,
                console_tail: read_tail(&self.console_log, 20),
            }),
            Some(Incoming::Message(m)) => Ok(m),
            Some(Incoming::Broken(why)) => Err(RunError::Vm {
                kind: VmFailureKind::Unexpected,
                detail: format!("control channel broke: {why}"),
                console_tail: read_tail(&self.console_log, 20),
            }),
            None => Err(self.died(None).await),
        }
    }

    /// QEMU exited (or closed the channel) before the guest finished: find
    /// out why from a last Fatal message, QEMU's own log, and the console.
    async fn died(
        &mut self,
        status: Option<std::io::Result<std::process::ExitStatus>>,
    ) -> RunError {
        let status = match status {
            Some(s) => s.ok(),
            None => tokio::time::timeout(QUIT_GRACE, self.qemu.wait())
                .await
                .ok()
                .and_then(|s| s.ok()),
        };
        // A Fatal sent just before power-off may still be in the channel.
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), self.ctl.recv()).await
        {
            if let Incoming::Message(GuestMessage::Fatal(msg)) = m {
                return RunError::Vm {
                    kind: VmFailureKind::InitFatal,
                    detail: msg,
                    console_tail: read_tail(&self.console_log, 20),
                };
            }
        }
        if let Some(s) = status.filter(|s| !s.success()) {
            return start_failure(Ok(s), &self.qemu_log);
        }
        let console = std::fs::read(&self.console_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let tail = vmbuild_qemu::console::tail(&console, 20);
        use vmbuild_qemu::console::GuestFailure as G;
        let (kind, detail) = match vmbuild_qemu::console::classify(&console) {
            Some(G::InitCrash(l)) => (VmFailureKind::InitCrash, l),
            Some(G::KernelPanic(l)) => (VmFailureKind::KernelPanic, l),
            Some(G::OutOfMemory(l)) => (VmFailureKind::OutOfMemory, l),
            None => (
                VmFailureKind::Unexpected,
                "QEMU exited before the guest reported a result".to_string(),
            ),
        };
        RunError::Vm {
            kind,
            detail,
            console_tail: tail,
        }
    }
}

fn start_failure(status: std::io::Result<std::process::ExitStatus>, qemu_log: &Path) -> RunError {
    let tail = read_tail(qemu_log, 5);
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("could not wait for it: {e}"),
    };
    let detail = if tail.trim().is_empty() {
        "no output".to_string()
    } else {
        tail.trim().replace('\n', " | ")
    };
    RunError::QemuStartFailed { status, detail }
}

fn protocol_error(expected: &str, got: &GuestMessage) -> RunError {
    let got = match got {
        GuestMessage::Hello(_) => "Hello",
        GuestMessage::Ready(_) => "Ready",
        GuestMessage::Stdout(_) => "Stdout",
        GuestMessage::Stderr(_) => "Stderr",
        GuestMessage::Exited(_) => "Exited",
        GuestMessage::Fatal(_) => "Fatal",
        GuestMessage::Log(_) => "Log",
    };
    RunError::Vm {
        kind: VmFailureKind::Unexpected,
        detail: format!("guest init sent {got} where {expected} was expected (mismatched init? rebuild with scripts/build-init.sh)"),
        console_tail: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_image_becomes_a_read_only_first_disk_and_a_root_spec() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("env.erofs");
        std::fs::write(&img, b"x").unwrap();
        let r = RootImage {
            path: d.path().join("./env.erofs"),
            fstype: "erofs".into(),
        };
        let drives = root_drives(Some(&r)).unwrap();
        assert_eq!(
            drives,
            [Drive {
                path: img.canonicalize().unwrap(),
                read_only: true,
                format: DriveFormat::Raw,
            }]
        );
        let (root, net) = guest_root_and_network(Some(&r), Network::None);
        assert_eq!(
            root,
            Some(RootSpec {
                device: "/dev/vda".into(),
                fstype: "erofs".into()
            })
        );
        assert_eq!(net, None);
        assert!(root_drives(None).unwrap().is_empty());
    }

    #[test]
    fn missing_or_non_file_root_image_fails_before_boot() {
        let d = tempfile::tempdir().unwrap();
        for path in [d.path().join("nope.erofs"), d.path().to_path_buf()] {
            let r = RootImage {
                path: path.clone(),
                fstype: "erofs".into(),
            };
            let e = root_drives(Some(&r)).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
    }

    #[test]
    fn unsupported_root_fstype_fails_before_boot() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("env.sqfs");
        std::fs::write(&img, b"x").unwrap();
        let r = RootImage {
            path: img,
            fstype: "squashfs".into(),
        };
        let e = root_drives(Some(&r)).unwrap_err().to_string();
        assert!(e.contains("'squashfs'") && e.contains("erofs, ext4"), "{e}");
    }

    #[test]
    fn user_network_tells_the_guest_the_slirp_addresses() {
        let (root, net) = guest_root_and_network(None, Network::User);
        assert_eq!(root, None);
        assert_eq!(
            net,
            Some(NetworkSpec {
                address: "10.0.2.15/24".into(),
                gateway: "10.0.2.2".into(),
                dns: vec!["10.0.2.3".into()],
            })
        );
    }
}
