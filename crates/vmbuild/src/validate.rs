//! `vmbuild validate CONFIG...`: everything `vmbuild build` does before
//! booting (parse, substitute, `if:`, expand `uses:`, check package names),
//! for many configs at once, fast enough for a pre-commit hook. Each
//! config is checked on its own with its own `pipelines/` directory.

use std::path::Path;

use vmbuild_config::{ConfigError, LoadOptions, Plan};

use crate::cli::ValidateArgs;

/// What one config gave: its plan, or its error.
fn check(config: &Path, opts: &LoadOptions) -> Result<Plan, ConfigError> {
    vmbuild_config::load(config, opts)
}

/// Runs `vmbuild validate`; returns the exit code: 0 when every config
/// passed, 1 when any failed. Errors go to stderr as
/// `file:line:col: message`; `verbose` also prints the notes (ignored
/// melange keys).
pub fn validate(args: &ValidateArgs, verbose: bool) -> i32 {
    let opts = LoadOptions {
        pipeline_dirs: args.pipeline_dir.clone(),
        build_options: args.build_option.clone(),
        ..LoadOptions::default()
    };
    let (mut ok, mut failed) = (0usize, 0usize);
    for config in &args.configs {
        match check(config, &opts) {
            Ok(plan) => {
                if verbose {
                    for note in &plan.notes {
                        eprintln!("note: {note}");
                    }
                }
                ok += 1;
                if !args.quiet {
                    println!(
                        "ok: {} ({} {}: {} step(s), {} subpackage(s), {} test(s))",
                        config.display(),
                        plan.package.name,
                        plan.package.version,
                        plan.steps.len(),
                        plan.subpackages.len(),
                        plan.tests.len()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if args.configs.len() > 1 || failed > 0 {
        eprintln!(
            "vmbuild validate: {} config(s): {ok} valid, {failed} with errors",
            args.configs.len()
        );
    }
    i32::from(failed > 0)
}
