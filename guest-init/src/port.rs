//! Finding and opening the virtio-serial control port, and speaking frames
//! on it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmbuild_proto::{FrameError, GuestMessage, HostMessage, Message};

use crate::error::{InitError, Result};

/// Where virtio_console publishes its ports.
pub const VIRTIO_PORTS_CLASS: &str = "/sys/class/virtio-ports";

/// One look at the virtio-ports class directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PortScan {
    /// Directory (= device) name of the wanted port, e.g. `vport1p1`.
    pub found: Option<String>,
    /// Every port seen, as `dir=name` (`dir=?` when it has no name yet).
    pub seen: Vec<String>,
}

/// Scans `class_dir/*/name` for `wanted`. A missing class directory (the
/// driver has not probed yet) is an empty scan.
pub fn scan(class_dir: &Path, wanted: &str) -> PortScan {
    let mut out = PortScan::default();
    for dir in crate::sysfs::entry_names(class_dir) {
        let name = std::fs::read_to_string(class_dir.join(&dir).join("name")).unwrap_or_default();
        let name = name.trim();
        if name == wanted && out.found.is_none() {
            out.found = Some(dir.clone());
        }
        out.seen.push(format!(
            "{dir}={}",
            if name.is_empty() { "?" } else { name }
        ));
    }
    out
}

/// The open control channel.
#[derive(Debug)]
pub struct Port {
    file: File,
    path: PathBuf,
}

impl Port {
    /// Wraps an already open channel (a socket in tests).
    #[cfg(test)]
    pub fn from_file(file: File, path: PathBuf) -> Self {
        Self { file, path }
    }

    /// Device path, e.g. `/dev/vport1p1`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &GuestMessage) -> Result<(), FrameError> {
        msg.write_to(&mut self.file)
    }

    /// Blocks for the next host message; `None` when the host hung up.
    pub fn recv(&mut self) -> Result<Option<HostMessage>, FrameError> {
        HostMessage::read_from(&mut self.file)
    }
}

impl AsRawFd for Port {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Polls `class_dir` every `interval` until the port named `wanted` shows up
/// and its node in `dev_dir` opens (O_RDWR|O_CLOEXEC), or `timeout` passes.
pub fn wait_and_open(
    class_dir: &Path,
    dev_dir: &Path,
    wanted: &str,
    timeout: Duration,
    interval: Duration,
) -> Result<Port> {
    let t0 = Instant::now();
    loop {
        let s = scan(class_dir, wanted);
        if let Some(dir) = &s.found {
            let path = dev_dir.join(dir);
            // std opens with O_CLOEXEC.
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&path)
            {
                Ok(file) => return Ok(Port { file, path }),
                // devtmpfs may not have the node yet.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(InitError::io(
                        format!("opening control port {}", path.display()),
                        e,
                    ))
                }
            }
        }
        if t0.elapsed() >= timeout {
            return Err(InitError::PortNotFound {
                name: wanted.into(),
                waited_ms: t0.elapsed().as_millis(),
                seen: s.seen.join(", "),
            });
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn add_port(class: &Path, dir: &str, name: Option<&str>) {
        fs::create_dir_all(class.join(dir)).unwrap();
        if let Some(n) = name {
            fs::write(class.join(dir).join("name"), format!("{n}\n")).unwrap();
        }
    }

    #[test]
    fn scan_finds_the_named_port_and_lists_all() {
        let d = tempfile::tempdir().unwrap();
        add_port(d.path(), "vport1p2", Some("other"));
        add_port(d.path(), "vport1p1", Some("org.vmbuild.ctl"));
        add_port(d.path(), "vport1p3", None);
        let s = scan(d.path(), "org.vmbuild.ctl");
        assert_eq!(s.found.as_deref(), Some("vport1p1"));
        assert_eq!(
            s.seen,
            vec!["vport1p1=org.vmbuild.ctl", "vport1p2=other", "vport1p3=?"]
        );
    }

    #[test]
    fn scan_of_missing_class_dir_is_empty() {
        assert_eq!(
            scan(Path::new("/nonexistent/virtio-ports"), "x"),
            PortScan::default()
        );
    }

    #[test]
    fn waits_for_a_port_that_appears_late() {
        let d = tempfile::tempdir().unwrap();
        let class = d.path().join("class");
        let dev = d.path().join("dev");
        fs::create_dir_all(&dev).unwrap();
        let (c2, v2) = (class.clone(), dev.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            add_port(&c2, "vport2p1", Some("ctl"));
            std::thread::sleep(Duration::from_millis(20));
            fs::write(v2.join("vport2p1"), b"").unwrap();
        });
        let p = wait_and_open(
            &class,
            &dev,
            "ctl",
            Duration::from_secs(5),
            Duration::from_millis(1),
        )
        .unwrap();
        t.join().unwrap();
        assert_eq!(p.path(), dev.join("vport2p1"));
    }

    #[test]
    fn timeout_lists_the_ports_seen() {
        let d = tempfile::tempdir().unwrap();
        add_port(d.path(), "vport0p0", Some("org.qemu.guest_agent.0"));
        let e = wait_and_open(
            d.path(),
            d.path(),
            "ctl",
            Duration::from_millis(20),
            Duration::from_millis(1),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, InitError::PortNotFound { .. }));
        assert!(
            s.contains("vport0p0=org.qemu.guest_agent.0") && s.contains("'ctl'"),
            "{s}"
        );
    }

    #[test]
    fn frames_go_out_and_come_in() {
        use std::os::unix::net::UnixStream;
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut port = Port::from_file(File::from(std::os::fd::OwnedFd::from(a)), "/x".into());
        port.send(&GuestMessage::Log("hi".into())).unwrap();
        assert_eq!(
            GuestMessage::read_from(&mut b).unwrap(),
            Some(GuestMessage::Log("hi".into()))
        );
        HostMessage::Shutdown.write_to(&mut b).unwrap();
        drop(b);
        assert_eq!(port.recv().unwrap(), Some(HostMessage::Shutdown));
        assert_eq!(port.recv().unwrap(), None);
    }
}
