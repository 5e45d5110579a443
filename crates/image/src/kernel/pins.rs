//! The pinned packages, embedded from `images/*.toml` at build time.

use serde::Deserialize;

use crate::ImageError;

const KERNEL_TOML: &str = include_str!("../../../../images/kernel.toml");
const BUSYBOX_TOML: &str = include_str!("../../../../images/busybox.toml");

/// The default guest kernel (`images/kernel.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPin {
    /// Debian package name, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// Meta-package whose current dependency is used when the pin is gone.
    pub fallback_depends_of: String,
    /// Modules the guest loads at boot (their dependency closure is added).
    pub modules: Vec<String>,
    /// Modules loaded right before mounting a filesystem of the given type.
    #[serde(default)]
    pub on_demand: std::collections::BTreeMap<String, Vec<String>>,
}

/// The busybox put into the initramfs (`images/busybox.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusyboxPin {
    /// Debian package name.
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// Path of the binary inside the package.
    pub binary: String,
}

/// The embedded kernel pin.
pub fn kernel_pin() -> Result<KernelPin, ImageError> {
    parse("kernel.toml", KERNEL_TOML)
}

/// The embedded busybox pin.
pub fn busybox_pin() -> Result<BusyboxPin, ImageError> {
    parse("busybox.toml", BUSYBOX_TOML)
}

/// The modules the guest init loads at boot, from the kernel pin.
pub fn guest_modules() -> Result<Vec<String>, ImageError> {
    Ok(kernel_pin()?.modules)
}

/// The on-demand module groups (filesystem type -> modules), from the pin.
pub fn guest_module_groups() -> Result<Vec<(String, Vec<String>)>, ImageError> {
    Ok(kernel_pin()?.on_demand.into_iter().collect())
}

fn parse<T: for<'de> Deserialize<'de>>(file: &'static str, text: &str) -> Result<T, ImageError> {
    toml::from_str(text).map_err(|e| ImageError::BadPin {
        file,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_sha256(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[test]
    fn embedded_pins_parse() {
        let k = kernel_pin().unwrap();
        assert!(k.package.starts_with("linux-image-"));
        assert!(is_sha256(&k.sha256));
        for m in ["virtio_mmio", "virtio_console"] {
            assert!(
                k.modules.iter().any(|x| x == m),
                "{m} missing from the boot set"
            );
        }
        // Every filesystem the guest init mounts has its modules on demand.
        for (fs, m) in [
            ("9p", "9p"),
            ("overlay", "overlay"),
            ("virtiofs", "virtiofs"),
            ("erofs", "erofs"),
            ("ext4", "ext4"),
        ] {
            let group = k
                .on_demand
                .get(fs)
                .unwrap_or_else(|| panic!("no on_demand group {fs}"));
            assert!(group.iter().any(|x| x == m), "{m} missing from group {fs}");
        }
        let b = busybox_pin().unwrap();
        assert_eq!(b.package, "busybox-static");
        assert!(is_sha256(&b.sha256));
    }

    #[test]
    fn unknown_field_is_an_error() {
        let r: Result<BusyboxPin, _> = parse(
            "busybox.toml",
            "package='a'\nversion='1'\nsha256='x'\nbinary='b'\nextra=1\n",
        );
        assert!(matches!(r, Err(ImageError::BadPin { .. })));
    }
}
