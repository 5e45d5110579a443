//! What an environment image contains ([`EnvSpec`]), its validation and its
//! cache key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ImageError;

/// Version of the image recipe: the mmdebstrap variant and options, the
/// files removed or added, the mkfs options. Part of every key, so bumping
/// it makes every cached image stale (they are rebuilt on next use; the old
/// ones are left for `vmbuild image prune`).
pub const RECIPE_VERSION: u32 = 1;

/// The suite used when a pipeline names none.
pub const DEFAULT_SUITE: &str = "bookworm";

/// The contents of an environment image: Debian packages installed on top
/// of the essential set plus apt (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSpec {
    /// Debian packages, `name` or `name=version`.
    pub packages: Vec<String>,
    /// Debian suite (codename or `stable`...), default [`DEFAULT_SUITE`].
    pub suite: String,
    /// Mirror URL (`http://`, `https://` or `file://`). `None` uses
    /// mmdebstrap's default, `http://deb.debian.org/debian`, plus the
    /// `-updates` and `-security` suites for a stable release.
    pub mirror: Option<String>,
    /// Debian architecture, default the host's ([`host_architecture`]).
    pub architecture: String,
}

impl Default for EnvSpec {
    fn default() -> Self {
        EnvSpec {
            packages: Vec::new(),
            suite: DEFAULT_SUITE.to_string(),
            mirror: None,
            architecture: host_architecture().to_string(),
        }
    }
}

impl EnvSpec {
    /// A spec with these packages and every other field at its default.
    pub fn new<I, S>(packages: I) -> EnvSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EnvSpec {
            packages: packages.into_iter().map(Into::into).collect(),
            ..EnvSpec::default()
        }
    }

    /// The same spec in canonical form: packages sorted and deduplicated,
    /// surrounding whitespace and a mirror's trailing `/` removed.
    pub fn normalized(&self) -> EnvSpec {
        let mut packages: Vec<String> =
            self.packages.iter().map(|p| p.trim().to_string()).collect();
        packages.sort();
        packages.dedup();
        EnvSpec {
            packages,
            suite: self.suite.trim().to_string(),
            mirror: self
                .mirror
                .as_deref()
                .map(|m| m.trim().trim_end_matches('/').to_string()),
            architecture: self.architecture.trim().to_string(),
        }
    }

    /// Check every field; the error names the first bad one. Values are
    /// strict because they reach apt and mmdebstrap, which give meaning to
    /// globs, patterns, paths and option-like words.
    pub fn validate(&self) -> Result<(), ImageError> {
        for p in &self.packages {
            validate_package_name(p.trim())?;
        }
        validate_suite(self.suite.trim())?;
        if let Some(m) = &self.mirror {
            validate_mirror(m.trim())?;
        }
        validate_architecture(self.architecture.trim())
    }

    /// The cache key: sha256 (lowercase hex) over [`RECIPE_VERSION`] and
    /// the normalized spec. Package order and duplicates do not matter.
    ///
    /// Tool versions (mmdebstrap, erofs-utils) and the image format are not
    /// part of it: they do not change what the steps see, and are recorded
    /// in the entry's `image.json`. Nor is the date: an image is a snapshot
    /// of the archive when it was built, like a Docker layer; `vmbuild image
    /// rm` forces a rebuild with current packages.
    pub fn key(&self) -> String {
        let n = self.normalized();
        let text = format!(
            "vmbuild environment image\nrecipe={RECIPE_VERSION}\nsuite={}\narchitecture={}\n\
             mirror={}\npackages={}\n",
            n.suite,
            n.architecture,
            n.mirror.as_deref().unwrap_or("(default)"),
            n.packages.join(" "),
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// The Debian architecture of this host (`amd64` on x86_64).
pub fn host_architecture() -> &'static str {
    debian_architecture(std::env::consts::ARCH).unwrap_or(std::env::consts::ARCH)
}

/// The Debian name of a Rust `target_arch`, when Debian has a port for it.
pub fn debian_architecture(rust_arch: &str) -> Option<&'static str> {
    Some(match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        _ => return None,
    })
}

/// Check a package as Debian policy spells names: lowercase letters, digits
/// and `+ - .`, at least two characters, starting with a letter or digit;
/// optionally `=VERSION` (a digit first, then letters, digits and `. + ~ : -`).
pub fn validate_package_name(name: &str) -> Result<(), ImageError> {
    let bad = |reason: &str| ImageError::InvalidEnvSpec {
        field: "package",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    let (pkg, version) = match name.split_once('=') {
        Some((p, v)) => (p, Some(v)),
        None => (name, None),
    };
    let first_ok = pkg
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = pkg
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if pkg.len() < 2 || !first_ok || !rest_ok {
        return Err(bad(
            "Debian package names are lowercase letters, digits and + - . (at least 2 \
             characters, starting with a letter or digit), optionally followed by =VERSION",
        ));
    }
    if let Some(v) = version {
        let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_digit());
        let rest_ok = v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
        if !first_ok || !rest_ok {
            return Err(bad(
                "a version after = starts with a digit and has only letters, digits and . + ~ : -",
            ));
        }
    }
    Ok(())
}

fn validate_suite(suite: &str) -> Result<(), ImageError> {
    let ok = suite.len() <= 64
        && suite
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && suite
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidEnvSpec {
            field: "suite",
            value: suite.to_string(),
            reason: "a suite is a name like bookworm, trixie or stable (letters, digits, . _ -)"
                .into(),
        })
    }
}

fn validate_mirror(mirror: &str) -> Result<(), ImageError> {
    let rest = ["http://", "https://", "file://"]
        .iter()
        .find_map(|scheme| mirror.strip_prefix(scheme));
    let ok = rest.is_some_and(|r| {
        !r.trim_end_matches('/').is_empty()
            && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidEnvSpec {
            field: "mirror",
            value: mirror.to_string(),
            reason: "a mirror is an http://, https:// or file:// URL without spaces, e.g. \
                     http://deb.debian.org/debian"
                .into(),
        })
    }
}

fn validate_architecture(arch: &str) -> Result<(), ImageError> {
    let ok = arch.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && arch
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidEnvSpec {
            field: "architecture",
            value: arch.to_string(),
            reason: "a Debian architecture name like amd64 or arm64".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pk: &[&str]) -> EnvSpec {
        EnvSpec {
            packages: pk.iter().map(|s| s.to_string()).collect(),
            suite: "bookworm".into(),
            mirror: None,
            architecture: "amd64".into(),
        }
    }

    #[test]
    fn defaults() {
        let s = EnvSpec::new(["python3"]);
        assert_eq!(s.suite, "bookworm");
        assert_eq!(s.mirror, None);
        assert_eq!(s.packages, vec!["python3"]);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(s.architecture, "amd64");
        assert_eq!(debian_architecture("aarch64"), Some("arm64"));
        assert_eq!(debian_architecture("mips"), None);
    }

    #[test]
    fn normalization_sorts_dedups_and_trims() {
        let mut s = spec(&[" python3-pip", "python3", "python3-pip", "hello"]);
        s.mirror = Some("http://m.example/debian/".into());
        let n = s.normalized();
        assert_eq!(n.packages, vec!["hello", "python3", "python3-pip"]);
        assert_eq!(n.mirror.as_deref(), Some("http://m.example/debian"));
    }

    #[test]
    fn key_ignores_order_and_duplicates_but_not_content() {
        let a = spec(&["python3", "python3-pip"]);
        let b = spec(&["python3-pip", "python3", "python3"]);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 64);
        assert!(a
            .key()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

        let mut keys = vec![a.key(), spec(&["python3"]).key(), spec(&[]).key()];
        let mut other = a.clone();
        other.suite = "trixie".into();
        keys.push(other.key());
        let mut other = a.clone();
        other.architecture = "arm64".into();
        keys.push(other.key());
        let mut other = a.clone();
        other.mirror = Some("http://deb.debian.org/debian".into());
        keys.push(other.key());
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "every change gives a new key");

        // A mirror's trailing slash is the same mirror.
        let mut m1 = a.clone();
        m1.mirror = Some("http://x/debian".into());
        let mut m2 = a.clone();
        m2.mirror = Some("http://x/debian/".into());
        assert_eq!(m1.key(), m2.key());
    }

    #[test]
    fn key_is_stable() {
        // Pinned so an accidental change of the key text (which would
        // orphan every cached image) is caught; bump RECIPE_VERSION instead.
        assert_eq!(
            spec(&["python3"]).key(),
            hex::encode(Sha256::digest(
                b"vmbuild environment image\nrecipe=1\nsuite=bookworm\narchitecture=amd64\n\
                  mirror=(default)\npackages=python3\n"
            ))
        );
    }

    #[test]
    fn package_names() {
        for ok in [
            "python3",
            "python3-pip",
            "g++",
            "libstdc++6",
            "0ad",
            "hello=2.10-3",
            "python3=3.11.2-1+b1",
            "foo=1:2.0~rc1",
        ] {
            validate_package_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "a",
            "Python3",
            "-foo",
            "+foo",
            ".foo",
            "foo bar",
            "foo/bookworm",
            "foo:i386",
            "./x.deb",
            "/tmp/x.deb",
            "?priority(required)",
            "python*",
            "foo=",
            "foo=abc",
            "foo=1 2",
            "--option",
        ] {
            let e = validate_package_name(bad).unwrap_err();
            assert!(
                matches!(&e, ImageError::InvalidEnvSpec { field: "package", value, .. } if value == bad),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn validate_checks_every_field() {
        assert!(spec(&["python3"]).validate().is_ok());
        let mut s = spec(&["python3", "Bad"]);
        assert!(matches!(
            s.validate(),
            Err(ImageError::InvalidEnvSpec {
                field: "package",
                ..
            })
        ));
        s = spec(&[]);
        s.suite = "--foo".into();
        assert!(matches!(
            s.validate(),
            Err(ImageError::InvalidEnvSpec { field: "suite", .. })
        ));
        for m in [
            "/etc/apt/sources.list",
            "deb http://x bookworm main",
            "ftp://x",
            "http://",
            "http://a b",
        ] {
            s = spec(&[]);
            s.mirror = Some(m.into());
            assert!(
                matches!(
                    s.validate(),
                    Err(ImageError::InvalidEnvSpec {
                        field: "mirror",
                        ..
                    })
                ),
                "{m}"
            );
        }
        for m in [
            "http://deb.debian.org/debian",
            "https://m/d/",
            "file:///srv/mirror",
        ] {
            s = spec(&[]);
            s.mirror = Some(m.into());
            assert!(s.validate().is_ok(), "{m}");
        }
        s = spec(&[]);
        s.architecture = "AMD64".into();
        assert!(matches!(
            s.validate(),
            Err(ImageError::InvalidEnvSpec {
                field: "architecture",
                ..
            })
        ));
    }
}
