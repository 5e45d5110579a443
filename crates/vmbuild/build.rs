//! Records the git commit the binary was built from for `vmbuild --version`
//! (`VMBUILD_GIT_COMMIT` overrides it, for packagers building from a
//! tarball; "unknown" when neither git nor the override is there).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// Asks cargo to rerun this script when `path` changes; only for a file
/// that exists (a missing one would make every build rerun it).
fn watch(path: &str) {
    if std::path::Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=VMBUILD_GIT_COMMIT");
    let commit = match std::env::var("VMBUILD_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => {
            // Rebuild when HEAD moves: HEAD itself, the branch it points
            // to, and packed-refs (paths resolved for worktrees too).
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    watch(&p);
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
                    watch(&p);
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=VMBUILD_GIT_COMMIT={commit}");
}
