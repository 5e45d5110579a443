//! `vmbuild validate CONFIG...`: everything `vmbuild build` does before
//! booting (parse, substitute, `if:`, expand `uses:`, check package names),
//! for many configs at once, fast enough for a pre-commit hook. Each
//! config is checked on its own with its own `pipelines/` directory.
//! Package names with no Debian equivalent are warnings (errors with
//! `--strict`): they depend on where the build will run.

use vmbuild_config::{LoadOptions, Plan};

use crate::cli::ValidateArgs;
use crate::packages::Packages;

/// Every environment package name a plan needs: the build's and each
/// test's, each once.
fn all_packages(plan: &Plan) -> Vec<String> {
    let mut names = plan.packages.clone();
    for t in &plan.tests {
        for p in &t.packages {
            if !names.contains(p) {
                names.push(p.clone());
            }
        }
    }
    names
}

/// Runs `vmbuild validate`; returns the exit code: 0 when every config
/// passed, 1 when any failed (or, with `--strict`, has a package-name
/// warning). Errors and warnings go to stderr as `file:line:col: message`
/// (`file: message` for package names); `verbose` also prints the notes
/// (ignored melange keys).
pub fn validate(args: &ValidateArgs, verbose: bool) -> i32 {
    let opts = LoadOptions {
        pipeline_dirs: args.pipeline_dir.clone(),
        build_options: args.build_option.clone(),
        ..LoadOptions::default()
    };
    let packages = match Packages::load(&args.package_map) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let (mut ok, mut failed, mut resolved) = (0usize, 0usize, 0usize);
    for config in &args.configs {
        let plan = match vmbuild_config::load(config, &opts) {
            Ok(plan) => plan,
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                continue;
            }
        };
        if verbose {
            for note in &plan.notes {
                eprintln!("note: {note}");
            }
        }
        let build = packages.resolve(&plan.packages);
        if build.unknown.is_empty() {
            resolved += 1;
        }
        let all = packages.resolve(&all_packages(&plan));
        if let Some(message) = all.unknown_message() {
            let kind = if args.strict { "error" } else { "warning" };
            eprintln!("{kind}: {}: {message}", config.display());
            if args.strict {
                failed += 1;
                continue;
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
    if args.configs.len() > 1 || failed > 0 {
        eprintln!(
            "vmbuild validate: {} config(s): {ok} valid, {failed} with errors; {resolved} with a build environment that resolves to Debian packages",
            args.configs.len()
        );
    }
    i32::from(failed > 0)
}
