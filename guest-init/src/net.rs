//! Networking without external tools: the loopback interface (always up,
//! builds expect 127.0.0.1) and, when the host asks for it, a static IPv4
//! address and default route on the VM's one NIC, set with the classic
//! ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS, SIOCADDRT).

use std::mem::zeroed;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use vmbuild_proto::NetworkSpec;

use crate::error::{InitError, Result};

/// Where the kernel lists network interfaces.
pub const NET_CLASS: &str = "/sys/class/net";
/// How long the NIC may take to appear after virtio_net is loaded.
const NIC_TIMEOUT: Duration = Duration::from_secs(5);
const NIC_POLL: Duration = Duration::from_millis(1);

/// A [`NetworkSpec`] checked and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
}

impl NetPlan {
    /// Parses `address` (`A.B.C.D/N`), `gateway` and `dns`; the gateway
    /// must be inside the address's subnet (else no route can reach it).
    pub fn parse(spec: &NetworkSpec) -> Result<NetPlan> {
        let bad =
            |what: &str, v: &str| InitError::Invalid(format!("network {what} '{v}' is not valid"));
        let (addr, prefix) = spec
            .address
            .split_once('/')
            .ok_or_else(|| bad("address (want A.B.C.D/N)", &spec.address))?;
        let address: Ipv4Addr = addr.parse().map_err(|_| bad("address", &spec.address))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| bad("prefix length", &spec.address))?;
        let gateway: Ipv4Addr = spec
            .gateway
            .parse()
            .map_err(|_| bad("gateway", &spec.gateway))?;
        let dns = spec
            .dns
            .iter()
            .map(|d| d.parse().map_err(|_| bad("DNS server", d)))
            .collect::<Result<Vec<Ipv4Addr>>>()?;
        let plan = NetPlan {
            address,
            prefix,
            gateway,
            dns,
        };
        let mask = u32::from(plan.netmask());
        if u32::from(gateway) & mask != u32::from(address) & mask {
            return Err(InitError::Invalid(format!(
                "network gateway {gateway} is outside {}/{prefix}",
                address
            )));
        }
        Ok(plan)
    }

    /// The netmask of the prefix length.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }
}

/// `/etc/resolv.conf` for these name servers.
pub fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    let mut s = String::from("# written by vmbuild-init\n");
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s
}

/// The NICs in `class_dir` (interfaces backed by a device, unlike `lo`),
/// sorted by name.
pub fn nics(class_dir: &Path) -> Vec<String> {
    crate::sysfs::entry_names(class_dir)
        .into_iter()
        .filter(|n| class_dir.join(n).join("device").exists())
        .collect()
}

/// Waits for the first NIC to appear in `class_dir`.
pub fn wait_for_nic(class_dir: &Path, timeout: Duration, poll: Duration) -> Result<String> {
    let t0 = Instant::now();
    loop {
        if let Some(n) = nics(class_dir).into_iter().next() {
            return Ok(n);
        }
        if t0.elapsed() >= timeout {
            let seen = crate::sysfs::seen(class_dir);
            return Err(InitError::NicNotFound {
                waited_ms: t0.elapsed().as_millis(),
                seen,
            });
        }
        std::thread::sleep(poll);
    }
}

/// Brings `lo` up as 127.0.0.1/8. Returns a log line.
pub fn loopback_up() -> Result<String> {
    let sock = Sock::open()?;
    sock.set_addr("lo", libc::SIOCSIFADDR, Ipv4Addr::LOCALHOST)?;
    sock.set_addr("lo", libc::SIOCSIFNETMASK, Ipv4Addr::new(255, 0, 0, 0))?;
    sock.set_up("lo")?;
    Ok("lo up as 127.0.0.1/8".into())
}

/// Loads virtio_net, waits for the NIC and configures it from `spec`.
/// Returns the plan (for /etc/resolv.conf) and logs what it did.
pub fn configure(spec: &NetworkSpec, log: &mut dyn FnMut(String)) -> Result<NetPlan> {
    let plan = NetPlan::parse(spec)?;
    crate::modules::load_group_logged("net", log)?;
    let t0 = Instant::now();
    let nic = wait_for_nic(Path::new(NET_CLASS), NIC_TIMEOUT, NIC_POLL)?;
    let sock = Sock::open()?;
    sock.set_addr(&nic, libc::SIOCSIFADDR, plan.address)?;
    sock.set_addr(&nic, libc::SIOCSIFNETMASK, plan.netmask())?;
    sock.set_up(&nic)?;
    sock.add_default_route(plan.gateway)?;
    let dns: Vec<String> = plan.dns.iter().map(|d| d.to_string()).collect();
    log(format!(
        "{nic} up as {}/{} via {} (dns: {}) after {} us",
        plan.address,
        plan.prefix,
        plan.gateway,
        if dns.is_empty() {
            "none".into()
        } else {
            dns.join(" ")
        },
        t0.elapsed().as_micros()
    ));
    Ok(plan)
}

/// An AF_INET datagram socket, the handle the interface ioctls need.
struct Sock(OwnedFd);

impl Sock {
    fn open() -> Result<Sock> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(InitError::sys(
                "opening a socket to configure the network",
                Errno::last(),
            ));
        }
        // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
        Ok(Sock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl<T>(&self, what: impl Fn() -> String, req: libc::c_ulong, arg: &mut T) -> Result<()> {
        // SAFETY: `arg` is the struct this request reads (ifreq / rtentry).
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, arg as *mut T) };
        if r < 0 {
            return Err(InitError::sys(what(), Errno::last()));
        }
        Ok(())
    }

    fn set_addr(&self, ifname: &str, req: libc::c_ulong, addr: Ipv4Addr) -> Result<()> {
        let mut ifr = ifreq(ifname)?;
        ifr.ifr_ifru.ifru_addr = sockaddr(addr);
        let what = if req == libc::SIOCSIFNETMASK {
            "netmask"
        } else {
            "address"
        };
        self.ioctl(
            || format!("setting the {what} of {ifname} to {addr}"),
            req,
            &mut ifr,
        )
    }

    fn set_up(&self, ifname: &str) -> Result<()> {
        let mut ifr = ifreq(ifname)?;
        let ctx = || format!("bringing {ifname} up");
        self.ioctl(ctx, libc::SIOCGIFFLAGS, &mut ifr)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        self.ioctl(ctx, libc::SIOCSIFFLAGS, &mut ifr)
    }

    fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        // SAFETY: rtentry is plain data; all-zero is "any" for every field.
        let mut rt: libc::rtentry = unsafe { zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gateway);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        self.ioctl(
            || format!("adding the default route via {gateway}"),
            libc::SIOCADDRT,
            &mut rt,
        )
    }
}

fn ifreq(name: &str) -> Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(InitError::Invalid(format!("bad interface name '{name}'")));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid, empty request.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and
    // sockaddr is the generic view of it.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(address: &str, gateway: &str, dns: &[&str]) -> NetworkSpec {
        NetworkSpec {
            address: address.into(),
            gateway: gateway.into(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parses_the_slirp_defaults() {
        let p = NetPlan::parse(&spec("10.0.2.15/24", "10.0.2.2", &["10.0.2.3"])).unwrap();
        assert_eq!(p.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(p.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.gateway, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(p.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
        let p = NetPlan::parse(&spec("192.168.7.9/32", "192.168.7.9", &[])).unwrap();
        assert_eq!(p.netmask(), Ipv4Addr::new(255, 255, 255, 255));
        let p = NetPlan::parse(&spec("10.1.2.3/1", "10.0.0.1", &[])).unwrap();
        assert_eq!(p.netmask(), Ipv4Addr::new(128, 0, 0, 0));
    }

    #[test]
    fn bad_specs_name_the_bad_field() {
        for (s, want) in [
            (spec("10.0.2.15", "10.0.2.2", &[]), "address"),
            (spec("10.0.2.15/33", "10.0.2.2", &[]), "prefix"),
            (spec("10.0.2.15/0", "10.0.2.2", &[]), "prefix"),
            (spec("10.0.2/24", "10.0.2.2", &[]), "address"),
            (spec("10.0.2.15/24", "gw", &[]), "gateway"),
            (spec("10.0.2.15/24", "10.0.3.2", &[]), "outside"),
            (spec("10.0.2.15/24", "10.0.2.2", &["::1"]), "DNS"),
        ] {
            let e = NetPlan::parse(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn resolv_conf_lists_servers_in_order() {
        let text = resolv_conf(&[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["nameserver 10.0.2.3", "nameserver 1.1.1.1"]);
    }

    #[test]
    fn nics_are_interfaces_with_a_device() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lo")).unwrap();
        assert!(nics(d.path()).is_empty());
        for n in ["eth1", "eth0"] {
            std::fs::create_dir_all(d.path().join(n).join("device")).unwrap();
        }
        assert_eq!(nics(d.path()), ["eth0", "eth1"]);
        assert_eq!(
            wait_for_nic(d.path(), Duration::ZERO, Duration::ZERO).unwrap(),
            "eth0"
        );
    }

    #[test]
    fn missing_nic_error_lists_what_exists() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("lo")).unwrap();
        let e = wait_for_nic(d.path(), Duration::from_millis(5), Duration::from_millis(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[lo]"), "{e}");
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(ifreq("eth0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("a-very-long-ifname").is_err());
    }

    #[test]
    fn sockaddr_is_inet_in_network_order() {
        let sa = sockaddr(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // sa_data: 2 bytes of port, then the address as on the wire.
        let data: Vec<u8> = sa.sa_data[..6].iter().map(|b| *b as u8).collect();
        assert_eq!(data, [0, 0, 10, 0, 2, 15]);
    }

    /// The ioctls for real, in a network namespace of this test's thread
    /// only (namespaces are per thread). Needs CAP_SYS_ADMIN; without it
    /// there is nothing to test and it says so.
    #[test]
    fn configures_interfaces_in_a_private_network_namespace() {
        let done = std::thread::spawn(|| {
            // SAFETY: unshare(2) only changes this thread's namespaces.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                eprintln!(
                    "skipped: cannot unshare a network namespace ({})",
                    Errno::last()
                );
                return;
            }
            loopback_up().unwrap();
            // Loopback really works: a datagram to ourselves arrives.
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(b"ping", s.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(s.recv(&mut buf).unwrap(), 4);

            // A default route via a gateway on lo's new subnet.
            let sock = Sock::open().unwrap();
            sock.set_addr("lo", libc::SIOCSIFADDR, Ipv4Addr::new(10, 0, 2, 15))
                .unwrap();
            sock.set_addr("lo", libc::SIOCSIFNETMASK, Ipv4Addr::new(255, 255, 255, 0))
                .unwrap();
            sock.add_default_route(Ipv4Addr::new(10, 0, 2, 2)).unwrap();
            let routes = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
            // Destination 0, gateway 10.0.2.2 (little-endian hex), flags UG.
            assert!(
                routes
                    .lines()
                    .any(|l| l.starts_with("lo\t00000000\t0202000A\t0003")),
                "{routes}"
            );
            let e = sock
                .add_default_route(Ipv4Addr::new(10, 0, 2, 2))
                .unwrap_err();
            assert!(e.to_string().contains("default route via 10.0.2.2"), "{e}");
        });
        done.join().unwrap();
    }
}
