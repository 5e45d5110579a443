//! The parts of melange's schema beyond one pipeline: `subpackages:`,
//! `test:`, `data:` (for `range:`), `var-transforms:` and `options:`
//! (build options), decoded from the located tree. Their meaning is
//! applied in `resolve.rs`; the behaviour follows melange's
//! `pkg/config/config.go` and `pkg/build/pipeline.go`.

use crate::decode::{Cx, Fields, Str};
use crate::error::{show, ConfigError};
use crate::model::{self, Environment, Step};
use crate::source::Pos;
use crate::yaml::{Kind, Node};

pub(crate) const SUBPACKAGE_KEYS: &[&str] = &[
    "name",
    "if",
    "range",
    "pipeline",
    "test",
    "description",
    "dependencies",
    "options",
    "scriptlets",
    "annotations",
    "url",
    "commit",
    "checks",
    "setcap",
];
/// Subpackage keys that only describe the apk melange would write: all
/// after the first six.
const SUBPACKAGE_IGNORED: &[&str] = SUBPACKAGE_KEYS.split_at(6).1;
pub(crate) const TEST_KEYS: &[&str] = &["environment", "pipeline"];
pub(crate) const DATA_KEYS: &[&str] = &["name", "items"];
pub(crate) const TRANSFORM_KEYS: &[&str] = &["from", "match", "replace", "to"];
pub(crate) const OPTION_KEYS: &[&str] = &["vars", "environment"];
pub(crate) const OPTION_ENV_KEYS: &[&str] = &["contents"];
pub(crate) const OPTION_CONTENTS_KEYS: &[&str] = &["packages"];
pub(crate) const OPTION_LIST_KEYS: &[&str] = &["add", "remove"];

/// One `subpackages:` entry, before `range:` expansion and substitution.
#[derive(Debug)]
pub(crate) struct Subpackage {
    /// `name` (may hold `${{range.key}}`, `${{vars.x}}` ...).
    pub name: Str,
    pub cond: Option<Str>,
    /// `range`: the name of a `data:` entry; one subpackage per item.
    pub range: Option<Str>,
    pub pipeline: Vec<Step>,
    pub test: Option<Test>,
    /// `dependencies.runtime`: installed into the test VMs.
    pub runtime: Vec<Str>,
}

/// A `test:` section: its own environment and steps, run in a fresh VM.
#[derive(Debug)]
pub(crate) struct Test {
    pub environment: Environment,
    pub pipeline: Vec<Step>,
}

/// One `data:` entry: a name and its items (key -> value, file order).
#[derive(Debug)]
pub(crate) struct RangeData {
    pub name: Str,
    pub items: Vec<(Str, Str)>,
}

/// One `var-transforms:` entry: `vars.<to>` = `from` with every match of
/// the regular expression `match` replaced by `replace` (`$1`, `${name}`).
#[derive(Debug)]
pub(crate) struct VarTransform {
    pub from: Str,
    pub re: Str,
    pub replace: Str,
    pub to: Str,
}

/// One `options:` entry: what `--build-option NAME` changes.
#[derive(Debug)]
pub(crate) struct BuildOption {
    pub name: Str,
    pub vars: Vec<(Str, Str)>,
    pub add: Vec<Str>,
    pub remove: Vec<Str>,
}

/// Decodes `subpackages:`.
pub(crate) fn subpackages(
    cx: Cx<'_>,
    f: &Fields<'_>,
    ignored: &mut Vec<(Pos, String)>,
) -> Result<Vec<Subpackage>, ConfigError> {
    let mut out = Vec::new();
    for node in cx.list(f, "subpackages")? {
        let sf = cx.map(node, "subpackages", "a subpackage", SUBPACKAGE_KEYS)?;
        model::note_ignored(&sf, "subpackages[].", SUBPACKAGE_IGNORED, ignored);
        cx.opt_string(&sf, "description")?;
        out.push(Subpackage {
            name: cx.req_string(&sf, "name")?,
            cond: cx.opt_string(&sf, "if")?,
            // melange treats `range: ""` as no range.
            range: cx.opt_string(&sf, "range")?.filter(|r| !r.value.is_empty()),
            pipeline: model::steps(cx, &sf, "pipeline")?,
            test: sf
                .get("test")
                .map(|n| test(cx, n, "subpackages[].test.", ignored))
                .transpose()?,
            runtime: model::runtime_deps(cx, &sf)?,
        });
    }
    Ok(out)
}

/// Decodes a `test:` section.
pub(crate) fn test(
    cx: Cx<'_>,
    node: &Node,
    prefix: &str,
    ignored: &mut Vec<(Pos, String)>,
) -> Result<Test, ConfigError> {
    let f = cx.map(node, "test", "test", TEST_KEYS)?;
    let environment = match f.get("environment") {
        Some(n) => model::environment(cx, n, &format!("{prefix}environment."), ignored)?,
        None => Environment::default(),
    };
    Ok(Test {
        environment,
        pipeline: model::steps(cx, &f, "pipeline")?,
    })
}

/// Decodes `data:`; two entries may not share a name.
pub(crate) fn data(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<RangeData>, ConfigError> {
    let mut out: Vec<RangeData> = Vec::new();
    for node in cx.list(f, "data")? {
        let df = cx.map(node, "data", "a data entry", DATA_KEYS)?;
        let name = cx.req_string(&df, "name")?;
        if out.iter().any(|d| d.name.value == name.value) {
            return Err(cx.invalid(
                name.pos,
                "name",
                format!("data `{}` is defined twice; rename one", show(&name.value)),
            ));
        }
        let items = match df.get("items") {
            Some(n) if matches!(n.kind, Kind::Map(_)) => cx.string_map(&df, "items")?,
            Some(n) => return Err(cx.wrong_type(n, "items", "a mapping of keys to values")),
            None => Vec::new(),
        };
        out.push(RangeData { name, items });
    }
    Ok(out)
}

/// Decodes `var-transforms:`; each `match` must compile.
pub(crate) fn var_transforms(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<VarTransform>, ConfigError> {
    let mut out = Vec::new();
    for node in cx.list(f, "var-transforms")? {
        let tf = cx.map(node, "var-transforms", "a var transform", TRANSFORM_KEYS)?;
        let t = VarTransform {
            from: cx.req_string(&tf, "from")?,
            re: cx.req_string(&tf, "match")?,
            replace: match tf.get("replace") {
                Some(n) => cx.string(n, "replace")?,
                None => Str::synthetic("", tf.pos),
            },
            to: cx.req_string(&tf, "to")?,
        };
        model::check_var_name(cx, &t.to)?;
        crate::transforms::compile(&t.re.value).map_err(|m| cx.invalid(t.re.pos, "match", m))?;
        out.push(t);
    }
    Ok(out)
}

/// Decodes `options:` (a mapping of option names).
pub(crate) fn options(cx: Cx<'_>, f: &Fields<'_>) -> Result<Vec<BuildOption>, ConfigError> {
    let Some(node) = f.get("options") else {
        return Ok(Vec::new());
    };
    let Kind::Map(entries) = &node.kind else {
        return Err(cx.wrong_type(node, "options", "a mapping of option names"));
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let name = cx.string(k, "an option name")?;
        let mut opt = BuildOption {
            name,
            vars: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
        };
        if !v.is_null() {
            let of = cx.map(v, "options", "a build option", OPTION_KEYS)?;
            opt.vars = cx.string_map(&of, "vars")?;
            if let Some(e) = of.get("environment") {
                let ef = cx.map(
                    e,
                    "environment",
                    "a build option's environment",
                    OPTION_ENV_KEYS,
                )?;
                if let Some(c) = ef.get("contents") {
                    let cf = cx.map(
                        c,
                        "contents",
                        "a build option's contents",
                        OPTION_CONTENTS_KEYS,
                    )?;
                    if let Some(p) = cf.get("packages") {
                        let pf =
                            cx.map(p, "packages", "a build option's packages", OPTION_LIST_KEYS)?;
                        opt.add = cx.string_list(&pf, "add")?;
                        opt.remove = cx.string_list(&pf, "remove")?;
                    }
                }
            }
        }
        out.push(opt);
    }
    Ok(out)
}

/// Reads a `--vars-file`: a YAML mapping of var names to (literal) values.
pub(crate) fn vars_file(path: &std::path::Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let src = crate::source::Source::new(path.display().to_string(), text);
    let Some(root) = crate::yaml::parse(&src)? else {
        return Ok(Vec::new());
    };
    let cx = Cx { src: &src };
    let Kind::Map(entries) = &root.kind else {
        return Err(cx.wrong_type(&root, "--vars-file", "a mapping of var names to values"));
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let name = cx.string(k, "a var name")?;
        model::check_var_name(cx, &name)?;
        let value = if v.is_null() {
            String::new()
        } else {
            cx.string(v, &name.value)?.value
        };
        out.push((name.value, value));
    }
    Ok(out)
}
