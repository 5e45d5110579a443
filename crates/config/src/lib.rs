//! vmbuild's pipeline config: a melange-compatible subset of melange's YAML,
//! parsed into a model, validated, and resolved into a [`Plan`] — the flat
//! list of shell steps the runner executes in a VM. Pure: no processes, no
//! VMs; the only I/O is reading the config, `uses:` pipeline files and the
//! `--env-file`.
//!
//! # The file
//!
//! ```yaml
//! package:
//!   name: hello              # required; [a-z0-9][a-z0-9._+-]*
//!   version: 1.10            # required; kept as written ("1.10", not 1.1)
//!   epoch: 0
//!   description: says hello
//!   timeout: 600             # whole build: seconds, or 10m / 1h30m / 30s
//!   resources: { cpu: 2, memory: 2Gi }   # Mi/Gi (1024) or M/G (1000); bare = MiB
//! environment:
//!   contents:
//!     packages: [build-base, python3]   # Wolfi or Debian names, apk constraints allowed
//!     repositories: []
//!   environment: { KEY: value }
//! vars: { flavor: full }     # a var may use the ones above it
//! cache:                     # build-level cache volumes: `--cache`'s keys
//!   - id: gomod              # a named volume under the cache root (no src:)
//!     target: /root/go/pkg/mod
//!     sharing: locked        # shared (default) | locked | private
//!     persist: never         # never | on-success | always (the mode's default)
//!     uid: 1000              # uid, gid, mode (octal): the volume root
//!     mode: "0755"
//! pipeline:
//!   - name: compile
//!     runs: make              # exactly one of runs / uses / pipeline
//!     working-directory: src  # relative to /home/build, or absolute anywhere
//!     environment: { CFLAGS: -O2 }
//!     if: ${{vars.flavor}} == 'full'
//!     timeout: 30s
//!   - uses: test/echo         # a built-in or <dir>/test/echo.yaml
//!     with: { message: hi }
//!   - name: group
//!     pipeline: [ { runs: "echo nested" } ]
//! ```
//!
//! `cache:` entries are checked with the cache crate's functions, so they
//! take exactly what `--cache` takes; a step's own `cache:` is for that
//! step (and its nested steps) only ([`PlanStep::volumes`]); `src:` is
//! refused (a file must not choose host directories to mount). See
//! [`Plan::volumes`].
//!
//! Unknown keys, wrong types, missing fields, bad substitutions, bad `if`
//! conditions, bad `uses` paths and inputs are errors whose one-line
//! `Display` is `file:line:col: message`, with the closest valid name where
//! there is one. melange's packaging-only `package` keys (`copyright`,
//! `dependencies`, ...) and the top-level `update` are accepted and ignored;
//! `subpackages`, `test`, `var-transforms`, `data` and `options` are refused.
//!
//! # Substitutions
//!
//! melange's whole set: `${{package.name}}`, `${{package.version}}`,
//! `${{package.epoch}}`, `${{package.full-version}}`,
//! `${{package.description}}`, `${{package.srcdir}}`, `${{vars.NAME}}`
//! (after `var-transforms`), `${{inputs.NAME}}` (inside a `uses`
//! pipeline), `${{targets.outdir}}` ([`GUEST_OUTPUT_DIR`]),
//! `${{targets.destdir}}` (`outdir/<package>`), `${{targets.contextdir}}`
//! and `${{context.name}}` (the package being made: the main one or a
//! subpackage), `${{targets.subpkgdir}}` and `${{subpkg.name}}` (in a
//! subpackage), `${{targets.package.NAME}}`, `${{range.key}}` and
//! `${{range.value}}` (in a `range:` subpackage), `${{options.NAME.enabled}}`,
//! `${{host.triplet.gnu}}`, `${{host.triplet.rust}}`,
//! `${{cross.triplet.{gnu,rust}.{glibc,musl}}}`, `${{build.arch}}`,
//! `${{build.goarch}}`. They apply to `runs`, `working-directory`,
//! `environment` values, `if`, `with` values, input defaults, step names,
//! `vars` values and `environment.contents` entries. An unknown name or an
//! unterminated `${{` is an error.
//!
//! # Conditions
//!
//! `if:` takes `'quoted'`/`"quoted"` strings, bare words, `${{...}}`, `==`,
//! `!=`, `&&`, `||`, `!`, parentheses, `true` and `false` (see
//! `src/cond.rs`). A false condition skips the step and its nested steps;
//! the step is listed in [`Plan::skipped`].
//!
//! # `uses:` pipelines
//!
//! `uses: a/b` loads `<dir>/a/b.yaml` from each of
//! [`LoadOptions::pipeline_dirs`] in order, then the config file's
//! `pipelines/` directory, then the built-ins ([`builtin_pipelines`]). A
//! definition has `name`, `description`, `needs: {packages}` (added to the
//! environment), `inputs: {x: {description, default, required}}` and
//! `pipeline` (and may set `working-directory`, `environment`, `if`). An
//! input given empty takes its default, as in melange. An unknown `with` key, a missing
//! required input, an absolute path or a `..` component, and a pipeline
//! that (directly or not) uses itself are errors.
//!
//! # Steps and scripts
//!
//! Steps are flattened in execution order; `pipeline:` and `uses:` steps
//! are groups whose children inherit their working directory, environment
//! and timeout (a group's timeout applies to each of its steps that has
//! none). Names are paths: `build > configure`; an unnamed step is named
//! after its `uses`, or `step N`. Each script runs with bash where the
//! environment has it, else `/bin/sh` (busybox ash) — see [`SHELL_WRAPPER`]
//! — where SCRIPT is [`SCRIPT_PRELUDE`] (`set -e`, plus `set -o pipefail`
//! where the shell supports it: both do) on the first line, then `runs`.
//!
//! # Environment precedence
//!
//! Lowest first; a later layer overrides an earlier one:
//!
//! 1. [`LoadOptions::base_env`] (PATH, HOME, ... from the runner)
//! 2. `--env-file` values ([`LoadOptions::env_file`], format in [`envfile`])
//! 3. the config's `environment.environment`
//! 4. cache defaults ([`LoadOptions::cache_defaults`]): **fill-if-unset** —
//!    skipped when the variable (or an alias from
//!    [`LoadOptions::cache_default_aliases`]) is set by any layer
//! 5. step `environment`, outer to inner (nested steps inherit and may override)
//! 6. `--env K=V` ([`LoadOptions::cli_env`]): wins over everything, a step's
//!    own `environment` included — a command-line override is how a CI job
//!    runs a config differently without editing it.

pub mod accounts;
mod cond;
mod decode;
pub mod env;
pub mod envfile;
mod error;
mod globals;
mod melange;
mod model;
mod names;
pub use names::apk_name;
pub mod packages;
mod pipelines;
mod plan;
mod resolve;
pub mod schema;
mod source;
mod subst;
mod suggest;
mod transforms;
mod units;
mod volumes;
mod yaml;

use std::path::{Path, PathBuf};

pub use env::EnvLayers;

/// Parses YAML `text` (named `name` in errors, which carry file:line:col)
/// into JSON as a YAML 1.2 loader would (`null` for an empty document):
/// for checking YAML files against a JSON Schema, or their shape in tests.
pub fn yaml_to_json(name: &str, text: &str) -> Result<serde_json::Value, ConfigError> {
    let src = Source::new(name, text);
    Ok(yaml::parse(&src)?.map_or(serde_json::Value::Null, |n| yaml::to_json(&n)))
}
pub use envfile::{parse_env_assignment, parse_env_file};
pub use error::{ConfigError, Loc};
pub use globals::package_dir;
pub use packages::{PackageMap, Resolution};
pub use pipelines::{builtin_pipeline, builtin_pipelines};
pub use plan::{
    PackageInfo, Plan, PlanStep, TestPlan, GUEST_OUTPUT_DIR, SCRIPT_PRELUDE, SHELL, SHELL_WRAPPER,
};
pub use units::{parse_cpus, parse_duration, parse_memory_mib};

use decode::Cx;
use source::Source;

/// Everything besides the config file that shapes the plan.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--pipeline-dir` values, searched in order before the config's
    /// `pipelines/` dir and the built-ins. Each must exist.
    pub pipeline_dirs: Vec<PathBuf>,
    /// `--env-file`: KEY=VALUE lines (see [`envfile`]).
    pub env_file: Option<PathBuf>,
    /// `--env K=V` values, in command-line order (later wins).
    pub cli_env: Vec<(String, String)>,
    /// Per-language cache variables (fill-if-unset), e.g. from
    /// `vmbuild_cache::cache_env_defaults`.
    pub cache_defaults: Vec<(String, String)>,
    /// `(default variable, alias)`: the default is skipped when the alias is
    /// set, e.g. `("npm_config_cache", "NPM_CONFIG_CACHE")` (the cache
    /// crate's `EnvDefault::set_by`).
    pub cache_default_aliases: Vec<(String, String)>,
    /// The environment every step starts from (PATH, HOME, ...).
    pub base_env: Vec<(String, String)>,
    /// `--build-option NAME` values: entries of the config's `options:`
    /// to apply (their `vars` and package additions/removals).
    pub build_options: Vec<String>,
    /// `--vars-file`: a YAML mapping of var names to values that override
    /// the config's `vars` (as melange's flag); values are literal.
    pub vars_file: Option<PathBuf>,
    /// Only the environment is wanted (`vmbuild image build`): a `uses:`
    /// pipeline that cannot be found is skipped (its `needs` with it)
    /// instead of being an error.
    pub environment_only: bool,
    /// The `test:` sections are not wanted (`vmbuild build --skip-tests`):
    /// they are not resolved, so their `uses:` pipelines and packages need
    /// not exist, and the plan has no tests.
    pub skip_tests: bool,
}

/// Loads the config file at `path` and resolves it into a plan. Its
/// `pipelines/` directory (if it exists) joins the `uses:` search path.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let extra = pipelines::config_pipeline_dir(path).filter(|d| d.is_dir());
    tracing::debug!(config = %path.display(), "loading config");
    resolve_text(&path.display().to_string(), &text, opts, extra)
}

/// Parses and resolves config `text`, naming it `name` in errors. Like
/// [`load`] without a config directory (only `opts.pipeline_dirs` and the
/// built-ins serve `uses:`).
pub fn parse_str(name: &str, text: &str, opts: &LoadOptions) -> Result<Plan, ConfigError> {
    resolve_text(name, text, opts, None)
}

fn resolve_text(
    name: &str,
    text: &str,
    opts: &LoadOptions,
    config_dir: Option<PathBuf>,
) -> Result<Plan, ConfigError> {
    for dir in &opts.pipeline_dirs {
        if !dir.is_dir() {
            return Err(ConfigError::PipelineDir { path: dir.clone() });
        }
    }
    let env_file = match &opts.env_file {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            parse_env_file(&p.display().to_string(), &t)?
        }
        None => Vec::new(),
    };
    let vars_file = match &opts.vars_file {
        Some(p) => melange::vars_file(p)?,
        None => Vec::new(),
    };
    let src = Source::new(name, text);
    let Some(root) = yaml::parse(&src)? else {
        return Err(ConfigError::Syntax {
            at: src.loc_line_col(1, 0),
            message: "the config is empty; it needs `package:` (name, version) and `pipeline:`"
                .into(),
        });
    };
    let config = model::config(Cx { src: &src }, &root)?;
    let mut dirs = opts.pipeline_dirs.clone();
    dirs.extend(config_dir);
    resolve::resolve(
        &src,
        &config,
        resolve::Inputs {
            dirs,
            base_env: &opts.base_env,
            env_file,
            cache_defaults: &opts.cache_defaults,
            cache_default_aliases: &opts.cache_default_aliases,
            cli_env: &opts.cli_env,
            build_options: &opts.build_options,
            environment_only: opts.environment_only,
            skip_tests: opts.skip_tests,
            vars_file,
        },
    )
}
