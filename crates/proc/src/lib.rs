//! One supervised child process, the way vmbuild runs every helper it
//! starts (QEMU, virtiofsd, bubblewrap, mmdebstrap and mkfs):
//!
//! - in its **own process group** (a terminal's Ctrl-C reaches only us, and
//!   [`Child::signal_group`] / [`Child::kill`] reach everything it started);
//! - with a **parent-death signal** (`PR_SET_PDEATHSIG`, Linux), and exiting
//!   at once if we already died between `fork` and `prctl`;
//! - stdin from `/dev/null`, stdout+stderr to a log file or to pipes
//!   ([`Output`]);
//! - **killed and reaped on drop** if still running;
//! - waited for **asynchronously** ([`Child::wait`], through a pidfd) or
//!   blocking ([`Child::wait_blocking`]).
//!
//! PDEATHSIG fires when the *thread* that spawned the child exits: spawn
//! from a thread that lives as long as the child (a tokio worker, the main
//! thread, or the thread that also waits for it), not from `spawn_blocking`
//! for a child that outlives the blocking call.

mod child;
pub mod confine;

pub use child::{Child, Output, ProcError};
pub use confine::{ConfineError, Confinement, Ids};
pub use rustix::process::Signal;
