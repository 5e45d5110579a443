//! The config file and pipeline definition model, decoded from the located
//! YAML tree. Values that later get `${{...}}` substitution stay [`Str`]s
//! (with their position); everything else is checked here.

use std::time::Duration;

use vmbuild_cache::volume::VolumeSpec;

use crate::decode::{Cx, Fields, Str};
use crate::envfile::is_env_name;
use crate::error::{show, ConfigError};
use crate::names::is_package_name;
use crate::source::Pos;
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
    /// `subpackages:`, in file order (before `range:` expansion).
    pub subpackages: Vec<crate::melange::Subpackage>,
    /// `test:` of the main package.
    pub test: Option<crate::melange::Test>,
    /// `data:`: named item lists for `range:`.
    pub data: Vec<crate::melange::RangeData>,
    /// `var-transforms:`, in order.
    pub var_transforms: Vec<crate::melange::VarTransform>,
    /// `options:`: named build options (`--build-option NAME`).
    pub options: Vec<crate::melange::BuildOption>,
    /// Keys accepted from melange's schema that have no meaning here:
    /// where, and which (`package.copyright`, ...).
    pub ignored: Vec<(Pos, String)>,
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
    /// `package.test-resources`: the test VM's size.
    pub test_cpus: Option<u32>,
    pub test_memory_mib: Option<u32>,
    /// `dependencies.runtime`: installed into the test VMs.
    pub runtime: Vec<Str>,
}

/// `environment:` (apko's image configuration, the parts a build uses).
#[derive(Debug, Default)]
pub(crate) struct Environment {
    pub packages: Vec<Str>,
    pub repositories: Vec<Str>,
    pub env: Vec<(Str, Str)>,
    /// `accounts`: groups and users to create, and `run-as`.
    pub accounts: crate::accounts::AccountsDef,
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
    /// `needs.packages`: added to the build environment.
    pub needs: Vec<Str>,
    /// Keys accepted and ignored here (`label`, `description`,
    /// `assertions`): where, and which.
    pub ignored: Vec<(Pos, String)>,
}

/// What a step does: exactly one of these.
#[derive(Debug)]
pub(crate) enum Body {
    Runs(Str),
    Uses {
        uses: Str,
        with: Vec<(Str, Str)>,
    },
    /// Nested steps; a step with only a `name:` is an empty group.
    Pipeline(Vec<Step>),
}

/// A pipeline definition file (the target of `uses:`).
#[derive(Debug)]
pub(crate) struct PipelineDef {
    pub inputs: Vec<InputDef>,
    /// `needs.packages`.
    pub needs: Vec<Str>,
    /// The definition's own `working-directory`, `environment` and `if`,
    /// applied to its steps as an enclosing step's would be.
    pub outer: Step,
}

/// One declared input of a pipeline definition.
#[derive(Debug)]
pub(crate) struct InputDef {
    pub name: Str,
    pub default: Option<Str>,
    pub required: bool,
}

/// Top-level keys: melange's whole schema plus vmbuild's `cache`.
pub(crate) const TOP_KEYS: &[&str] = &[
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
    "capabilities",
];
/// Top-level keys melange uses for packaging or updating only.
const TOP_IGNORED: &[&str] = &["update", "capabilities"];
pub(crate) const PACKAGE_KEYS: &[&str] = &[
    "name",
    "version",
    "epoch",
    "description",
    "timeout",
    "resources",
    "test-resources",
    "copyright",
    "url",
    "annotations",
    "commit",
    "target-architecture",
    "dependencies",
    "options",
    "scriptlets",
    "checks",
    "cpe",
    "setcap",
];
/// `package` keys that only describe the apk melange would write: all
/// after the first seven.
const PACKAGE_IGNORED: &[&str] = PACKAGE_KEYS.split_at(7).1;
pub(crate) const RESOURCE_KEYS: &[&str] = &["cpu", "cpumodel", "memory", "disk"];
/// apko's image configuration keys (melange's `environment:` is one):
/// the three a build uses, then [`ENVIRONMENT_IGNORED`].
pub(crate) const ENVIRONMENT_KEYS: &[&str] = &[
    "contents",
    "environment",
    "accounts",
    "archs",
    "entrypoint",
    "cmd",
    "stop-signal",
    "work-dir",
    "paths",
    "options",
    "include",
    "vcs-url",
    "annotations",
    "volumes",
    "layering",
    "certificates",
];
/// apko keys that shape an OCI image, not a build environment: all but
/// the first three.
const ENVIRONMENT_IGNORED: &[&str] = ENVIRONMENT_KEYS.split_at(3).1;
pub(crate) const CONTENTS_KEYS: &[&str] = &[
    "packages",
    "repositories",
    "build_repositories",
    "runtime_repositories",
    "keyring",
    "baseimage",
];
pub(crate) const STEP_KEYS: &[&str] = &[
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
    "needs",
    "label",
    "description",
    "assertions",
    "inputs",
];
pub(crate) const PIPELINE_DEF_KEYS: &[&str] = &[
    "name",
    "description",
    "needs",
    "inputs",
    "pipeline",
    "label",
    "if",
    "working-directory",
    "environment",
];
pub(crate) const NEEDS_KEYS: &[&str] = &["packages"];
pub(crate) const ASSERTION_KEYS: &[&str] = &["required-steps"];
pub(crate) const INPUT_KEYS: &[&str] = &["description", "default", "required"];

/// Notes each key of `f` in `keys` that is present as ignored, named
/// `prefix.key`.
pub(crate) fn note_ignored(
    f: &Fields<'_>,
    prefix: &str,
    keys: &[&str],
    out: &mut Vec<(Pos, String)>,
) {
    for key in keys {
        if let Some(k) = f.key_node(key) {
            out.push((k.pos, format!("{prefix}{key}")));
        }
    }
}

/// `dependencies.runtime` of a package or subpackage mapping: the one
/// part of `dependencies` vmbuild uses (melange's test VMs install the
/// tested package's runtime dependencies with it). The other keys
/// (`provides`, `replaces`, ...) stay accepted and ignored, and so do apk
/// conflicts (`!name`) and virtual names (`so:...`, `cmd:...`) in
/// `runtime`; a `dependencies` that is not a mapping is a located type
/// error.
pub(crate) fn runtime_deps(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<Str>, ConfigError> {
    let Some(d) = f.get("dependencies") else {
        return Ok(Vec::new());
    };
    let crate::yaml::Kind::Map(entries) = &d.kind else {
        return Err(cx.wrong_type(d, "dependencies", "a mapping"));
    };
    for (k, v) in entries {
        if cx.string(k, "dependencies")?.value != "runtime" || v.is_null() {
            continue;
        }
        let crate::yaml::Kind::Seq(items) = &v.kind else {
            return Err(cx.wrong_type(v, "runtime", "a list of strings"));
        };
        let mut out = Vec::new();
        for i in items {
            let dep = cx.string(i, "runtime")?;
            // apk conflicts (`!musl`) and virtual providers (`so:libc.so.6`,
            // `cmd:sh`) name nothing a Debian environment can install.
            if !dep.value.starts_with('!') && !dep.value.contains(':') {
                out.push(dep);
            }
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

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
    let mut ignored = Vec::new();
    note_ignored(&f, "", TOP_IGNORED, &mut ignored);
    let package = match f.get("package") {
        Some(n) => package(cx, n, &mut ignored)?,
        None => {
            return Err(ConfigError::Missing {
                at: cx.src.loc(f.key_node("package").map_or(f.pos, |k| k.pos)),
                field: "package".into(),
                context: "the top level",
            })
        }
    };
    let environment = match f.get("environment") {
        Some(n) => environment(cx, n, "environment.", &mut ignored)?,
        None => Environment::default(),
    };
    let vars = cx.string_map(&f, "vars")?;
    for (k, _) in &vars {
        check_var_name(cx, k)?;
    }
    let pipeline = steps(cx, &f, "pipeline")?;
    Ok(Config {
        package,
        environment,
        vars,
        pipeline,
        cache: crate::volumes::cache(cx, &f)?,
        subpackages: crate::melange::subpackages(cx, &f, &mut ignored)?,
        test: f
            .get("test")
            .map(|n| crate::melange::test(cx, n, "test.", &mut ignored))
            .transpose()?,
        data: crate::melange::data(cx, &f)?,
        var_transforms: crate::melange::var_transforms(cx, &f)?,
        options: crate::melange::options(cx, &f)?,
        ignored,
    })
}

/// A `vars` (or `var-transforms.to`) name: letters, digits, `_` and `-`.
pub(crate) fn check_var_name(cx: Cx<'_>, k: &Str) -> Result<(), ConfigError> {
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
    Ok(())
}

/// `resources:` (or `test-resources:`): `(cpus, memory MiB)`.
fn resources(
    cx: Cx<'_>,
    node: &Node,
    key: &str,
    ignored: &mut Vec<(Pos, String)>,
) -> Result<(Option<u32>, Option<u32>), ConfigError> {
    let rf = cx.map(node, key, "package.resources", RESOURCE_KEYS)?;
    note_ignored(
        &rf,
        &format!("package.{key}."),
        &["cpumodel", "disk"],
        ignored,
    );
    let mut out = (None, None);
    if let Some(s) = cx.opt_string(&rf, "cpu")? {
        out.0 = Some(parse_cpus(&s.value).map_err(|m| cx.invalid(s.pos, "cpu", m))?);
    }
    if let Some(s) = cx.opt_string(&rf, "memory")? {
        out.1 = Some(parse_memory_mib(&s.value).map_err(|m| cx.invalid(s.pos, "memory", m))?);
    }
    Ok(out)
}

fn package(
    cx: Cx<'_>,
    node: &Node,
    ignored: &mut Vec<(Pos, String)>,
) -> Result<Package, ConfigError> {
    let f = cx.map(node, "package", "package", PACKAGE_KEYS)?;
    note_ignored(&f, "package.", PACKAGE_IGNORED, ignored);
    let name = cx.req_string(&f, "name")?;
    check_package_name(cx, &name)?;
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
    let (cpus, memory_mib) = match f.get("resources") {
        Some(r) => resources(cx, r, "resources", ignored)?,
        None => (None, None),
    };
    let (test_cpus, test_memory_mib) = match f.get("test-resources") {
        Some(r) => resources(cx, r, "test-resources", ignored)?,
        None => (None, None),
    };
    Ok(Package {
        name,
        version,
        epoch,
        description,
        timeout,
        cpus,
        memory_mib,
        test_cpus,
        test_memory_mib,
        runtime: runtime_deps(cx, &f)?,
    })
}

/// A package (or subpackage) name: `[A-Za-z0-9][A-Za-z0-9._+-]*` (apk
/// names may have capitals: `R-DBI`, `Xvfb`).
pub(crate) fn check_package_name(cx: Cx<'_>, name: &Str) -> Result<(), ConfigError> {
    if is_package_name(&name.value) {
        return Ok(());
    }
    Err(cx.invalid(
        name.pos,
        "name",
        format!(
            "`{}` is not a valid package name; use letters, digits and `._+-`, starting with a letter or digit",
            show(&name.value)
        ),
    ))
}

fn duration(cx: Cx<'_>, f: &Fields<'_>, key: &str) -> Result<Option<Duration>, ConfigError> {
    cx.opt_string(f, key)?
        .map(|s| parse_duration(&s.value).map_err(|m| cx.invalid(s.pos, key, m)))
        .transpose()
}

/// An `environment:` section (the build's, or a test's, named by `prefix`).
pub(crate) fn environment(
    cx: Cx<'_>,
    node: &Node,
    prefix: &str,
    ignored: &mut Vec<(Pos, String)>,
) -> Result<Environment, ConfigError> {
    let f = cx.map(node, "environment", "environment", ENVIRONMENT_KEYS)?;
    note_ignored(&f, prefix, ENVIRONMENT_IGNORED, ignored);
    let mut env = Environment {
        env: env_map(cx, &f)?,
        ..Environment::default()
    };
    if let Some(c) = f.get("contents") {
        let cf = cx.map(c, "contents", "environment.contents", CONTENTS_KEYS)?;
        env.packages = cx.string_list(&cf, "packages")?;
        env.repositories = cx.string_list(&cf, "repositories")?;
        // apk keyrings and repositories for other stages: checked for type only.
        let contents = format!("{prefix}contents.");
        note_ignored(
            &cf,
            &contents,
            &[
                "keyring",
                "build_repositories",
                "runtime_repositories",
                "baseimage",
            ],
            ignored,
        );
        for key in ["keyring", "build_repositories", "runtime_repositories"] {
            cx.string_list(&cf, key)?;
        }
    }
    if let Some(a) = f.get("accounts") {
        env.accounts = crate::accounts::decode(cx, a, &format!("{prefix}accounts"))?;
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

/// The steps under `key` of `f`.
pub(crate) fn steps(cx: Cx<'_>, f: &Fields<'_>, key: &str) -> Result<Vec<Step>, ConfigError> {
    cx.list(f, key)?.into_iter().map(|n| step(cx, n)).collect()
}

/// `needs: {packages: [...]}`.
fn needs(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<Str>, ConfigError> {
    match f.get("needs") {
        Some(n) => {
            let nf = cx.map(n, "needs", "needs", NEEDS_KEYS)?;
            cx.string_list(&nf, "packages")
        }
        None => Ok(Vec::new()),
    }
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
    if f.has("with") && present.first() != Some(&"uses") {
        let at = f.key_node("with").map_or(f.pos, |k| k.pos);
        return Err(cx.invalid(
            at,
            "with",
            "`with` gives inputs to a `uses` pipeline; this step has no `uses`".into(),
        ));
    }
    let mut ignored = Vec::new();
    note_ignored(
        &f,
        "",
        &["label", "description", "assertions"],
        &mut ignored,
    );
    if let Some(a) = f.get("assertions") {
        // melange counts the steps that must pass; every step must here.
        let af = cx.map(a, "assertions", "assertions", ASSERTION_KEYS)?;
        cx.opt_string(&af, "required-steps")?;
    }
    let body = match present.first().copied() {
        Some("runs") => Body::Runs(match f.get("runs") {
            Some(n) => cx.string(n, "runs")?,
            None => Str::synthetic("", f.pos),
        }),
        Some("uses") => {
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
        Some(_) => Body::Pipeline(steps(cx, &f, "pipeline")?),
        // melange runs nothing for a step with only a name (or assertions).
        None => Body::Pipeline(Vec::new()),
    };
    Ok(Step {
        name: cx.opt_string(&f, "name")?,
        body,
        workdir: cx.opt_string(&f, "working-directory")?,
        env: env_map(cx, &f)?,
        cond: cx.opt_string(&f, "if")?,
        timeout: duration(cx, &f, "timeout")?,
        cache: crate::volumes::cache(cx, &f)?,
        needs: needs(cx, &f)?,
        ignored,
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
    cx.opt_string(&f, "description")?;
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
        needs: needs(cx, &f)?,
        outer: Step {
            name: None,
            body: Body::Pipeline(steps(cx, &f, "pipeline")?),
            workdir: cx.opt_string(&f, "working-directory")?,
            env: env_map(cx, &f)?,
            cond: cx.opt_string(&f, "if")?,
            timeout: None,
            cache: Vec::new(),
            needs: Vec::new(),
            ignored: Vec::new(),
        },
    })
}
