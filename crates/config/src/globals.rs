//! The substitution variables of a build, as melange's
//! `NewSubstitutionMap` (`pkg/build/pipeline.go`) makes them: the package's
//! fields, the target directories, the triplets, `vars` (each may use the
//! ones above it), `var-transforms`, `targets.package.NAME` and
//! `options.NAME.enabled`; and the extra ones of a subpackage's context.

use crate::decode::Str;
use crate::error::{show, ConfigError};
use crate::model::Config;
use crate::plan::GUEST_OUTPUT_DIR;
use crate::resolve::{subst, StepScope};
use crate::source::Source;

/// `(name, value)` pairs, later entries shadowing earlier ones.
pub(crate) type Vars = Vec<(String, String)>;

/// Where a package's files go in the guest: `${{targets.outdir}}/NAME`.
pub fn package_dir(name: &str) -> String {
    format!("{GUEST_OUTPUT_DIR}/{name}")
}

/// The triplets and arch names of the machine (the guest runs the host's
/// arch), as melange names them for a glibc target.
fn arch_vars(arch: &str) -> Vars {
    let (goarch, apk) = match arch {
        "x86_64" => ("amd64", "x86_64"),
        "aarch64" => ("arm64", "aarch64"),
        other => (other, other),
    };
    let vendor = if arch == "x86_64" { "pc" } else { "unknown" };
    let gnu = |libc: &str| format!("{arch}-{vendor}-linux-{libc}");
    let rust = |libc: &str| format!("{arch}-unknown-linux-{libc}");
    vec![
        ("host.triplet.gnu".into(), gnu("gnu")),
        ("host.triplet.rust".into(), rust("gnu")),
        ("cross.triplet.gnu.glibc".into(), gnu("gnu")),
        ("cross.triplet.gnu.musl".into(), gnu("musl")),
        ("cross.triplet.rust.glibc".into(), rust("gnu")),
        ("cross.triplet.rust.musl".into(), rust("musl")),
        ("build.arch".into(), apk.into()),
        ("build.goarch".into(), goarch.into()),
    ]
}

fn set(vars: &mut Vars, name: String, value: String) {
    match vars.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => vars.push((name, value)),
    }
}

/// The variables of the main package's context. `options` are the
/// `--build-option` names given (each must be declared in `options:`),
/// whose `vars` override the config's; `fixed` (`--vars-file`) override
/// both, before `var-transforms` run.
pub(crate) fn build_vars(
    src: &Source,
    config: &Config,
    options: &[String],
    fixed: &[(String, String)],
) -> Result<Vars, ConfigError> {
    let p = &config.package;
    let name = p.name.value.clone();
    let mut g: Vars = vec![
        ("package.name".into(), name.clone()),
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
        ("package.srcdir".into(), vmbuild_proto::GUEST_HOME.into()),
        ("targets.outdir".into(), GUEST_OUTPUT_DIR.into()),
        ("targets.destdir".into(), package_dir(&name)),
        ("targets.contextdir".into(), package_dir(&name)),
        ("context.name".into(), name.clone()),
    ];
    g.extend(arch_vars(std::env::consts::ARCH));
    for opt in &config.options {
        g.push((
            format!("options.{}.enabled", opt.name.value),
            "false".into(),
        ));
    }
    for wanted in options {
        if !config.options.iter().any(|o| o.name.value == *wanted) {
            let known: Vec<&str> = config
                .options
                .iter()
                .map(|o| o.name.value.as_str())
                .collect();
            return Err(ConfigError::BuildOption {
                name: wanted.clone(),
                known: if known.is_empty() {
                    "the config declares no `options:`".into()
                } else {
                    format!("its options: {}", known.join(", "))
                },
            });
        }
        set(&mut g, format!("options.{wanted}.enabled"), "true".into());
    }
    // vars: each may use the ones above it; a chosen option's vars win.
    let overrides: Vec<&(Str, Str)> = config
        .options
        .iter()
        .filter(|o| options.contains(&o.name.value))
        .flat_map(|o| o.vars.iter())
        .collect();
    for (k, v) in &config.vars {
        let v = overrides
            .iter()
            .rev()
            .find(|(ok, _)| ok.value == k.value)
            .map_or(v, |(_, ov)| ov);
        let value = subst(src, v, &StepScope::globals(&g))?;
        set(&mut g, format!("vars.{}", k.value), value);
    }
    for (k, v) in overrides {
        if !config.vars.iter().any(|(ck, _)| ck.value == k.value) {
            let value = subst(src, v, &StepScope::globals(&g))?;
            set(&mut g, format!("vars.{}", k.value), value);
        }
    }
    for (k, v) in fixed {
        set(&mut g, format!("vars.{k}"), v.clone());
    }
    for t in &config.var_transforms {
        let from = subst(src, &t.from, &StepScope::globals(&g))?;
        let re =
            crate::transforms::compile(&t.re.value).map_err(|message| ConfigError::Invalid {
                at: src.loc(t.re.pos),
                field: "match".into(),
                message,
            })?;
        let value = crate::transforms::apply(&from, &re, &t.replace.value);
        set(&mut g, format!("vars.{}", t.to.value), value);
    }
    Ok(g)
}

/// Adds `targets.package.NAME` for each package the build makes.
pub(crate) fn add_package_targets(vars: &mut Vars, names: &[String]) {
    for pkg in names {
        set(vars, format!("targets.package.{pkg}"), package_dir(pkg));
    }
}

/// The variables of a subpackage's context: the build's, with
/// `subpkg.name`, `context.name`, `targets.subpkgdir` and
/// `targets.contextdir` for `name`.
pub(crate) fn subpackage_vars(build: &Vars, name: &str) -> Vars {
    let mut g = build.clone();
    set(&mut g, "subpkg.name".into(), name.into());
    set(&mut g, "context.name".into(), name.into());
    set(&mut g, "targets.subpkgdir".into(), package_dir(name));
    set(&mut g, "targets.contextdir".into(), package_dir(name));
    g
}

/// `vars` with `range.key` and `range.value` set.
pub(crate) fn with_range(vars: &Vars, key: &str, value: &str) -> Vars {
    let mut g = vars.clone();
    set(&mut g, "range.key".into(), key.into());
    set(&mut g, "range.value".into(), value.into());
    g
}

/// The `data:` items a `range:` names, or an error naming the known ones.
pub(crate) fn range_items<'c>(
    src: &Source,
    config: &'c Config,
    range: &Str,
) -> Result<&'c [(Str, Str)], ConfigError> {
    match config.data.iter().find(|d| d.name.value == range.value) {
        Some(d) => Ok(&d.items),
        None => {
            let known: Vec<&str> = config.data.iter().map(|d| d.name.value.as_str()).collect();
            Err(ConfigError::Invalid {
                at: src.loc(range.pos),
                field: "range".into(),
                message: format!(
                    "`range: {}` names no `data:` entry; {}",
                    show(&range.value),
                    match crate::suggest::closest(&range.value, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if known.is_empty() => "add it under the top-level `data:`".into(),
                        None => format!("known: {}", known.join(", ")),
                    }
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_as_melange_names_them() {
        let v = arch_vars("x86_64");
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("host.triplet.gnu"), Some("x86_64-pc-linux-gnu"));
        assert_eq!(get("host.triplet.rust"), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(get("cross.triplet.gnu.musl"), Some("x86_64-pc-linux-musl"));
        assert_eq!(get("build.goarch"), Some("amd64"));
        let v = arch_vars("aarch64");
        assert!(v.contains(&("build.goarch".into(), "arm64".into())));
    }

    #[test]
    fn subpackage_context_overrides() {
        let build: Vars = vec![
            ("context.name".into(), "main".into()),
            ("targets.contextdir".into(), package_dir("main")),
        ];
        let g = subpackage_vars(&build, "main-dev");
        let get = |k: &str| g.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("context.name"), Some("main-dev"));
        assert_eq!(get("targets.contextdir"), Some("/home/build/out/main-dev"));
        assert_eq!(get("targets.subpkgdir"), Some("/home/build/out/main-dev"));
        assert_eq!(get("subpkg.name"), Some("main-dev"));
        let r = with_range(&g, "k", "v");
        assert_eq!(r.iter().filter(|(n, _)| n.starts_with("range.")).count(), 2);
    }
}
