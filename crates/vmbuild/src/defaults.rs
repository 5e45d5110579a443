//! Defaults for the flags teams repeat (runner, cache dir and root, cache
//! mode, memory, cpus, network, colour), from `vmbuild.toml` next to the pipeline
//! and the user's `$XDG_CONFIG_HOME/vmbuild/config.toml`.
//!
//! Precedence, highest first: the flag, its environment variable
//! (`VMBUILD_MEMORY`, ...), the project file, the user file, then the
//! built-in default. For `cpus` and `memory` a pipeline's own
//! `package.resources` sits between the environment and the files: a
//! package that needs 4 GiB keeps them whatever a team default says.
//! docs/install.md has the file format; `vmbuild config show` prints the
//! merged result and where each value came from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ValueEnum;
use serde::Deserialize;

use crate::cli::{CacheModeArg, DistroArgs, NetworkArg, RunnerArg, VmArgs};

/// The project file names, looked up in the pipeline's directory (`run`:
/// the current directory); at most one may exist.
pub const PROJECT_FILES: [&str; 2] = ["vmbuild.toml", ".vmbuild.toml"];

/// One settable default: its key in the files and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub env: &'static str,
    /// What applies when no layer sets it (for `config show`).
    pub builtin: &'static str,
}

/// Every setting, in the order `config show` prints them.
pub const KEYS: [Key; 10] = [
    Key {
        name: "runner",
        env: "VMBUILD_RUNNER",
        builtin: "qemu",
    },
    Key {
        name: "cache-dir",
        env: "VMBUILD_CACHE_DIR",
        builtin: "none (no cache dir shared)",
    },
    Key {
        name: "cache-root",
        env: "VMBUILD_CACHE_ROOT",
        builtin: "$XDG_CACHE_HOME/vmbuild/volumes, else ~/.cache/vmbuild/volumes",
    },
    Key {
        name: "cache-mode",
        env: "VMBUILD_CACHE_MODE",
        builtin: "overlay (virtiofs when QEMU_USE_VIRTIOFS=1)",
    },
    Key {
        name: "memory",
        env: "VMBUILD_MEMORY",
        builtin: "1024 MiB, or the pipeline's package.resources.memory",
    },
    Key {
        name: "cpus",
        env: "VMBUILD_CPUS",
        builtin: "1, or the pipeline's package.resources.cpu",
    },
    Key {
        name: "network",
        env: "VMBUILD_NETWORK",
        builtin: "user for build, none for run",
    },
    Key {
        name: "color",
        env: "VMBUILD_COLOR",
        builtin: "auto (on a terminal, unless NO_COLOR is set)",
    },
    Key {
        name: "suite",
        env: "VMBUILD_SUITE",
        builtin: "bookworm (the Debian suite of environment images)",
    },
    Key {
        name: "mirror",
        env: "VMBUILD_MIRROR",
        builtin: "http://deb.debian.org/debian",
    },
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(&'static str),
    Project(PathBuf),
    User(PathBuf),
    BuiltIn,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env(v) => write!(f, "env {v}"),
            Source::Project(p) => write!(f, "project file {}", p.display()),
            Source::User(p) => write!(f, "user file {}", p.display()),
            Source::BuiltIn => write!(f, "built-in"),
        }
    }
}

/// A value as a number or a string in TOML (`memory = 2048` or `"2G"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Str(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

/// A `vmbuild.toml` / `config.toml`: every key optional, unknown keys are
/// errors (a misspelled default would otherwise be silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    runner: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_root: Option<PathBuf>,
    cache_mode: Option<String>,
    memory: Option<Scalar>,
    cpus: Option<Scalar>,
    network: Option<String>,
    color: Option<String>,
    suite: Option<String>,
    mirror: Option<String>,
}

impl FileSettings {
    /// The value of `key` as text; paths relative to the file's `dir`.
    fn get(&self, key: &str, dir: &Path) -> Option<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| dir.join(p).display().to_string());
        match key {
            "runner" => self.runner.clone(),
            "cache-dir" => path(&self.cache_dir),
            "cache-root" => path(&self.cache_root),
            "cache-mode" => self.cache_mode.clone(),
            "memory" => self.memory.as_ref().map(Scalar::text),
            "cpus" => self.cpus.as_ref().map(Scalar::text),
            "network" => self.network.clone(),
            "color" => self.color.clone(),
            "suite" => self.suite.clone(),
            "mirror" => self.mirror.clone(),
            _ => None,
        }
    }
}

/// A defaults file that was found and parsed.
#[derive(Debug)]
pub struct File {
    pub path: PathBuf,
    settings: FileSettings,
}

impl File {
    /// Parses `text` (read from `path`).
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<File> {
        let settings: FileSettings = toml::from_str(text)
            .with_context(|| format!("{}: not a valid vmbuild defaults file", path.display()))?;
        Ok(File {
            path: path.to_path_buf(),
            settings,
        })
    }

    fn read(path: &Path) -> anyhow::Result<Option<File>> {
        match std::fs::read_to_string(path) {
            Ok(text) => File::parse(path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.settings.get(key, dir)
    }
}

/// The layers below the flags.
#[derive(Debug, Default)]
pub struct Layers {
    /// The environment variables of [`KEYS`] that are set and not empty.
    pub env: Vec<(&'static str, String)>,
    pub project: Option<File>,
    pub user: Option<File>,
}

impl Layers {
    /// Reads the real environment, the project file in `project_dir` and
    /// the user file.
    pub fn load(project_dir: &Path) -> anyhow::Result<Layers> {
        let env = KEYS
            .iter()
            .filter_map(|k| {
                let v = std::env::var(k.env).ok().filter(|v| !v.is_empty())?;
                Some((k.env, v))
            })
            .collect();
        let mut found = Vec::new();
        for name in PROJECT_FILES {
            if let Some(f) = File::read(&project_dir.join(name))? {
                found.push(f);
            }
        }
        if found.len() > 1 {
            bail!(
                "both {} and {} exist; keep one",
                found[0].path.display(),
                found[1].path.display()
            );
        }
        let user = match user_file(|k| std::env::var_os(k)) {
            Some(p) => File::read(&p)?,
            None => None,
        };
        Ok(Layers {
            env,
            project: found.pop(),
            user,
        })
    }

    /// The value of `key` below the flag, and where it came from; `None`:
    /// the built-in default applies.
    pub fn pick(&self, key: &Key) -> Option<(String, Source)> {
        if let Some((_, v)) = self.env.iter().find(|(e, _)| *e == key.env) {
            return Some((v.clone(), Source::Env(key.env)));
        }
        if let Some(f) = &self.project {
            if let Some(v) = f.get(key.name) {
                return Some((v, Source::Project(f.path.clone())));
            }
        }
        let f = self.user.as_ref()?;
        f.get(key.name).map(|v| (v, Source::User(f.path.clone())))
    }
}

/// `$XDG_CONFIG_HOME/vmbuild/config.toml`, else `$HOME/.config/vmbuild/config.toml`.
pub fn user_file(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base =
        nonempty("XDG_CONFIG_HOME").or_else(|| nonempty("HOME").map(|h| h.join(".config")))?;
    Some(base.join("vmbuild").join("config.toml"))
}

fn key(name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| unreachable!("{name} is in KEYS"))
}

/// Parses a layer's value with the flag's own parser; the error names the layer.
fn parse<T>(
    value: &str,
    source: &Source,
    k: &Key,
    parser: impl FnOnce(&str) -> Result<T, String>,
) -> anyhow::Result<T> {
    parser(value).map_err(|why| anyhow::anyhow!("{k} = `{value}` from {source}: {why}", k = k.name))
}

/// Sets `field`, when no flag set it, to key `name`'s value from `layers`
/// (read by `parser`; a bad value is an error naming its source).
fn fill<T>(
    field: &mut Option<T>,
    layers: &Layers,
    name: &str,
    parser: impl FnOnce(&str) -> Result<T, String>,
) -> anyhow::Result<()> {
    if field.is_some() {
        return Ok(());
    }
    let k = key(name);
    if let Some((v, src)) = layers.pick(k) {
        *field = Some(parse(&v, &src, k, parser)?);
    }
    Ok(())
}

fn value_enum<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        format!("use one of {}", names.join(", "))
    })
}

/// Fills the settings the flags left unset from `layers`. `cpus` and
/// `memory` from a file go to the VM args' file fallbacks (below the
/// pipeline's resources); everything else into the flag's own field.
pub fn apply(
    layers: &Layers,
    runner: &mut Option<RunnerArg>,
    vm: &mut VmArgs,
) -> anyhow::Result<()> {
    fill(runner, layers, "runner", value_enum::<RunnerArg>)?;
    fill(&mut vm.cache_dir, layers, "cache-dir", |s| {
        Ok(PathBuf::from(s))
    })?;
    fill(&mut vm.cache_root, layers, "cache-root", |s| {
        Ok(PathBuf::from(s))
    })?;
    fill(
        &mut vm.cache_mode,
        layers,
        "cache-mode",
        value_enum::<CacheModeArg>,
    )?;
    fill(&mut vm.network, layers, "network", value_enum::<NetworkArg>)?;
    for (name, flag, fallback) in [
        ("memory", vm.memory, &mut vm.file_defaults.memory),
        ("cpus", vm.cpus, &mut vm.file_defaults.cpus),
    ] {
        if flag.is_some() {
            continue;
        }
        let k = key(name);
        let Some((v, src)) = layers.pick(k) else {
            continue;
        };
        let parser = if name == "memory" {
            crate::args::parse_memory
        } else {
            crate::args::parse_cpus
        };
        let n = parse(&v, &src, k, parser)?;
        *fallback = Some((n, matches!(src, Source::Env(_))));
    }
    Ok(())
}

/// Fills `--suite` and `--mirror` (build, image build) from `layers` when
/// they were not given.
pub fn apply_distro(layers: &Layers, distro: &mut DistroArgs) -> anyhow::Result<()> {
    fill(&mut distro.suite, layers, "suite", |s| Ok(s.to_string()))?;
    fill(&mut distro.mirror, layers, "mirror", |s| Ok(s.to_string()))
}

/// `--color` as given, else from `layers` (every command takes it).
pub fn color(
    layers: &Layers,
    flag: Option<crate::live::ColorChoice>,
) -> anyhow::Result<crate::live::ColorChoice> {
    if let Some(c) = flag {
        return Ok(c);
    }
    let k = key("color");
    match layers.pick(k) {
        Some((v, src)) => parse(&v, &src, k, value_enum::<crate::live::ColorChoice>),
        None => Ok(crate::live::ColorChoice::Auto),
    }
}

/// `vmbuild config show`: every setting, its merged value and its source.
pub fn show(layers: &Layers, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for k in &KEYS {
        let (value, source) = layers
            .pick(k)
            .unwrap_or_else(|| (k.builtin.to_string(), Source::BuiltIn));
        writeln!(out, "{:<11} {:<24} {source}", k.name, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn file(path: &str, text: &str) -> File {
        File::parse(Path::new(path), text).unwrap()
    }

    fn vm_args(flags: &[&str]) -> (Option<RunnerArg>, VmArgs) {
        let mut argv = vec!["vmbuild", "run"];
        argv.extend_from_slice(flags);
        argv.extend_from_slice(&["--", "true"]);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Run(r) => (r.runner, r.vm),
            _ => unreachable!(),
        }
    }

    fn all_layers() -> Layers {
        Layers {
            env: vec![("VMBUILD_MEMORY", "3G".into())],
            project: Some(file(
                "/p/vmbuild.toml",
                "memory = 2048\ncpus = 2\ncache-dir = \"cache\"\n",
            )),
            user: Some(file(
                "/home/u/.config/vmbuild/config.toml",
                "memory = \"1G\"\ncpus = 4\nrunner = \"bubblewrap\"\nnetwork = \"none\"\n",
            )),
        }
    }

    #[test]
    fn a_flag_beats_every_layer() {
        let (mut runner, mut vm) = vm_args(&["--memory", "512", "--runner", "qemu"]);
        apply(&all_layers(), &mut runner, &mut vm).unwrap();
        assert_eq!(vm.memory, Some(512));
        assert_eq!(vm.file_defaults.memory, None);
        assert_eq!(runner, Some(RunnerArg::Qemu));
    }

    #[test]
    fn the_environment_beats_the_files() {
        let (mut runner, mut vm) = vm_args(&[]);
        apply(&all_layers(), &mut runner, &mut vm).unwrap();
        assert_eq!(
            vm.file_defaults.memory,
            Some((3072, true)),
            "VMBUILD_MEMORY=3G"
        );
        assert_eq!(
            all_layers().pick(key("memory")).unwrap().1,
            Source::Env("VMBUILD_MEMORY")
        );
    }

    #[test]
    fn the_project_file_beats_the_user_file_and_paths_are_relative_to_it() {
        let (mut runner, mut vm) = vm_args(&[]);
        apply(&all_layers(), &mut runner, &mut vm).unwrap();
        assert_eq!(vm.file_defaults.cpus, Some((2, false)));
        assert_eq!(vm.cache_dir, Some(PathBuf::from("/p/cache")));
        assert_eq!(
            all_layers().pick(key("cpus")).unwrap().1,
            Source::Project("/p/vmbuild.toml".into())
        );
    }

    #[test]
    fn the_user_file_fills_what_nothing_above_sets() {
        let (mut runner, mut vm) = vm_args(&[]);
        apply(&all_layers(), &mut runner, &mut vm).unwrap();
        assert_eq!(runner, Some(RunnerArg::Bubblewrap));
        assert_eq!(vm.network, Some(NetworkArg::None));
        assert!(matches!(
            all_layers().pick(key("runner")).unwrap().1,
            Source::User(_)
        ));
    }

    #[test]
    fn suite_and_mirror_come_from_the_flag_then_env_then_files() {
        let layers = Layers {
            env: vec![("VMBUILD_MIRROR", "http://env.example/debian".into())],
            project: Some(file(
                "/p/vmbuild.toml",
                "suite = \"trixie\"\nmirror = \"http://file.example/debian\"\n",
            )),
            user: None,
        };
        let mut d = DistroArgs::default();
        apply_distro(&layers, &mut d).unwrap();
        assert_eq!(d.suite.as_deref(), Some("trixie"));
        assert_eq!(d.mirror.as_deref(), Some("http://env.example/debian"));
        let mut d = DistroArgs {
            suite: Some("sid".into()),
            mirror: None,
        };
        apply_distro(&layers, &mut d).unwrap();
        assert_eq!(d.suite.as_deref(), Some("sid"));
        let mut d = DistroArgs::default();
        apply_distro(&Layers::default(), &mut d).unwrap();
        assert_eq!((d.suite, d.mirror), (None, None));
    }

    #[test]
    fn with_no_layer_the_builtin_defaults_stay() {
        let (mut runner, mut vm) = vm_args(&[]);
        apply(&Layers::default(), &mut runner, &mut vm).unwrap();
        assert_eq!(
            (runner, vm.cache_dir, vm.network, vm.file_defaults.memory),
            (None, None, None, None)
        );
        let mut out = Vec::new();
        show(&Layers::default(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), KEYS.len());
        assert!(text.lines().all(|l| l.ends_with("built-in")), "{text}");
    }

    #[test]
    fn pipeline_resources_sit_between_the_environment_and_the_files() {
        use crate::cli::below_flag;
        let pipeline = Some(4096);
        assert_eq!(
            below_flag(Some(512), Some((3072, true)), pipeline),
            Some(512),
            "flag"
        );
        assert_eq!(
            below_flag(None, Some((3072, true)), pipeline),
            Some(3072),
            "env"
        );
        assert_eq!(
            below_flag(None, Some((2048, false)), pipeline),
            Some(4096),
            "pipeline over file"
        );
        assert_eq!(
            below_flag(None, Some((2048, false)), None),
            Some(2048),
            "file"
        );
        assert_eq!(below_flag(None, None, None), None, "built-in");
    }

    #[test]
    fn show_names_each_values_source() {
        let mut out = Vec::new();
        show(&all_layers(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{k} ")))
                .unwrap()
                .to_string()
        };
        assert!(
            line("memory").contains("3G") && line("memory").ends_with("env VMBUILD_MEMORY"),
            "{text}"
        );
        assert!(
            line("cpus").ends_with("project file /p/vmbuild.toml"),
            "{text}"
        );
        assert!(
            line("runner").ends_with("user file /home/u/.config/vmbuild/config.toml"),
            "{text}"
        );
        assert!(line("cache-mode").ends_with("built-in"), "{text}");
    }

    #[test]
    fn color_comes_from_the_flag_then_env_then_files() {
        use crate::live::ColorChoice;
        let mut layers = Layers {
            env: vec![("VMBUILD_COLOR", "always".into())],
            project: Some(file("/p/vmbuild.toml", "color = \"never\"\n")),
            user: None,
        };
        let flag = Some(ColorChoice::Auto);
        assert_eq!(color(&layers, flag).unwrap(), ColorChoice::Auto);
        assert_eq!(color(&layers, None).unwrap(), ColorChoice::Always);
        layers.env.clear();
        assert_eq!(color(&layers, None).unwrap(), ColorChoice::Never);
        assert_eq!(color(&Layers::default(), None).unwrap(), ColorChoice::Auto);
        let bad = Layers {
            project: Some(file("/p/vmbuild.toml", "color = \"rainbow\"\n")),
            ..Layers::default()
        };
        let err = color(&bad, None).unwrap_err().to_string();
        assert!(
            err.contains("color = `rainbow` from project file /p/vmbuild.toml")
                && err.contains("never"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors_naming_the_file() {
        let err = File::parse(Path::new("/p/vmbuild.toml"), "memroy = 1\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("/p/vmbuild.toml") && format!("{err:#}").contains("memroy"),
            "{err:#}"
        );
        let layers = Layers {
            project: Some(file("/p/vmbuild.toml", "runner = \"kvm\"\n")),
            ..Layers::default()
        };
        let (mut runner, mut vm) = vm_args(&[]);
        let err = apply(&layers, &mut runner, &mut vm)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runner = `kvm` from project file /p/vmbuild.toml")
                && err.contains("qemu"),
            "{err}"
        );
    }

    #[test]
    fn the_user_file_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).into())
            }
        };
        assert_eq!(
            user_file(env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])),
            Some("/x/vmbuild/config.toml".into())
        );
        assert_eq!(
            user_file(env(&[("HOME", "/h")])),
            Some("/h/.config/vmbuild/config.toml".into())
        );
        assert_eq!(user_file(env(&[])), None);
    }
}
