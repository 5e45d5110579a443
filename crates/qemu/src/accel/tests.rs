use super::*;

/// Two processors, like a real x86 /proc/cpuinfo (only the first is read).
const PVM_CPUINFO: &str = "\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
cpu MHz\t\t: 2596.126
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr hypervisor lahf_lm
bugs\t\t: sysret_ss_attrs

processor\t: 1
cpu MHz\t\t: 2000.000
flags\t\t: fpu svm
";

const INTEL_CPUINFO: &str = "\
processor\t: 0
model name\t: Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz
cpu MHz\t\t: 2600
flags\t\t: fpu vme de pse tsc msr vmx ssse3 sse4_1
";

const ARM_CPUINFO: &str = "\
processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
";

fn linux_x86(cpuinfo: &str, kvm_rw: bool, kvm_pvm: bool) -> HostFacts {
    HostFacts {
        os: HostOs::Linux,
        arch: Arch::X86_64,
        cpu_flags: parse_cpu_flags(cpuinfo),
        kvm_rw,
        kvm_pvm,
        hvf: false,
        tsc_khz: None,
    }
}

#[test]
fn flags_come_from_the_first_processor() {
    let flags = parse_cpu_flags(PVM_CPUINFO);
    assert_eq!(flags.first().map(String::as_str), Some("fpu"));
    assert!(flags.contains(&"hypervisor".to_string()));
    assert!(
        !flags.contains(&"svm".to_string()),
        "second processor must not leak in"
    );
    assert!(parse_cpu_flags(INTEL_CPUINFO).contains(&"vmx".to_string()));
    assert!(parse_cpu_flags(ARM_CPUINFO).contains(&"asimd".to_string()));
    assert!(parse_cpu_flags("").is_empty());
}

#[test]
fn tsc_khz_is_parsed_exactly() {
    assert_eq!(parse_tsc_khz(PVM_CPUINFO), Some(2_596_126));
    assert_eq!(parse_tsc_khz(INTEL_CPUINFO), Some(2_600_000));
    assert_eq!(parse_tsc_khz("cpu MHz : 3000.5"), Some(3_000_500));
    assert_eq!(parse_tsc_khz("cpu MHz : 1999.99999"), Some(1_999_999));
    assert_eq!(parse_tsc_khz(ARM_CPUINFO), None);
    assert_eq!(parse_tsc_khz("cpu MHz : unknown"), None);
    assert_eq!(parse_tsc_khz("cpu MHz : -5.0"), None);
    assert_eq!(parse_tsc_khz("cpu MHz : 0.000"), None);
}

#[test]
fn nested_pvm_host_gets_tcg() {
    let (accel, why) = choose_accel(&linux_x86(PVM_CPUINFO, true, true));
    assert_eq!(accel, Accel::Tcg);
    assert!(
        why.starts_with("tcg: /dev/kvm is present but the CPU has no vmx/svm flag"),
        "{why}"
    );
    assert!(why.contains("PVM"), "{why}");
}

#[test]
fn kvm_without_vmx_or_svm_gets_tcg_even_without_pvm() {
    let (accel, why) = choose_accel(&linux_x86(PVM_CPUINFO, true, false));
    assert_eq!(accel, Accel::Tcg);
    assert!(!why.contains("PVM"), "{why}");
}

#[test]
fn real_x86_host_gets_kvm() {
    let (accel, why) = choose_accel(&linux_x86(INTEL_CPUINFO, true, false));
    assert_eq!(
        (accel, why.as_str()),
        (
            Accel::Kvm,
            "kvm: /dev/kvm is read-write and the CPU has vmx"
        )
    );
    let amd = "flags : fpu svm sse2";
    assert_eq!(choose_accel(&linux_x86(amd, true, false)).0, Accel::Kvm);
}

#[test]
fn unusable_dev_kvm_gets_tcg() {
    let (accel, why) = choose_accel(&linux_x86(INTEL_CPUINFO, false, false));
    assert_eq!(accel, Accel::Tcg);
    assert!(
        why.contains("/dev/kvm is missing or not read-write"),
        "{why}"
    );
}

#[test]
fn aarch64_linux_needs_only_dev_kvm() {
    let mut f = HostFacts {
        os: HostOs::Linux,
        arch: Arch::Aarch64,
        cpu_flags: parse_cpu_flags(ARM_CPUINFO),
        kvm_rw: true,
        kvm_pvm: false,
        hvf: false,
        tsc_khz: None,
    };
    assert_eq!(choose_accel(&f).0, Accel::Kvm);
    f.kvm_rw = false;
    assert_eq!(choose_accel(&f).0, Accel::Tcg);
}

#[test]
fn macos_uses_hvf_when_supported() {
    let mut f = HostFacts {
        os: HostOs::MacOs,
        arch: Arch::Aarch64,
        cpu_flags: vec![],
        kvm_rw: false,
        kvm_pvm: false,
        hvf: true,
        tsc_khz: None,
    };
    assert_eq!(choose_accel(&f).0, Accel::Hvf);
    f.hvf = false;
    let (accel, why) = choose_accel(&f);
    assert_eq!(accel, Accel::Tcg);
    assert!(why.contains("kern.hv_support"), "{why}");
}

#[cfg(target_os = "linux")]
#[test]
fn probe_host_reads_this_machine() {
    let f = probe_host();
    assert_eq!(f.os, HostOs::Linux);
    assert!(!f.hvf);
    // Every Linux cpuinfo we target lists flags/Features.
    assert!(!f.cpu_flags.is_empty());
}

#[test]
fn stated_tsc_wins_when_it_matches_the_measurement() {
    // A VM: cpu MHz is the TSC rate, the measurement is a little noisy.
    assert_eq!(
        pick_tsc_khz(Some(2_596_126), Some(2_597_000)),
        Some(2_596_126)
    );
    // Bare metal under frequency scaling: cpu MHz is the current core clock.
    assert_eq!(
        pick_tsc_khz(Some(800_000), Some(2_995_000)),
        Some(2_995_000)
    );
    assert_eq!(
        pick_tsc_khz(Some(4_500_000), Some(2_995_000)),
        Some(2_995_000)
    );
    assert_eq!(pick_tsc_khz(None, Some(2_995_000)), Some(2_995_000));
    assert_eq!(pick_tsc_khz(Some(2_596_126), None), Some(2_596_126));
    assert_eq!(pick_tsc_khz(None, None), None);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn measured_tsc_is_close_to_a_sane_rate() {
    let khz = measure_tsc_khz(Duration::from_millis(10)).expect("measurement");
    assert!((500_000..10_000_000).contains(&khz), "{khz} kHz");
    // On a VM (like CI), cpu MHz is the TSC rate: the measurement must agree.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if parse_cpu_flags(&cpuinfo).iter().any(|f| f == "hypervisor") {
        if let Some(stated) = parse_tsc_khz(&cpuinfo) {
            assert!(
                stated.abs_diff(khz) * 200 <= khz,
                "stated {stated} vs measured {khz}"
            );
        }
    }
}
