//! `vmbuild-init`: the static PID 1 of every vmbuild VM.
//!
//! Boot: mount the API filesystems, install busybox applets if needed, load
//! the initramfs's modules, bring up `lo`, open the virtio-serial control
//! port and say Hello. Then serve the host (Setup, Run*, Shutdown) and
//! power off. A Setup may mount an environment image at /sysroot; commands
//! then run chrooted there while the init stays in the initramfs. Every
//! error and panic ends in [`fatal::fatal`], which reports and powers off:
//! PID 1 never returns.

mod busybox;
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
mod root;
mod setup;
mod sysfs;
mod sysroot;

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

    port.send(&GuestMessage::Hello(Hello {
        init_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: kernel_release(),
        init_start_us,
        port_open_us,
    }))?;
    for l in logs {
        port.send(&GuestMessage::Log(l))?;
    }
    serve(port, watch)
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
            Some(HostMessage::Shutdown) => return Ok(()),
        }
    }
}

/// `uname -r`.
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}
