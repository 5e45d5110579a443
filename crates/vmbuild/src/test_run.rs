//! `test:` sections: after a successful build, each runs in a *fresh* VM
//! (melange's model): the test's own environment (`test.environment`,
//! mapped to Debian packages, or the busybox environment), the build's
//! outputs shared read-only at [`PACKAGES_DIR`] and the tested package
//! (and any other of the build's packages the test environment lists)
//! copied into `/` before the first test step, the source directory at
//! `/home/build` as in the build. A failing test step fails the build
//! (exit 1, the step named); `--skip-tests` skips them all.

use std::path::Path;
use std::time::Instant;

use vmbuild_cache::SharedDir;
use vmbuild_config::{Plan, PlanStep, TestPlan};
use vmbuild_proto::CacheMode;
use vmbuild_runner::pipeline::{self, StepsOutcome};
use vmbuild_runner::{RunError, Stopper};

use crate::build::{report_failure, steps, BuildObserver};
use crate::cli::{BuildArgs, NetworkArg};
use crate::runner_setup::{self, Spec};

/// Where the build's outputs appear in a test VM (read-only, overlaid).
pub const PACKAGES_DIR: &str = "/run/vmbuild-packages";

/// The step that installs the build's own packages into the test VM's
/// root: each installed package's directory under [`PACKAGES_DIR`], or
/// (`one_package`: the one-package layout, the main package's files at
/// the top of `--output-dir`) the whole of it. `template` gives the
/// environment.
pub fn install_step(test: &TestPlan, one_package: bool, template: &PlanStep) -> PlanStep {
    let dirs: Vec<String> = if one_package {
        vec![PACKAGES_DIR.to_string()]
    } else {
        test.installs
            .iter()
            .map(|p| format!("{PACKAGES_DIR}/{p}"))
            .collect()
    };
    let mut script = String::from(vmbuild_config::SCRIPT_PRELUDE);
    for d in &dirs {
        script.push_str(&format!("if [ -d '{d}' ]; then cp -a '{d}/.' /; fi; "));
    }
    PlanStep {
        name: format!(
            "test {} > install {}",
            test.package,
            test.installs.join(" ")
        ),
        script,
        workdir: "/".into(),
        env: template.env.clone(),
        timeout: None,
        depth: 0,
        volumes: Vec::new(),
        package: test.package.clone(),
    }
}

/// Runs every test of `plan` in its own fresh VM, in order, each in its
/// Debian environment of `debian` (one entry per test, resolved before the
/// build booted); the exit code of the first failing one (after reporting
/// it), else 0.
pub async fn run_tests(
    args: &BuildArgs,
    plan: &Plan,
    debian: &[Vec<String>],
    outputs: &Path,
    started: Instant,
    stop: &Stopper,
    obs: &mut Box<dyn BuildObserver>,
) -> Result<i32, RunError> {
    let outputs = outputs
        .canonicalize()
        .map_err(|e| RunError::io(format!("the outputs {}", outputs.display()), e))?;
    for (test, debian) in plan.tests.iter().zip(debian) {
        if test.steps.is_empty() {
            continue;
        }
        obs.note(&format!(
            "testing {} in a fresh VM: {} step(s){}",
            test.package,
            test.steps.len(),
            if debian.is_empty() {
                String::new()
            } else {
                format!(", environment: {}", debian.join(" "))
            }
        ));
        let cache = runner_setup::cache(&args.vm)?;
        let spec = Spec {
            source: Some(crate::build::source_dir(args)?),
            mkdirs: Vec::new(),
            symlinks: Vec::new(),
            cpus: plan.package.test_cpus.or(plan.package.cpus),
            memory_mib: plan.package.test_memory_mib.or(plan.package.memory_mib),
            default_network: Some(NetworkArg::User),
            packages: !debian.is_empty(),
            volumes: vec![SharedDir {
                name: "packages".into(),
                host_dir: outputs.clone(),
                mode: CacheMode::Overlay,
                target: PACKAGES_DIR.into(),
                aliases: Vec::new(),
                owner: None,
                root_mode: None,
            }],
        };
        let kind = args.runner.unwrap_or_default().kind();
        if test.accounts.run_as.is_some() {
            kind.check(&[vmbuild_runner::Feature::RunAs])?;
        }
        let (mut options, mut holds) =
            runner_setup::options_held(kind, &args.vm, &cache, spec, started)?;
        if !debian.is_empty() {
            let (image, held) = crate::build::env_image(debian, &args.distro, obs)?;
            options.set_root_image(image)?;
            holds.images.push(held);
        }
        let mut shown = crate::live::StartProgress::new(crate::live::mode());
        let mut session = options
            .start(stop, &mut |e| {
                crate::live::start::note_event(&mut shown, e, &mut |l| obs.note(l))
            })
            .await?;
        drop(shown);
        if let Err(e) = crate::build::accounts(&mut session, &test.accounts, stop, obs).await {
            session.abort().await;
            return Err(e);
        }
        // The install step runs as root; the test's own steps as its run-as user.
        let install = install_step(test, plan.subpackages.is_empty(), &test.steps[0]);
        let user = vmbuild_runner::accounts::run_user(test.accounts.run_as.as_ref());
        let mut all = steps(&[install], None);
        all.extend(steps(&test.steps, user.as_ref()));
        let ran = pipeline::run_steps(&mut session, &all, &mut **obs, stop).await;
        let outcome = match ran {
            Ok(o) => o,
            Err(e) => {
                session.abort().await;
                return Err(e);
            }
        };
        session.finish().await?;
        if let StepsOutcome::Failed {
            name, exit, tail, ..
        } = outcome
        {
            return Ok(report_failure(
                args.log_format,
                &name,
                &exit,
                &tail,
                "the build's outputs are in place, but its test failed",
            ));
        }
        drop(holds);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_plan() -> TestPlan {
        let p = vmbuild_config::parse_str(
            "t.yaml",
            "package: {name: a, version: '1'}\npipeline: []\nsubpackages:\n  - name: a-dev\ntest:\n  environment: {contents: {packages: [a-dev]}}\n  pipeline: [{runs: a --version}]\n",
            &Default::default(),
        )
        .unwrap();
        p.tests[0].clone()
    }

    #[test]
    fn the_install_step_copies_each_tested_package_into_the_root() {
        let t = test_plan();
        let s = install_step(&t, false, &t.steps[0]);
        assert!(
            s.script.contains("cp -a '/run/vmbuild-packages/a/.' /"),
            "{}",
            s.script
        );
        assert!(
            s.script.contains("cp -a '/run/vmbuild-packages/a-dev/.' /"),
            "{}",
            s.script
        );
        assert_eq!(s.workdir, "/");
        let one = install_step(&t, true, &t.steps[0]);
        assert!(
            one.script.ends_with(
                "if [ -d '/run/vmbuild-packages' ]; then cp -a '/run/vmbuild-packages/.' /; fi; "
            ),
            "{}",
            one.script
        );
    }
}
