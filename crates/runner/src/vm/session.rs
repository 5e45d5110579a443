//! One VM's life: boot, run commands, shut down — or abort on timeout and
//! Ctrl-C. [`Vm::boot`] executes a [`super::plan::VmPlan`]: it starts the
//! planned virtiofsd daemons, spawns QEMU and walks the guest through
//! `Hello` -> `Setup` -> `Ready`.
//!
//! Every await point also watches QEMU's exit, each virtiofsd's exit, the
//! [`Stopper`] and, while waiting on the guest init, a phase deadline
//! ([`GuestWaits`]) — so nothing hangs. Dropping a [`Vm`] kills QEMU and
//! virtiofsd and removes the run directory (sockets, logs), so nothing is
//! left behind either.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use vmbuild_proto::{CommandSpec, ExitInfo, GuestMessage, Hello, HostMessage, Setup};

use super::control::{ControlChannel, Incoming};
use super::diagnose::{self, read_tail};
use super::launch::{BootInfo, Launch};
use super::options::VmOptions;
use super::plan::{qemu_log, BootFiles};
use super::snapshot::{self, Saved, Snapshots};
use super::warm;
use crate::error::{RunError, VmFailureKind};
use crate::output::OutputSink;
use crate::stop::Stopper;
use crate::timings::Timings;

/// How long a guest may take to power off after `Shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long QEMU gets to exit after QMP `quit` before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// How long each phase of talking to the guest init may take before the
/// VM is declared stuck (exit 123), independent of `--timeout`: QEMU
/// connecting its sockets, the init's first message, and its reply to
/// `Setup`. Scaled for the accelerator: under TCG every instruction is
/// emulated and a loaded CI host can be several times slower than usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestWaits {
    /// From QEMU's start to the guest init's `Hello`.
    pub boot: Duration,
    /// From `Setup` sent to `Ready` (mounts, root image, network).
    pub setup: Duration,
}

impl GuestWaits {
    /// TCG: 60 s each (a boot takes ~1.5 s idle here); KVM/HVF: 20 s.
    /// `explicit` (`--boot-timeout`) replaces both.
    pub fn for_accel(accel: vmbuild_qemu::Accel, explicit: Option<Duration>) -> GuestWaits {
        let base = explicit.unwrap_or(match accel {
            vmbuild_qemu::Accel::Tcg => Duration::from_secs(60),
            _ => Duration::from_secs(20),
        });
        GuestWaits {
            boot: base,
            setup: base,
        }
    }
}

/// A virtiofsd the VM depends on, with the share it serves.
struct Daemon {
    tag: String,
    proc: vmbuild_cache::Virtiofsd,
}

pub struct Vm {
    // Field order is drop order: processes die before their directory goes.
    qemu: vmbuild_qemu::QemuProcess,
    /// QEMU's cgroup: removed once QEMU (above) is reaped.
    cgroup: Option<vmbuild_qemu::confine::cgroup::live::Cgroup>,
    qmp: Option<vmbuild_qemu::Qmp>,
    ctl: ControlChannel,
    daemons: Vec<Daemon>,
    console_log: PathBuf,
    qemu_log: PathBuf,
    pub hello: Hello,
    pub info: BootInfo,
    pub timings: Timings,
    /// How long each start-up phase may take.
    pub(super) waits: GuestWaits,
    _rundir: tempfile::TempDir,
}

/// Resolves when any daemon exits (never when there is none): its tag, pid,
/// exit status and log tail.
async fn daemon_exited(daemons: &mut [Daemon]) -> RunError {
    if daemons.is_empty() {
        return std::future::pending().await;
    }
    let waits = daemons.iter_mut().map(|d| {
        Box::pin(async move {
            let status = d.proc.wait().await;
            diagnose::daemon_died(&d.tag, d.proc.pid(), status, d.proc.log_path())
        })
    });
    futures_util::future::select_all(waits).await.0
}

impl Vm {
    /// Boots a VM for `opts` (validated with [`VmOptions::validate`]) and
    /// brings the guest init to `Ready`.
    ///
    /// With a snapshot store (`opts.snapshots`) the guest is restored from
    /// a saved state when one fits this machine, and a cold boot saves one
    /// for next time (docs/warm-start.md). A restore that fails for any
    /// reason but a timeout or Ctrl-C falls back to a cold boot, said only
    /// at `-v`.
    pub async fn boot(
        opts: &VmOptions,
        boot: &BootFiles,
        stop: &Stopper,
        timings: Timings,
    ) -> Result<Vm, RunError> {
        let snapshots = opts.snapshots.as_deref().and_then(|d| {
            Snapshots::open(d)
                .map_err(|e| tracing::debug!("warm start off: cannot open {}: {e}", d.display()))
                .ok()
        });
        let launch = Launch::prepare(opts, boot, snapshots.is_some())?;
        let Some(snapshots) = snapshots else {
            return Vm::cold(launch, None, stop, timings).await;
        };
        match warm::decide(&snapshots, &launch) {
            warm::Decision::Cold(why) => {
                tracing::debug!("cold boot: {why}");
                Vm::cold(launch, None, stop, timings).await
            }
            warm::Decision::Save(target) => Vm::cold(launch, Some(target), stop, timings).await,
            warm::Decision::Restore(saved, description) => {
                let key = saved.key.clone();
                match Vm::restore(launch, saved, stop, timings.clone()).await {
                    Ok(vm) => Ok(vm),
                    Err(warm::Failed::Stopped(e)) => Err(e),
                    Err(warm::Failed::Unusable(why)) => {
                        tracing::debug!("warm start failed ({why}); booting instead");
                        snapshots.discard(&key);
                        let launch = Launch::prepare(opts, boot, true)?;
                        let target = warm::SaveTarget::begin(snapshots, key, description);
                        Vm::cold(launch, target, stop, timings).await
                    }
                }
            }
        }
    }

    /// Boots from scratch; with `save`, saves the guest once it said Hello.
    async fn cold(
        launch: Launch,
        save: Option<warm::SaveTarget>,
        stop: &Stopper,
        timings: Timings,
    ) -> Result<Vm, RunError> {
        let (mut vm, setup, migrate) = Vm::start(launch, None, stop, timings).await?;
        let deadline = Some(("the guest init's first message (Hello)", vm.waits.boot));
        match vm
            .next_non_log(stop, "while booting the guest", deadline)
            .await?
        {
            GuestMessage::Hello(h) => vm.hello_arrived(h),
            other => return Err(diagnose::protocol_error("Hello", &other)),
        }
        if let (Some(target), Some(listener)) = (save, migrate) {
            if vm.hello.snapshot_safe {
                warm::save(&mut vm, target, &listener, stop).await;
            } else {
                tracing::debug!("not saving a snapshot: a virtio driver besides the console is bound at Hello (a kernel with built-in drivers?)");
            }
        }
        vm.setup(setup, stop).await?;
        Ok(vm)
    }

    /// Restores the guest from `saved` and brings it to `Ready`.
    async fn restore(
        launch: Launch,
        saved: Saved,
        stop: &Stopper,
        timings: Timings,
    ) -> Result<Vm, warm::Failed> {
        let stream = std::fs::File::open(&saved.stream)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| {
                warm::Failed::Unusable(format!("opening {}: {e}", saved.stream.display()))
            })?;
        let (path, meta) = (saved.stream.clone(), saved.meta.clone());
        let verified = tokio::task::spawn_blocking(move || snapshot::files::verify(&path, &meta));
        let (mut vm, setup, _) = Vm::start(launch, Some(stream), stop, timings)
            .await
            .map_err(warm::Failed::from)?;
        warm::resume(&mut vm, stop, verified).await?;
        drop(saved);
        vm.setup(setup, stop).await.map_err(warm::Failed::from)?;
        Ok(vm)
    }

    /// Starts the planned virtiofsd daemons and QEMU (loading the state on
    /// `incoming` when given) and accepts its QMP and control connections.
    async fn start(
        launch: Launch,
        incoming: Option<std::os::fd::OwnedFd>,
        stop: &Stopper,
        mut timings: Timings,
    ) -> Result<(Vm, Setup, Option<UnixListener>), RunError> {
        let Launch {
            rundir,
            ctl_listener,
            qmp_listener,
            migrate_listener,
            plan,
            info,
            mut confined,
            boot_timeout,
        } = launch;
        let waits = GuestWaits::for_accel(info.accel, boot_timeout);
        let console_log = plan.qemu.console_log.clone();
        let qemu_log = qemu_log(rundir.path());

        let mut daemons = Vec::new();
        // virtiofsd joins its VM's cgroup: a guest that makes it grow
        // (open files, memory) hits the VM's limits, not the host's.
        let cgroup_procs = confined.cgroup_procs();
        for d in &plan.daemons {
            let proc = vmbuild_cache::Virtiofsd::start_found_in(
                &d.shared_dir,
                &d.socket,
                &d.log,
                &cgroup_procs,
            )
            .await?;
            confined.hand_over(&d.socket)?;
            daemons.push(Daemon {
                tag: d.tag.clone(),
                proc,
            });
        }
        let mut argv = vmbuild_qemu::build_argv(&plan.qemu);
        if incoming.is_some() {
            argv.extend(vmbuild_qemu::incoming_args(vmbuild_qemu::INCOMING_FD));
        }
        tracing::debug!(?argv, "starting QEMU");
        let mut qemu = vmbuild_qemu::QemuProcess::spawn_passing(
            &plan.qemu.qemu,
            &argv,
            &qemu_log,
            confined.child.as_ref(),
            incoming.as_ref(),
        )?;
        let loading = incoming.is_some();
        drop(incoming);
        timings.qemu_spawned = Some(Instant::now());

        // QEMU connects to both sockets while it starts; it exits instead if
        // it cannot start (bad kernel, bad option...).
        let accepted = async {
            let qmp = vmbuild_qemu::Qmp::accept(&qmp_listener).await?;
            // A boot runs right away (no -S); confirm it through QMP before
            // waiting on the guest, polling briefly if not yet. A restore
            // is resumed later, once its state is loaded.
            while !loading && !qmp.query_status().await? {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (ctl, _) = ctl_listener
                .accept()
                .await
                .map_err(|e| RunError::io("accepting the guest control connection from QEMU", e))?;
            Ok::<_, RunError>((qmp, ctl))
        };
        let connected = tokio::select! {
            r = accepted => r,
            status = qemu.wait() => return Err(diagnose::start_failure(status, &qemu_log)),
            e = daemon_exited(&mut daemons) => return Err(e),
            e = stop.fired("while starting QEMU") => return Err(e),
            _ = tokio::time::sleep(waits.boot) => return Err(diagnose::unresponsive(
                "QEMU to connect its control and QMP sockets", waits.boot, &console_log, &qemu_log)),
        };
        let (qmp, ctl) = match connected {
            Ok(c) => c,
            // QEMU failing to start often shows first as a reset socket:
            // its own reason is in its log once it has exited.
            Err(e) => return Err(diagnose::connect_failure(e, &mut qemu, &qemu_log).await),
        };
        drop((ctl_listener, qmp_listener));
        let info = BootInfo { argv, ..info };
        let vm = Vm {
            qemu,
            cgroup: confined.cgroup.take(),
            qmp: Some(qmp),
            ctl: ControlChannel::new(ctl),
            daemons,
            console_log,
            qemu_log,
            hello: Hello {
                init_version: String::new(),
                kernel_release: String::new(),
                init_start_us: 0,
                port_open_us: 0,
                snapshot_safe: false,
                resumed: false,
            },
            info,
            timings,
            waits,
            _rundir: rundir,
        };
        Ok((vm, plan.setup, migrate_listener))
    }

    /// Records the guest init's Hello.
    pub(super) fn hello_arrived(&mut self, h: Hello) {
        self.timings.hello_at = Some(Instant::now());
        self.timings.init_start_us = h.init_start_us;
        self.timings.port_open_us = h.port_open_us;
        self.hello = h;
    }

    /// Sends `setup` and waits for `Ready`.
    async fn setup(&mut self, setup: Setup, stop: &Stopper) -> Result<(), RunError> {
        self.send(&HostMessage::Setup(setup), "sending setup to the guest")
            .await?;
        let deadline = Some(("the guest init's reply to Setup (Ready)", self.waits.setup));
        match self
            .next_non_log(stop, "while setting up the guest", deadline)
            .await?
        {
            GuestMessage::Ready(r) => {
                self.timings.ready_us = r.uptime_us;
                Ok(())
            }
            other => Err(diagnose::protocol_error("Ready", &other)),
        }
    }

    /// The next message that is not a `Log` (those are logged at debug).
    pub(super) async fn next_non_log(
        &mut self,
        stop: &Stopper,
        during: &'static str,
        deadline: Option<(&'static str, Duration)>,
    ) -> Result<GuestMessage, RunError> {
        loop {
            match self.next_message(stop, during, deadline).await? {
                GuestMessage::Log(l) => tracing::debug!(guest = %l),
                other => return Ok(other),
            }
        }
    }

    /// Sends one message to the guest init; `what` names it in the error.
    pub(super) async fn send(
        &mut self,
        msg: &HostMessage,
        what: &'static str,
    ) -> Result<(), RunError> {
        self.ctl.send(msg).await.map_err(|e| RunError::io(what, e))
    }

    /// The QMP connection (present until the VM is torn down).
    pub(super) fn qmp(&self) -> Option<&vmbuild_qemu::Qmp> {
        self.qmp.as_ref()
    }

    /// The run directory (sockets, logs).
    pub(super) fn rundir(&self) -> &std::path::Path {
        self._rundir.path()
    }

    /// The last lines of QEMU's own log, on one line.
    pub(super) fn qemu_log_tail(&self) -> String {
        read_tail(&self.qemu_log, 3).trim().replace('\n', " | ")
    }

    /// Runs one command to its exit status, streaming its output to `sink`.
    pub async fn run(
        &mut self,
        cmd: &CommandSpec,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        self.request(HostMessage::Run(cmd.clone()), sink, stop)
            .await
    }

    /// Streams what the build changed in the overlay mount `tag` (a tar in
    /// OCI layer form, see `vmbuild_proto::HostMessage::ExportChanges`) to
    /// `sink`; the exit status says whether the guest could read it all.
    pub async fn export_changes(
        &mut self,
        tag: &str,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        let msg = HostMessage::ExportChanges(vmbuild_proto::ExportChanges { tag: tag.into() });
        self.request(msg, sink, stop).await
    }

    /// Sends `msg` and streams the guest's output to `sink` until `Exited`.
    async fn request(
        &mut self,
        msg: HostMessage,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        self.send(&msg, "sending a request to the guest").await?;
        loop {
            match self
                .next_message(stop, "while running the command", None)
                .await?
            {
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
                other => return Err(diagnose::protocol_error("output or exit status", &other)),
            }
        }
    }

    /// Asks the guest to sync and power off, and waits (at most
    /// [`SHUTDOWN_GRACE`]) for QEMU to exit; stops it otherwise.
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
        self.stop_daemons().await;
        Ok(self.timings)
    }

    /// Stops the VM now (timeout, Ctrl-C, error): QMP `quit`, then SIGKILL.
    pub async fn abort(mut self) {
        self.quit().await;
        self.stop_daemons().await;
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

    async fn stop_daemons(&mut self) {
        for mut d in self.daemons.drain(..) {
            if let Err(e) = d.proc.stop().await {
                tracing::warn!("stopping virtiofsd for {}: {e}", d.tag);
            }
        }
    }

    /// The next message from the guest, or why none will come: QEMU or a
    /// daemon exited, the stopper fired, or `deadline` (what is awaited,
    /// how long) passed. Cancel-safe (a dropped call loses no message).
    pub(super) async fn next_message(
        &mut self,
        stop: &Stopper,
        during: &'static str,
        deadline: Option<(&'static str, Duration)>,
    ) -> Result<GuestMessage, RunError> {
        let limit = async {
            match deadline {
                Some((_, d)) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let incoming = tokio::select! {
            biased;
            m = self.ctl.recv() => m,
            status = self.qemu.wait() => {
                tracing::debug!(?status, "QEMU exited");
                return Err(self.died(Some(status)).await);
            }
            e = daemon_exited(&mut self.daemons) => return Err(e),
            e = stop.fired(during) => return Err(e),
            _ = limit => {
                let (what, d) = deadline.unwrap_or(("the guest", Duration::ZERO));
                return Err(diagnose::unresponsive(what, d, &self.console_log, &self.qemu_log));
            }
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
        if self.cgroup.as_ref().is_some_and(|c| c.oom_killed()) {
            let limit = self
                .cgroup
                .as_ref()
                .map_or(0, |c| c.plan().limits.memory_bytes >> 20);
            return RunError::Vm {
                kind: VmFailureKind::OutOfMemory,
                detail: format!(
                    "QEMU was killed by its cgroup's memory limit ({limit} MiB: guest memory plus QEMU's overhead); lower the build's memory use or raise --memory"
                ),
                console_tail: read_tail(&self.console_log, 20),
            };
        }
        if let Some(s) = status.filter(|s| !s.success()) {
            return diagnose::start_failure(Ok(s), &self.qemu_log);
        }
        diagnose::from_console(&self.console_log)
    }
}
