//! The QEMU runner: one microVM per run or build.
//!
//! - [`options`]: what the VM looks like (plain data) and its checks
//! - [`plan`]: options -> QEMU config + guest `Setup` + daemons (pure)
//! - [`launch`]: host detection, run dir, sockets, the plan
//! - [`confine`]: QEMU's uid, capability, sandbox, cgroup and what it must open
//! - [`scratch`]: the scratch disk (sparse file, ext4 made on the host)
//! - [`session`]: executes a plan; boot, run, shutdown, abort
//! - [`tty`]: an interactive shell on a guest pty (`--interactive`)
//! - [`diagnose`]: failed VM -> one error with QEMU's and the console's words
//! - [`control`]: the host end of the guest control channel
//! - [`assets`]: guest init lookup, kernel and initramfs preparation
//! - [`floor`]: the bare-boot floor for benchmarks

pub mod assets;
pub mod confine;
pub mod control;
mod diagnose;
pub mod floor;
mod launch;
pub mod options;
pub mod plan;
pub mod scratch;
pub mod session;
pub mod snapshot;
mod tty;
mod warm;

pub use launch::BootInfo;
pub use options::{RootImage, VmOptions};
pub use plan::{BootFiles, HostChoice, VmPlan, ROOT_DEVICE};
pub use session::{GuestWaits, Vm};
