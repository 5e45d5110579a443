//! Environment package names: melange configs name Wolfi (apk) packages,
//! vmbuild's environments are Debian. A [`PackageMap`] (the built-in table
//! `data/package-map.txt`, extended by `--package-map FILE`) turns the
//! common Wolfi names into Debian ones; a name in no entry is used as it
//! is when Debian has it. [`PackageMap::resolve`] does this for a whole
//! list at once, so every unknown name is reported together, each with
//! suggestions, before anything boots.

use crate::error::{ConfigError, Loc};
use crate::names::{apk_name, split_apk};
use crate::suggest::closest;

/// The built-in table (see its header for the format).
const BUILTIN: &str = include_str!("../data/package-map.txt");

/// One entry: a Wolfi name (or `prefix*` pattern) and its Debian packages
/// (empty: nothing to install).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    wolfi: String,
    debian: Vec<String>,
    /// 0 for the map parsed first; each [`PackageMap::extended`] adds 1.
    origin: u32,
}

/// A Wolfi -> Debian package-name table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageMap {
    /// Later entries (from `--package-map`) are searched first.
    entries: Vec<Entry>,
}

/// What a list of environment packages resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The Debian packages to install, in first-seen order, each once.
    pub debian: Vec<String>,
    /// Names neither the map nor Debian knows, each with suggestions
    /// (closest map entries and Debian names).
    pub unknown: Vec<(String, Vec<String>)>,
    /// Names not in the map that could not be checked (no Debian package
    /// index on this host); used as they are.
    pub unverified: Vec<String>,
    /// apk version constraints dropped (`gcc~13`), as written.
    pub dropped_constraints: Vec<String>,
}

impl Resolution {
    /// The one error for every unknown name, or `None` when all resolved:
    /// `unknown packages for a Debian environment: foo (did you mean
    /// libfoo-dev?), bar; ...`.
    pub fn unknown_message(&self) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        let items: Vec<String> = self
            .unknown
            .iter()
            .map(|(n, s)| match s.as_slice() {
                [] => n.clone(),
                s => format!("{n} (did you mean {}?)", s.join(" or ")),
            })
            .collect();
        Some(format!(
            "{} package name(s) have no Debian equivalent: {}; add them to a --package-map FILE (`WOLFI-NAME DEBIAN-NAME...` lines) or use Debian names",
            self.unknown.len(),
            items.join(", ")
        ))
    }
}

impl PackageMap {
    /// The built-in table.
    pub fn builtin() -> PackageMap {
        // The built-in table is tested to parse (tests below).
        Self::parse("<builtin>/package-map.txt", BUILTIN).unwrap_or(PackageMap {
            entries: Vec::new(),
        })
    }

    /// Parses a map file: `WOLFI-NAME DEBIAN-NAME...` or `WOLFI-NAME -`
    /// lines, `#` comments. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<PackageMap, ConfigError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(wolfi) = words.next() else { continue };
            let debian: Vec<String> = words.map(str::to_string).collect();
            let at = || Loc {
                file: file.to_string(),
                line: i + 1,
                col: raw.find(wolfi).map_or(1, |c| c + 1),
            };
            if debian.is_empty() {
                return Err(ConfigError::PackageMap {
                    at: at(),
                    message: format!("`{wolfi}` maps to nothing; write `{wolfi} DEBIAN-NAME...`, or `{wolfi} -` when nothing is needed"),
                });
            }
            if wolfi.chars().all(|c| c == '*') {
                return Err(ConfigError::PackageMap {
                    at: at(),
                    message: format!(
                        "`{wolfi}` would match every name; write a pattern like `go-*`"
                    ),
                });
            }
            let debian = if debian == ["-"] { Vec::new() } else { debian };
            entries.push(Entry {
                wolfi: wolfi.to_string(),
                debian,
                origin: 0,
            });
        }
        Ok(PackageMap { entries })
    }

    /// This map with `other`'s entries added; they win over this one's.
    pub fn extended(mut self, other: PackageMap) -> PackageMap {
        let origin = self
            .entries
            .iter()
            .map(|e| e.origin)
            .max()
            .map_or(0, |o| o + 1);
        self.entries
            .extend(other.entries.into_iter().map(|e| Entry { origin, ..e }));
        self
    }

    /// The Debian packages for one Wolfi name (without a constraint), if
    /// the map has it: an exact entry (the last one added wins), else the
    /// first matching pattern of the latest map that has one.
    pub fn lookup(&self, name: &str) -> Option<&[String]> {
        if let Some(e) = self.entries.iter().rev().find(|e| e.wolfi == name) {
            return Some(&e.debian);
        }
        let matching = |e: &&Entry| e.wolfi.contains('*') && glob(&e.wolfi, name);
        let newest = self
            .entries
            .iter()
            .filter(matching)
            .map(|e| e.origin)
            .max()?;
        self.entries
            .iter()
            .filter(matching)
            .find(|e| e.origin == newest)
            .map(|e| e.debian.as_slice())
    }

    /// Resolves environment package names (apk syntax, constraints
    /// allowed). `debian_has` says whether Debian has a package of that
    /// name (`None`: no index on this host); `suggest` gives the
    /// suggestions for an unknown name (e.g. [`PackageMap::suggestions`],
    /// memoized by the caller: it is the slow part).
    pub fn resolve(
        &self,
        names: &[String],
        debian_has: Option<&dyn Fn(&str) -> bool>,
        suggest: &mut dyn FnMut(&str) -> Vec<String>,
    ) -> Resolution {
        let mut r = Resolution::default();
        let add = |r: &mut Resolution, d: &str| {
            if !r.debian.iter().any(|x| x == d) {
                r.debian.push(d.to_string());
            }
        };
        for full in names {
            let (name, constraint) = split_apk(full);
            if let Some(debian) = self.lookup(name) {
                if constraint.is_some() {
                    r.dropped_constraints.push(full.clone());
                }
                for d in debian {
                    add(&mut r, d);
                }
                continue;
            }
            match debian_has {
                // A Debian name (Debian's `name=version` kept as written).
                Some(has) if has(name) => add(&mut r, full),
                Some(_) => {
                    let name = apk_name(full);
                    r.unknown.push((name.to_string(), suggest(name)));
                }
                None => {
                    r.unverified.push(full.clone());
                    add(&mut r, full);
                }
            }
        }
        r
    }

    /// Up to three suggestions for an unknown name: `libNAME-dev` /
    /// `libNAME` for a `NAME-dev`, and the closest map and Debian names
    /// (`debian_names`: the index, sorted, for "did you mean").
    pub fn suggestions(
        &self,
        name: &str,
        debian_has: Option<&dyn Fn(&str) -> bool>,
        debian_names: &[String],
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let has = |n: &str| debian_has.is_some_and(|h| h(n));
        if let Some(base) = name.strip_suffix("-dev") {
            for c in [format!("lib{base}-dev"), format!("{base}-dev")] {
                if has(&c) {
                    out.push(c);
                }
            }
        }
        if has(&format!("lib{name}")) {
            out.push(format!("lib{name}"));
        }
        let keys = self
            .entries
            .iter()
            .filter(|e| !e.wolfi.contains('*'))
            .map(|e| e.wolfi.as_str());
        if let Some(k) = closest(name, keys) {
            out.push(k);
        }
        // Only names that could be close enough: the same first two
        // characters and a similar length (the index has ~60,000 names).
        // `debian_names` is sorted: those sharing the first two characters
        // are one run of it, found by binary search.
        let (head, len) = (name.get(..2).unwrap_or(name), name.len());
        let from = debian_names.partition_point(|d| d.as_str() < head);
        let near = debian_names[from..]
            .iter()
            .map(String::as_str)
            .take_while(|d| d.starts_with(head))
            .filter(|d| d.len().abs_diff(len) <= len / 3 + 1);
        if let Some(d) = closest(name, near) {
            out.push(d);
        }
        out.dedup();
        out.truncate(3);
        out
    }
}

/// Whether `name` matches `pattern`, where each `*` stands for any run of
/// characters (none included).
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> Vec<String> {
        [
            "libfoo-dev",
            "make",
            "jq",
            "python3-pip",
            "libxml2-dev",
            "git",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
    }

    fn resolve(map: &PackageMap, names: &[&str]) -> Resolution {
        let d = debian();
        let has = |n: &str| d.iter().any(|x| x == n);
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        map.resolve(&names, Some(&has), &mut |n| {
            map.suggestions(n, Some(&has), &d)
        })
    }

    #[test]
    fn the_builtin_table_parses_and_maps_the_common_names() {
        let m = PackageMap::parse("t", BUILTIN).unwrap();
        assert!(m.entries.len() >= 55, "{}", m.entries.len());
        let m = PackageMap::builtin();
        assert_eq!(
            m.lookup("build-base").unwrap(),
            ["build-essential", "pkgconf"]
        );
        assert_eq!(
            m.lookup("ca-certificates-bundle").unwrap(),
            ["ca-certificates"]
        );
        assert!(m.lookup("wolfi-base").unwrap().is_empty());
        assert_eq!(m.lookup("go-1.23").unwrap(), ["golang-go"]);
        assert_eq!(m.lookup("python-3.12-dev").unwrap(), ["python3-dev"]);
        assert_eq!(m.lookup("python-3.12").unwrap(), ["python3"]);
        assert_eq!(m.lookup("py3.12-pip").unwrap(), ["python3-pip"]);
        assert_eq!(m.lookup("openssl-dev").unwrap(), ["libssl-dev"]);
        assert_eq!(m.lookup("util-linux-dev").unwrap().len(), 3);
        assert!(m.lookup("no-such-thing").is_none());
        // What the go/covdata, llvm/covreport, maven/pombump and pecl/*
        // built-ins and their users name.
        assert_eq!(m.lookup("llvm-19").unwrap(), ["llvm"]);
        assert_eq!(m.lookup("llvm-19-dev").unwrap(), ["llvm-dev"]);
        assert_eq!(m.lookup("clang-19").unwrap(), ["clang"]);
        assert_eq!(m.lookup("py3-yaml").unwrap(), ["python3-yaml"]);
        assert_eq!(m.lookup("php-8.3-dev").unwrap(), ["php-dev"]);
        assert_eq!(m.lookup("php-8.3").unwrap(), ["php-cli"]);
        assert_eq!(m.lookup("jq").unwrap(), ["jq"]);
    }

    #[test]
    fn resolution_maps_passes_debian_names_and_reports_all_unknowns() {
        let r = resolve(
            &PackageMap::builtin(),
            &[
                "build-base",
                "gcc~13",
                "jq",
                "make",
                "foo-dev",
                "zzzq",
                "busybox",
            ],
        );
        assert_eq!(
            r.debian,
            ["build-essential", "pkgconf", "gcc", "jq", "make", "busybox"]
        );
        assert_eq!(r.dropped_constraints, ["gcc~13"]);
        assert_eq!(r.unknown.len(), 2);
        assert_eq!(r.unknown[0].0, "foo-dev");
        assert_eq!(r.unknown[0].1[0], "libfoo-dev");
        assert_eq!(r.unknown[1].0, "zzzq");
        let m = r.unknown_message().unwrap();
        assert!(
            m.starts_with(
                "2 package name(s) have no Debian equivalent: foo-dev (did you mean libfoo-dev"
            ),
            "{m}"
        );
        assert!(m.contains("--package-map"), "{m}");
        assert!(resolve(&PackageMap::builtin(), &["make"])
            .unknown_message()
            .is_none());
    }

    #[test]
    fn without_an_index_names_pass_unverified() {
        let names = vec!["build-base".to_string(), "zzzq".to_string()];
        let r = PackageMap::builtin().resolve(&names, None, &mut |_| Vec::new());
        assert_eq!(r.debian, ["build-essential", "pkgconf", "zzzq"]);
        assert_eq!(r.unverified, ["zzzq"]);
        assert!(r.unknown.is_empty());
    }

    #[test]
    fn user_maps_extend_and_win() {
        let user = PackageMap::parse(
            "my.map",
            "# mine\nbuild-base gcc make\nfoo-dev libfoo-dev\ngo-* golang-1.22-go\n",
        )
        .unwrap();
        let m = PackageMap::builtin().extended(user);
        assert_eq!(m.lookup("build-base").unwrap(), ["gcc", "make"]);
        assert_eq!(m.lookup("go-1.22").unwrap(), ["golang-1.22-go"]);
        assert_eq!(m.lookup("python-3.12").unwrap(), ["python3"]);
        assert!(resolve(&m, &["foo-dev"]).unknown.is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob("go-*", "go-1.22") && glob("go-*", "go-"));
        assert!(glob("gcc-*-default", "gcc-14-default"));
        assert!(!glob("gcc-*-default", "gcc-14"));
        assert!(glob("py3*-pip", "py3.12-pip") && !glob("py3*-pip", "py3.12-pipx"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
    }

    #[test]
    fn bad_map_lines_are_located() {
        let e = PackageMap::parse("my.map", "ok ok\n  lonely\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "my.map:2:3: `lonely` maps to nothing; write `lonely DEBIAN-NAME...`, or `lonely -` when nothing is needed"
        );
        let e = PackageMap::parse("my.map", "* x\n").unwrap_err();
        assert!(e.to_string().contains("would match every name"), "{e}");
    }
}
