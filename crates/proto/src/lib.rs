//! The host <-> guest protocol of vmbuild.
//!
//! One byte stream (a virtio-serial port in the guest, a unix socket on the
//! host) carries frames in both directions:
//!
//! ```text
//! +-----------+----------------+------------------+
//! | kind: u8  | length: u32 LE | payload (length) |
//! +-----------+----------------+------------------+
//! ```
//!
//! Output chunks carry raw bytes; every other payload is JSON of the
//! matching struct below. The conversation is driven by the host:
//!
//! ```text
//! guest: Hello                      (init is up, port is open)
//! host:  Setup        guest: Ready | Fatal
//! host:  Run          guest: Stdout*/Stderr* ... Exited   (repeat per command)
//! host:  RunTty       guest: Stdout* ... Exited   (host: Stdin*/Resize* meanwhile)
//! host:  Shutdown     guest: (syncs, powers off)
//! ```
//!
//! `Fatal` may be sent by the guest at any time: the init hit an error it
//! cannot recover from and is about to power off.

mod frame;
mod messages;

pub use frame::{
    header, parse_header, read_frame, write_frame, Frame, FrameError, FrameKind, MAX_FRAME_LEN,
};
pub use messages::{
    BindSpec, CacheMode, CommandSpec, ExitInfo, ExportChanges, GuestMessage, Hello, HostMessage,
    Message, MountSpec, NetworkSpec, OomKill, OomVictim, Ready, Resume, RootSpec, RunUser,
    ScratchSpec, Setup, SymlinkSpec, TtyRun, WindowSize, CONTROL_PORT_NAME, GUEST_CACHE_ALIAS,
    GUEST_CACHE_DIR, GUEST_CA_BUNDLE, GUEST_HOME, OPAQUE_MARKER, RESUME_ENTROPY_BYTES,
    ROOT_FSTYPES, STDIN_CHUNK, WHITEOUT_PREFIX,
};
