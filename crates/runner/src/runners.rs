//! The runner seam: which runners exist, what each supports, and how each
//! starts. Callers go spec -> [`RunnerKind::check`] -> [`RunnerOptions::start`]
//! -> [`Session`] (run commands, then finish or abort), whatever the runner.
//!
//! A new runner is one module (its options type and its session type) plus
//! one variant in each enum here and its row in [`RunnerKind::supports`].

use std::time::Instant;

use vmbuild_proto::{CommandSpec, ExitInfo};

use crate::bwrap::{BwrapOptions, Sandbox};
use crate::docker::{Container, DockerOptions};
use crate::error::RunError;
pub use crate::features::{hint, Feature, RunnerKind};
use crate::output::OutputSink;
use crate::stop::Stopper;
use crate::timings::Timings;
use crate::vm::assets::KernelChoice;
use crate::vm::{Vm, VmOptions};

impl RunnerKind {
    /// Every requested feature is supported, or [`RunError::Unsupported`]
    /// for the first that is not.
    pub fn check(self, requested: &[Feature]) -> Result<(), RunError> {
        match requested.iter().find(|f| !self.supports(f)) {
            None => Ok(()),
            Some(f) => Err(RunError::Unsupported {
                runner: self,
                feature: f.clone(),
            }),
        }
    }
}

/// What a runner tells while it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartEvent<'a> {
    /// A phase begins ("booting the VM"): progress, shown in a build's step
    /// list, not by `vmbuild run`.
    Phase(&'a str),
    /// Worth telling whatever the front end: a first download, a fallback.
    Notice(&'a str),
    /// How far a long part of starting has got: the first-use kernel
    /// download and unpacking, an image import into the Docker Engine.
    Progress(vmbuild_image::Progress<'a>),
}

/// The QEMU runner's options: the VM and its kernel.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    pub vm: VmOptions,
    pub kernel: KernelChoice,
    /// When the vmbuild process started, for `--timings`.
    pub process_start: Option<Instant>,
}

/// Plain-data options of one runner.
#[derive(Debug, Clone)]
pub enum RunnerOptions {
    Qemu(Box<QemuOptions>),
    Bubblewrap(BwrapOptions),
    Docker(Box<DockerOptions>),
}

impl RunnerOptions {
    pub fn kind(&self) -> RunnerKind {
        match self {
            Self::Qemu(_) => RunnerKind::Qemu,
            Self::Bubblewrap(_) => RunnerKind::Bubblewrap,
            Self::Docker(_) => RunnerKind::Docker,
        }
    }

    /// Guest memory in MiB, when the runner is a VM or a container with a
    /// memory limit (for out-of-memory advice).
    pub fn memory_mib(&self) -> Option<u32> {
        match self {
            Self::Qemu(q) => Some(q.vm.memory_mib),
            Self::Bubblewrap(_) => None,
            Self::Docker(d) => d.memory_mib,
        }
    }

    /// Puts the commands in `image` (an environment image) instead of the
    /// runner's default root. Only the qemu and docker runners have roots
    /// to choose ([`RunnerKind::check`] with [`Feature::Packages`] says so
    /// first).
    pub fn set_root_image(&mut self, image: crate::vm::RootImage) -> Result<(), RunError> {
        match self {
            Self::Qemu(q) => {
                q.vm.root_image = Some(image);
                Ok(())
            }
            Self::Docker(d) => {
                d.root_image = Some(image);
                Ok(())
            }
            other => Err(RunError::Unsupported {
                runner: other.kind(),
                feature: Feature::Packages,
            }),
        }
    }

    /// Starts the runner: for QEMU, prepares the kernel and initramfs
    /// (fetched on first use) and boots the VM; for bubblewrap, makes the
    /// workspace; for docker, imports the image (once) and starts the
    /// container. `events` hears about phases and notices as they come.
    /// Needs a multi-threaded tokio runtime (blocking work runs in place).
    pub async fn start(
        self,
        stop: &Stopper,
        events: &mut (dyn FnMut(StartEvent<'_>) + Send),
    ) -> Result<Session, RunError> {
        match self {
            Self::Qemu(q) => {
                let vm = q.vm.validate()?;
                events(StartEvent::Phase("preparing the kernel and initramfs"));
                let assets = tokio::task::block_in_place(|| {
                    crate::vm::assets::prepare(&q.kernel, &mut |e| events(e))
                })?;
                events(StartEvent::Phase("booting the VM"));
                let timings = Timings {
                    process_start: q.process_start,
                    ..Default::default()
                };
                let vm = Vm::boot(&vm, &assets.boot_files(), stop, timings).await?;
                tracing::debug!(accel = %vm.info.accel, reason = %vm.info.accel_reason, kernel = %vm.hello.kernel_release, "guest up");
                Ok(Session::Qemu(Box::new(vm)))
            }
            Self::Bubblewrap(b) => {
                events(StartEvent::Phase("preparing the bubblewrap workspace"));
                let sandbox = tokio::task::block_in_place(|| Sandbox::start(&b))?;
                Ok(Session::Bubblewrap(sandbox))
            }
            Self::Docker(d) => {
                events(StartEvent::Phase("connecting to the Docker Engine"));
                let c = Container::start(&d, stop, events).await?;
                Ok(Session::Docker(Box::new(c)))
            }
        }
    }
}

/// A started runner: runs commands one at a time, then finishes (clean
/// end) or aborts (timeout, Ctrl-C, error). Dropping it also cleans up.
pub enum Session {
    Qemu(Box<Vm>),
    Bubblewrap(Sandbox),
    Docker(Box<Container>),
}

impl Session {
    /// Which runner this session belongs to.
    pub fn kind(&self) -> RunnerKind {
        match self {
            Self::Qemu(_) => RunnerKind::Qemu,
            Self::Bubblewrap(_) => RunnerKind::Bubblewrap,
            Self::Docker(_) => RunnerKind::Docker,
        }
    }

    /// Runs one command to its exit status, streaming its output to `sink`.
    pub async fn run(
        &mut self,
        cmd: &CommandSpec,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        match self {
            Self::Qemu(vm) => vm.run(cmd, sink, stop).await,
            Self::Bubblewrap(sb) => sb.run(cmd, sink, stop).await,
            Self::Docker(c) => c.run(cmd, sink, stop).await,
        }
    }

    /// Runs `cmd` attached to the user's terminal (stdin must be one; it is
    /// in raw mode meanwhile and restored after) until it exits: an
    /// interactive shell for `--interactive`. qemu: on a guest pty relayed
    /// over the control channel; bubblewrap: on a host pty; docker: an
    /// exec with a terminal.
    pub async fn run_tty(
        &mut self,
        cmd: &CommandSpec,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        match self {
            Self::Qemu(vm) => vm.run_tty(cmd, stop).await,
            Self::Bubblewrap(sb) => sb.run_tty(cmd, stop).await,
            Self::Docker(c) => c.run_tty(cmd, stop).await,
        }
    }

    /// Streams the changes a build made in the overlay mount `tag` (qemu
    /// runner only: the other runners write volumes directly).
    pub async fn export_changes(
        &mut self,
        tag: &str,
        sink: &mut dyn OutputSink,
        stop: &Stopper,
    ) -> Result<ExitInfo, RunError> {
        match self {
            Self::Qemu(vm) => vm.export_changes(tag, sink, stop).await,
            Self::Bubblewrap(_) | Self::Docker(_) => Err(RunError::BadCommand(format!(
                "the {} runner has no overlay mount {tag} to export",
                self.kind()
            ))),
        }
    }

    /// Clean end after success or a failed command; the VM's timings when
    /// there was a VM.
    pub async fn finish(self) -> Result<Option<Timings>, RunError> {
        match self {
            Self::Qemu(vm) => (*vm).shutdown().await.map(Some),
            Self::Bubblewrap(sb) => {
                sb.finish().await;
                Ok(None)
            }
            Self::Docker(c) => {
                c.finish().await;
                Ok(None)
            }
        }
    }

    /// Stops now (timeout, Ctrl-C, failure).
    pub async fn abort(self) {
        match self {
            Self::Qemu(vm) => (*vm).abort().await,
            Self::Bubblewrap(sb) => sb.finish().await,
            Self::Docker(c) => c.finish().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbuild_proto::CacheMode;
    use vmbuild_qemu::Network;

    #[test]
    fn qemu_supports_everything_bubblewrap_only_no_network() {
        let all = [
            Feature::Packages,
            Feature::RootFs,
            Feature::CaCerts,
            Feature::CacheMode(CacheMode::Overlay),
            Feature::CacheMode(CacheMode::Virtiofs),
            Feature::Network(Network::User),
            Feature::Network(Network::None),
            Feature::Volumes,
            Feature::StepVolumes,
            Feature::Interactive,
        ];
        assert!(RunnerKind::Qemu.check(&all).is_ok());
        let bw: Vec<_> = all
            .iter()
            .filter(|f| RunnerKind::Bubblewrap.supports(f))
            .collect();
        assert_eq!(
            bw,
            [
                &Feature::Network(Network::None),
                &Feature::Volumes,
                &Feature::Interactive
            ]
        );
        assert!(RunnerKind::Bubblewrap.check(&[]).is_ok());
    }

    #[test]
    fn docker_supports_images_networks_and_volumes_but_not_vm_only_features() {
        let ok = [
            Feature::Packages,
            Feature::RootFs,
            Feature::Network(Network::User),
            Feature::Network(Network::None),
            Feature::Volumes,
            Feature::Interactive,
        ];
        assert!(RunnerKind::Docker.check(&ok).is_ok());
        for f in [
            Feature::CaCerts,
            Feature::CacheMode(CacheMode::Overlay),
            Feature::StepVolumes,
        ] {
            let e = RunnerKind::Docker
                .check(std::slice::from_ref(&f))
                .unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_SETUP);
            let s = e.to_string();
            assert!(
                s.starts_with("the docker runner does not support")
                    && s.contains("use --runner qemu"),
                "{s}"
            );
        }
    }

    #[test]
    fn unsupported_names_runner_feature_and_what_to_do() {
        let e = RunnerKind::Bubblewrap
            .check(&[
                Feature::Network(Network::None),
                Feature::RootFs,
                Feature::CaCerts,
            ])
            .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_SETUP);
        assert_eq!(
            e.to_string(),
            "the bubblewrap runner does not support --rootfs; bubblewrap uses the host's root filesystem; use --runner qemu"
        );
        let e = RunnerKind::Bubblewrap
            .check(&[Feature::CacheMode(CacheMode::Virtiofs)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cache-mode virtiofs") && e.contains("read-write"),
            "{e}"
        );
    }
}
