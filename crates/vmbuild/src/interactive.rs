//! `vmbuild build --interactive` (melange's flag; its `maybeDebug` in
//! pkg/build/pipeline.go): when a step fails, a shell on the user's
//! terminal inside the build environment, in the step's working directory
//! with its environment, plus `TERM` from the host and a `HISTFILE` that
//! holds the failed script, so the up arrow brings its lines back. Exit 0
//! continues with the next step; anything else fails the build there.

use vmbuild_config::{PlanStep, SCRIPT_PRELUDE};
use vmbuild_proto::{CommandSpec, GUEST_HOME};
use vmbuild_runner::{Feature, RunError, RunnerKind};

/// `TERM` when the host has none (what melange sets too).
pub const DEFAULT_TERM: &str = "xterm-256color";

/// What the shell runs: the failed script (its `$1`) written to
/// `$HISTFILE` (silently skipped where that cannot be written), then an
/// interactive bash where the environment has one, else `/bin/sh`.
const SHELL_SCRIPT: &str = "printf '%s\\n' \"$1\" >\"$HISTFILE\" 2>/dev/null; if command -v bash >/dev/null 2>&1; then exec bash -i; fi; exec /bin/sh -i";

/// Refuses `--interactive` before anything runs when it cannot work: a
/// runner without a shell for it ([`Feature::Interactive`]; every runner
/// has one today), or no terminal on stdin, which the shell needs: a usage
/// error (exit code 125, as any other) rather than a build that silently
/// runs without it.
pub fn check(kind: RunnerKind, stdin_is_terminal: bool) -> Result<(), RunError> {
    kind.check(&[Feature::Interactive])?;
    if !stdin_is_terminal {
        return Err(RunError::Flag {
            flag: "--interactive".into(),
            why: "stdin is not a terminal, and the shell opened on a failed step needs one; run vmbuild from a terminal (or under `script`), or drop --interactive".into(),
        });
    }
    Ok(())
}

/// `TERM` for the shell: the host's, else [`DEFAULT_TERM`].
pub fn term(host: Option<String>) -> String {
    host.filter(|t| !t.is_empty())
        .unwrap_or_else(|| DEFAULT_TERM.to_string())
}

/// The script as written in the config: without the prelude vmbuild puts
/// on its first line (and `--debug`'s `set -x; `).
fn runs_text(script: &str) -> &str {
    let s = script.strip_prefix(SCRIPT_PRELUDE).unwrap_or(script);
    s.strip_prefix("set -x; ").unwrap_or(s)
}

/// The shell for `step`, whose command is `command` (its cwd, binds and
/// user are the shell's too): the step's environment with `TERM=term`
/// and `HISTFILE=$HOME/.ash_history` (melange's name, which bash and
/// busybox ash both read) set.
pub fn shell_command(step: &PlanStep, command: &CommandSpec, term: &str) -> CommandSpec {
    let home = step.env_var("HOME").unwrap_or(GUEST_HOME);
    let histfile = format!("{}/.ash_history", home.trim_end_matches('/'));
    let mut env: Vec<(String, String)> = command
        .env
        .iter()
        .filter(|(k, _)| k != "TERM" && k != "HISTFILE")
        .cloned()
        .collect();
    env.push(("TERM".into(), term.into()));
    env.push(("HISTFILE".into(), histfile));
    CommandSpec {
        argv: vec![
            vmbuild_config::SHELL.into(),
            "-c".into(),
            SHELL_SCRIPT.into(),
            "vmbuild-shell".into(),
            runs_text(&step.script).into(),
        ],
        env,
        cwd: command.cwd.clone(),
        binds: command.binds.clone(),
        user: command.user.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_step(script: &str, env: &[(&str, &str)]) -> PlanStep {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PlanStep {
            name: "build".into(),
            script: script.into(),
            workdir: "/home/build/src".into(),
            env,
            timeout: None,
            depth: 0,
            volumes: Vec::new(),
            package: "hello".into(),
        }
    }

    #[test]
    fn the_shell_has_the_steps_place_environment_term_and_history() {
        let step = plan_step(
            &format!("{SCRIPT_PRELUDE}set -x; make\nmake check"),
            &[("HOME", "/root"), ("CC", "gcc"), ("TERM", "dumb")],
        );
        let cmd = CommandSpec {
            argv: step.argv(),
            env: step.env.clone(),
            cwd: step.workdir.clone(),
            binds: vec![vmbuild_proto::BindSpec {
                source: "/s".into(),
                target: "/t".into(),
            }],
            user: Some(vmbuild_proto::RunUser {
                uid: 1000,
                gid: 1000,
                groups: vec![],
            }),
        };
        let sh = shell_command(&step, &cmd, "screen");
        assert_eq!(sh.cwd, "/home/build/src");
        assert_eq!((sh.binds.clone(), sh.user.clone()), (cmd.binds, cmd.user));
        let get = |k: &str| -> Vec<&str> {
            sh.env
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("CC"), ["gcc"]);
        assert_eq!(get("TERM"), ["screen"]);
        assert_eq!(get("HISTFILE"), ["/root/.ash_history"]);
        assert_eq!(sh.argv[0], "/bin/sh");
        assert!(sh.argv[2].contains("exec /bin/sh -i"), "{:?}", sh.argv);
        assert_eq!(sh.argv[4], "make\nmake check");
    }

    #[test]
    fn history_defaults_under_the_guest_home() {
        let step = plan_step("true", &[]);
        let cmd = CommandSpec {
            argv: step.argv(),
            env: vec![],
            cwd: "/".into(),
            binds: vec![],
            user: None,
        };
        let sh = shell_command(&step, &cmd, DEFAULT_TERM);
        assert!(sh
            .env
            .contains(&("HISTFILE".into(), "/home/build/.ash_history".into())));
    }

    #[test]
    fn term_comes_from_the_host_or_defaults() {
        assert_eq!(term(Some("screen-256color".into())), "screen-256color");
        assert_eq!(term(Some(String::new())), DEFAULT_TERM);
        assert_eq!(term(None), DEFAULT_TERM);
    }

    #[test]
    fn refused_without_a_terminal_on_every_runner() {
        for kind in [RunnerKind::Qemu, RunnerKind::Bubblewrap, RunnerKind::Docker] {
            assert!(check(kind, true).is_ok());
            let e = check(kind, false).unwrap_err();
            assert_eq!(e.exit_code(), vmbuild_runner::EXIT_SETUP);
            assert!(
                e.to_string()
                    .starts_with("--interactive: stdin is not a terminal"),
                "{e}"
            );
        }
    }
}
