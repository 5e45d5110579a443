//! The JSON Schema of a pipeline file, for editors (yaml-language-server)
//! and pre-commit checks. It is generated from the key lists the decoder
//! itself checks ([`crate::model`], [`crate::melange`], [`crate::volumes`]):
//! every mapping's properties are exactly its decoder's keys, so a key
//! added to one and not the other is drift that [`drift`] reports (and a
//! test fails on). The checked-in `schemas/vmbuild.schema.json` is this
//! output; `vmbuild schema` prints it.
//!
//! The schema checks shape (keys, nesting, lists vs mappings vs scalars,
//! enums); values (durations, package names, `${{...}}` substitution) are
//! `vmbuild validate`'s job.

use serde_json::{json, Map, Value};

use crate::accounts::{ACCOUNTS_KEYS, GROUP_KEYS, USER_KEYS};
use crate::melange::{
    DATA_KEYS, OPTION_CONTENTS_KEYS, OPTION_ENV_KEYS, OPTION_KEYS, OPTION_LIST_KEYS,
    SUBPACKAGE_KEYS, TEST_KEYS, TRANSFORM_KEYS,
};
use crate::model::{
    ASSERTION_KEYS, CONTENTS_KEYS, ENVIRONMENT_KEYS, INPUT_KEYS, NEEDS_KEYS, PACKAGE_KEYS,
    PIPELINE_DEF_KEYS, RESOURCE_KEYS, STEP_KEYS, TOP_KEYS,
};
use crate::volumes::CACHE_KEYS;

/// Where the schema is published in the repository (editors point at it).
pub const SCHEMA_PATH: &str = "schemas/vmbuild.schema.json";

/// Builds schemas for mappings and records where a mapping's properties
/// and its decoder's key list differ.
#[derive(Default)]
struct Builder {
    drift: Vec<String>,
    used: Vec<&'static str>,
}

/// A mapping whose keys are exactly `keys` (named `list` for messages).
macro_rules! mapping {
    ($b:expr, $keys:ident, { $($k:literal : $v:expr),* $(,)? }) => {
        $b.mapping(stringify!($keys), $keys, vec![$(($k, $v)),*])
    };
}

impl Builder {
    fn mapping(
        &mut self,
        list: &'static str,
        keys: &[&str],
        props: Vec<(&'static str, Value)>,
    ) -> Value {
        self.used.push(list);
        for k in keys {
            if !props.iter().any(|(p, _)| p == k) {
                self.drift.push(format!(
                    "{list}: the decoder accepts `{k}`, the schema has no property for it"
                ));
            }
        }
        let mut properties = Map::new();
        for (p, v) in props {
            if !keys.contains(&p) {
                self.drift.push(format!(
                    "{list}: the schema describes `{p}`, the decoder rejects it"
                ));
            }
            properties.insert(p.to_string(), v);
        }
        json!({ "type": "object", "properties": properties, "additionalProperties": false })
    }
}

/// A YAML scalar the decoder reads as a string (numbers and booleans too).
fn scalar(description: &str) -> Value {
    json!({ "type": ["string", "number", "boolean"], "description": description })
}

fn string_list(description: &str) -> Value {
    json!({ "type": ["array", "null"], "items": { "type": ["string", "number", "boolean"] }, "description": description })
}

fn string_map(description: &str) -> Value {
    json!({
        "type": ["object", "null"],
        "additionalProperties": { "type": ["string", "number", "boolean", "null"] },
        "description": description,
    })
}

/// A key accepted for melange compatibility that vmbuild does not use.
fn ignored() -> Value {
    json!({ "description": "accepted for melange compatibility; vmbuild ignores it" })
}

fn reference(def: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{def}") })
}

fn steps() -> Value {
    json!({ "type": ["array", "null"], "items": reference("step") })
}

fn with_required(mut schema: Value, required: &[&str]) -> Value {
    schema["required"] = json!(required);
    schema
}

fn described(mut schema: Value, description: &str) -> Value {
    schema["description"] = json!(description);
    schema
}

fn build(b: &mut Builder) -> Value {
    let resources = mapping!(b, RESOURCE_KEYS, {
        "cpu": scalar("vCPUs (like --cpus)"),
        "cpumodel": ignored(),
        "memory": scalar("guest memory: MiB or 512M, 2Gi ... (like --memory)"),
        "disk": ignored(),
    });
    let package = with_required(
        mapping!(b, PACKAGE_KEYS, {
            "name": scalar("the package name"),
            "version": scalar("the package version"),
            "epoch": scalar("a whole number"),
            "description": scalar("what the package is"),
            "timeout": scalar("the build's time limit: 300, 300s, 5m, 1h"),
            "resources": reference("resources"),
            "test-resources": reference("resources"),
            "copyright": ignored(),
            "url": ignored(),
            "annotations": ignored(),
            "commit": ignored(),
            "target-architecture": ignored(),
            "dependencies": json!({ "description": "`runtime:` (package names) is installed into the test VMs; the other keys are apk metadata, ignored" }),
            "options": ignored(),
            "scriptlets": ignored(),
            "checks": ignored(),
            "setcap": ignored(),
            "cpe": ignored(),
        }),
        &["name", "version"],
    );
    let contents = mapping!(b, CONTENTS_KEYS, {
        "packages": string_list("packages installed in the build environment image"),
        "repositories": string_list("package repositories"),
        "build_repositories": string_list("ignored: apk repositories for build time"),
        "runtime_repositories": string_list("ignored: apk repositories for run time"),
        "keyring": string_list("ignored: apk keyring"),
        "baseimage": ignored(),
    });
    let user = mapping!(b, USER_KEYS, {
        "username": scalar("the user's name"),
        "uid": json!({ "type": ["integer", "string"], "description": "the user's id" }),
        "gid": json!({ "type": ["integer", "string"], "description": "its primary group id (default: the uid)" }),
        "shell": scalar("login shell (default /bin/sh)"),
        "homedir": scalar("home directory (default /home/<username>)"),
    });
    let group = mapping!(b, GROUP_KEYS, {
        "groupname": scalar("the group's name"),
        "gid": json!({ "type": ["integer", "string"], "description": "the group's id" }),
        "members": string_list("user names in the group"),
    });
    let accounts = mapping!(b, ACCOUNTS_KEYS, {
        "run-as": scalar("the user the steps run as (a declared username or uid; default root)"),
        "users": json!({ "type": ["array", "null"], "items": user, "description": "users created before the steps run (a `build` user, uid 1000, is always added)" }),
        "groups": json!({ "type": ["array", "null"], "items": group, "description": "groups created before the steps run (a `build` group, gid 1000, is always added)" }),
    });
    let environment = mapping!(b, ENVIRONMENT_KEYS, {
        "contents": contents,
        "environment": string_map("environment variables for every step"),
        "accounts": accounts,
        "archs": ignored(),
        "entrypoint": ignored(),
        "cmd": ignored(),
        "stop-signal": ignored(),
        "work-dir": ignored(),
        "paths": ignored(),
        "options": ignored(),
        "include": ignored(),
        "vcs-url": ignored(),
        "annotations": ignored(),
        "layering": ignored(),
        "volumes": ignored(),
        "certificates": ignored(),
    });
    let owner = json!({ "type": ["integer", "string"] });
    let cache = mapping!(b, CACHE_KEYS, {
        "id": scalar("a named volume under the cache root (or src=)"),
        "target": scalar("where the volume is mounted in the guest"),
        "sharing": json!({ "enum": ["shared", "locked", "private"] }),
        "persist": json!({ "enum": ["never", "on-success", "always"] }),
        "uid": owner.clone(),
        "gid": owner,
        "mode": json!({ "type": ["integer", "string"], "description": "octal, like 0755" }),
        "src": scalar("a host directory instead of a named volume"),
    });
    let needs = mapping!(b, NEEDS_KEYS, {
        "packages": string_list("packages added to the build environment"),
    });
    let assertions = mapping!(b, ASSERTION_KEYS, { "required-steps": scalar("ignored") });
    let step = mapping!(b, STEP_KEYS, {
        "name": scalar("shown in the step list"),
        "runs": scalar("a shell script"),
        "uses": scalar("a built-in pipeline (fetch, autoconf/make ...) or ./path"),
        "with": string_map("inputs of the `uses` pipeline"),
        "pipeline": steps(),
        "working-directory": scalar("the step's directory in the guest"),
        "environment": string_map("environment variables for this step"),
        "if": scalar("a condition: the step runs only when it holds"),
        "timeout": scalar("the step's time limit: 300, 300s, 5m, 1h"),
        "cache": json!({ "type": ["array", "null"], "items": reference("cache") }),
        "needs": needs.clone(),
        "label": ignored(),
        "description": ignored(),
        "assertions": assertions,
        "inputs": ignored(),
    });
    let test = mapping!(b, TEST_KEYS, {
        "environment": reference("environment"),
        "pipeline": steps(),
    });
    let subpackage = with_required(
        mapping!(b, SUBPACKAGE_KEYS, {
            "name": scalar("the subpackage name (may use ${{range.key}})"),
            "if": scalar("a condition"),
            "range": scalar("the name of a `data:` entry: one subpackage per item"),
            "pipeline": steps(),
            "test": reference("test"),
            "description": scalar("what the subpackage is"),
            "dependencies": json!({ "description": "`runtime:` (package names) is installed into the test VMs; the other keys are apk metadata, ignored" }),
            "options": ignored(),
            "scriptlets": ignored(),
            "annotations": ignored(),
            "url": ignored(),
            "commit": ignored(),
            "checks": ignored(),
            "setcap": ignored(),
        }),
        &["name"],
    );
    let data = mapping!(b, DATA_KEYS, {
        "name": scalar("referred to by a subpackage's `range`"),
        "items": string_map("key -> value, one subpackage each"),
    });
    let transform = mapping!(b, TRANSFORM_KEYS, {
        "from": scalar("the value to transform"),
        "match": scalar("a regular expression"),
        "replace": scalar("the replacement ($1 ...)"),
        "to": scalar("the var that receives the result"),
    });
    let option_list = mapping!(b, OPTION_LIST_KEYS, {
        "add": string_list("packages added"),
        "remove": string_list("packages removed"),
    });
    let option_contents = mapping!(b, OPTION_CONTENTS_KEYS, { "packages": option_list });
    let option_env = mapping!(b, OPTION_ENV_KEYS, { "contents": option_contents });
    let option = mapping!(b, OPTION_KEYS, {
        "vars": string_map("vars this option sets"),
        "environment": option_env,
    });
    let input = mapping!(b, INPUT_KEYS, {
        "description": scalar("what the input is"),
        "default": scalar("its value when `with` does not give one"),
        "required": json!({ "type": ["boolean", "string"] }),
    });
    let pipeline_def = mapping!(b, PIPELINE_DEF_KEYS, {
        "name": scalar("the pipeline's name"),
        "description": scalar("what it does"),
        "needs": needs,
        "inputs": json!({ "type": ["object", "null"], "additionalProperties": { "anyOf": [input, { "type": "null" }] } }),
        "pipeline": steps(),
        "label": ignored(),
        "if": scalar("a condition"),
        "working-directory": scalar("the directory its steps run in"),
        "environment": string_map("environment variables for its steps"),
    });
    let top = with_required(
        mapping!(b, TOP_KEYS, {
            "package": reference("package"),
            "environment": reference("environment"),
            "vars": string_map("substitution variables: ${{vars.NAME}}"),
            "pipeline": steps(),
            "cache": json!({ "type": ["array", "null"], "items": reference("cache") }),
            "update": ignored(),
            "subpackages": json!({ "type": ["array", "null"], "items": subpackage }),
            "test": reference("test"),
            "var-transforms": json!({ "type": ["array", "null"], "items": transform }),
            "data": json!({ "type": ["array", "null"], "items": data }),
            "options": json!({ "type": ["object", "null"], "additionalProperties": { "anyOf": [option, { "type": "null" }] } }),
            "capabilities": ignored(),
        }),
        &["package"],
    );
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://vmbuild.invalid/schemas/vmbuild.schema.json",
        "title": "vmbuild pipeline",
        "description": "A vmbuild (melange-compatible) pipeline file. Generated by `vmbuild schema`; see docs/pipelines.md.",
    });
    let (Value::Object(s), Value::Object(t)) = (&mut schema, top) else {
        unreachable!("both are objects")
    };
    s.extend(t);
    s.insert(
        "$defs".into(),
        json!({
            "package": package,
            "resources": resources,
            "environment": environment,
            "step": step,
            "cache": cache,
            "test": test,
            "pipelineDefinition": described(pipeline_def, "a `uses:` pipeline definition file"),
        }),
    );
    schema
}

/// The pipeline file's JSON Schema (draft 2020-12), pretty-printed with a
/// trailing newline: exactly the checked-in [`SCHEMA_PATH`].
pub fn pipeline_schema() -> String {
    let mut s = serde_json::to_string_pretty(&build(&mut Builder::default()))
        .unwrap_or_else(|e| unreachable!("a JSON value always serializes: {e}"));
    s.push('\n');
    s
}

/// Differences between the schema's mappings and the decoder's key lists
/// (empty when they agree), and the key lists the schema used.
pub fn drift() -> (Vec<String>, Vec<&'static str>) {
    let mut b = Builder::default();
    build(&mut b);
    (b.drift, b.used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_describes_exactly_the_keys_the_decoder_accepts() {
        let (drift, _) = drift();
        assert!(
            drift.is_empty(),
            "schema and decoder disagree:\n{}",
            drift.join("\n")
        );
    }

    /// Every key list the decoder checks mappings against is in the schema:
    /// a new `..._KEYS` list needs a schema mapping too.
    #[test]
    fn every_decoder_key_list_is_in_the_schema() {
        let (_, used) = drift();
        let sources = [
            include_str!("model.rs"),
            include_str!("melange.rs"),
            include_str!("volumes.rs"),
            include_str!("accounts.rs"),
        ];
        for src in sources {
            for line in src.lines() {
                let Some(rest) = line
                    .trim_start()
                    .strip_prefix("const ")
                    .or_else(|| line.trim_start().strip_prefix("pub(crate) const "))
                else {
                    continue;
                };
                let Some((name, ty)) = rest.split_once(':') else {
                    continue;
                };
                if name.ends_with("_KEYS") && ty.trim_start().starts_with("&[&str]") {
                    assert!(used.contains(&name), "{name} has no schema mapping");
                }
            }
        }
    }

    fn yaml_json(name: &str, text: &str) -> Value {
        crate::yaml_to_json(name, text).unwrap()
    }

    fn validator(def: Option<&str>) -> jsonschema::Validator {
        let mut schema: Value = serde_json::from_str(&pipeline_schema()).unwrap();
        if let Some(def) = def {
            // The same document with its root replaced by a $ref to one def.
            let defs = schema["$defs"].clone();
            schema = json!({ "$ref": format!("#/$defs/{def}"), "$defs": defs });
        }
        jsonschema::validator_for(&schema).expect("a valid JSON Schema")
    }

    fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
        v.iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn every_example_pipeline_in_the_repo_validates() {
        let v = validator(None);
        let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        let mut seen = 0;
        for dir in std::fs::read_dir(examples).unwrap() {
            let dir = dir.unwrap().path();
            if dir.ends_with("ci") {
                continue; // CI recipes (examples/ci), not pipelines
            }
            for file in std::fs::read_dir(&dir).into_iter().flatten() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    let doc = yaml_json(
                        &file.display().to_string(),
                        &std::fs::read_to_string(&file).unwrap(),
                    );
                    let errs = errors(&v, &doc);
                    assert!(errs.is_empty(), "{}: {errs:?}", file.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 3, "found only {seen} example pipelines");
    }

    #[test]
    fn every_builtin_uses_pipeline_validates_as_a_definition() {
        let v = validator(Some("pipelineDefinition"));
        for name in crate::builtin_pipelines() {
            let text = crate::builtin_pipeline(name).unwrap();
            let errs = errors(&v, &yaml_json(name, text));
            assert!(errs.is_empty(), "{name}: {errs:?}");
        }
    }

    #[test]
    fn a_misspelled_key_is_rejected_where_it_is() {
        let v = validator(None);
        let good = "package: {name: hello, version: 1}\npipeline:\n  - runs: make\n    working-directory: /src\n";
        assert!(errors(&v, &yaml_json("good", good)).is_empty());
        for (bad, path) in [
            (
                good.replace("working-directory", "working-dir"),
                "/pipeline/0",
            ),
            (good.replace("pipeline:", "pipline:"), ""),
            (good.replace("version: 1", "verison: 1"), "/package"),
        ] {
            let errs = errors(&v, &yaml_json("bad", &bad));
            assert!(
                errs.iter().any(|e| e.starts_with(&format!("{path}: "))),
                "{bad}: {errs:?}"
            );
        }
        let bad_enum =
            "package: {name: a, version: 1}\ncache:\n  - {id: x, target: /x, sharing: sometimes}\n";
        assert!(!errors(&v, &yaml_json("enum", bad_enum)).is_empty());
    }

    #[test]
    fn the_checked_in_schema_is_the_generated_one() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/vmbuild.schema.json"
        );
        let file = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            file == pipeline_schema(),
            "{path} is stale: regenerate it with `cargo run -p vmbuild -- schema > schemas/vmbuild.schema.json`"
        );
    }
}
