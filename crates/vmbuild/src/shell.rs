//! Shell completions and man pages, generated from the clap definitions so
//! they never drift from the flags (`vmbuild completions SHELL`, and the
//! hidden `vmbuild man DIR` the .deb build uses).

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::Cli::command(), "vmbuild", &mut out);
    out
}

/// Writes generated text to stdout: exit code 0, or 1 with the error (a
/// closed pipe, as in `vmbuild completions bash | head`, is not a panic).
pub fn print(bytes: &[u8]) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("vmbuild: error: writing to stdout: {e}");
            1
        }
    }
}

/// Writes `vmbuild.1` and `vmbuild-SUBCOMMAND.1` (one per visible
/// subcommand, nested ones too) into `dir`.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = crate::cli::Cli::command();
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("writing man pages to {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn bash_script() -> String {
        String::from_utf8(completions(clap_complete::Shell::Bash)).expect("utf-8 script")
    }

    #[test]
    fn bash_completion_loads_and_completes_a_subcommand() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("vmbuild.bash");
        std::fs::write(&script, bash_script()).unwrap();
        let syntax = Command::new("bash").arg("-n").arg(&script).status().unwrap();
        assert!(syntax.success(), "bash -n rejected the completion script");
        // What bash does on `vmbuild ca<TAB>` and `vmbuild cache <TAB>`.
        let probe = format!(
            r#"source {s}
               COMP_WORDS=(vmbuild ca); COMP_CWORD=1; COMP_LINE="vmbuild ca"; COMP_POINT=10
               _vmbuild vmbuild ca vmbuild; echo "top: ${{COMPREPLY[*]}}"
               COMP_WORDS=(vmbuild cache ""); COMP_CWORD=2; COMP_LINE="vmbuild cache "; COMP_POINT=14
               _vmbuild vmbuild "" cache; echo "cache: ${{COMPREPLY[*]}}""#,
            s = script.display()
        );
        let out = Command::new("bash").arg("-c").arg(probe).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.lines().any(|l| l == "top: cache"), "{text}");
        let cache_line = text.lines().find(|l| l.starts_with("cache: ")).unwrap_or("");
        for sub in ["ls", "prune", "export"] {
            assert!(cache_line.split(' ').any(|w| w == sub), "{sub} missing: {text}");
        }
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let text = String::from_utf8(completions(shell)).unwrap();
            assert!(text.contains("validate") && text.contains("doctor"), "{shell}");
        }
    }

    #[test]
    fn man_pages_cover_the_subcommands() {
        let d = tempfile::tempdir().unwrap();
        man_pages(d.path()).unwrap();
        let main = std::fs::read_to_string(d.path().join("vmbuild.1")).unwrap();
        assert!(main.contains(".TH vmbuild 1"), "{main}");
        for page in ["vmbuild-run.1", "vmbuild-build.1", "vmbuild-cache-export.1"] {
            assert!(d.path().join(page).is_file(), "{page} missing");
        }
        assert!(!d.path().join("vmbuild-man.1").exists(), "hidden subcommands get no page");
    }
}
