//! Where `uses: NAME` pipelines come from: the search directories in order
//! (`--pipeline-dir` values, then the config file's `pipelines/` dir), each
//! as `<dir>/NAME.yaml`, then the built-ins shipped in this crate
//! (`crates/config/pipelines/`). A user pipeline may thus replace a built-in.

use std::path::{Path, PathBuf};

use crate::error::show;

/// `(name, YAML text)` of a built-in pipeline at `pipelines/NAME.yaml`.
macro_rules! builtin {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../pipelines/", $name, ".yaml")),
        )
    };
}

/// The built-in pipelines: (name, YAML text). melange's names, inputs and
/// defaults; the scripts are vmbuild's own (see docs/pipelines.md).
const BUILTINS: &[(&str, &str)] = &[
    builtin!("R/build"),
    builtin!("autoconf/configure"),
    builtin!("autoconf/make"),
    builtin!("autoconf/make-install"),
    builtin!("cargo/build"),
    builtin!("cmake/build"),
    builtin!("cmake/configure"),
    builtin!("cmake/install"),
    builtin!("fetch"),
    builtin!("git-am"),
    builtin!("git-checkout"),
    builtin!("go/build"),
    builtin!("go/build/v2"),
    builtin!("go/bump"),
    builtin!("go/covdata"),
    builtin!("go/install"),
    builtin!("llvm/covreport"),
    builtin!("maven/configure-mirror"),
    builtin!("maven/pombump"),
    builtin!("meson/compile"),
    builtin!("meson/configure"),
    builtin!("meson/install"),
    builtin!("npm/install"),
    builtin!("patch"),
    builtin!("pecl/install"),
    builtin!("pecl/phpize"),
    builtin!("perl/cleanup"),
    builtin!("perl/make"),
    builtin!("python/build"),
    builtin!("python/build-wheel"),
    builtin!("python/import"),
    builtin!("python/install"),
    builtin!("python/test"),
    builtin!("ruby/build"),
    builtin!("ruby/clean"),
    builtin!("ruby/install"),
    builtin!("split/alldocs"),
    builtin!("split/bin"),
    builtin!("split/debug"),
    builtin!("split/dev"),
    builtin!("split/infodir"),
    builtin!("split/lib"),
    builtin!("split/locales"),
    builtin!("split/manpages"),
    builtin!("split/static"),
    builtin!("strip"),
    builtin!("test/echo"),
    builtin!("xcover/ensure"),
    builtin!("xcover/profile"),
    builtin!("xcover/status"),
    builtin!("xcover/stop"),
    builtin!("xcover/wait"),
];

/// The names of the built-in pipelines.
pub fn builtin_pipelines() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}

/// The YAML text of a built-in pipeline.
pub fn builtin_pipeline(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Checks a `uses` value: `/`-separated components of `[A-Za-z0-9._-]`,
/// none empty, `.` or `..`, not absolute.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "bad `uses` path `{}`: {why}; use a name like `maven/configure-mirror` (found as <dir>/maven/configure-mirror.yaml)",
            show(name)
        ))
    };
    if name.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    for comp in name.split('/') {
        match comp {
            "" => return bad("it has an empty component"),
            "." | ".." => return bad("`.` and `..` components are not allowed"),
            c if !c
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                return bad("use only letters, digits and `._-` between the `/`")
            }
            _ => {}
        }
    }
    Ok(())
}

/// A pipeline definition found for a name.
pub(crate) struct Found {
    /// The name errors show: the file path, or `<builtin>/NAME.yaml`.
    pub display: String,
    /// The file on disk, if not built in.
    pub path: Option<PathBuf>,
    /// The YAML text (built-ins only; files are read by the caller).
    pub builtin_text: Option<&'static str>,
}

/// Looks `name` up in `dirs`, then among the built-ins. `Err` lists every
/// place looked at.
pub(crate) fn find(name: &str, dirs: &[PathBuf]) -> Result<Found, String> {
    let mut looked = Vec::new();
    for dir in dirs {
        let p = dir.join(format!("{name}.yaml"));
        if p.is_file() {
            return Ok(Found {
                display: p.display().to_string(),
                path: Some(p),
                builtin_text: None,
            });
        }
        looked.push(p.display().to_string());
    }
    if let Some(text) = builtin_pipeline(name) {
        return Ok(Found {
            display: format!("<builtin>/{name}.yaml"),
            path: None,
            builtin_text: Some(text),
        });
    }
    let builtins: Vec<&str> = builtin_pipelines().collect();
    let looked = if looked.is_empty() {
        "no pipeline directories".to_string()
    } else {
        looked.join(", ")
    };
    let mut msg = format!(
        "pipeline `{}` not found; looked in: {looked} and the {} built-ins (docs/pipelines.md)",
        show(name),
        builtins.len()
    );
    if let Some(s) = crate::suggest::closest(name, builtins.iter().copied()) {
        msg.push_str(&format!("; did you mean `{s}`?"));
    } else {
        msg.push_str("; add the file or pass --pipeline-dir");
    }
    Err(msg)
}

/// The `pipelines/` directory next to a config file.
pub(crate) fn config_pipeline_dir(config: &Path) -> Option<PathBuf> {
    let dir = config.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    Some(dir.join("pipelines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("maven/configure-mirror").is_ok());
        assert!(check_name("a.b_c-d").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a/",
            "a b",
            "a\\b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("/x").unwrap_err().contains("absolute"));
        assert!(check_name("a/../b").unwrap_err().contains("`..`"));
    }

    #[test]
    fn search_order_and_not_found() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d2.path().join("test")).unwrap();
        std::fs::write(d2.path().join("test/echo.yaml"), "pipeline: []\n").unwrap();
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let f = find("test/echo", &dirs).unwrap();
        assert_eq!(
            f.path.as_deref(),
            Some(d2.path().join("test/echo.yaml").as_path())
        );
        let f = find("maven/configure-mirror", &dirs).unwrap();
        assert_eq!(f.display, "<builtin>/maven/configure-mirror.yaml");
        assert!(f.builtin_text.is_some());
        let e = find("maven/configure-mirorr", &dirs).err().unwrap();
        assert!(
            e.contains(
                &d1.path()
                    .join("maven/configure-mirorr.yaml")
                    .display()
                    .to_string()
            ),
            "{e}"
        );
        assert!(e.ends_with("did you mean `maven/configure-mirror`?"), "{e}");
    }

    #[test]
    fn config_dir() {
        assert_eq!(
            config_pipeline_dir(Path::new("vmbuild.yaml")).unwrap(),
            Path::new("./pipelines")
        );
        assert_eq!(
            config_pipeline_dir(Path::new("/a/b.yaml")).unwrap(),
            Path::new("/a/pipelines")
        );
    }
}
