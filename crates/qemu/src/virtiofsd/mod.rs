//! virtiofsd: finding it, telling its two flavours apart, building its
//! command line, and supervising it.
//!
//! The pure parts ([`find_virtiofsd`], [`parse_flavor`], [`build_args`])
//! take their inputs as plain data; only [`probe`] and [`Virtiofsd`] run
//! processes.

mod args;
mod daemon;
mod error;
mod flavor;
mod lookup;
mod procs;

pub use args::{build_args, default_sandbox, Sandbox, VirtiofsdArgs, LOCKS_NOT_SHARED};
pub use daemon::{nofile_limit, Virtiofsd, SOCKET_TIMEOUT, STOP_GRACE};
pub use error::VirtiofsdError;
pub use flavor::{parse_flavor, parse_version, probe, Flavor, VirtiofsdInfo};
pub use lookup::{
    find_virtiofsd, find_virtiofsd_on_host, is_executable_file, HostOs, LookupEnv,
    VIRTIOFS_PATH_ENV,
};
