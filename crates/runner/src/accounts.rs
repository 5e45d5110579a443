//! Creating a build's (or test's) `environment.accounts` in the guest
//! before its first step: one root command, not a step of the build.

use vmbuild_proto::{CommandSpec, RunUser};

use crate::error::RunError;
use crate::output::BufferSink;
use crate::runners::Session;
use crate::stop::Stopper;

/// Runs `script` (from `vmbuild_config::accounts::Accounts::setup_script`)
/// as root with `/bin/sh` in `/`, with `env` (the base environment).
/// A non-zero exit is [`RunError::Accounts`] with the script's stderr.
pub async fn create_accounts(
    session: &mut Session,
    script: &str,
    env: Vec<(String, String)>,
    stop: &Stopper,
) -> Result<(), RunError> {
    let cmd = CommandSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env,
        cwd: "/".into(),
        binds: Vec::new(),
        user: None,
    };
    let mut out = BufferSink::default();
    let exit = session.run(&cmd, &mut out, stop).await?;
    if exit.code == Some(0) {
        return Ok(());
    }
    Err(RunError::Accounts {
        code: exit.shell_code(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// The ids a step runs with for a `run-as` user (`None`: root).
pub fn run_user(run_as: Option<&vmbuild_config::accounts::RunAs>) -> Option<RunUser> {
    run_as.map(|r| RunUser {
        uid: r.uid,
        gid: r.gid,
        groups: r.groups.clone(),
    })
}
