//! `vmbuild-init`: the static PID 1 of every vmbuild VM.
//!
//! Boot: mount the API filesystems, install busybox applets if needed, load
//! the initramfs's modules, bring up `lo`, open the virtio-serial control
//! port and say Hello. Then serve the host (Setup, Run*, Shutdown) and
//! power off. A RunTty runs a command on a pseudo-terminal (an interactive
//! shell) and relays its input and output. A Setup may mount an environment image at /sysroot; commands
//! then run chrooted there while the init stays in the initramfs. Every
//! error and panic ends in [`fatal::fatal`], which reports and powers off:
//! PID 1 never returns.

mod busybox;
mod changes;
mod children;
mod clock;
mod error;
mod etc;
mod exec;
mod fatal;
mod modules;
mod mounts;
mod net;
mod oom;
mod overlay;
mod pathsearch;
mod port;
mod resume;
mod root;
mod scratch;
mod setup;
mod sysfs;
mod sysroot;
mod tty;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use vmbuild_proto::{GuestMessage, Hello, HostMessage, Ready, CONTROL_PORT_NAME};

use crate::children::ChildWatch;
use crate::clock::boottime_us;
use crate::error::{InitError, Result};
use crate::port::Port;
use crate::root::GuestRoot;

/// How long to wait for the control port to be probed.
const PORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to look for it meanwhile.
const PORT_POLL: Duration = Duration::from_millis(1);

fn main() {
    let init_start_us = boottime_us();
    if std::process::id() != 1 {
        eprintln!(
            "vmbuild-init: this is the PID 1 of vmbuild VMs and refuses to run as pid {} \
             (it would mount over /tmp and /run); put it in an initramfs as /init",
            std::process::id()
        );
        std::process::exit(2);
    }
    fatal::install_panic_hook();
    match boot(init_start_us) {
        Ok(()) => fatal::power_off(),
        Err(e) => fatal::fatal(&e.to_string()),
    }
}

/// Everything up to Hello, then the request loop.
fn boot(init_start_us: u64) -> Result<()> {
    mounts::mount_early()?;
    let mut logs = Vec::new();
    if let Some(took) = busybox::install_if_needed(Path::new("/bin/busybox"), Path::new("/bin/sh"))?
    {
        logs.push(format!("busybox --install -s took {} us", took.as_micros()));
    }
    let loaded = modules::load_all(Path::new(modules::MODULES_LOAD))?;
    logs.push(modules::summary(&loaded));
    logs.push(net::loopback_up()?);
    let watch = ChildWatch::install()?;

    let t0 = Instant::now();
    let port = port::wait_and_open(
        Path::new(port::VIRTIO_PORTS_CLASS),
        Path::new("/dev"),
        CONTROL_PORT_NAME,
        PORT_TIMEOUT,
        PORT_POLL,
    )?;
    let port_open_us = boottime_us();
    // The fatal path writes to this fd after `boot` has returned its error:
    // the port must never be closed, so it lives for the whole process.
    let port: &'static mut Port = Box::leak(Box::new(port));
    fatal::set_port_fd(port.as_raw_fd());
    logs.push(format!(
        "control port {} open after {} us",
        port.path().display(),
        t0.elapsed().as_micros()
    ));

    // Hello comes last: once the host has it, the init sends nothing more
    // until asked, so the host may save this state (docs/warm-start.md).
    for l in logs {
        port.send(&GuestMessage::Log(l))?;
    }
    port.send(&GuestMessage::Hello(hello(
        init_start_us,
        port_open_us,
        resume::snapshot_safe(),
        false,
    )))?;
    serve(port, watch)
}

fn hello(init_start_us: u64, port_open_us: u64, snapshot_safe: bool, resumed: bool) -> Hello {
    Hello {
        init_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: kernel_release(),
        init_start_us,
        port_open_us,
        snapshot_safe,
        resumed,
    }
}

/// Answers host requests until Shutdown or until the host hangs up.
fn serve(port: &mut Port, watch: &ChildWatch) -> Result<()> {
    let mut root = GuestRoot::initramfs();
    loop {
        match port.recv()? {
            None => {
                fatal::console(5, "control port closed by the host; powering off");
                return Ok(());
            }
            Some(HostMessage::Setup(s)) => {
                if s.root.is_some() && root.chroot_dir().is_some() {
                    return Err(InitError::Invalid(
                        "a second Setup asks for a root image, but one is already mounted".into(),
                    ));
                }
                let mut logs = Vec::new();
                root = setup::apply(&s, &mut |l| logs.push(l))?;
                for l in logs {
                    port.send(&GuestMessage::Log(l))?;
                }
                port.send(&GuestMessage::Ready(Ready {
                    uptime_us: boottime_us(),
                }))?;
            }
            Some(HostMessage::Run(spec)) => {
                let info = exec::run(&spec, &root, watch, &mut |m| port.send(&m))?;
                port.send(&GuestMessage::Exited(info))?;
            }
            Some(HostMessage::RunTty(req)) => {
                let info = tty::run(&req, &root, watch, port)?;
                port.send(&GuestMessage::Exited(info))?;
            }
            // Typing or a resize that raced the end of a terminal command.
            Some(HostMessage::Stdin(_) | HostMessage::Resize(_)) => {}
            Some(HostMessage::ExportChanges(e)) => {
                let info = export_changes(&e.tag, &mut |m| port.send(&m))?;
                port.send(&GuestMessage::Exited(info))?;
            }
            Some(HostMessage::Resume(r)) => {
                let t0 = boottime_us();
                resume::apply(&r)?;
                port.send(&GuestMessage::Hello(hello(t0, boottime_us(), false, true)))?;
            }
            Some(HostMessage::Shutdown) => return Ok(()),
        }
    }
}

/// Frames written bytes as `Stdout` messages of at most 64 KiB.
struct FrameWriter<'a> {
    send: &'a mut dyn FnMut(GuestMessage) -> std::result::Result<(), vmbuild_proto::FrameError>,
    buf: Vec<u8>,
}

impl std::io::Write for FrameWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            (self.send)(GuestMessage::Stdout(chunk)).map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

/// Streams the changes of overlay mount `tag` (see [`changes`]); exit 0, or
/// 1 with the reason on stderr.
fn export_changes(
    tag: &str,
    send: &mut dyn FnMut(GuestMessage) -> std::result::Result<(), vmbuild_proto::FrameError>,
) -> Result<vmbuild_proto::ExitInfo> {
    let started_us = boottime_us();
    let upper = setup::OverlayDirs::for_tag(tag).upper;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let result = match (
        setup::validate_tag(tag),
        changes::merged_dir(&mounts, &upper),
    ) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(()), None) => Err(format!("no overlay mount with tag {tag}")),
        (Ok(()), Some(merged)) => {
            let mut w = FrameWriter {
                send: &mut *send,
                buf: Vec::new(),
            };
            changes::write_changes(&upper, &merged, &mut w)
                .and_then(|s| std::io::Write::flush(&mut w).map(|_| s))
                .map_err(|e| format!("reading the changes of {tag}: {e}"))
        }
    };
    let code = match result {
        Ok(skipped) => {
            for s in skipped.0 {
                send(GuestMessage::Stderr(
                    format!("vmbuild-init: skipped {s} (not a file, directory or symlink)\n")
                        .into_bytes(),
                ))?;
            }
            0
        }
        Err(msg) => {
            send(GuestMessage::Stderr(
                format!("vmbuild-init: {msg}\n").into_bytes(),
            ))?;
            1
        }
    };
    Ok(vmbuild_proto::ExitInfo {
        code: Some(code),
        signal: None,
        started_us,
        ended_us: boottime_us(),
        oom: None,
    })
}

/// `uname -r`.
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}
