//! Checks of names and paths: package names, Debian package names, guest
//! working directories.

use vmbuild_proto::GUEST_HOME;

use crate::error::show;

/// `[a-z0-9][a-z0-9._+-]*`
pub(crate) fn is_package_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._+-".contains(c))
}

/// A working directory as an absolute, normalised guest path under
/// `/home/build` (relative paths are relative to `/home/build`).
pub(crate) fn guest_workdir(raw: &str) -> Result<String, String> {
    let joined = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("{GUEST_HOME}/{raw}")
    };
    let mut parts: Vec<&str> = Vec::new();
    let outside = || {
        format!(
            "working-directory `{}` is outside {GUEST_HOME}; use a path relative to {GUEST_HOME} or an absolute path under it",
            show(raw)
        )
    };
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(outside)?;
            }
            c => parts.push(c),
        }
    }
    let norm = format!("/{}", parts.join("/"));
    if norm == GUEST_HOME || norm.starts_with(&format!("{GUEST_HOME}/")) {
        Ok(norm)
    } else {
        Err(outside())
    }
}

/// A Debian package name (`[a-z0-9][a-z0-9+.-]+`), optionally `=VERSION`.
pub(crate) fn is_debian_package(s: &str) -> bool {
    let (name, version) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    let mut chars = name.chars();
    let name_ok = name.len() >= 2
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
    });
    name_ok && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        assert!(is_package_name("hello-world.c++") && is_package_name("0ad"));
        assert!(
            !is_package_name("Hello")
                && !is_package_name("-x")
                && !is_package_name("")
                && !is_package_name("a b")
        );
    }

    #[test]
    fn workdirs_stay_under_home() {
        assert_eq!(guest_workdir("").unwrap(), "/home/build");
        assert_eq!(guest_workdir(".").unwrap(), "/home/build");
        assert_eq!(guest_workdir("src").unwrap(), "/home/build/src");
        assert_eq!(
            guest_workdir("src/../out/./x/").unwrap(),
            "/home/build/out/x"
        );
        assert_eq!(guest_workdir("/home/build/src").unwrap(), "/home/build/src");
        assert_eq!(guest_workdir("/home/build").unwrap(), "/home/build");
        for bad in [
            "..",
            "../x",
            "/tmp",
            "/home/buildx",
            "/home/build/../../etc",
            "/",
            "a/../../..",
        ] {
            assert!(guest_workdir(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn debian_package_names() {
        for ok in [
            "python3",
            "build-essential",
            "g++",
            "libc6-dev",
            "ca-certificates",
            "0ad",
            "gcc=4:12.2.0-3",
            "python3.11",
        ] {
            assert!(is_debian_package(ok), "{ok}");
        }
        for bad in [
            "", "a", "Python3", "-x", "foo bar", "foo=", "foo=1 2", "foo/bar", ".x",
        ] {
            assert!(!is_debian_package(bad), "{bad:?}");
        }
    }
}
