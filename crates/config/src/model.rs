//! The config file and pipeline definition model, decoded from the located
//! YAML tree. Values that later get `${{...}}` substitution stay [`Str`]s
//! (with their position); everything else is checked here.

use std::time::Duration;

use vmbuild_cache::volume::VolumeSpec;

use crate::decode::{Cx, Fields, Str};
use crate::envfile::is_env_name;
use crate::error::{show, ConfigError};
use crate::names::is_package_name;
use crate::units::{parse_cpus, parse_duration, parse_memory_mib};
use crate::yaml::Node;

/// A whole config file.
#[derive(Debug)]
pub(crate) struct Config {
    pub package: Package,
    pub environment: Environment,
    pub vars: Vec<(Str, Str)>,
    pub pipeline: Vec<Step>,
    /// `cache:`: build-level cache volumes, checked.
    pub cache: Vec<VolumeSpec>,
}

/// `package:`.
#[derive(Debug)]
pub(crate) struct Package {
    pub name: Str,
    pub version: Str,
    pub epoch: u64,
    pub description: Option<Str>,
    pub timeout: Option<Duration>,
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
}

/// `environment:`.
#[derive(Debug, Default)]
pub(crate) struct Environment {
    pub packages: Vec<Str>,
    pub repositories: Vec<Str>,
    pub env: Vec<(Str, Str)>,
}

/// One pipeline step.
#[derive(Debug)]
pub(crate) struct Step {
    pub name: Option<Str>,
    pub body: Body,
    pub workdir: Option<Str>,
    pub env: Vec<(Str, Str)>,
    pub cond: Option<Str>,
    pub timeout: Option<Duration>,
    /// `cache:` on the step: volumes mounted for it (and its nested steps)
    /// only.
    pub cache: Vec<VolumeSpec>,
}

/// What a step does: exactly one of these.
#[derive(Debug)]
pub(crate) enum Body {
    Runs(Str),
    Uses { uses: Str, with: Vec<(Str, Str)> },
    Pipeline(Vec<Step>),
}

/// A pipeline definition file (the target of `uses:`).
#[derive(Debug)]
pub(crate) struct PipelineDef {
    pub inputs: Vec<InputDef>,
    pub pipeline: Vec<Step>,
}

/// One declared input of a pipeline definition.
#[derive(Debug)]
pub(crate) struct InputDef {
    pub name: Str,
    pub default: Option<Str>,
    pub required: bool,
}

/// Top-level keys; the last five are melange keys that change what a build
/// produces, refused with a clear message rather than ignored.
const TOP_KEYS: &[&str] = &[
    "package",
    "environment",
    "vars",
    "pipeline",
    "cache",
    "update",
    "subpackages",
    "test",
    "var-transforms",
    "data",
    "options",
];
const MELANGE_UNSUPPORTED: &[&str] = &["subpackages", "test", "var-transforms", "data", "options"];
const PACKAGE_KEYS: &[&str] = &[
    "name",
    "version",
    "epoch",
    "description",
    "timeout",
    "resources",
    // melange packaging metadata, accepted and ignored (no effect on a build):
    "copyright",
    "url",
    "annotations",
    "commit",
    "target-architecture",
    "dependencies",
];
const RESOURCE_KEYS: &[&str] = &["cpu", "memory"];
const ENVIRONMENT_KEYS: &[&str] = &["contents", "environment"];
const CONTENTS_KEYS: &[&str] = &["packages", "repositories", "keyring"];
const STEP_KEYS: &[&str] = &[
    "name",
    "runs",
    "uses",
    "with",
    "pipeline",
    "working-directory",
    "environment",
    "if",
    "timeout",
    // Volumes mounted for this step (and its nested steps) only.
    "cache",
];
const PIPELINE_DEF_KEYS: &[&str] = &["name", "needs", "inputs", "pipeline"];
const INPUT_KEYS: &[&str] = &["description", "default", "required"];

/// Decodes a config file's root node.
pub(crate) fn config(cx: Cx<'_>, root: &Node) -> Result<Config, ConfigError> {
    if !matches!(root.kind, crate::yaml::Kind::Map(_)) {
        return Err(cx.invalid(
            root.pos,
            "",
            format!(
                "a config must be a mapping with `package` and `pipeline`, found {}",
                root.type_name()
            ),
        ));
    }
    let f = cx.map(root, "", "the top level", TOP_KEYS)?;
    for key in MELANGE_UNSUPPORTED {
        if let Some(k) = f.key_node(key) {
            return Err(cx.invalid(
                k.pos,
                key,
                format!("melange's `{key}` is not supported by vmbuild; remove it"),
            ));
        }
    }
    let package = match f.get("package") {
        Some(n) => package(cx, n)?,
        None => {
            return Err(ConfigError::Missing {
                at: cx.src.loc(f.key_node("package").map_or(f.pos, |k| k.pos)),
                field: "package".into(),
                context: "the top level",
            })
        }
    };
    let environment = match f.get("environment") {
        Some(n) => environment(cx, n)?,
        None => Environment::default(),
    };
    let vars = cx.string_map(&f, "vars")?;
    for (k, _) in &vars {
        if k.value.is_empty()
            || !k
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(cx.invalid(
                k.pos,
                "vars",
                format!(
                    "`{}` is not a valid var name; use letters, digits, `_` and `-`",
                    show(&k.value)
                ),
            ));
        }
    }
    if !f.has("pipeline") {
        return Err(ConfigError::Missing {
            at: cx.src.loc(f.pos),
            field: "pipeline".into(),
            context: "the top level",
        });
    }
    let pipeline = steps(cx, &f, "pipeline")?;
    Ok(Config {
        package,
        environment,
        vars,
        pipeline,
        cache: crate::volumes::cache(cx, &f)?,
    })
}

fn package(cx: Cx<'_>, node: &Node) -> Result<Package, ConfigError> {
    let f = cx.map(node, "package", "package", PACKAGE_KEYS)?;
    let name = cx.req_string(&f, "name")?;
    if !is_package_name(&name.value) {
        return Err(cx.invalid(
            name.pos,
            "name",
            format!(
                "`{}` is not a valid package name; use lowercase letters, digits and `._+-`, starting with a letter or digit",
                show(&name.value)
            ),
        ));
    }
    let version = cx.req_string(&f, "version")?;
    if version
        .value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(cx.invalid(
            version.pos,
            "version",
            format!(
                "`{}` is not a valid version; it may not contain spaces or `/`",
                show(&version.value)
            ),
        ));
    }
    let epoch = match cx.opt_string(&f, "epoch")? {
        None => 0,
        Some(s) => s.value.trim().parse::<u64>().map_err(|_| {
            cx.invalid(
                s.pos,
                "epoch",
                format!(
                    "`{}` is not a valid epoch; use a whole number (0, 1, ...)",
                    show(&s.value)
                ),
            )
        })?,
    };
    let description = cx.opt_string(&f, "description")?;
    let timeout = duration(cx, &f, "timeout")?;
    let (mut cpus, mut memory_mib) = (None, None);
    if let Some(r) = f.get("resources") {
        let rf = cx.map(r, "resources", "package.resources", RESOURCE_KEYS)?;
        if let Some(s) = cx.opt_string(&rf, "cpu")? {
            cpus = Some(parse_cpus(&s.value).map_err(|m| cx.invalid(s.pos, "cpu", m))?);
        }
        if let Some(s) = cx.opt_string(&rf, "memory")? {
            memory_mib =
                Some(parse_memory_mib(&s.value).map_err(|m| cx.invalid(s.pos, "memory", m))?);
        }
    }
    Ok(Package {
        name,
        version,
        epoch,
        description,
        timeout,
        cpus,
        memory_mib,
    })
}

fn duration(cx: Cx<'_>, f: &Fields<'_>, key: &str) -> Result<Option<Duration>, ConfigError> {
    cx.opt_string(f, key)?
        .map(|s| parse_duration(&s.value).map_err(|m| cx.invalid(s.pos, key, m)))
        .transpose()
}

fn environment(cx: Cx<'_>, node: &Node) -> Result<Environment, ConfigError> {
    let f = cx.map(node, "environment", "environment", ENVIRONMENT_KEYS)?;
    let mut env = Environment {
        env: env_map(cx, &f)?,
        ..Environment::default()
    };
    if let Some(c) = f.get("contents") {
        let cf = cx.map(c, "contents", "environment.contents", CONTENTS_KEYS)?;
        env.packages = cx.string_list(&cf, "packages")?;
        env.repositories = cx.string_list(&cf, "repositories")?;
        // melange's apk keyring: accepted for compatibility, checked for type only.
        cx.string_list(&cf, "keyring")?;
    }
    Ok(env)
}

/// An `environment:` mapping with valid variable names.
fn env_map(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<(Str, Str)>, ConfigError> {
    let env = cx.string_map(f, "environment")?;
    for (k, _) in &env {
        if !is_env_name(&k.value) {
            return Err(cx.invalid(
                k.pos,
                "environment",
                format!(
                    "`{}` is not a valid environment variable name; use letters, digits and _ (not starting with a digit)",
                    show(&k.value)
                ),
            ));
        }
    }
    Ok(env)
}

fn steps(cx: Cx<'_>, f: &Fields<'_>, key: &str) -> Result<Vec<Step>, ConfigError> {
    cx.list(f, key)?.into_iter().map(|n| step(cx, n)).collect()
}

fn step(cx: Cx<'_>, node: &Node) -> Result<Step, ConfigError> {
    let f = cx.map(node, "pipeline", "a pipeline step", STEP_KEYS)?;
    let present: Vec<&str> = ["runs", "uses", "pipeline"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    if present.len() > 1 {
        let second = f.key_node(present[1]).map_or(f.pos, |k| k.pos);
        return Err(cx.invalid(
            second,
            present[1],
            format!(
                "a step has exactly one of `runs`, `uses` or `pipeline`; this one has `{}` and `{}`; split it into two steps",
                present[0], present[1]
            ),
        ));
    }
    if present.is_empty() {
        return Err(cx.invalid(
            f.pos,
            "pipeline",
            "a step needs one of `runs` (a script), `uses` (a named pipeline) or `pipeline` (nested steps)".into(),
        ));
    }
    if f.has("with") && present[0] != "uses" {
        let at = f.key_node("with").map_or(f.pos, |k| k.pos);
        return Err(cx.invalid(
            at,
            "with",
            "`with` gives inputs to a `uses` pipeline; this step has no `uses`".into(),
        ));
    }
    let body = match present[0] {
        "runs" => Body::Runs(match f.get("runs") {
            Some(n) => cx.string(n, "runs")?,
            None => Str::synthetic("", f.pos),
        }),
        "uses" => {
            let uses = cx.req_string(&f, "uses")?;
            crate::pipelines::check_name(&uses.value).map_err(|message| ConfigError::Uses {
                at: cx.src.loc(uses.pos),
                message,
            })?;
            Body::Uses {
                uses,
                with: cx.string_map(&f, "with")?,
            }
        }
        _ => Body::Pipeline(steps(cx, &f, "pipeline")?),
    };
    Ok(Step {
        name: cx.opt_string(&f, "name")?,
        body,
        workdir: cx.opt_string(&f, "working-directory")?,
        env: env_map(cx, &f)?,
        cond: cx.opt_string(&f, "if")?,
        timeout: duration(cx, &f, "timeout")?,
        cache: crate::volumes::cache(cx, &f)?,
    })
}

/// Decodes a pipeline definition file's root node.
pub(crate) fn pipeline_def(cx: Cx<'_>, root: &Node) -> Result<PipelineDef, ConfigError> {
    if !matches!(root.kind, crate::yaml::Kind::Map(_)) {
        return Err(cx.invalid(
            root.pos,
            "",
            format!(
                "a pipeline definition must be a mapping with `pipeline` (and optionally `name`, `inputs`), found {}",
                root.type_name()
            ),
        ));
    }
    let f = cx.map(root, "", "a pipeline definition", PIPELINE_DEF_KEYS)?;
    cx.opt_string(&f, "name")?;
    let mut inputs = Vec::new();
    if let Some(n) = f.get("inputs") {
        let crate::yaml::Kind::Map(entries) = &n.kind else {
            return Err(cx.wrong_type(
                n,
                "inputs",
                "a mapping of input names to {description, default, required}",
            ));
        };
        for (k, v) in entries {
            let name = cx.string(k, "an input name")?;
            let (mut default, mut required) = (None, false);
            if !v.is_null() {
                let inf = cx.map(v, &name.value, "an input", INPUT_KEYS)?;
                cx.opt_string(&inf, "description")?;
                default = cx.opt_string(&inf, "default")?;
                if let Some(r) = cx.opt_string(&inf, "required")? {
                    required = match r.value.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(cx.invalid(
                                r.pos,
                                "required",
                                format!("`{}` is not true or false", show(other)),
                            ))
                        }
                    };
                }
            }
            inputs.push(InputDef {
                name,
                default,
                required,
            });
        }
    }
    Ok(PipelineDef {
        inputs,
        pipeline: steps(cx, &f, "pipeline")?,
    })
}
