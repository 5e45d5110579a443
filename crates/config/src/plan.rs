//! The resolved plan: what the runner executes, in order.

use std::time::Duration;

use vmbuild_cache::volume::VolumeSpec;

/// Where the build's outputs go in the guest: `${{targets.outdir}}`. Each
/// package has its own directory in it, `${{targets.destdir}}` =
/// `/home/build/out/<package>`, `${{targets.subpkgdir}}` =
/// `/home/build/out/<subpackage>` (melange's `melange-out` layout).
pub const GUEST_OUTPUT_DIR: &str = "/home/build/out";

/// Put before every step's script, on the script's first line (so the
/// shell's "line N" messages match the `runs` text). It turns on `set -e`,
/// and `pipefail` where the shell has it (busybox ash, bash, dash 0.5.13+):
/// Debian bookworm's dash 0.5.12 refuses `set -o pipefail`, so it is tried
/// in a subshell first instead of failing the step.
pub const SCRIPT_PRELUDE: &str =
    "set -e; if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi; ";

/// The shell that starts every step ([`PlanStep::argv`]).
pub const SHELL: &str = "/bin/sh";

/// What [`SHELL`] runs first: the step's script (its `$1`) with bash when
/// the environment has it (Debian images always do), else with `/bin/sh`
/// (the busybox environment's ash). melange users expect `[[ ]]` and
/// `set -o pipefail` to work; both shells have them, Debian's dash does
/// not (docs/pipelines.md, "Shell").
pub const SHELL_WRAPPER: &str = "if command -v bash >/dev/null 2>&1; then exec bash -c \"$1\" vmbuild-step; fi; exec /bin/sh -c \"$1\" vmbuild-step";

/// A config resolved for one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The `package:` section.
    pub package: PackageInfo,
    /// The build environment's packages: `environment.contents.packages`
    /// with every running step's `needs.packages` added (melange's
    /// model), substituted, in first-seen order, each once. Names as
    /// written (Wolfi/apk names, optionally with a version constraint).
    pub packages: Vec<String>,
    /// `environment.contents.repositories` (substituted).
    pub repositories: Vec<String>,
    /// The steps to run in the build VM, flattened in execution order: the
    /// main pipeline, then each subpackage's ([`PlanStep::package`]).
    pub steps: Vec<PlanStep>,
    /// The subpackages built (after `range:` expansion and `if:`), in order.
    pub subpackages: Vec<String>,
    /// `test:` sections (the main package's first, then the subpackages'),
    /// each run in a fresh VM after a successful build.
    pub tests: Vec<TestPlan>,
    /// `environment.accounts`: the groups and users created before the
    /// first step, and the `run-as` user every build step runs as
    /// (`None`: root).
    pub accounts: crate::accounts::Accounts,
    /// melange keys present in the file that vmbuild accepts and ignores
    /// (packaging metadata, update monitors...), one line each,
    /// `file:line:col: ...`; shown at `-v`.
    pub notes: Vec<String>,
    /// Names (paths) of the steps skipped because their `if:` was false;
    /// their nested steps are not listed.
    pub skipped: Vec<String>,
    /// The top-level `cache:` volumes, checked like `--cache` specs (always
    /// named: a file cannot mount a host directory), in file order.
    pub volumes: Vec<VolumeSpec>,
}

/// What the `package:` section says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// `package.name`.
    pub name: String,
    /// `package.version`, as written (`1.10` stays `1.10`).
    pub version: String,
    /// `package.epoch` (0 when absent).
    pub epoch: u64,
    /// `package.description`.
    pub description: Option<String>,
    /// Whole-build timeout (`package.timeout`).
    pub timeout: Option<Duration>,
    /// `package.resources.cpu`.
    pub cpus: Option<u32>,
    /// `package.resources.memory`, in MiB.
    pub memory_mib: Option<u32>,
    /// `package.test-resources.cpu`: the test VMs' vCPUs.
    pub test_cpus: Option<u32>,
    /// `package.test-resources.memory`, in MiB.
    pub test_memory_mib: Option<u32>,
}

/// One `test:` section, resolved: run after the build in a fresh VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPlan {
    /// The package it tests (the main package or a subpackage).
    pub package: String,
    /// The test environment's packages: `test.environment.contents.packages`,
    /// the test steps' `needs.packages` and the `dependencies.runtime` of
    /// every installed package (transitively, melange's apk install), without
    /// the names of the build's own packages (see [`TestPlan::installs`]).
    pub packages: Vec<String>,
    /// The build's own packages the test environment lists (melange always
    /// adds the tested package), and those an installed package's
    /// `dependencies.runtime` names: their output directories are installed
    /// into the test VM's root.
    pub installs: Vec<String>,
    /// The test steps, in order.
    pub steps: Vec<PlanStep>,
    /// Test steps skipped by `if:`.
    pub skipped: Vec<String>,
    /// `test.environment.accounts` (melange's default `build` account
    /// added); its `run-as` user runs the test steps.
    pub accounts: crate::accounts::Accounts,
}

/// One step to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    /// The step's name with its parents', e.g. `build > configure`.
    pub name: String,
    /// The shell script: [`SCRIPT_PRELUDE`] followed by the substituted `runs`.
    pub script: String,
    /// The working directory: an absolute guest path under `/home/build`.
    pub workdir: String,
    /// The complete environment (see the crate docs for the precedence).
    pub env: Vec<(String, String)>,
    /// The step's own timeout (inherited from an enclosing step that has one).
    pub timeout: Option<Duration>,
    /// Nesting depth: 0 for a top-level step, +1 per enclosing `pipeline`/`uses`.
    pub depth: usize,
    /// Step-level cache volumes (its own `cache:` and its enclosing
    /// steps'): mounted for this step only.
    pub volumes: Vec<VolumeSpec>,
    /// The package whose pipeline the step belongs to.
    pub package: String,
}

impl PlanStep {
    /// The command line that runs the step: `/bin/sh -c SHELL_WRAPPER
    /// vmbuild-step SCRIPT` (bash when there is one, else `/bin/sh`).
    pub fn argv(&self) -> Vec<String> {
        vec![
            SHELL.to_string(),
            "-c".to_string(),
            SHELL_WRAPPER.to_string(),
            "vmbuild-step".to_string(),
            self.script.clone(),
        ]
    }

    /// The value of `name` in the step's environment.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
