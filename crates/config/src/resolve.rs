//! From a decoded config to a [`Plan`]: substitution, `if:` evaluation,
//! `uses:` expansion, working directories and environments.

use std::path::PathBuf;
use std::time::Duration;

use vmbuild_proto::GUEST_HOME;

use crate::cond;
use crate::decode::{Cx, Str};
use crate::env::{layer, EnvLayers};
use crate::error::{show, ConfigError};
use crate::globals::{self, Vars};
use crate::melange::Subpackage;
use crate::model::{self, Body, Config, PipelineDef, Step};
use crate::names::{check_apk_package, guest_workdir};
use crate::pipelines;
use crate::plan::{PackageInfo, Plan, PlanStep, TestPlan, SCRIPT_PRELUDE};
use crate::source::Source;
use crate::subst::{substitute, Scope};
use crate::suggest::closest;
use crate::yaml;

/// Deepest chain of `uses` (a pipeline using a pipeline using ...).
const MAX_USES_DEPTH: usize = 32;

/// Inputs to the resolution besides the config itself.
pub(crate) struct Inputs<'a> {
    pub dirs: Vec<PathBuf>,
    pub base_env: &'a [(String, String)],
    pub env_file: Vec<(String, String)>,
    pub cache_defaults: &'a [(String, String)],
    pub cache_default_aliases: &'a [(String, String)],
    pub cli_env: &'a [(String, String)],
    /// `--build-option` names.
    pub build_options: &'a [String],
    /// Skip `uses:` pipelines that cannot be found.
    pub environment_only: bool,
    /// Leave the `test:` sections out of the plan, unresolved.
    pub skip_tests: bool,
    /// `--vars-file` values (literal), over the config's `vars`.
    pub vars_file: Vec<(String, String)>,
}

/// Variables of a step: the globals and, inside a `uses` pipeline, its inputs.
pub(crate) struct StepScope<'a> {
    globals: &'a [(String, String)],
    inputs: Option<&'a [(String, String)]>,
}

impl<'a> StepScope<'a> {
    /// A scope of the globals only (no `inputs.*`).
    pub(crate) fn globals(globals: &'a [(String, String)]) -> Self {
        StepScope {
            globals,
            inputs: None,
        }
    }
}

impl Scope for StepScope<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        match name.strip_prefix("inputs.") {
            Some(input) => self
                .inputs?
                .iter()
                .find(|(k, _)| k == input)
                .map(|(_, v)| v.clone()),
            None => self
                .globals
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.globals.iter().map(|(k, _)| k.clone()).collect();
        if let Some(inputs) = self.inputs {
            names.extend(inputs.iter().map(|(k, _)| format!("inputs.{k}")));
        }
        names
    }
}

/// Where a list of steps sits: its file, inputs and what it inherits.
struct Frame<'f> {
    src: &'f Source,
    inputs: Option<&'f [(String, String)]>,
    path: Vec<String>,
    workdir: String,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    depth: usize,
    /// Step-level volumes of the enclosing steps.
    volumes: Vec<vmbuild_cache::volume::VolumeSpec>,
}

impl<'f> Frame<'f> {
    /// The frame of a pipeline's top-level steps.
    fn top(src: &'f Source, path: Vec<String>) -> Self {
        Frame {
            src,
            inputs: None,
            path,
            workdir: GUEST_HOME.to_string(),
            env: Vec::new(),
            timeout: None,
            depth: 0,
            volumes: Vec::new(),
        }
    }
}

/// The frame of a `uses` pipeline's steps, before its inputs are known,
/// and the caller's inputs it inherits.
struct Child<'f> {
    frame: Frame<'f>,
    inherited: Vec<(String, String)>,
}

struct Resolver {
    dirs: Vec<PathBuf>,
    /// The variables of the package whose steps are being resolved.
    globals: Vec<(String, String)>,
    /// That package's name ([`PlanStep::package`]).
    package: String,
    layers: EnvLayers,
    steps: Vec<PlanStep>,
    skipped: Vec<String>,
    /// `needs.packages` of the steps resolved so far (substituted).
    needs: Vec<String>,
    uses_stack: Vec<String>,
    /// [`Inputs::environment_only`].
    environment_only: bool,
    /// Notes on ignored step keys (`label`, `assertions`...), located.
    notes: Vec<String>,
}

/// Substitutes `${{...}}` in `s`, an error located inside it.
pub(crate) fn subst(src: &Source, s: &Str, scope: &dyn Scope) -> Result<String, ConfigError> {
    substitute(&s.value, scope).map_err(|e| ConfigError::Substitution {
        at: src.loc_in(s.pos, s.style, &s.value, e.offset),
        message: e.message,
    })
}

/// `accounts` with its `run-as` substituted and resolved
/// ([`crate::accounts::resolve`]).
fn resolve_accounts(
    src: &Source,
    accounts: &crate::accounts::AccountsDef,
    scope: &dyn Scope,
) -> Result<crate::accounts::Accounts, ConfigError> {
    let run_as = accounts
        .run_as
        .as_ref()
        .map(|s| subst(src, s, scope).map(|value| Str { value, ..s.clone() }))
        .transpose()?;
    crate::accounts::resolve(src, accounts, run_as.as_ref())
}

fn subst_pairs(
    src: &Source,
    pairs: &[(Str, Str)],
    scope: &dyn Scope,
) -> Result<Vec<(String, String)>, ConfigError> {
    pairs
        .iter()
        .map(|(k, v)| Ok((k.value.clone(), subst(src, v, scope)?)))
        .collect()
}

/// Evaluates an `if:`, errors located in it.
fn condition(src: &Source, c: &Str, scope: &dyn Scope) -> Result<bool, ConfigError> {
    cond::evaluate(&c.value, scope).map_err(|e| {
        let at = src.loc_in(c.pos, c.style, &c.value, e.offset);
        if e.subst {
            ConfigError::Substitution {
                at,
                message: e.message,
            }
        } else {
            ConfigError::Condition {
                at,
                message: e.message,
            }
        }
    })
}

/// Substituted package names, each checked (apk syntax, optionally with a
/// version constraint), added to `out` unless already there.
fn add_packages(
    src: &Source,
    names: &[Str],
    scope: &dyn Scope,
    out: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for s in names {
        let name = subst(src, s, scope)?;
        check_apk_package(&name).map_err(|message| ConfigError::Invalid {
            at: src.loc(s.pos),
            field: "packages".into(),
            message,
        })?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(())
}

/// A subpackage after `range:` expansion: its name and variables.
struct Sub<'c> {
    name: String,
    vars: Vars,
    def: &'c Subpackage,
}

/// Expands `range:` and substitutes the names; checks them.
fn expand_subpackages<'c>(
    src: &Source,
    config: &'c Config,
    build: &Vars,
) -> Result<Vec<Sub<'c>>, ConfigError> {
    let mut out: Vec<Sub<'c>> = Vec::new();
    for sp in &config.subpackages {
        let contexts: Vec<Vars> = match &sp.range {
            Some(r) => globals::range_items(src, config, r)?
                .iter()
                .map(|(k, v)| globals::with_range(build, &k.value, &v.value))
                .collect(),
            None => vec![build.clone()],
        };
        for vars in contexts {
            let name = subst(src, &sp.name, &StepScope::globals(&vars))?;
            let named = Str::synthetic(name.clone(), sp.name.pos);
            model::check_package_name(Cx { src }, &named)?;
            if name == config.package.name.value || out.iter().any(|o| o.name == name) {
                return Err(ConfigError::Invalid {
                    at: src.loc(sp.name.pos),
                    field: "name".into(),
                    message: format!(
                        "package `{name}` is made twice; give each subpackage its own name"
                    ),
                });
            }
            out.push(Sub {
                name,
                vars,
                def: sp,
            });
        }
    }
    Ok(out)
}

/// Resolves a decoded config (from `src`) into a plan.
pub(crate) fn resolve(
    src: &Source,
    config: &Config,
    inputs: Inputs<'_>,
) -> Result<Plan, ConfigError> {
    let p = &config.package;
    let mut build = globals::build_vars(src, config, inputs.build_options, &inputs.vars_file)?;
    let mut subs = expand_subpackages(src, config, &build)?;
    let mut names = vec![p.name.value.clone()];
    names.extend(subs.iter().map(|s| s.name.clone()));
    globals::add_package_targets(&mut build, &names);
    for s in &mut subs {
        globals::add_package_targets(&mut s.vars, &names);
        s.vars = globals::subpackage_vars(&s.vars, &s.name);
    }
    let scope = StepScope::globals(&build);

    let mut packages = Vec::new();
    add_packages(src, &config.environment.packages, &scope, &mut packages)?;
    for opt in config
        .options
        .iter()
        .filter(|o| inputs.build_options.contains(&o.name.value))
    {
        add_packages(src, &opt.add, &scope, &mut packages)?;
        let mut remove = Vec::new();
        add_packages(src, &opt.remove, &scope, &mut remove)?;
        packages.retain(|p| !remove.contains(p));
    }
    let repositories = config
        .environment
        .repositories
        .iter()
        .map(|s| subst(src, s, &scope))
        .collect::<Result<Vec<_>, _>>()?;
    let accounts = resolve_accounts(src, &config.environment.accounts, &scope)?;

    let mut below = inputs.base_env.to_vec();
    layer(&mut below, &inputs.env_file);
    let test_below = below.clone();
    layer(
        &mut below,
        &subst_pairs(src, &config.environment.env, &scope)?,
    );
    let layers = |below: Vec<(String, String)>| EnvLayers {
        below,
        cache_defaults: inputs.cache_defaults.to_vec(),
        aliases: inputs.cache_default_aliases.to_vec(),
        cli: inputs.cli_env.to_vec(),
    };

    let mut r = Resolver {
        dirs: inputs.dirs,
        globals: build.clone(),
        package: p.name.value.clone(),
        layers: layers(below),
        steps: Vec::new(),
        skipped: Vec::new(),
        needs: Vec::new(),
        uses_stack: Vec::new(),
        environment_only: inputs.environment_only,
        notes: Vec::new(),
    };
    r.walk(&config.pipeline, &Frame::top(src, Vec::new()))?;
    let mut subpackages = Vec::new();
    let mut built = vec![(p.name.value.clone(), build.clone(), config.test.as_ref())];
    // Each built package's `dependencies.runtime`, substituted in its scope.
    let mut runtime_of: Vec<(String, Vec<String>)> = Vec::new();
    let mut deps = Vec::new();
    add_packages(src, &p.runtime, &StepScope::globals(&build), &mut deps)?;
    runtime_of.push((p.name.value.clone(), deps));
    for s in &subs {
        r.globals = s.vars.clone();
        r.package = s.name.clone();
        if let Some(c) = &s.def.cond {
            if !condition(src, c, &StepScope::globals(&s.vars))? {
                tracing::debug!(subpackage = %s.name, "skipped: `if` is false");
                r.skipped.push(s.name.clone());
                continue;
            }
        }
        r.walk(&s.def.pipeline, &Frame::top(src, vec![s.name.clone()]))?;
        subpackages.push(s.name.clone());
        built.push((s.name.clone(), s.vars.clone(), s.def.test.as_ref()));
        let mut deps = Vec::new();
        add_packages(src, &s.def.runtime, &StepScope::globals(&s.vars), &mut deps)?;
        runtime_of.push((s.name.clone(), deps));
    }
    for n in std::mem::take(&mut r.needs) {
        if !packages.contains(&n) {
            packages.push(n);
        }
    }
    let (steps, skipped) = (std::mem::take(&mut r.steps), std::mem::take(&mut r.skipped));

    let mut all: Vec<String> = vec![p.name.value.clone()];
    all.extend(subpackages.iter().cloned());
    let mut tests = Vec::new();
    for (package, vars, test) in built {
        let Some(test) = test.filter(|_| !inputs.skip_tests) else {
            continue;
        };
        let scope = StepScope::globals(&vars);
        let mut below = test_below.clone();
        layer(
            &mut below,
            &subst_pairs(src, &test.environment.env, &scope)?,
        );
        r.layers = layers(below);
        r.globals = vars.clone();
        r.package = package.clone();
        r.walk(
            &test.pipeline,
            &Frame::top(src, vec![format!("test {package}")]),
        )?;
        let mut wanted = Vec::new();
        add_packages(src, &test.environment.packages, &scope, &mut wanted)?;
        wanted.append(&mut r.needs);
        let mut installs = vec![package.clone()];
        let mut packages = Vec::new();
        let mut place = |w: String, installs: &mut Vec<String>| {
            let bare = crate::names::apk_name(&w);
            if all.iter().any(|a| a == bare) {
                if !installs.iter().any(|i| i == bare) {
                    installs.push(bare.to_string());
                }
            } else if !packages.contains(&w) {
                packages.push(w);
            }
        };
        for w in wanted {
            place(w, &mut installs);
        }
        // Every installed package brings its `dependencies.runtime` (as
        // melange's apk install does), the build's own ones installed too.
        let mut i = 0;
        while i < installs.len() {
            if let Some((_, deps)) = runtime_of.iter().find(|(n, _)| *n == installs[i]) {
                for d in deps {
                    place(d.clone(), &mut installs);
                }
            }
            i += 1;
        }
        let accounts = resolve_accounts(src, &test.environment.accounts, &scope)?;
        tests.push(TestPlan {
            accounts,
            package,
            packages,
            installs,
            steps: std::mem::take(&mut r.steps),
            skipped: std::mem::take(&mut r.skipped),
        });
    }
    let mut notes: Vec<String> = config
        .ignored
        .iter()
        .map(|(pos, key)| {
            if key.ends_with("dependencies") {
                return format!(
                    "{}: `{key}`: only `runtime` is used (installed into the test VMs); the rest is apk metadata, ignored",
                    src.loc(*pos)
                );
            }
            format!(
                "{}: `{key}` is melange packaging metadata with no meaning for a vmbuild build; ignored",
                src.loc(*pos)
            )
        })
        .collect();
    notes.append(&mut r.notes);
    tracing::debug!(
        steps = steps.len(),
        skipped = skipped.len(),
        subpackages = subpackages.len(),
        tests = tests.len(),
        "resolved plan"
    );
    Ok(Plan {
        package: PackageInfo {
            name: p.name.value.clone(),
            version: p.version.value.clone(),
            epoch: p.epoch,
            description: p.description.as_ref().map(|d| d.value.clone()),
            timeout: p.timeout,
            cpus: p.cpus,
            memory_mib: p.memory_mib,
            test_cpus: p.test_cpus,
            test_memory_mib: p.test_memory_mib,
        },
        packages,
        repositories,
        steps,
        skipped,
        subpackages,
        tests,
        accounts,
        notes,
        volumes: config.cache.clone(),
    })
}

impl Resolver {
    fn walk(&mut self, steps: &[Step], frame: &Frame<'_>) -> Result<(), ConfigError> {
        for (i, step) in steps.iter().enumerate() {
            self.step(i, step, frame)?;
        }
        Ok(())
    }

    /// The frame a step's children (or its script) run in: its `if:`
    /// (`None`: skipped, and listed), working directory, environment,
    /// timeout, volumes and `needs`, over the enclosing `frame`.
    fn enter<'f>(
        &mut self,
        step: &Step,
        name: String,
        frame: &Frame<'f>,
    ) -> Result<Option<Frame<'f>>, ConfigError> {
        let src = frame.src;
        let globals = self.globals.clone();
        let scope = StepScope {
            globals: &globals,
            inputs: frame.inputs,
        };
        let mut path = frame.path.clone();
        if !name.is_empty() {
            path.push(name);
        }
        if let Some(c) = &step.cond {
            if !condition(src, c, &scope)? {
                let path_name = path.join(" > ");
                tracing::debug!(step = %path_name, "skipped: `if` is false");
                self.skipped.push(path_name);
                return Ok(None);
            }
        }
        let workdir = match &step.workdir {
            Some(w) => {
                let raw = subst(src, w, &scope)?;
                guest_workdir(&raw).map_err(|message| ConfigError::Invalid {
                    at: src.loc(w.pos),
                    field: "working-directory".into(),
                    message,
                })?
            }
            None => frame.workdir.clone(),
        };
        let mut env = frame.env.clone();
        layer(&mut env, &subst_pairs(src, &step.env, &scope)?);
        let mut volumes = frame.volumes.clone();
        volumes.extend(step.cache.iter().cloned());
        add_packages(src, &step.needs, &scope, &mut self.needs)?;
        for (pos, key) in &step.ignored {
            let note = format!(
                "{}: a step's `{key}` has no effect in vmbuild (every step must pass); ignored",
                src.loc(*pos)
            );
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
        Ok(Some(Frame {
            src,
            inputs: frame.inputs,
            path,
            workdir,
            env,
            timeout: step.timeout.or(frame.timeout),
            depth: frame.depth,
            volumes,
        }))
    }

    fn step(&mut self, index: usize, step: &Step, frame: &Frame<'_>) -> Result<(), ConfigError> {
        let src = frame.src;
        let name = match (&step.name, &step.body) {
            // melange does not substitute names; an unknown variable in
            // one is kept as written rather than failing the config.
            (Some(n), _) => {
                let globals = self.globals.clone();
                let scope = StepScope {
                    globals: &globals,
                    inputs: frame.inputs,
                };
                subst(src, n, &scope).unwrap_or_else(|_| n.value.clone())
            }
            (None, Body::Uses { uses, .. }) => uses.value.clone(),
            (None, _) => format!("step {}", index + 1),
        };
        let Some(inner) = self.enter(step, name, frame)? else {
            return Ok(());
        };
        match &step.body {
            Body::Runs(script) => {
                let globals = self.globals.clone();
                let scope = StepScope {
                    globals: &globals,
                    inputs: frame.inputs,
                };
                let script = subst(src, script, &scope)?;
                self.steps.push(PlanStep {
                    name: inner.path.join(" > "),
                    script: format!("{SCRIPT_PRELUDE}{script}"),
                    workdir: inner.workdir,
                    env: self.layers.for_step(&inner.env),
                    timeout: inner.timeout,
                    depth: frame.depth,
                    volumes: inner.volumes,
                    package: self.package.clone(),
                });
            }
            Body::Pipeline(children) => {
                let child = Frame {
                    depth: frame.depth + 1,
                    ..inner
                };
                self.walk(children, &child)?;
            }
            Body::Uses { uses, with } => {
                let globals = self.globals.clone();
                let scope = StepScope {
                    globals: &globals,
                    inputs: frame.inputs,
                };
                let given = subst_pairs(src, with, &scope)?;
                let child = Child {
                    inherited: frame.inputs.map(<[_]>::to_vec).unwrap_or_default(),
                    frame: Frame {
                        inputs: None,
                        depth: frame.depth + 1,
                        ..inner
                    },
                };
                self.uses(src, uses, with, &given, child)?;
            }
        }
        Ok(())
    }

    fn uses(
        &mut self,
        src: &Source,
        uses: &Str,
        with_raw: &[(Str, Str)],
        with: &[(String, String)],
        child: Child<'_>,
    ) -> Result<(), ConfigError> {
        let name = uses.value.as_str();
        let uses_err = |message: String| ConfigError::Uses {
            at: src.loc(uses.pos),
            message,
        };
        if self.uses_stack.iter().any(|n| n == name) {
            let mut chain = self.uses_stack.clone();
            chain.push(name.to_string());
            return Err(uses_err(format!(
                "pipeline `{name}` uses itself ({}); break the cycle",
                chain.join(" -> ")
            )));
        }
        if self.uses_stack.len() >= MAX_USES_DEPTH {
            return Err(uses_err(format!(
                "`uses` nested more than {MAX_USES_DEPTH} deep ({} -> {name})",
                self.uses_stack.join(" -> ")
            )));
        }
        let (def_src, def) = match self.load_def(name) {
            Ok(found) => found,
            Err(LoadDefError::NotFound(m)) if self.environment_only => {
                tracing::debug!("{m}; skipped (only the environment is wanted)");
                return Ok(());
            }
            Err(LoadDefError::NotFound(m)) => return Err(uses_err(m)),
            Err(LoadDefError::Config(e)) => return Err(e),
        };

        // Inputs: given (`with`, substituted by the caller) and not empty,
        // else the default (substituted with the globals), else required
        // => error; as melange's validateWith.
        let globals = self.globals.clone();
        let def_scope = StepScope::globals(&globals);
        let declared: Vec<&str> = def.inputs.iter().map(|i| i.name.value.as_str()).collect();
        for (k, _) in with_raw {
            if !declared.contains(&k.value.as_str()) {
                let hint = match closest(&k.value, declared.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if declared.is_empty() => "it takes no inputs".to_string(),
                    None => format!("its inputs: {}", declared.join(", ")),
                };
                return Err(ConfigError::Input {
                    at: src.loc(k.pos),
                    message: format!(
                        "pipeline `{name}` has no input `{}`; {hint}",
                        show(&k.value)
                    ),
                });
            }
        }
        // As in melange, a pipeline used from inside another sees the
        // caller's inputs too; its own declared ones win.
        let mut values: Vec<(String, String)> = child.inherited.clone();
        for input in &def.inputs {
            let given = with
                .iter()
                .find(|(k, v)| *k == input.name.value && !v.is_empty())
                .map(|(_, v)| v.clone());
            let value = match (given, &input.default) {
                (Some(v), _) => v,
                (None, Some(d)) => subst(&def_src, d, &def_scope)?,
                (None, None) if input.required => {
                    return Err(ConfigError::Input {
                        at: src.loc(uses.pos),
                        message: format!(
                            "pipeline `{name}` needs input `{0}`; add `with: {{ {0}: ... }}` to this step",
                            input.name.value
                        ),
                    })
                }
                (None, None) => String::new(),
            };
            values.retain(|(k, _)| *k != input.name.value);
            values.push((input.name.value.clone(), value));
        }

        tracing::debug!(pipeline = name, from = %def_src.name, "expanding uses");
        self.uses_stack.push(name.to_string());
        let frame = Frame {
            src: &def_src,
            inputs: Some(&values),
            ..child.frame
        };
        let scope = StepScope {
            globals: &globals,
            inputs: Some(&values),
        };
        let result = add_packages(&def_src, &def.needs, &scope, &mut self.needs)
            .and_then(|()| self.enter(&def.outer, String::new(), &frame))
            .and_then(|inner| match (inner, &def.outer.body) {
                (Some(inner), Body::Pipeline(children)) => self.walk(children, &inner),
                _ => Ok(()),
            });
        self.uses_stack.pop();
        result
    }

    fn load_def(&self, name: &str) -> Result<(Source, PipelineDef), LoadDefError> {
        let found = pipelines::find(name, &self.dirs).map_err(LoadDefError::NotFound)?;
        let text = match (found.builtin_text, &found.path) {
            (Some(t), _) => t.to_string(),
            (None, Some(p)) => std::fs::read_to_string(p).map_err(|source| {
                LoadDefError::Config(ConfigError::Read {
                    path: p.clone(),
                    source,
                })
            })?,
            (None, None) => {
                return Err(LoadDefError::NotFound(format!(
                    "pipeline `{name}` has no source"
                )))
            }
        };
        let src = Source::new(found.display, text);
        let root = yaml::parse(&src).map_err(LoadDefError::Config)?;
        let Some(root) = root else {
            return Err(LoadDefError::Config(ConfigError::Syntax {
                at: src.loc_line_col(1, 0),
                message: "the pipeline file is empty; it needs at least `pipeline:`".into(),
            }));
        };
        let def = model::pipeline_def(Cx { src: &src }, &root).map_err(LoadDefError::Config)?;
        Ok((src, def))
    }
}

enum LoadDefError {
    NotFound(String),
    Config(ConfigError),
}
