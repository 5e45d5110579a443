//! Turning [`SymlinkDefault`]s into what the guest runs before the first
//! command.

use crate::env_defaults::SymlinkDefault;

/// The symlink defaults that apply to a command environment: those whose
/// `skip_if_env` variable is not set in `env`.
pub fn applicable_symlinks<'a>(
    defaults: &'a [SymlinkDefault],
    env: &[(String, String)],
) -> Vec<&'a SymlinkDefault> {
    defaults
        .iter()
        .filter(|d| match d.skip_if_env {
            Some(var) => !env.iter().any(|(k, _)| k == var),
            None => true,
        })
        .collect()
}

/// A POSIX `sh` script that, for each link, creates the target directory and
/// the link's parent and then the symlink, but only when nothing (not even a
/// dangling symlink) exists at the link path. It never replaces anything and
/// stops at the first failure (`set -e`), so a failure is reported rather
/// than ignored. Run it as the build user before the first command.
pub fn symlink_setup_script(links: &[&SymlinkDefault]) -> String {
    let mut s = String::from("set -e\n");
    for l in links {
        let link = sh_quote(&l.link);
        let target = sh_quote(&l.target);
        let parent = sh_quote(parent_of(&l.link));
        s.push_str(&format!(
            "if [ ! -e {link} ] && [ ! -L {link} ]; then\n  mkdir -p {target} {parent}\n  ln -s {target} {link}\nfi\n"
        ));
    }
    s
}

fn parent_of(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/",
        Some((parent, _)) => parent,
        None => ".",
    }
}

/// Single-quotes `s` for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env_defaults::symlink_defaults;
    use std::path::Path;
    use std::process::Command;

    fn run_sh(script: &str) -> std::process::Output {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    #[test]
    fn cargo_links_are_skipped_when_cargo_home_is_set() {
        let d = symlink_defaults("/c", "/h");
        let all = applicable_symlinks(&d, &[]);
        assert_eq!(all.len(), 3);
        let env = vec![("CARGO_HOME".to_string(), "/opt/cargo".to_string())];
        let some = applicable_symlinks(&d, &env);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].tool, "maven");
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(parent_of("/h/.m2/repository"), "/h/.m2");
        assert_eq!(parent_of("/x"), "/");
        assert_eq!(parent_of("rel"), ".");
        assert_eq!(parent_of("/h/.cargo/git/"), "/h/.cargo");
    }

    #[test]
    fn quoting_survives_odd_characters() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join("it's a $(dir) `x`");
        let out = run_sh(&format!(
            "mkdir -p {} && echo ok",
            sh_quote(odd.to_str().unwrap())
        ));
        assert!(out.status.success(), "{out:?}");
        assert!(odd.is_dir());
    }

    #[test]
    fn script_creates_links_and_targets_and_keeps_existing_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let cache = tmp.path().join("cache");
        std::fs::create_dir_all(home.join(".cargo/git")).unwrap(); // user's own
        std::fs::create_dir_all(&cache).unwrap();
        let d = symlink_defaults(cache.to_str().unwrap(), home.to_str().unwrap());
        let script = symlink_setup_script(&applicable_symlinks(&d, &[]));

        let out = run_sh(&script);
        assert!(out.status.success(), "{out:?}\n{script}");
        let m2 = home.join(".m2/repository");
        assert_eq!(std::fs::read_link(&m2).unwrap(), cache.join("m2repository"));
        assert!(cache.join("m2repository").is_dir());
        let reg = home.join(".cargo/registry");
        assert_eq!(
            std::fs::read_link(&reg).unwrap(),
            cache.join("cargo/registry")
        );
        assert!(cache.join("cargo/registry").is_dir());
        // An existing directory is left alone.
        assert!(!home.join(".cargo/git").is_symlink());
        assert!(!cache.join("cargo/git").exists());

        // Running again changes nothing and still succeeds.
        let again = run_sh(&script);
        assert!(again.status.success(), "{again:?}");
        assert_eq!(std::fs::read_link(&m2).unwrap(), cache.join("m2repository"));
    }

    #[test]
    fn script_keeps_a_dangling_symlink_the_user_made() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".m2")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", home.join(".m2/repository")).unwrap();
        let d = symlink_defaults(
            tmp.path().join("c").to_str().unwrap(),
            home.to_str().unwrap(),
        );
        let out = run_sh(&symlink_setup_script(&[&d[0]]));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            std::fs::read_link(home.join(".m2/repository")).unwrap(),
            Path::new("/nonexistent")
        );
    }

    #[test]
    fn script_fails_loudly_when_it_cannot_create() {
        let tmp = tempfile::tempdir().unwrap();
        // The home is a file: mkdir of the link's parent must fail.
        let home = tmp.path().join("home");
        std::fs::write(&home, b"").unwrap();
        let d = symlink_defaults(
            tmp.path().join("c").to_str().unwrap(),
            home.to_str().unwrap(),
        );
        // The maven link fails first; the later cargo links must not hide it.
        let all = applicable_symlinks(&d, &[]);
        let out = run_sh(&symlink_setup_script(&all));
        assert!(!out.status.success(), "{out:?}");
        assert!(
            !tmp.path().join("c/cargo").exists(),
            "stopped at the first failure"
        );
    }
}
