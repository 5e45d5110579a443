//! Runs vmbuild commands and builds: in a QEMU microVM or a bubblewrap
//! sandbox, behind one seam.
//!
//! - [`runners`]: the seam — runner kinds, what each supports, start, session
//! - [`vm`]: the QEMU runner (options, pure plan, session, assets)
//! - [`bwrap`]: the bubblewrap runner
//! - [`docker`]: the docker runner (a Docker Engine, through its API)
//! - [`pipeline`]: steps in order with live events, then the outputs
//! - [`export`]: the hardened unpacker that places outputs on the host
//! - [`env`]: the environment a guest command gets
//! - [`stop`]: deadline and Ctrl-C
//! - [`terminal`]: the user's terminal during an interactive shell
//! - [`error`]: errors and the exit codes they map to

pub mod accounts;
pub mod bwrap;
pub mod commit;
pub mod copy;
pub mod docker;
pub mod env;
pub mod error;
pub mod export;
pub mod features;
pub mod output;
pub mod pipeline;
pub mod runners;
pub mod stop;
pub mod terminal;
pub mod timings;
pub mod vm;

pub use bwrap::{BwrapOptions, Sandbox};
pub use docker::{Container, DockerError, DockerOptions};
pub use error::{
    RunError, VmFailureKind, EXIT_INTERRUPTED, EXIT_SETUP, EXIT_TIMEOUT, EXIT_VM_FAILURE,
};
pub use export::{staging_dir, ExportError, ExportLimits, ExportReport, StagingDir, TarExtractor};
pub use output::{BufferSink, OutputSink, StdioSink};
pub use runners::{Feature, QemuOptions, RunnerKind, RunnerOptions, Session, StartEvent};
pub use stop::Stopper;
pub use timings::{Phases, Timings};
pub use vm::assets::{BootAssets, KernelChoice};
pub use vm::{BootInfo, RootImage, Vm, VmOptions, ROOT_DEVICE};
pub use vmbuild_cache::{CacheShare, SharedDir};
