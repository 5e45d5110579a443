//! Checks of names and paths: package names, Debian package names, guest
//! working directories.

use vmbuild_proto::GUEST_HOME;

use crate::error::show;

/// `[A-Za-z0-9][A-Za-z0-9._+-]*`, as apk allows.
pub(crate) fn is_package_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
}

/// A working directory as an absolute, normalised guest path: relative
/// paths are relative to `/home/build`, absolute ones may be anywhere in
/// the guest (as in melange, which runs `mkdir -p` on it first; the guest
/// creates a missing one too).
pub(crate) fn guest_workdir(raw: &str) -> Result<String, String> {
    if raw.contains('\0') {
        return Err(format!(
            "working-directory `{}` contains a NUL byte",
            show(raw)
        ));
    }
    let joined = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("{GUEST_HOME}/{raw}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The comparison operators of an apk dependency (`foo>=1.2`, `gcc~13`),
/// longest first.
const APK_OPS: &[&str] = &[">=", "<=", "==", "=~", "~=", "><", "=", ">", "<", "~"];

/// Splits an apk dependency into name and `(operator, version)`.
pub(crate) fn split_apk(s: &str) -> (&str, Option<(&'static str, &str)>) {
    match s.find(['=', '<', '>', '~']) {
        None => (s, None),
        Some(i) => {
            let rest = &s[i..];
            let op = APK_OPS
                .iter()
                .find(|op| rest.starts_with(*op))
                .copied()
                .unwrap_or("=");
            (&s[..i], Some((op, &rest[op.len()..])))
        }
    }
}

/// The name part of an apk dependency (`gcc~13` -> `gcc`).
pub fn apk_name(s: &str) -> &str {
    split_apk(s).0
}

/// Checks an environment package: an apk name
/// (`[A-Za-z0-9][A-Za-z0-9._+-]*`, or a `cmd:`/`so:`/`pc:` provider)
/// optionally followed by a version constraint (`=`, `>`, `>=`, `<`, `<=`,
/// `~`, `=~` and a version). Debian's `name=version` is the same form.
pub(crate) fn check_apk_package(s: &str) -> Result<(), String> {
    let (name, constraint) = split_apk(s);
    let bare = ["cmd:", "so:", "pc:"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    let mut chars = bare.chars();
    let name_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !name_ok {
        return Err(format!(
            "`{}` is not a valid package name; use letters, digits and `._+-` (e.g. `build-base`, `python3`), optionally with a version constraint (`gcc~13`, `go>=1.22`, `curl=8.5.0-r0`)",
            show(s)
        ));
    }
    if let Some((op, version)) = constraint {
        if version.is_empty()
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:_-*".contains(c))
        {
            return Err(format!(
                "`{}`: `{op}` needs a version after it (letters, digits and `.+~:_-`), e.g. `{name}{op}1.2`",
                show(s)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        assert!(is_package_name("hello-world.c++") && is_package_name("0ad"));
        assert!(is_package_name("R-DBI") && is_package_name("Xvfb"));
        assert!(
            !is_package_name("/x")
                && !is_package_name("-x")
                && !is_package_name("")
                && !is_package_name("a b")
        );
    }

    #[test]
    fn workdirs_are_normalised_anywhere() {
        assert_eq!(guest_workdir("").unwrap(), "/home/build");
        assert_eq!(guest_workdir(".").unwrap(), "/home/build");
        assert_eq!(guest_workdir("src").unwrap(), "/home/build/src");
        assert_eq!(
            guest_workdir("src/../out/./x/").unwrap(),
            "/home/build/out/x"
        );
        assert_eq!(guest_workdir("/tmp").unwrap(), "/tmp");
        assert_eq!(guest_workdir("../x").unwrap(), "/home/x");
        assert_eq!(guest_workdir("/a/../../etc").unwrap(), "/etc");
        assert_eq!(guest_workdir("/").unwrap(), "/");
        assert!(guest_workdir("a\0b").is_err());
    }

    #[test]
    fn apk_packages_and_constraints() {
        for ok in [
            "python3",
            "build-base",
            "g++",
            "py3.12-pip",
            "gcc~13",
            "go>=1.22",
            "curl=8.5.0-r0",
            "gcc=4:12.2.0-3",
            "openjdk-17-default-jvm",
            "cmd:bash",
            "so:libc.so.6",
            "perl-Test-More",
        ] {
            assert!(check_apk_package(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "foo bar", "foo=", "foo>=", "foo/bar", ".x", "a=1 2",
        ] {
            assert!(check_apk_package(bad).is_err(), "{bad:?}");
        }
        assert_eq!(split_apk("go>=1.22"), ("go", Some((">=", "1.22"))));
        assert_eq!(split_apk("gcc~13"), ("gcc", Some(("~", "13"))));
        assert_eq!(apk_name("curl=8.5.0-r0"), "curl");
        assert_eq!(split_apk("make"), ("make", None));
        assert_eq!(split_apk("x==1-r3"), ("x", Some(("==", "1-r3"))));
    }
}
