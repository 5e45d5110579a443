//! Shell completions and man pages, generated from the clap definitions so
//! they never drift from the flags (`vmbuild completions SHELL`), and the
//! hidden `vmbuild assets DIR` that writes them, the guest init and the
//! pipeline schema for a package (scripts/deb.sh).

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
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))
}

/// Completion files as the shells look them up, by shell.
const COMPLETION_FILES: [(clap_complete::Shell, &str); 3] = [
    (clap_complete::Shell::Bash, "vmbuild.bash"),
    (clap_complete::Shell::Zsh, "_vmbuild"),
    (clap_complete::Shell::Fish, "vmbuild.fish"),
];

/// Writes `man/`, `completions/`, `vmbuild-init` (the embedded guest init)
/// and `vmbuild.schema.json` into `dir`.
pub fn assets(dir: &Path) -> anyhow::Result<()> {
    man_pages(&dir.join("man"))?;
    let write = |path: std::path::PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    let completions_dir = dir.join("completions");
    std::fs::create_dir_all(&completions_dir)
        .with_context(|| format!("creating {}", completions_dir.display()))?;
    for (shell, name) in COMPLETION_FILES {
        write(completions_dir.join(name), &completions(shell))?;
    }
    write(dir.join("vmbuild-init"), vmbuild_embedded_init::INIT)?;
    write(
        dir.join("vmbuild.schema.json"),
        vmbuild_config::schema::pipeline_schema().as_bytes(),
    )
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
        let syntax = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap();
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
        let cache_line = text
            .lines()
            .find(|l| l.starts_with("cache: "))
            .unwrap_or("");
        for sub in ["ls", "prune", "export"] {
            assert!(
                cache_line.split(' ').any(|w| w == sub),
                "{sub} missing: {text}"
            );
        }
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let text = String::from_utf8(completions(shell)).unwrap();
            assert!(
                text.contains("validate") && text.contains("doctor"),
                "{shell}"
            );
        }
    }

    #[test]
    fn assets_hold_man_pages_for_the_subcommands_completions_init_and_schema() {
        let top = tempfile::tempdir().unwrap();
        assets(top.path()).unwrap();
        for f in [
            "completions/vmbuild.bash",
            "completions/_vmbuild",
            "completions/vmbuild.fish",
        ] {
            assert!(top.path().join(f).is_file(), "{f}");
        }
        assert_eq!(
            std::fs::read(top.path().join("vmbuild-init")).unwrap(),
            vmbuild_embedded_init::INIT
        );
        assert!(top.path().join("vmbuild.schema.json").is_file());
        let d = top.path().join("man");
        let main = std::fs::read_to_string(d.join("vmbuild.1")).unwrap();
        assert!(main.contains(".TH vmbuild 1"), "{main}");
        for page in ["vmbuild-run.1", "vmbuild-build.1", "vmbuild-cache-export.1"] {
            assert!(d.join(page).is_file(), "{page} missing");
        }
        assert!(
            !d.join("vmbuild-assets.1").exists(),
            "hidden subcommands get no page"
        );
    }
}
