//! [`QemuVersion`]: a QEMU release as data, so the argv builder can be
//! tested for every release it must support without installing them.

use std::fmt;

/// A QEMU release, `major.minor.micro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl QemuVersion {
    /// `major.minor.micro`.
    pub const fn new(major: u32, minor: u32, micro: u32) -> Self {
        QemuVersion {
            major,
            minor,
            micro,
        }
    }

    /// `7.2.22` (a missing micro is 0; trailing text after a number such
    /// as `-rc1` is ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let micro = parts.next().flatten().unwrap_or(0);
        Some(QemuVersion::new(major, minor, micro))
    }

    /// The version in `-version` output (`QEMU emulator version 7.2.22 (...)`).
    pub fn parse_banner(text: &str) -> Option<Self> {
        Self::parse(&crate::find::parse_qemu_version(text)?)
    }

    /// The first release whose seccomp filter has all of `obsolete`,
    /// `elevateprivileges`, `spawn` and `resourcecontrol` (2.11; 2.12
    /// completed them).
    pub const SANDBOX_OPTIONS: QemuVersion = QemuVersion::new(2, 12, 0);
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_and_banners() {
        assert_eq!(
            QemuVersion::parse("7.2.22"),
            Some(QemuVersion::new(7, 2, 22))
        );
        assert_eq!(QemuVersion::parse("10.0"), Some(QemuVersion::new(10, 0, 0)));
        assert_eq!(
            QemuVersion::parse("9.2.0-rc1"),
            Some(QemuVersion::new(9, 2, 0))
        );
        assert_eq!(QemuVersion::parse("x.y"), None);
        assert_eq!(
            QemuVersion::parse_banner(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)\n"
            ),
            Some(QemuVersion::new(10, 0, 2))
        );
        assert!(QemuVersion::new(10, 0, 0) > QemuVersion::new(7, 2, 22));
        assert_eq!(QemuVersion::new(7, 2, 22).to_string(), "7.2.22");
    }
}
