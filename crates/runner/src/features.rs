//! Runner kinds and the features a run or build may ask for: plain data
//! with no dependency on the rest of the crate, so errors can name them.

use vmbuild_proto::CacheMode;
use vmbuild_qemu::Network;

/// Where commands run (melange's runner names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunnerKind {
    /// A throw-away QEMU microVM.
    Qemu,
    /// A bubblewrap sandbox on the host.
    Bubblewrap,
    /// A container of a Docker Engine.
    Docker,
}

impl std::fmt::Display for RunnerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Qemu => "qemu",
            Self::Bubblewrap => "bubblewrap",
            Self::Docker => "docker",
        })
    }
}

/// Something a run or build asks for that not every runner has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feature {
    /// `environment.contents.packages`: an environment image.
    Packages,
    /// `--rootfs`: a root image of the user's (or a cached environment
    /// image named by its key).
    RootFs,
    /// `--ca-cert`: extra CA certificates in the guest.
    CaCerts,
    /// `--cache-mode`: an explicit choice of how the cache is shared.
    CacheMode(CacheMode),
    /// `--network` given explicitly.
    Network(Network),
    /// `--cache id=...,target=...`: cache volumes at guest paths.
    Volumes,
    /// A step's own `cache:`: volumes for that step only.
    StepVolumes,
    /// `environment.accounts.run-as`: steps run as a non-root user of the
    /// environment (melange's accounts; only the qemu runner's guest init
    /// switches ids).
    RunAs,
    /// `vmbuild build --interactive`: a shell attached to the user's
    /// terminal when a step fails (melange's flag).
    Interactive,
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Packages => f.write_str("environment.contents.packages"),
            Self::RootFs => f.write_str("--rootfs"),
            Self::CaCerts => f.write_str("--ca-cert"),
            Self::CacheMode(m) => write!(f, "--cache-mode {m}"),
            Self::Network(Network::User) => f.write_str("--network user"),
            Self::Network(Network::None) => f.write_str("--network none"),
            Self::Volumes => f.write_str("--cache volumes"),
            Self::StepVolumes => f.write_str("step-level cache volumes"),
            Self::RunAs => f.write_str("environment.accounts.run-as"),
            Self::Interactive => f.write_str("--interactive"),
        }
    }
}

/// Why `runner` lacks `feature`, and what to do, for the error message.
pub fn hint(runner: RunnerKind, feature: &Feature) -> &'static str {
    match (runner, feature) {
        (RunnerKind::Bubblewrap, Feature::Packages | Feature::RootFs) => {
            "bubblewrap uses the host's root filesystem; use --runner qemu"
        }
        (RunnerKind::Bubblewrap, Feature::CaCerts) => {
            "bubblewrap gives commands no network and the host's own CA store; use --runner qemu"
        }
        (RunnerKind::Bubblewrap, Feature::CacheMode(_)) => {
            "bubblewrap always binds the cache read-write (writes persist); drop --cache-mode or use --runner qemu"
        }
        (RunnerKind::Bubblewrap, Feature::StepVolumes) => {
            "bubblewrap runs every step in one sandbox; declare the volume in the top-level cache: or use --runner qemu"
        }
        (RunnerKind::Bubblewrap, Feature::Network(_)) => {
            "bubblewrap commands never have a network; drop --network or use --runner qemu"
        }
        (RunnerKind::Docker, Feature::CaCerts) => {
            "the docker runner uses the image's own CA store; use --runner qemu"
        }
        (RunnerKind::Docker, Feature::CacheMode(_)) => {
            "docker always binds the cache read-write (writes persist), as melange's docker runner does; drop --cache-mode or use --runner qemu"
        }
        (RunnerKind::Docker, Feature::StepVolumes) => {
            "docker runs every step in one container; declare the volume in the top-level cache: or use --runner qemu"
        }
        (RunnerKind::Bubblewrap, Feature::RunAs) => {
            "bubblewrap runs steps as you on the host's accounts; remove environment.accounts.run-as or use --runner qemu"
        }
        (RunnerKind::Docker, Feature::RunAs) => {
            "the docker runner runs steps as root and does not create environment.accounts; remove run-as or use --runner qemu"
        }
        _ => "use another runner",
    }
}

impl RunnerKind {
    /// Whether this runner can give `feature`.
    pub fn supports(self, feature: &Feature) -> bool {
        match self {
            Self::Qemu => true,
            Self::Bubblewrap => matches!(
                feature,
                Feature::Network(Network::None) | Feature::Volumes | Feature::Interactive
            ),
            Self::Docker => matches!(
                feature,
                Feature::Packages
                    | Feature::RootFs
                    | Feature::Network(_)
                    | Feature::Volumes
                    | Feature::Interactive
            ),
        }
    }
}
