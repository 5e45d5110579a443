//! Boots vmbuild microVMs and runs commands in them.
//!
//! - [`assets`]: guest init lookup, kernel and initramfs preparation
//! - [`session`]: one VM's life (boot, run, shutdown, abort)
//! - [`control`]: the host end of the guest control channel
//! - [`stop`]: deadline and Ctrl-C
//! - [`error`]: errors and the exit codes they map to

pub mod assets;
pub mod bwrap;
pub mod control;
pub mod copy;
pub mod env;
pub mod error;
pub mod export;
pub mod floor;
pub mod output;
pub mod pipeline;
pub mod session;
pub mod stop;
pub mod timings;

pub use assets::{BootAssets, KernelChoice};
pub use bwrap::{BwrapOptions, Sandbox};
pub use error::{
    RunError, VmFailureKind, EXIT_INTERRUPTED, EXIT_SETUP, EXIT_TIMEOUT, EXIT_VM_FAILURE,
};
pub use export::{staging_dir, ExportError, ExportReport, StagingDir, TarExtractor};
pub use output::{BufferSink, OutputSink, StdioSink};
pub use session::{BootInfo, CacheShare, RootImage, Vm, VmOptions, ROOT_DEVICE};
pub use stop::Stopper;
pub use timings::{Phases, Timings};
