//! `--cache-to` / `--cache-from` specs, in BuildKit's `key=value,...`
//! syntax and with BuildKit's parameter names where they mean the same
//! thing (`type`, `ref`, `dest`, `src`, `ignore-error`,
//! `compression-level`; BuildKit's `docs/reference/buildctl.md`, "Export
//! cache"):
//!
//! ```text
//! type=registry,ref=ghcr.io/acme/app-cache:main[,insecure=true][,ca-file=PATH]
//! type=local,dest=DIR[,tag=NAME]     (--cache-to)
//! type=local,src=DIR[,tag=NAME]      (--cache-from)
//! ```
//!
//! plus `ignore-error=true|false` and `compression-level=1..19` (zstd; 3
//! by default). One difference from BuildKit: a failing `--cache-to` is a
//! warning unless `ignore-error=false` is given, since a cache is never
//! worth a failed build unless the user says so; a failing `--cache-from`
//! is always a warning, as in BuildKit.

use std::fmt;
use std::path::PathBuf;

use oci_client::Reference;

/// Which way a spec goes: `--cache-from` reads, `--cache-to` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    From,
    To,
}

impl Direction {
    fn flag(self) -> &'static str {
        match self {
            Direction::From => "--cache-from",
            Direction::To => "--cache-to",
        }
    }
}

/// Where an export lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An OCI registry repository and tag (or digest), e.g.
    /// `ghcr.io/acme/app-cache:main`.
    Registry {
        /// The reference as given (`ghcr.io/acme/app-cache:main`).
        reference: String,
        /// Plain http instead of https: asked for with `insecure=true`, and
        /// the default for loopback registries (`localhost`, `127.0.0.0/8`,
        /// `[::1]`), as Docker treats them.
        plain_http: bool,
        /// Extra CA certificate (PEM) to trust, from `ca-file=`.
        ca_file: Option<PathBuf>,
    },
    /// An OCI image layout directory (`oci-layout`, `index.json`,
    /// `blobs/sha256/`), the export tagged `tag` in its index.
    Local { dir: PathBuf, tag: String },
}

/// One parsed `--cache-to` / `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRef {
    pub location: Location,
    /// A failure is a warning (`true`) or fails the command (`false`).
    pub ignore_error: bool,
    /// zstd level of new chunks (1-19).
    pub compression_level: i32,
}

/// The default zstd level: zstd's own default, fast and deterministic.
pub const DEFAULT_LEVEL: i32 = 3;

/// A spec that cannot be used, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {spec}: {why}")]
pub struct SpecError {
    pub flag: &'static str,
    pub spec: String,
    pub why: String,
}

impl fmt::Display for CacheRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Registry { reference, .. } => f.write_str(reference),
            Location::Local { dir, tag } => write!(f, "{}:{tag}", dir.display()),
        }
    }
}

/// Whether `host` (a registry's `host[:port]`) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Parses one `--cache-to` (`dir` = [`Direction::To`]) or `--cache-from`
/// spec. Errors name the flag and say what to write.
pub fn parse(spec: &str, dir: Direction) -> Result<CacheRef, SpecError> {
    let err = |why: String| SpecError {
        flag: dir.flag(),
        spec: spec.to_string(),
        why,
    };
    let mut kind = None;
    let (mut reference, mut path, mut tag, mut ca_file) = (None, None, None, None);
    let mut insecure = None;
    let mut ignore_error = true;
    let mut level = DEFAULT_LEVEL;
    let path_key = match dir {
        Direction::From => "src",
        Direction::To => "dest",
    };
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| err(format!("`{part}` is not key=value")))?;
        let boolean = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(err(format!("{k}={v}: write true or false"))),
        };
        match k {
            "type" => kind = Some(v.to_string()),
            "ref" => reference = Some(v.to_string()),
            "dest" | "src" if k == path_key => path = Some(PathBuf::from(v)),
            "dest" | "src" => {
                return Err(err(format!(
                    "{k}= is for {}; {} takes {path_key}=DIR",
                    if k == "dest" { "--cache-to" } else { "--cache-from" },
                    dir.flag()
                )))
            }
            "tag" => tag = Some(v.to_string()),
            "insecure" => insecure = Some(boolean(v)?),
            "ca-file" => ca_file = Some(PathBuf::from(v)),
            "ignore-error" => ignore_error = boolean(v)?,
            "compression-level" => {
                level = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=19).contains(l))
                    .ok_or_else(|| err(format!("compression-level={v}: give 1 to 19")))?
            }
            "compression" if v == "zstd" => {}
            "compression" => {
                return Err(err(format!(
                    "compression={v}: cache chunks are always zstd"
                )))
            }
            "mode" | "oci-mediatypes" | "image-manifest" => {} // BuildKit's; ours always holds everything, as OCI
            _ => {
                return Err(err(format!(
                    "unknown parameter `{k}`; known: type, ref, {path_key}, tag, insecure, ca-file, ignore-error, compression-level"
                )))
            }
        }
    }
    let location = match kind.as_deref() {
        Some("registry") => {
            let reference =
                reference.ok_or_else(|| err("type=registry needs ref=REGISTRY/REPO:TAG".into()))?;
            if path.is_some() || tag.is_some() {
                return Err(err(format!(
                    "type=registry takes ref=, not {path_key}=/tag="
                )));
            }
            let parsed: Reference = reference
                .parse()
                .map_err(|e| err(format!("ref={reference} is not an image reference: {e}")))?;
            let loopback = is_loopback(parsed.registry());
            Location::Registry {
                reference,
                plain_http: insecure.unwrap_or(loopback),
                ca_file,
            }
        }
        Some("local") => {
            let dir = path.ok_or_else(|| err(format!("type=local needs {path_key}=DIR")))?;
            if reference.is_some() || insecure.is_some() || ca_file.is_some() {
                return Err(err(format!(
                    "type=local takes {path_key}= and tag=, not ref=/insecure=/ca-file="
                )));
            }
            let tag = tag.unwrap_or_else(|| "latest".into());
            if tag.is_empty()
                || tag.len() > 128
                || !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(err(format!(
                    "tag={tag}: use letters, digits, `.`, `_` and `-` (at most 128)"
                )));
            }
            Location::Local { dir, tag }
        }
        Some(other) => {
            return Err(err(format!(
                "type={other} is not supported; use type=registry or type=local"
            )))
        }
        None => return Err(err("give type=registry,ref=... or type=local,...".into())),
    };
    Ok(CacheRef {
        location,
        ignore_error,
        compression_level: level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_specs() {
        let r = parse(
            "type=registry,ref=ghcr.io/acme/app-cache:main",
            Direction::To,
        )
        .unwrap();
        assert_eq!(
            r.location,
            Location::Registry {
                reference: "ghcr.io/acme/app-cache:main".into(),
                plain_http: false,
                ca_file: None
            }
        );
        assert!(r.ignore_error);
        assert_eq!(r.compression_level, 3);
        // Loopback registries speak plain http unless told otherwise.
        let r = parse("type=registry,ref=localhost:5000/c:x", Direction::From).unwrap();
        assert!(matches!(
            r.location,
            Location::Registry {
                plain_http: true,
                ..
            }
        ));
        let r = parse(
            "type=registry,ref=127.0.0.1:5000/c:x,insecure=false,ignore-error=false,compression-level=9",
            Direction::To,
        )
        .unwrap();
        assert!(matches!(
            r.location,
            Location::Registry {
                plain_http: false,
                ..
            }
        ));
        assert!(!r.ignore_error);
        assert_eq!(r.compression_level, 9);
        let r = parse(
            "type=registry,ref=reg.corp:443/c:x,insecure=true",
            Direction::To,
        )
        .unwrap();
        assert!(matches!(
            r.location,
            Location::Registry {
                plain_http: true,
                ..
            }
        ));
    }

    #[test]
    fn local_specs_use_dest_for_to_and_src_for_from() {
        let to = parse("type=local,dest=/tmp/c", Direction::To).unwrap();
        assert_eq!(
            to.location,
            Location::Local {
                dir: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        let from = parse("type=local,src=/tmp/c,tag=main", Direction::From).unwrap();
        assert_eq!(
            from.location,
            Location::Local {
                dir: "/tmp/c".into(),
                tag: "main".into()
            }
        );
        let e = parse("type=local,src=/tmp/c", Direction::To).unwrap_err();
        assert!(e.to_string().contains("--cache-to takes dest=DIR"), "{e}");
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        for (spec, want) in [
            ("", "give type=registry"),
            ("type=s3,bucket=x", "unknown parameter `bucket`"),
            ("type=s3", "type=s3 is not supported"),
            ("type=registry", "needs ref="),
            (
                "type=registry,ref=ghcr.io/UPPER/x:y",
                "is not an image reference",
            ),
            ("type=local", "needs dest=DIR"),
            ("type=local,dest=/x,tag=a/b", "tag=a/b"),
            (
                "type=registry,ref=r/x:y,compression-level=30",
                "give 1 to 19",
            ),
            (
                "type=registry,ref=r/x:y,insecure=yes",
                "write true or false",
            ),
            ("type=registry,ref=r/x:y,compression=gzip", "always zstd"),
            ("type=registry,ref", "is not key=value"),
        ] {
            let e = parse(spec, Direction::To).unwrap_err().to_string();
            assert!(e.starts_with("--cache-to "), "{e}");
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["ghcr.io", "10.0.0.1:5000", "localhost.evil.com", "[::2]:1"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
