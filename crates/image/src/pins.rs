//! The pinned packages, embedded from `images/*.toml` at build time.

use serde::Deserialize;

use crate::ImageError;

const KERNEL_TOML: &str = include_str!("../../../images/kernel.toml");
const BUSYBOX_TOML: &str = include_str!("../../../images/busybox.toml");

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
    /// Modules the guest needs (their dependency closure is added at build time).
    pub modules: Vec<String>,
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

/// The modules the guest init needs, from the kernel pin.
pub fn guest_modules() -> Result<Vec<String>, ImageError> {
    Ok(kernel_pin()?.modules)
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
        for m in [
            "virtio_mmio",
            "virtio_console",
            "9pnet_virtio",
            "9p",
            "overlay",
            "virtiofs",
        ] {
            assert!(
                k.modules.iter().any(|x| x == m),
                "{m} missing from kernel.toml"
            );
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
