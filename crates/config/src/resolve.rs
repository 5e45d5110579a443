//! From a decoded config to a [`Plan`]: substitution, `if:` evaluation,
//! `uses:` expansion, working directories and environments.

use std::path::PathBuf;
use std::time::Duration;

use vmbuild_proto::GUEST_HOME;

use crate::cond;
use crate::decode::{Cx, Str};
use crate::env::{layer, EnvLayers};
use crate::error::{show, ConfigError};
use crate::model::{self, Body, Config, PipelineDef, Step};
use crate::names::{guest_workdir, is_debian_package};
use crate::pipelines;
use crate::plan::{PackageInfo, Plan, PlanStep, GUEST_OUTPUT_DIR, SCRIPT_PRELUDE};
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
}

/// Variables of a step: the globals and, inside a `uses` pipeline, its inputs.
struct StepScope<'a> {
    globals: &'a [(String, String)],
    inputs: Option<&'a [(String, String)]>,
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

struct Resolver {
    dirs: Vec<PathBuf>,
    globals: Vec<(String, String)>,
    layers: EnvLayers,
    steps: Vec<PlanStep>,
    skipped: Vec<String>,
    uses_stack: Vec<String>,
}

fn subst(src: &Source, s: &Str, scope: &dyn Scope) -> Result<String, ConfigError> {
    substitute(&s.value, scope).map_err(|e| ConfigError::Substitution {
        at: src.loc_in(s.pos, s.style, &s.value, e.offset),
        message: e.message,
    })
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

/// The triplets and arch names of the machine (the guest runs the host's arch).
fn arch_vars() -> Vec<(String, String)> {
    let arch = std::env::consts::ARCH;
    let (gnu, goarch) = match arch {
        "x86_64" => ("x86_64-pc-linux-gnu".to_string(), "amd64"),
        "aarch64" => ("aarch64-unknown-linux-gnu".to_string(), "arm64"),
        other => (format!("{other}-unknown-linux-gnu"), other),
    };
    vec![
        ("host.triplet.gnu".into(), gnu),
        (
            "host.triplet.rust".into(),
            format!("{arch}-unknown-linux-gnu"),
        ),
        ("build.arch".into(), arch.into()),
        ("build.goarch".into(), goarch.into()),
    ]
}

/// Resolves a decoded config (from `src`) into a plan.
pub(crate) fn resolve(
    src: &Source,
    config: &Config,
    inputs: Inputs<'_>,
) -> Result<Plan, ConfigError> {
    let p = &config.package;
    let mut globals: Vec<(String, String)> = vec![
        ("package.name".into(), p.name.value.clone()),
        ("package.version".into(), p.version.value.clone()),
        ("package.epoch".into(), p.epoch.to_string()),
        (
            "package.full-version".into(),
            format!("{}-r{}", p.version.value, p.epoch),
        ),
        (
            "package.description".into(),
            p.description
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
        ),
        ("targets.destdir".into(), GUEST_OUTPUT_DIR.into()),
        ("targets.contextdir".into(), GUEST_OUTPUT_DIR.into()),
    ];
    globals.extend(arch_vars());
    // A var may use the ones before it.
    for (k, v) in &config.vars {
        let value = subst(
            src,
            v,
            &StepScope {
                globals: &globals,
                inputs: None,
            },
        )?;
        globals.push((format!("vars.{}", k.value), value));
    }
    let scope = StepScope {
        globals: &globals,
        inputs: None,
    };

    let mut packages = Vec::new();
    for s in &config.environment.packages {
        let name = subst(src, s, &scope)?;
        if !is_debian_package(&name) {
            return Err(ConfigError::Invalid {
                at: src.loc(s.pos),
                field: "packages".into(),
                message: format!(
                    "`{}` is not a valid Debian package name; use lowercase letters, digits and `+.-` (at least 2 characters), optionally `=VERSION`",
                    show(&name)
                ),
            });
        }
        packages.push(name);
    }
    let repositories = config
        .environment
        .repositories
        .iter()
        .map(|s| subst(src, s, &scope))
        .collect::<Result<Vec<_>, _>>()?;

    let mut below = inputs.base_env.to_vec();
    layer(&mut below, &inputs.env_file);
    layer(
        &mut below,
        &subst_pairs(src, &config.environment.env, &scope)?,
    );

    let mut r = Resolver {
        dirs: inputs.dirs,
        globals: globals.clone(),
        layers: EnvLayers {
            below,
            cache_defaults: inputs.cache_defaults.to_vec(),
            aliases: inputs.cache_default_aliases.to_vec(),
            cli: inputs.cli_env.to_vec(),
        },
        steps: Vec::new(),
        skipped: Vec::new(),
        uses_stack: Vec::new(),
    };
    let top = Frame {
        src,
        inputs: None,
        path: Vec::new(),
        workdir: GUEST_HOME.to_string(),
        env: Vec::new(),
        timeout: None,
        depth: 0,
        volumes: Vec::new(),
    };
    r.walk(&config.pipeline, &top)?;
    tracing::debug!(
        steps = r.steps.len(),
        skipped = r.skipped.len(),
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
        },
        packages,
        repositories,
        steps: r.steps,
        skipped: r.skipped,
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

    fn step(&mut self, index: usize, step: &Step, frame: &Frame<'_>) -> Result<(), ConfigError> {
        let src = frame.src;
        let globals = self.globals.clone();
        let scope = StepScope {
            globals: &globals,
            inputs: frame.inputs,
        };
        let name = match (&step.name, &step.body) {
            (Some(n), _) => subst(src, n, &scope)?,
            (None, Body::Uses { uses, .. }) => uses.value.clone(),
            (None, _) => format!("step {}", index + 1),
        };
        let mut path = frame.path.clone();
        path.push(name);
        let path_name = path.join(" > ");

        if let Some(c) = &step.cond {
            let run = cond::evaluate(&c.value, &scope).map_err(|e| {
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
            })?;
            if !run {
                tracing::debug!(step = %path_name, "skipped: `if` is false");
                self.skipped.push(path_name);
                return Ok(());
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
        let timeout = step.timeout.or(frame.timeout);
        let mut volumes = frame.volumes.clone();
        volumes.extend(step.cache.iter().cloned());

        match &step.body {
            Body::Runs(script) => {
                let script = subst(src, script, &scope)?;
                self.steps.push(PlanStep {
                    name: path_name,
                    script: format!("{SCRIPT_PRELUDE}{script}"),
                    workdir,
                    env: self.layers.for_step(&env),
                    timeout,
                    depth: frame.depth,
                    volumes,
                });
            }
            Body::Pipeline(children) => {
                let child = Frame {
                    src,
                    inputs: frame.inputs,
                    path,
                    workdir,
                    env,
                    timeout,
                    depth: frame.depth + 1,
                    volumes,
                };
                self.walk(children, &child)?;
            }
            Body::Uses { uses, with } => {
                let with = subst_pairs(src, with, &scope)?;
                let child_base = Frame {
                    src,
                    inputs: None,
                    path,
                    workdir,
                    env,
                    timeout,
                    depth: frame.depth + 1,
                    volumes,
                };
                self.uses(src, uses, step, &with, child_base)?;
            }
        }
        Ok(())
    }

    fn uses(
        &mut self,
        src: &Source,
        uses: &Str,
        step: &Step,
        with: &[(String, String)],
        child: Frame<'_>,
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
        let (def_src, def) = self.load_def(name).map_err(|e| match e {
            LoadDefError::NotFound(m) => uses_err(m),
            LoadDefError::Config(e) => e,
        })?;

        // Inputs: given (`with`, substituted by the caller), else the
        // default (substituted with the globals), else required => error.
        let globals = self.globals.clone();
        let def_scope = StepScope {
            globals: &globals,
            inputs: None,
        };
        let declared: Vec<&str> = def.inputs.iter().map(|i| i.name.value.as_str()).collect();
        if let Body::Uses { with: with_raw, .. } = &step.body {
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
        }
        let mut values: Vec<(String, String)> = Vec::new();
        for input in &def.inputs {
            let given = with
                .iter()
                .find(|(k, _)| *k == input.name.value)
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
            values.push((input.name.value.clone(), value));
        }

        tracing::debug!(pipeline = name, from = %def_src.name, "expanding uses");
        self.uses_stack.push(name.to_string());
        let frame = Frame {
            src: &def_src,
            inputs: Some(&values),
            ..child
        };
        let result = self.walk(&def.pipeline, &frame);
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
