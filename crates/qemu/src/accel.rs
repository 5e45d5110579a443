//! Picking an accelerator. [`choose_accel`] and the parsers are pure; only
//! [`probe_host`] and [`probe_tsc_khz`] look at the machine.

use std::path::Path;
use std::time::Duration;

use crate::argv::{Accel, Arch, HostOs};

/// What the host offers for acceleration (gathered by [`probe_host`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub os: HostOs,
    pub arch: Arch,
    /// CPU feature flags (`flags` on x86, `Features` on arm, from /proc/cpuinfo).
    pub cpu_flags: Vec<String>,
    /// `/dev/kvm` can be opened read-write by this process.
    pub kvm_rw: bool,
    /// The `kvm_pvm` module is loaded (`/sys/module/kvm_pvm`): a nested PVM host.
    pub kvm_pvm: bool,
    /// macOS `kern.hv_support` is 1.
    pub hvf: bool,
    /// The host TSC rate in kHz (see [`probe_tsc_khz`]); x86_64 only.
    pub tsc_khz: Option<u64>,
}

/// Chooses the accelerator and says why, e.g.
/// `tcg: /dev/kvm is present but the CPU has no vmx/svm flag (nested PVM host)`.
///
/// KVM needs a read-write `/dev/kvm` and, on x86, a `vmx` or `svm` CPU flag
/// (without them `/dev/kvm` comes from PVM, where a stock kernel hangs); HVF
/// needs macOS with `kern.hv_support` = 1; everything else gets TCG.
pub fn choose_accel(f: &HostFacts) -> (Accel, String) {
    match f.os {
        HostOs::MacOs if f.hvf => (Accel::Hvf, "hvf: macOS reports kern.hv_support=1".into()),
        HostOs::MacOs => (
            Accel::Tcg,
            "tcg: macOS reports no Hypervisor.framework support (kern.hv_support is not 1)".into(),
        ),
        HostOs::Linux if !f.kvm_rw => (
            Accel::Tcg,
            "tcg: /dev/kvm is missing or not read-write for this user \
             (load kvm_intel/kvm_amd or add the user to the kvm group for KVM)"
                .into(),
        ),
        HostOs::Linux => match f.arch {
            Arch::Aarch64 => (Accel::Kvm, "kvm: /dev/kvm is read-write".into()),
            Arch::X86_64 => {
                let hw = f.cpu_flags.iter().find(|fl| *fl == "vmx" || *fl == "svm");
                match (hw, f.kvm_pvm) {
                    (Some(flag), _) => (
                        Accel::Kvm,
                        format!("kvm: /dev/kvm is read-write and the CPU has {flag}"),
                    ),
                    (None, true) => (
                        Accel::Tcg,
                        "tcg: /dev/kvm is present but the CPU has no vmx/svm flag \
                         (nested PVM host: kvm_pvm is loaded)"
                            .into(),
                    ),
                    (None, false) => (
                        Accel::Tcg,
                        "tcg: /dev/kvm is present but the CPU has no vmx/svm flag".into(),
                    ),
                }
            }
        },
    }
}

/// The CPU flags of the first processor in a /proc/cpuinfo text
/// (`flags : ...` on x86, `Features : ...` on arm).
pub fn parse_cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| matches!(k.trim(), "flags" | "Features"))
        .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The TSC frequency in kHz from the first `cpu MHz : 2596.126` line, parsed
/// exactly (no float rounding): 2596.126 -> 2596126.
pub fn parse_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let mhz = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "cpu MHz")
        .map(|(_, v)| v.trim())?;
    let (int, frac) = mhz.split_once('.').unwrap_or((mhz, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut khz_frac: String = frac.chars().take(3).collect();
    while khz_frac.len() < 3 {
        khz_frac.push('0');
    }
    let khz = int.parse::<u64>().ok()?.checked_mul(1000)? + khz_frac.parse::<u64>().ok()?;
    (khz > 0).then_some(khz)
}

/// Looks at this machine: /proc/cpuinfo, whether /dev/kvm opens read-write,
/// /sys/module/kvm_pvm; on macOS `sysctl -n kern.hv_support`; and the TSC
/// rate ([`probe_tsc_khz`], which takes about 10 ms on x86_64).
/// Anything unreadable counts as absent (which leads to TCG).
pub fn probe_host() -> HostFacts {
    let os = HostOs::current();
    let arch = Arch::current();
    let facts = match os {
        HostOs::Linux => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_else(|e| {
                tracing::debug!("cannot read /proc/cpuinfo: {e}");
                String::new()
            });
            HostFacts {
                os,
                arch,
                cpu_flags: parse_cpu_flags(&cpuinfo),
                kvm_rw: std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok(),
                kvm_pvm: Path::new("/sys/module/kvm_pvm").exists(),
                hvf: false,
                tsc_khz: probe_tsc_khz(),
            }
        }
        HostOs::MacOs => HostFacts {
            os,
            arch,
            cpu_flags: Vec::new(),
            kvm_rw: false,
            kvm_pvm: false,
            hvf: sysctl("kern.hv_support").as_deref() == Some("1"),
            tsc_khz: probe_tsc_khz(),
        },
    };
    tracing::debug!(?facts, "probed host");
    facts
}

/// The host TSC rate in kHz for `tsc_early_khz` (x86_64 hosts only).
///
/// Linux: `cpu MHz` from /proc/cpuinfo is the TSC rate inside a VM, but on
/// bare metal it is the *current* core clock (frequency scaling), which
/// would make the guest clock run fast or slow. So the TSC is also measured
/// against the monotonic clock for 10 ms and [`pick_tsc_khz`] decides.
/// macOS: `machdep.tsc.frequency` (Hz).
pub fn probe_tsc_khz() -> Option<u64> {
    if Arch::current() != Arch::X86_64 {
        return None;
    }
    match HostOs::current() {
        HostOs::Linux => {
            let stated = std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| parse_tsc_khz(&c));
            pick_tsc_khz(stated, measure_tsc_khz(Duration::from_millis(10)))
        }
        HostOs::MacOs => sysctl("machdep.tsc.frequency")
            .and_then(|hz| hz.parse::<u64>().ok())
            .map(|hz| hz / 1000)
            .filter(|khz| *khz > 0),
    }
}

/// Chooses between the `cpu MHz` value and a measured TSC rate: the stated
/// one when they agree within 0.5% (it is exact), else the measured one.
pub fn pick_tsc_khz(stated: Option<u64>, measured: Option<u64>) -> Option<u64> {
    match (stated, measured) {
        (Some(s), Some(m)) if s.abs_diff(m) * 200 <= m => Some(s),
        (Some(s), Some(m)) => {
            tracing::debug!(
                stated = s,
                measured = m,
                "cpu MHz is not the TSC rate; using the measured rate"
            );
            Some(m)
        }
        (s, m) => m.or(s),
    }
}

/// Measures the TSC rate against the monotonic clock over `window`.
#[cfg(target_arch = "x86_64")]
fn measure_tsc_khz(window: Duration) -> Option<u64> {
    use std::time::Instant;
    /// A (tsc, instant) pair, the clock read bracketed by two TSC reads;
    /// the tightest bracket of a few tries (to dodge preemption).
    fn sample() -> (u64, Instant) {
        let mut best: Option<(u64, u64, Instant)> = None;
        for _ in 0..5 {
            // SAFETY: RDTSC is part of the x86_64 baseline (this code is
            // compiled only for x86_64), reads a counter and touches no memory.
            let a = unsafe { core::arch::x86_64::_rdtsc() };
            let t = Instant::now();
            // SAFETY: RDTSC is x86_64 baseline and touches no memory (as above).
            let b = unsafe { core::arch::x86_64::_rdtsc() };
            let width = b.wrapping_sub(a);
            match best {
                Some((w, _, _)) if w <= width => {}
                _ => best = Some((width, a + width / 2, t)),
            }
        }
        best.map(|(_, c, t)| (c, t))
            .unwrap_or_else(|| (0, Instant::now()))
    }
    let (c0, t0) = sample();
    std::thread::sleep(window);
    let (c1, t1) = sample();
    let ns = t1.duration_since(t0).as_nanos();
    let cycles = u128::from(c1.checked_sub(c0)?);
    let khz = u64::try_from(cycles.checked_mul(1_000_000)? / ns.max(1)).ok()?;
    (khz > 0).then_some(khz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure_tsc_khz(_window: Duration) -> Option<u64> {
    None
}

/// `sysctl -n NAME`, trimmed; `None` if it fails.
fn sysctl(name: &str) -> Option<String> {
    let out = std::process::Command::new("sysctl")
        .arg("-n")
        .arg(name)
        .output()
        .ok()?;
    if !out.status.success() {
        tracing::debug!(name, status = %out.status, "sysctl failed");
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests;
