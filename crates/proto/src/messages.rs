//! The typed messages carried in frames, and their (de)serialisation.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

use crate::frame::{read_frame, write_frame, FrameError, FrameKind};

/// Name of the virtio-serial port the guest init talks on
/// (`/sys/class/virtio-ports/vportNpM/name`).
pub const CONTROL_PORT_NAME: &str = "org.vmbuild.ctl";
/// Where the shared cache appears in the guest.
pub const GUEST_CACHE_DIR: &str = "/var/cache/vmbuild";
/// Alias of the cache so melange configs run unchanged.
pub const GUEST_CACHE_ALIAS: &str = "/var/cache/melange";
/// Filesystem types a root image ([`RootSpec`]) may have.
pub const ROOT_FSTYPES: &[&str] = &["erofs", "ext4"];
/// The build workspace and `$HOME` in the guest.
pub const GUEST_HOME: &str = "/home/build";
/// The guest's CA bundle (Debian's path, which OpenSSL, GnuTLS, curl,
/// Debian's pip and apt read): [`Setup::ca_certs`] are appended to it.
pub const GUEST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Sent by the guest init once its control port is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Version of the guest init (its crate version).
    pub init_version: String,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// CLOCK_BOOTTIME when the init's `main` started, in microseconds.
    pub init_start_us: u64,
    /// CLOCK_BOOTTIME when the control port was open (modules loaded).
    pub port_open_us: u64,
    /// Whether this state may be saved as a warm-start snapshot: no virtio
    /// device besides the control console has a driver bound yet, so no
    /// run-specific device configuration (9p tags, disk sizes) is cached in
    /// the guest. Absent from older guests: false.
    #[serde(default)]
    pub snapshot_safe: bool,
    /// This Hello answers a [`Resume`]: the guest was restored from a
    /// snapshot, reseeded and its clock set.
    #[serde(default)]
    pub resumed: bool,
}

/// Host -> guest, first message after a restore from a snapshot: every
/// restored guest shares its kernel RNG state and its clock with the
/// snapshot, so both are renewed before anything else runs. The guest
/// answers with a [`Hello`] whose `resumed` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Fresh host entropy (at least [`RESUME_ENTROPY_BYTES`]), mixed into
    /// the guest kernel's input pool with full credit (`RNDADDENTROPY`)
    /// before its CRNG is reseeded (`RNDRESEEDCRNG`).
    pub entropy: Vec<u8>,
    /// The host's wall clock (CLOCK_REALTIME) in nanoseconds since the Unix
    /// epoch, set as the guest's wall clock.
    pub unix_time_ns: u64,
}

/// How many bytes of entropy a [`Resume`] carries (the size of the
/// kernel's input pool hash, 256 bits, twice over).
pub const RESUME_ENTROPY_BYTES: usize = 64;

/// How a host directory is shared into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// virtio-9p exported read-only, mounted read-only, with an overlayfs on
    /// top whose upper/work dirs live on a tmpfs: writes are discarded.
    Overlay,
    /// virtiofs, read-write: writes persist to the host.
    Virtiofs,
}

impl std::fmt::Display for CacheMode {
    /// The `--cache-mode` spelling: `overlay` or `virtiofs`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Overlay => "overlay",
            Self::Virtiofs => "virtiofs",
        })
    }
}

/// One filesystem the guest init mounts during `Setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// 9p `mount_tag` or virtiofs tag of the device QEMU exposes.
    pub tag: String,
    pub mode: CacheMode,
    /// Absolute guest path to mount at (created if missing).
    pub target: String,
    /// Absolute guest paths made symlinks to `target`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// 9p `msize` in bytes (ignored for virtiofs).
    #[serde(default)]
    pub msize: Option<u32>,
    /// Owner (uid, gid) the mount's root gets as the guest sees it
    /// (BuildKit's cache-mount `uid`/`gid`); `None`: left as shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<(u32, u32)>,
    /// Permission bits the mount's root gets (BuildKit's `mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_mode: Option<u32>,
}

/// Host -> guest: prepare the machine before any command runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Directories to create (mode 0755, owned by root) after the mounts.
    #[serde(default)]
    pub mkdirs: Vec<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Symlinks created after the mounts, unless something already exists
    /// at `link` (e.g. `~/.m2/repository` -> `<cache>/m2repository`). The
    /// target directory is created too.
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Run commands in this root filesystem image instead of the initramfs.
    /// `None`: the busybox environment of the initramfs.
    #[serde(default)]
    pub root: Option<RootSpec>,
    /// Configure the NIC. `None`: only the loopback interface is up.
    #[serde(default)]
    pub network: Option<NetworkSpec>,
    /// PEM certificates to trust besides the root's own: appended to
    /// [`GUEST_CA_BUNDLE`] of the root in use (created if missing), e.g. the
    /// CA of a TLS-intercepting proxy.
    #[serde(default)]
    pub ca_certs: Option<String>,
    /// A blank, host-formatted ext4 disk for the guest's writes: the
    /// overlay uppers of the shares and `/home/build` (when no share is
    /// there) live on it instead of in guest RAM. `None`: tmpfs as before.
    #[serde(default)]
    pub scratch: Option<ScratchSpec>,
}

/// The scratch disk (see [`Setup::scratch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScratchSpec {
    /// The device node, e.g. `/dev/vdb`.
    pub device: String,
}

/// A read-only block device holding the root filesystem commands run in.
/// The init mounts it read-only with a tmpfs overlay at `/sysroot` (writes
/// are discarded at power-off), mounts the API filesystems inside it, and
/// runs every command chrooted there. Mount targets, aliases, mkdirs and
/// symlinks of the [`Setup`] are guest paths inside this root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootSpec {
    /// The device node, e.g. `/dev/vda` (the first virtio-blk drive).
    pub device: String,
    /// Its filesystem type, one of [`ROOT_FSTYPES`].
    pub fstype: String,
}

/// A static IPv4 configuration for the VM's one NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Address with prefix length, e.g. `10.0.2.15/24`.
    pub address: String,
    /// Default gateway, e.g. `10.0.2.2`.
    pub gateway: String,
    /// Name servers written to `/etc/resolv.conf`, in order.
    #[serde(default)]
    pub dns: Vec<String>,
}

/// One symlink `link` -> `target` (absolute guest paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymlinkSpec {
    pub link: String,
    pub target: String,
}

/// Host -> guest: run one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// `argv[0]` is looked up in `PATH` from `env` when it has no slash.
    pub argv: Vec<String>,
    /// The complete environment of the command; the init adds nothing.
    pub env: Vec<(String, String)>,
    /// Working directory (absolute guest path; created if missing).
    pub cwd: String,
    /// Bind mounts made for this command only, in a mount namespace of its
    /// own (step-level cache volumes): nothing else sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<BindSpec>,
    /// The user the command runs as; `None`: root (the init's own ids).
    /// melange's `environment.accounts.run-as`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<RunUser>,
}

/// Numeric ids a command runs with. The guest init calls `setgroups`,
/// `setgid` and `setuid` (in that order) between fork and exec, so the
/// command keeps no root privilege; the account's `/etc/passwd` entry is
/// the build's business, not the init's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUser {
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (may be empty).
    #[serde(default)]
    pub groups: Vec<u32>,
}

/// `source` (a guest directory, e.g. a hidden volume mount) shown at
/// `target` for one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindSpec {
    pub source: String,
    pub target: String,
}

/// Host -> guest: run one command on a pseudo-terminal, for an interactive
/// shell (`vmbuild build --interactive`, after melange's flag). The command
/// gets a new pty as its stdin, stdout, stderr and controlling terminal (a
/// session of its own); what it writes comes back as `Stdout` frames (a
/// terminal merges both streams), then `Exited`. While it runs the host
/// sends [`HostMessage::Stdin`] and [`HostMessage::Resize`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyRun {
    pub command: CommandSpec,
    /// The terminal's size when the command starts.
    pub size: WindowSize,
}

/// A terminal's size in character cells (`struct winsize` without the
/// pixel fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl Default for WindowSize {
    /// 24 x 80, the size a terminal that cannot say its own is taken to have.
    fn default() -> Self {
        Self { rows: 24, cols: 80 }
    }
}

/// Most bytes the host puts in one [`HostMessage::Stdin`] frame (typing
/// and pastes come in far smaller reads).
pub const STDIN_CHUNK: usize = 4096;

/// Guest -> host: a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code when the command exited normally.
    pub code: Option<i32>,
    /// Signal number when the command was killed by a signal.
    pub signal: Option<i32>,
    /// CLOCK_BOOTTIME just before the command was spawned, microseconds.
    pub started_us: u64,
    /// CLOCK_BOOTTIME when its exit status was collected, microseconds.
    pub ended_us: u64,
    /// Set when the guest kernel's OOM killer killed any process while the
    /// command ran (the command itself, a child, or anything else). Absent
    /// from older guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom: Option<OomKill>,
}

/// The guest kernel's OOM killer ran while a command ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    /// Processes it killed (the rise of `oom_kill` in `/proc/vmstat`).
    pub kills: u64,
    /// Who, from the kernel log; may be shorter than `kills` when the log
    /// lines were lost.
    #[serde(default)]
    pub victims: Vec<OomVictim>,
}

/// One process the OOM killer killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomVictim {
    pub pid: u32,
    /// Its command name (the kernel's 15-character `comm`).
    pub name: String,
}

impl OomKill {
    /// `tr (pid 123)`, `tr (pid 123), cc1 (pid 130)`, or `2 processes`
    /// when the kernel log did not say which.
    pub fn who(&self) -> String {
        if self.victims.is_empty() {
            return match self.kills {
                1 => "a process".into(),
                n => format!("{n} processes"),
            };
        }
        let named: Vec<String> = self
            .victims
            .iter()
            .map(|v| format!("{} (pid {})", v.name, v.pid))
            .collect();
        let unnamed = self.kills.saturating_sub(self.victims.len() as u64);
        if unnamed > 0 {
            format!("{} and {unnamed} more", named.join(", "))
        } else {
            named.join(", ")
        }
    }
}

impl ExitInfo {
    /// The shell convention: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// Guest -> host: setup finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub uptime_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMessage {
    Hello(Hello),
    Ready(Ready),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited(ExitInfo),
    /// The init failed and is powering off; the text says why.
    Fatal(String),
    /// A progress line from the init (for logs, not for the user's output).
    Log(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMessage {
    Setup(Setup),
    Run(CommandSpec),
    Shutdown,
    /// Stream what the build changed in the overlay mount `tag` (its upper
    /// layer) as a tar archive in OCI layer form, as `Stdout` frames, then
    /// `Exited` (0, or 1 with the reason on `Stderr`). See
    /// [`WHITEOUT_PREFIX`] and [`OPAQUE_MARKER`].
    ExportChanges(ExportChanges),
    /// The guest was restored from a snapshot: reseed, set the clock, say
    /// Hello again (see [`Resume`]).
    Resume(Resume),
    /// Run a command on a pseudo-terminal (see [`TtyRun`]).
    RunTty(TtyRun),
    /// Bytes typed on the host's terminal, for the command a `RunTty`
    /// started (raw bytes, at most [`STDIN_CHUNK`] each). The guest drops
    /// them when no such command runs (it may have just exited).
    Stdin(Vec<u8>),
    /// The host's terminal changed size: the pty of a `RunTty` command
    /// takes it (the command gets SIGWINCH). Dropped like `Stdin`.
    Resize(WindowSize),
}

/// Which overlay mount's changes to export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportChanges {
    /// The mount's tag, as in its [`MountSpec`].
    pub tag: String,
}

/// A deleted entry `NAME` is an empty file `.wh.NAME` in the change
/// stream (the OCI image layer convention).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// A directory whose lower contents are all hidden (replaced) holds an
/// empty `.wh..wh..opq` in the change stream (OCI's opaque whiteout).
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(v).expect("protocol structs serialise")
}

fn parse<T: for<'de> Deserialize<'de>>(kind: FrameKind, p: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(p).map_err(|source| FrameError::Json { kind, source })
}

/// What both directions' message types share: framing on a byte stream.
pub trait Message: Sized {
    fn encode(&self) -> (FrameKind, Vec<u8>);
    fn decode(kind: FrameKind, payload: Vec<u8>) -> Result<Self, FrameError>;

    fn write_to<W: Write>(&self, w: &mut W) -> Result<(), FrameError> {
        let (k, p) = self.encode();
        write_frame(w, k, &p)
    }

    /// Reads the next message; `Ok(None)` on a clean EOF.
    fn read_from<R: Read>(r: &mut R) -> Result<Option<Self>, FrameError> {
        match read_frame(r)? {
            None => Ok(None),
            Some(f) => Self::decode(f.kind, f.payload).map(Some),
        }
    }
}

impl Message for GuestMessage {
    fn encode(&self) -> (FrameKind, Vec<u8>) {
        match self {
            Self::Hello(h) => (FrameKind::Hello, json(h)),
            Self::Ready(r) => (FrameKind::Ready, json(r)),
            Self::Stdout(b) => (FrameKind::Stdout, b.clone()),
            Self::Stderr(b) => (FrameKind::Stderr, b.clone()),
            Self::Exited(e) => (FrameKind::Exited, json(e)),
            Self::Fatal(s) => (FrameKind::Fatal, s.as_bytes().to_vec()),
            Self::Log(s) => (FrameKind::Log, s.as_bytes().to_vec()),
        }
    }

    fn decode(kind: FrameKind, payload: Vec<u8>) -> Result<Self, FrameError> {
        Ok(match kind {
            FrameKind::Hello => Self::Hello(parse(kind, &payload)?),
            FrameKind::Ready => Self::Ready(parse(kind, &payload)?),
            FrameKind::Stdout => Self::Stdout(payload),
            FrameKind::Stderr => Self::Stderr(payload),
            FrameKind::Exited => Self::Exited(parse(kind, &payload)?),
            FrameKind::Fatal => Self::Fatal(String::from_utf8_lossy(&payload).into_owned()),
            FrameKind::Log => Self::Log(String::from_utf8_lossy(&payload).into_owned()),
            other => return Err(FrameError::Unexpected(other)),
        })
    }
}

impl Message for HostMessage {
    fn encode(&self) -> (FrameKind, Vec<u8>) {
        match self {
            Self::Setup(s) => (FrameKind::Setup, json(s)),
            Self::Run(c) => (FrameKind::Run, json(c)),
            Self::Shutdown => (FrameKind::Shutdown, Vec::new()),
            Self::ExportChanges(e) => (FrameKind::ExportChanges, json(e)),
            Self::Resume(r) => (FrameKind::Resume, json(r)),
            Self::RunTty(r) => (FrameKind::RunTty, json(r)),
            Self::Stdin(b) => (FrameKind::Stdin, b.clone()),
            Self::Resize(w) => (FrameKind::Resize, json(w)),
        }
    }

    fn decode(kind: FrameKind, payload: Vec<u8>) -> Result<Self, FrameError> {
        Ok(match kind {
            FrameKind::Setup => Self::Setup(parse(kind, &payload)?),
            FrameKind::Run => Self::Run(parse(kind, &payload)?),
            FrameKind::Shutdown => Self::Shutdown,
            FrameKind::ExportChanges => Self::ExportChanges(parse(kind, &payload)?),
            FrameKind::Resume => Self::Resume(parse(kind, &payload)?),
            FrameKind::RunTty => Self::RunTty(parse(kind, &payload)?),
            FrameKind::Stdin => Self::Stdin(payload),
            FrameKind::Resize => Self::Resize(parse(kind, &payload)?),
            other => return Err(FrameError::Unexpected(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_messages_round_trip() {
        let msgs = vec![
            GuestMessage::Hello(Hello {
                init_version: "0.1.0".into(),
                kernel_release: "6.1.0-56-amd64".into(),
                init_start_us: 1_200_000,
                port_open_us: 1_250_000,
                snapshot_safe: true,
                resumed: false,
            }),
            GuestMessage::Ready(Ready { uptime_us: 5 }),
            GuestMessage::Stdout(vec![0, 1, 2, 255]),
            GuestMessage::Stderr(b"err".to_vec()),
            GuestMessage::Exited(ExitInfo {
                code: None,
                signal: Some(9),
                started_us: 1,
                ended_us: 2,
                oom: Some(OomKill {
                    kills: 1,
                    victims: vec![OomVictim {
                        pid: 123,
                        name: "tr".into(),
                    }],
                }),
            }),
            GuestMessage::Fatal("mount failed: ENODEV".into()),
            GuestMessage::Log("loaded 12 modules".into()),
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            m.write_to(&mut buf).unwrap();
        }
        let mut r = &buf[..];
        for m in &msgs {
            assert_eq!(&GuestMessage::read_from(&mut r).unwrap().unwrap(), m);
        }
        assert!(GuestMessage::read_from(&mut r).unwrap().is_none());
    }

    #[test]
    fn exited_without_oom_is_compatible_both_ways() {
        // An older guest sends no `oom`; a newer one omits it when unset.
        let old = br#"{"code":0,"signal":null,"started_us":1,"ended_us":2}"#;
        let e: ExitInfo = serde_json::from_slice(old).unwrap();
        assert_eq!(e.oom, None);
        assert!(!String::from_utf8(json(&e)).unwrap().contains("oom"));
    }

    #[test]
    fn oom_kill_names_its_victims() {
        let v = |pid, name: &str| OomVictim {
            pid,
            name: name.into(),
        };
        let k = |kills, victims| OomKill { kills, victims };
        assert_eq!(k(1, vec![v(123, "tr")]).who(), "tr (pid 123)");
        assert_eq!(
            k(3, vec![v(1, "a"), v(2, "b")]).who(),
            "a (pid 1), b (pid 2) and 1 more"
        );
        assert_eq!(k(1, vec![]).who(), "a process");
        assert_eq!(k(2, vec![]).who(), "2 processes");
    }

    #[test]
    fn host_messages_round_trip() {
        let msgs = vec![
            HostMessage::Setup(Setup {
                mounts: vec![MountSpec {
                    tag: "cache".into(),
                    mode: CacheMode::Overlay,
                    target: GUEST_CACHE_DIR.into(),
                    aliases: vec![GUEST_CACHE_ALIAS.into()],
                    msize: Some(512_000),
                    owner: Some((1000, 1000)),
                    root_mode: Some(0o755),
                }],
                mkdirs: vec![GUEST_HOME.into()],
                hostname: Some("vmbuild".into()),
                symlinks: vec![SymlinkSpec {
                    link: "/home/build/.m2/repository".into(),
                    target: "/var/cache/vmbuild/m2repository".into(),
                }],
                root: Some(RootSpec {
                    device: "/dev/vda".into(),
                    fstype: "erofs".into(),
                }),
                network: Some(NetworkSpec {
                    address: "10.0.2.15/24".into(),
                    gateway: "10.0.2.2".into(),
                    dns: vec!["10.0.2.3".into()],
                }),
                ca_certs: Some("-----BEGIN CERTIFICATE-----\n".into()),
                scratch: Some(ScratchSpec {
                    device: "/dev/vdb".into(),
                }),
            }),
            HostMessage::Run(CommandSpec {
                argv: vec!["sh".into(), "-c".into(), "exit 7".into()],
                env: vec![("PATH".into(), "/bin".into())],
                cwd: "/".into(),
                binds: Vec::new(),
                user: None,
            }),
            HostMessage::Shutdown,
            HostMessage::Resume(Resume {
                entropy: vec![7; RESUME_ENTROPY_BYTES],
                unix_time_ns: 1_796_000_000_123_456_789,
            }),
            HostMessage::RunTty(TtyRun {
                command: CommandSpec {
                    argv: vec!["/bin/sh".into(), "-i".into()],
                    env: vec![("TERM".into(), "xterm-256color".into())],
                    cwd: "/home/build/src".into(),
                    binds: Vec::new(),
                    user: None,
                },
                size: WindowSize {
                    rows: 50,
                    cols: 132,
                },
            }),
            HostMessage::Stdin(b"exit 0\r\x03\xff".to_vec()),
            HostMessage::Resize(WindowSize {
                rows: 1,
                cols: u16::MAX,
            }),
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            m.write_to(&mut buf).unwrap();
        }
        let mut r = &buf[..];
        for m in &msgs {
            assert_eq!(&HostMessage::read_from(&mut r).unwrap().unwrap(), m);
        }
    }

    #[test]
    fn tty_frames_have_their_own_kinds_and_stdin_is_raw() {
        let (kind, payload) = HostMessage::Stdin(vec![3, 0, 255]).encode();
        assert_eq!((kind, payload), (FrameKind::Stdin, vec![3, 0, 255]));
        let (kind, payload) = HostMessage::Resize(WindowSize {
            rows: 40,
            cols: 100,
        })
        .encode();
        assert_eq!(kind, FrameKind::Resize);
        assert_eq!(payload, br#"{"rows":40,"cols":100}"#);
        // Only the host sends these.
        assert!(matches!(
            GuestMessage::decode(FrameKind::Stdin, vec![1]),
            Err(FrameError::Unexpected(FrameKind::Stdin))
        ));
        assert!(
            HostMessage::decode(FrameKind::Resize, br#"{"rows":-1,"cols":0}"#.to_vec()).is_err()
        );
        assert_eq!(WindowSize::default(), WindowSize { rows: 24, cols: 80 });
    }

    #[test]
    fn setup_from_an_older_host_has_no_root_and_no_network() {
        let old = br#"{"mounts":[],"mkdirs":["/home/build"],"hostname":null,"symlinks":[]}"#;
        let s: Setup = serde_json::from_slice(old).unwrap();
        assert_eq!(s.root, None);
        assert_eq!(s.network, None);
        assert_eq!(s.mkdirs, ["/home/build"]);
        let n: NetworkSpec =
            serde_json::from_slice(br#"{"address":"10.0.2.15/24","gateway":"10.0.2.2"}"#).unwrap();
        assert!(n.dns.is_empty());
    }

    #[test]
    fn hello_from_an_older_guest_is_neither_snapshot_safe_nor_resumed() {
        let old = br#"{"init_version":"0.1.0","kernel_release":"6.1","init_start_us":1,"port_open_us":2}"#;
        let h = match GuestMessage::decode(FrameKind::Hello, old.to_vec()).unwrap() {
            GuestMessage::Hello(h) => h,
            other => panic!("{other:?}"),
        };
        assert!(!h.snapshot_safe && !h.resumed);
    }

    #[test]
    fn direction_is_checked() {
        assert!(matches!(
            GuestMessage::decode(FrameKind::Run, b"{}".to_vec()),
            Err(FrameError::Unexpected(FrameKind::Run))
        ));
        assert!(matches!(
            HostMessage::decode(FrameKind::Stdout, vec![]),
            Err(FrameError::Unexpected(FrameKind::Stdout))
        ));
    }

    #[test]
    fn malformed_json_names_the_kind() {
        let e = GuestMessage::decode(FrameKind::Exited, b"{nope".to_vec()).unwrap_err();
        assert!(e.to_string().contains("Exited"), "{e}");
    }

    #[test]
    fn shell_code_follows_shell_convention() {
        let e = |code, signal| ExitInfo {
            code,
            signal,
            started_us: 0,
            ended_us: 0,
            oom: None,
        };
        assert_eq!(e(Some(7), None).shell_code(), 7);
        assert_eq!(e(None, Some(15)).shell_code(), 143);
    }
}
