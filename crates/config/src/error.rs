//! [`ConfigError`]: every way a config, pipeline or env file can be wrong,
//! each with the place (`file:line:col`) and what to do about it.

use std::fmt;
use std::path::PathBuf;

/// A place in a config, pipeline or env file. Lines and columns are 1-based;
/// columns count characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The file as the user named it (or `<builtin>/NAME.yaml` for a built-in pipeline).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Why a config could not be loaded. `Display` is one line,
/// `file:line:col: message`, ending with a hint (the closest valid key, the
/// expected form) where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}; check the path and its permissions", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `--pipeline-dir` is not a directory.
    #[error("--pipeline-dir {}: not a directory; check the path", path.display())]
    PipelineDir {
        /// The directory as given.
        path: PathBuf,
    },
    /// The file is not valid YAML (or not one YAML document).
    #[error("{at}: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Loc,
        /// What it found.
        message: String,
    },
    /// A mapping has a key vmbuild does not know.
    #[error("{at}: unknown key `{key}` in {context}{}", key_hint(suggestion.as_deref(), valid))]
    UnknownKey {
        /// The key's position.
        at: Loc,
        /// The key as written.
        key: String,
        /// Where it is, e.g. `package` or `a pipeline step`.
        context: &'static str,
        /// The closest valid key, when one is close enough.
        suggestion: Option<String>,
        /// All valid keys there.
        valid: &'static [&'static str],
    },
    /// A value has the wrong YAML type (a list where a string belongs, ...).
    #[error("{at}: `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The value's position.
        at: Loc,
        /// The key it belongs to.
        field: String,
        /// What is allowed there.
        expected: &'static str,
        /// What is there.
        found: &'static str,
    },
    /// A required key is absent (or empty).
    #[error("{at}: missing required `{field}` in {context}; add it")]
    Missing {
        /// The mapping that lacks it.
        at: Loc,
        /// The key.
        field: String,
        /// Where, e.g. `package`.
        context: &'static str,
    },
    /// A value has the right type but a bad form (name, duration, size, path ...).
    #[error("{at}: {message}")]
    Invalid {
        /// The value's position.
        at: Loc,
        /// The key it belongs to.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A `${{...}}` substitution is unterminated, malformed or names an unknown variable.
    #[error("{at}: {message}")]
    Substitution {
        /// The position of the `${{`.
        at: Loc,
        /// What is wrong (with the closest known variable, if any).
        message: String,
    },
    /// An `if:` condition does not parse or does not evaluate to true/false.
    #[error("{at}: bad `if` condition: {message}")]
    Condition {
        /// The position in the condition.
        at: Loc,
        /// What is wrong.
        message: String,
    },
    /// A `uses:` step names a bad path, a missing pipeline, or a cycle.
    #[error("{at}: {message}")]
    Uses {
        /// The `uses` value's position.
        at: Loc,
        /// What is wrong and where vmbuild looked.
        message: String,
    },
    /// A `with:` input is unknown, or a required input is missing.
    #[error("{at}: {message}")]
    Input {
        /// The input's (or the `uses` step's) position.
        at: Loc,
        /// What is wrong.
        message: String,
    },
    /// A line of an `--env-file` is malformed.
    #[error("{at}: {message}")]
    EnvFile {
        /// The line and column.
        at: Loc,
        /// What is wrong and the expected form.
        message: String,
    },
    /// `--build-option NAME` names no entry of the config's `options:`.
    #[error("--build-option {name}: the config has no such option; {known}")]
    BuildOption {
        /// The option as given.
        name: String,
        /// The options the config declares (or that it has none).
        known: String,
    },
    /// Environment packages with no Debian equivalent (every one listed,
    /// with suggestions).
    #[error("{file}: {message}")]
    UnknownPackages {
        /// The config file.
        file: String,
        /// The names, suggestions and what to do.
        message: String,
    },
    /// A line of a package map (`--package-map FILE`) is malformed.
    #[error("{at}: {message}")]
    PackageMap {
        /// The line and column.
        at: Loc,
        /// What is wrong and the expected form.
        message: String,
    },
    /// A `--env` argument is malformed.
    #[error("--env {arg}: {message}")]
    CliEnv {
        /// The argument as given.
        arg: String,
        /// What is wrong and the expected form.
        message: String,
    },
}

impl ConfigError {
    /// The place the error points at, when it has one.
    pub fn location(&self) -> Option<&Loc> {
        match self {
            ConfigError::Read { .. }
            | ConfigError::PipelineDir { .. }
            | ConfigError::BuildOption { .. }
            | ConfigError::UnknownPackages { .. }
            | ConfigError::CliEnv { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::Missing { at, .. }
            | ConfigError::Invalid { at, .. }
            | ConfigError::Substitution { at, .. }
            | ConfigError::Condition { at, .. }
            | ConfigError::Uses { at, .. }
            | ConfigError::Input { at, .. }
            | ConfigError::EnvFile { at, .. }
            | ConfigError::PackageMap { at, .. } => Some(at),
        }
    }
}

fn key_hint(suggestion: Option<&str>, valid: &[&str]) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None if valid.is_empty() => String::new(),
        None => format!("; valid keys: {}", valid.join(", ")),
    }
}

/// Shows user text inside a one-line message: escapes control characters
/// and shortens long text.
pub(crate) fn show(text: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Loc {
        Loc {
            file: "vmbuild.yaml".into(),
            line: 7,
            col: 1,
        }
    }

    #[test]
    fn unknown_key_message_has_location_and_suggestion() {
        let e = ConfigError::UnknownKey {
            at: at(),
            key: "pipline".into(),
            context: "the top level",
            suggestion: Some("pipeline".into()),
            valid: &["package", "pipeline"],
        };
        assert_eq!(
            e.to_string(),
            "vmbuild.yaml:7:1: unknown key `pipline` in the top level; did you mean `pipeline`?"
        );
        let e = ConfigError::UnknownKey {
            at: at(),
            key: "zzz".into(),
            context: "package",
            suggestion: None,
            valid: &["name", "version"],
        };
        assert_eq!(
            e.to_string(),
            "vmbuild.yaml:7:1: unknown key `zzz` in package; valid keys: name, version"
        );
        assert_eq!(e.location(), Some(&at()));
    }

    #[test]
    fn show_escapes_newlines_and_shortens() {
        assert_eq!(show("a\nb\tc"), "a\\nb\\tc");
        let long = "x".repeat(100);
        assert_eq!(show(&long).chars().count(), 61);
        assert_eq!(show("\u{1}"), "\\u{1}");
    }
}
