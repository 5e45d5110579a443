//! melange's `build` flags that have no meaning for vmbuild: each is a
//! clear error naming it and why, never silently ignored (clap alone would
//! say only "unexpected argument"). The flags that do mean the same thing
//! are real options of `vmbuild build` (`--out-dir`, `--cpu`, `--memory`,
//! `--timeout`, `--env-file`, `--vars-file`, `--pipeline-dir`, `--source-dir`,
//! `--workspace-dir`, `--disk`,
//! `--build-option`, `--package-append`, `--rm`, `--debug`, `--runner`,
//! `--cache-dir`, `--interactive`).

/// `(flag, why it has no meaning here)`.
const NO_MEANING: &[(&str, &str)] = &[
    ("--arch", "vmbuild builds for the host's architecture"),
    (
        "--signing-key",
        "vmbuild writes directories, not signed apks",
    ),
    ("--generate-index", "vmbuild writes no apk repository index"),
    (
        "--keyring-append",
        "environments are Debian images, not apk ones",
    ),
    (
        "--repository-append",
        "environments are Debian images, not apk ones",
    ),
    (
        "--apk-cache-dir",
        "environments are Debian images, not apk ones",
    ),
    (
        "--ignore-signatures",
        "environments are Debian images, not apk ones",
    ),
    ("--namespace", "vmbuild writes no apk metadata"),
    ("--strip-origin-name", "vmbuild writes no apk metadata"),
    ("--create-build-log", "use --log-file FILE"),
    ("--dependency-log", "vmbuild writes no apk metadata"),
    (
        "--overlay-binsh",
        "steps run with bash where the environment has it (docs/pipelines.md, Shell)",
    ),
    (
        "--empty-workspace",
        "the workspace is always the source directory (--source-dir)",
    ),
    ("--guest-dir", "the guest is vmbuild's own environment"),
    ("--lint-require", "vmbuild does not lint packages"),
    ("--lint-warn", "vmbuild does not lint packages"),
    ("--persist-lint-results", "vmbuild does not lint packages"),
];

/// The error for `args` (a `vmbuild build` command line) when it holds
/// a melange flag with no meaning here.
pub fn check(args: &[String]) -> Option<String> {
    if args.get(1).map(String::as_str) != Some("build") {
        return None;
    }
    args.iter()
        .skip(2)
        .take_while(|a| *a != "--")
        .find_map(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            NO_MEANING.iter().find(|(f, _)| *f == flag).map(|(f, why)| {
                format!("melange's {f} has no meaning for vmbuild build: {why}; remove it")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn melange_only_flags_are_named() {
        assert_eq!(
            check(&argv("vmbuild build x.yaml --arch=aarch64")).unwrap(),
            "melange's --arch has no meaning for vmbuild build: vmbuild builds for the host's architecture; remove it"
        );
        assert!(check(&argv("vmbuild build x.yaml --signing-key k")).is_some());
        assert!(check(&argv("vmbuild build x.yaml --out-dir o")).is_none());
        // The scratch disk's size: the same meaning as melange's.
        assert!(check(&argv("vmbuild build x.yaml --disk 50Gi")).is_none());
        assert!(check(&argv("vmbuild build x.yaml --interactive")).is_none());
        assert!(check(&argv("vmbuild run -- melange --arch x")).is_none());
    }
}
