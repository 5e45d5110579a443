//! The QEMU command line, built from plain data. Pure: no I/O, no probing.
//!
//! Tuning, measured on the reference machine (TCG, 2 cores shared with other
//! builds, Debian 6.1 vmlinux through PVH, busybox initramfs that powers off;
//! process start to exit, medians of 5 runs, 10 where noted):
//! - `-accel tcg` (QEMU picks multi-threaded TCG here) 1.74-1.78 s (10 runs:
//!   1.74); `thread=single` 1.73 s (10 runs: 1.70); `thread=multi` 1.69 s;
//!   2 vCPUs: `thread=multi` 1.66 s, `thread=single` 1.96 s. All within noise
//!   (about 0.1 s) except single-threaded SMP, so the accel is left to QEMU.
//! - `tb-size=64` / `256`: no change.
//! - `microvm,pit=off,pic=off`: 1.65 s / 1.91 s / 10 runs 1.74 s, i.e. noise;
//!   `rtc=off` costs 2 s (the kernel waits twice for a missing RTC). Legacy
//!   devices stay on: the PIT is also the kernel's fallback when no
//!   `tsc_early_khz` is given.
//! - `-cpu qemu64`: 1.59 s (10 runs: 1.62), about 0.1-0.17 s faster than
//!   `max`, but it hides SSSE3/SSE4/AVX from builds and makes the kernel
//!   calibrate against the PIT despite `tsc_early_khz` (the microvm hang in
//!   docs/boot.md#tsc-calibration), so `max` stays.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use crate::version::QemuVersion;
use crate::QemuError;

/// The operating system QEMU runs on; decides host-specific backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOs {
    Linux,
    MacOs,
}

impl HostOs {
    /// The OS this binary was compiled for (`MacOs` on macOS, `Linux` otherwise).
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            HostOs::MacOs
        } else {
            HostOs::Linux
        }
    }
}

/// A CPU architecture (of the host, or of the guest QEMU emulates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture this binary was compiled for (`Aarch64` on aarch64,
    /// `X86_64` otherwise).
    pub fn current() -> Self {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The name QEMU uses: `x86_64` or `aarch64` (as in `qemu-system-x86_64`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Linux KVM (needs a read-write `/dev/kvm` and hardware virtualisation).
    Kvm,
    /// macOS Hypervisor.framework.
    Hvf,
    /// Pure emulation; works everywhere, slowest.
    Tcg,
}

impl Accel {
    /// Every accelerator, in the order they are listed to users.
    pub const ALL: [Accel; 3] = [Accel::Kvm, Accel::Hvf, Accel::Tcg];

    /// The name QEMU uses in `-accel NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Accel {
    type Err = QemuError;

    /// Parses `kvm`, `hvf` or `tcg` (case-insensitive, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Accel::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| QemuError::InvalidAccel {
                given: s.to_string(),
            })
    }
}

/// How a host directory is shared into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareKind {
    /// virtio-9p served by QEMU itself.
    NineP { read_only: bool },
    /// virtiofs served by a `virtiofsd` listening on `socket` (started by the caller).
    Virtiofs { socket: PathBuf },
}

/// One host directory shared into the guest under a mount tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The mount tag the guest mounts by (`mount -t 9p TAG` / `mount -t virtiofs TAG`).
    pub tag: String,
    /// The host directory (for virtiofs it is virtiofsd's, kept here for the record).
    pub host_path: PathBuf,
    pub kind: ShareKind,
}

/// How QEMU reads a disk image. Always given explicitly: letting QEMU probe
/// the format of a raw image lets the image's content choose its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriveFormat {
    /// The bytes of the file are the disk (erofs/ext4 images).
    #[default]
    Raw,
}

impl DriveFormat {
    /// The name QEMU uses in `format=`.
    pub fn name(self) -> &'static str {
        match self {
            DriveFormat::Raw => "raw",
        }
    }
}

/// A disk image attached as a virtio-blk device. The guest sees drive N of
/// [`VmConfig::drives`] as the N-th virtio disk (`/dev/vda`, `/dev/vdb`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    /// QEMU opens the file read-only and the guest sees a read-only disk.
    pub read_only: bool,
    pub format: DriveFormat,
}

/// The guest's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// No NIC at all: the guest has only its loopback interface.
    #[default]
    None,
    /// QEMU's user-mode (slirp) network on a virtio-net NIC: the guest is
    /// [`SLIRP_GUEST_ADDRESS`], [`SLIRP_GATEWAY`] is the gateway and reaches
    /// the host's own loopback services, [`SLIRP_DNS`] forwards DNS to the
    /// host's resolver. Outgoing connections only (no `restrict=`, no
    /// `hostfwd=`): nothing on the host can connect into the guest.
    User,
}

/// The guest's address (with prefix) on QEMU's user-mode network.
pub const SLIRP_GUEST_ADDRESS: &str = "10.0.2.15/24";
/// The gateway of QEMU's user-mode network; connections to it reach the
/// host's 127.0.0.1.
pub const SLIRP_GATEWAY: &str = "10.0.2.2";
/// QEMU's built-in DNS forwarder on the user-mode network.
pub const SLIRP_DNS: &str = "10.0.2.3";

/// Everything needed to build a QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The QEMU binary (not part of [`build_argv`]'s output).
    pub qemu: PathBuf,
    pub host_os: HostOs,
    /// The guest architecture (normally the host's).
    pub arch: Arch,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    /// An uncompressed kernel (x86_64: the ELF vmlinux, booted through PVH).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Appended to the base kernel command line, in order.
    pub kernel_cmdline_extra: Vec<String>,
    /// The host TSC rate. Adds `tsc_early_khz=N` on x86_64 under TCG only
    /// (docs/boot.md#tsc-calibration: avoids the microvm boot hang when PIT
    /// calibration fails; under TCG the guest reads the host TSC). Ignored
    /// under KVM/HVF, where the hypervisor tells the kernel its exact TSC
    /// rate.
    pub tsc_khz: Option<u64>,
    /// The serial console is written to this file.
    pub console_log: PathBuf,
    /// virtio-serial port chardev; QEMU CONNECTS to it, the host must listen first.
    pub control_socket: PathBuf,
    /// QMP chardev; QEMU CONNECTS to it, the host must listen first.
    pub qmp_socket: PathBuf,
    pub shares: Vec<Share>,
    /// Disk images, attached as virtio-blk devices in this order.
    pub drives: Vec<Drive>,
    pub network: Network,
    /// The QEMU release the command line is for (see [`QemuVersion`]).
    pub version: QemuVersion,
    /// Ask QEMU for its seccomp filter ([`crate::confine::probe::SANDBOX`]);
    /// only honoured from [`QemuVersion::SANDBOX_OPTIONS`] on.
    pub sandbox: bool,
}

/// The guest serial console device for `arch`.
fn console_tty(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    }
}

/// The kernel command line: `console=<tty> quiet panic=-1 reboot=t
/// cryptomgr.notests`, then
/// `tsc_early_khz=N` (x86_64 under TCG, when known), then the extras in order.
pub fn kernel_cmdline(cfg: &VmConfig) -> String {
    let mut parts = vec![
        format!("console={}", console_tty(cfg.arch)),
        "quiet".to_string(),
        "panic=-1".to_string(),
        "reboot=t".to_string(),
        // The boot-time crypto self-tests cost ~250 ms under TCG (measured:
        // crypto_algapi_init 210 ms + kdf108 110 ms of initcalls) and check
        // only that the kernel's own implementations are sane.
        "cryptomgr.notests".to_string(),
    ];
    if let (Arch::X86_64, Accel::Tcg, Some(khz)) = (cfg.arch, cfg.accel, cfg.tsc_khz) {
        parts.push(format!("tsc_early_khz={khz}"));
    }
    parts.extend(cfg.kernel_cmdline_extra.iter().cloned());
    parts.join(" ")
}

/// Escapes a value for a QEMU `key=value,...` option list: `,` becomes `,,`.
pub fn escape_opt_value(value: &OsStr) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut out = Vec::with_capacity(value.len());
        for &b in value.as_bytes() {
            out.push(b);
            if b == b',' {
                out.push(b',');
            }
        }
        OsString::from_vec(out)
    }
    #[cfg(not(unix))]
    {
        OsString::from(value.to_string_lossy().replace(',', ",,"))
    }
}

/// Builds one option-list argument from literal pieces and escaped values.
struct Opts(OsString);

impl Opts {
    fn new(head: &str) -> Self {
        Opts(OsString::from(head))
    }
    /// Appends `,key=value` with `value` escaped.
    fn kv(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.0.push(",");
        self.0.push(key);
        self.0.push("=");
        self.0.push(escape_opt_value(value.as_ref()));
        self
    }
    /// Appends `,raw` unescaped (literal flags such as `readonly=on`).
    fn raw(mut self, raw: &str) -> Self {
        self.0.push(",");
        self.0.push(raw);
        self
    }
}

/// The QEMU arguments for `cfg`, WITHOUT argv\[0\]: run them as
/// `Command::new(&cfg.qemu).args(build_argv(&cfg))`.
pub fn build_argv(cfg: &VmConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<OsStr>]| {
        for i in items {
            a.push(i.as_ref().to_os_string());
        }
    };
    let virtiofs = cfg
        .shares
        .iter()
        .any(|s| matches!(s.kind, ShareKind::Virtiofs { .. }));

    let mut machine = match cfg.arch {
        Arch::X86_64 => Opts::new("microvm").raw("acpi=on"),
        Arch::Aarch64 => Opts::new("virt").raw("gic-version=max"),
    };
    if virtiofs {
        machine = machine.raw("memory-backend=mem");
    }
    let cpu = match cfg.accel {
        Accel::Kvm | Accel::Hvf => "host",
        Accel::Tcg => "max",
    };
    let mem = format!("{}M", cfg.memory_mib);
    push(&[&"-M", &machine.0]);
    push(&[&"-accel", &cfg.accel.name(), &"-cpu", &cpu]);
    push(&[&"-smp", &cfg.cpus.to_string(), &"-m", &mem]);
    push(&[
        &"-nodefaults",
        &"-no-user-config",
        &"-display",
        &"none",
        &"-no-reboot",
    ]);
    if virtiofs {
        let backend = match cfg.host_os {
            HostOs::Linux => "memory-backend-memfd",
            HostOs::MacOs => "memory-backend-shm",
        };
        let obj = format!("{backend},id=mem,size={mem},share=on");
        push(&[&"-object", &obj]);
    }
    push(&[&"-global", &"virtio-mmio.force-legacy=false"]);

    // Kernel, initrd and -append take their value verbatim (no option list).
    push(&[&"-kernel", &cfg.kernel, &"-initrd", &cfg.initrd]);
    push(&[&"-append", &kernel_cmdline(cfg)]);

    let con = Opts::new("file,id=con").kv("path", &cfg.console_log);
    push(&[&"-chardev", &con.0, &"-serial", &"chardev:con"]);

    let ctl = Opts::new("socket,id=ctl").kv("path", &cfg.control_socket);
    let port = Opts::new("virtserialport,bus=vser.0,chardev=ctl")
        .kv("name", vmbuild_proto::CONTROL_PORT_NAME);
    push(&[&"-chardev", &ctl.0]);
    push(&[
        &"-device",
        &"virtio-serial-device,id=vser",
        &"-device",
        &port.0,
    ]);

    let qmp = Opts::new("socket,id=qmp").kv("path", &cfg.qmp_socket);
    push(&[&"-chardev", &qmp.0, &"-mon", &"chardev=qmp,mode=control"]);

    for (n, share) in cfg.shares.iter().enumerate() {
        match &share.kind {
            ShareKind::NineP { read_only } => {
                let id = format!("fs{n}");
                let mut fsdev = Opts::new("local")
                    .kv("id", &id)
                    .kv("path", &share.host_path)
                    .raw("security_model=none,multidevs=remap");
                if *read_only {
                    fsdev = fsdev.raw("readonly=on");
                }
                let dev = Opts::new("virtio-9p-device")
                    .kv("fsdev", &id)
                    .kv("mount_tag", &share.tag);
                push(&[&"-fsdev", &fsdev.0, &"-device", &dev.0]);
            }
            ShareKind::Virtiofs { socket } => {
                let id = format!("vfs{n}");
                let chr = Opts::new("socket").kv("id", &id).kv("path", socket);
                let dev = Opts::new("vhost-user-fs-device")
                    .kv("chardev", &id)
                    .kv("tag", &share.tag);
                push(&[&"-chardev", &chr.0, &"-device", &dev.0]);
            }
        }
    }
    for (n, drive) in cfg.drives.iter().enumerate() {
        let id = format!("drive{n}");
        let mut opts = Opts::new("if=none")
            .kv("file", drive_file(&drive.path))
            .kv("id", &id)
            .kv("format", drive.format.name());
        if drive.read_only {
            opts = opts.raw("readonly=on");
        }
        let dev = Opts::new("virtio-blk-device").kv("drive", &id);
        push(&[&"-drive", &opts.0, &"-device", &dev.0]);
    }
    for arg in sandbox_args(cfg) {
        push(&[&arg]);
    }
    match cfg.network {
        Network::None => {}
        Network::User => push(&[
            &"-netdev",
            &"user,id=net0",
            &"-device",
            &"virtio-net-device,netdev=net0",
        ]),
    }
    a
}

/// The descriptor number a restoring QEMU reads its migration stream
/// from (see [`incoming_args`]).
pub const INCOMING_FD: i32 = 3;

/// `-incoming fd:N`: QEMU loads a saved VM state (a migration stream) from
/// descriptor `fd` instead of booting, then waits paused for `cont` when
/// the state was saved paused. Appended to [`build_argv`]'s output for a
/// warm start; the rest of the command line must describe the same
/// machine and devices as the one that was saved.
pub fn incoming_args(fd: i32) -> [OsString; 2] {
    ["-incoming".into(), format!("fd:{fd}").into()]
}

/// `-sandbox` when asked for and the release has every option.
///
/// QEMU is never asked to drop privileges itself (`-runas`/`-chroot`
/// before 9.0/10.0, `-run-with user=,chroot=` after): its own set*id calls
/// come after the filter is installed, and `elevateprivileges=deny` kills
/// it with SIGSYS. vmbuild starts it already unprivileged instead
/// (`vmbuild_proc::confine`), which works on every release alike.
fn sandbox_args(cfg: &VmConfig) -> Vec<&'static str> {
    if cfg.sandbox && cfg.version >= QemuVersion::SANDBOX_OPTIONS {
        vec!["-sandbox", crate::confine::probe::SANDBOX]
    } else {
        Vec::new()
    }
}

/// The `file=` value of a drive. QEMU reads `proto:rest` as a protocol
/// (`nbd:`, `http:` ...) when the colon comes before any slash, so a
/// relative path gets a `./` in front.
fn drive_file(path: &std::path::Path) -> PathBuf {
    if path.is_absolute() || path.starts_with(".") {
        path.to_path_buf()
    } else {
        std::path::Path::new(".").join(path)
    }
}

#[cfg(test)]
mod tests;
