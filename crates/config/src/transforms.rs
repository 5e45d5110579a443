//! `var-transforms:`: a new var made from another value by a regular
//! expression replacement, as melange's `PerformVarSubstitutions` does with
//! Go's `regexp.ReplaceAllString` (RE2 syntax; `$1`, `${1}` and `${name}`
//! in the replacement). The `regex` crate implements the same RE2 family,
//! so the same expressions behave the same.

use regex::Regex;

/// Compiles `pattern`, or says why it does not compile.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().last().unwrap_or("").trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        format!(
            "`match` is not a valid regular expression ({first}); use RE2 syntax as melange does"
        )
    })
}

/// `from` with every match of `pattern` replaced by `replace`.
pub(crate) fn apply(from: &str, pattern: &Regex, replace: &str) -> String {
    pattern.replace_all(from, replace).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_like_go() {
        let re = compile(r"^(\d+)\.(\d+)\.(\d+)$").unwrap();
        assert_eq!(apply("1.2.3", &re, "$1-$2-$3"), "1-2-3");
        assert_eq!(apply("1.2.3", &re, "${1}_${2}"), "1_2");
        // As in Go, `$1_` names a group `1_` (none: empty).
        assert_eq!(apply("1.2.3", &re, "$1_$2"), "2");
        assert_eq!(apply("1.2.3", &re, "${1}x"), "1x");
        let re = compile(r"\.").unwrap();
        assert_eq!(apply("1.2.3", &re, "-"), "1-2-3");
        // No match: the value unchanged.
        let re = compile("z").unwrap();
        assert_eq!(apply("1.2.3", &re, "y"), "1.2.3");
    }

    #[test]
    fn bad_patterns_are_explained() {
        let e = compile("(").unwrap_err();
        assert!(e.contains("not a valid regular expression"), "{e}");
    }
}
