//! `${{name}}` substitution (melange syntax): `${{package.version}}`,
//! `${{vars.NAME}}`, `${{inputs.NAME}}`, `${{targets.destdir}}` ...
//! Spaces inside the braces are allowed (`${{ vars.x }}`). There is no
//! escape: every `${{` must start a valid, known substitution.

use crate::error::show;
use crate::suggest::closest;

/// A failed substitution: where in the text (byte offset of the `${{`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubstError {
    pub offset: usize,
    pub message: String,
}

/// Characters of a substitution name (as melange).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Where variables come from.
pub(crate) trait Scope {
    /// The value of `name` (e.g. `vars.flavor`), if known.
    fn lookup(&self, name: &str) -> Option<String>;
    /// Every known name, for "did you mean".
    fn names(&self) -> Vec<String>;
}

/// Parses the substitution starting at `text[start..]` (which begins with
/// `${{`). Returns the name and the byte length of the whole `${{ ... }}`.
pub(crate) fn parse_ref(text: &str, start: usize) -> Result<(&str, usize), SubstError> {
    let body_start = start + 3;
    let Some(close) = text[body_start..].find("}}") else {
        return Err(SubstError {
            offset: start,
            message: "unterminated `${{`; close it with `}}` (e.g. `${{vars.NAME}}`)".into(),
        });
    };
    let inner = &text[body_start..body_start + close];
    let name = inner.trim_matches(|c| c == ' ' || c == '\t');
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(SubstError {
            offset: start,
            message: format!(
                "`${{{{{}}}}}` is not a valid substitution; use a name like `${{{{vars.NAME}}}}`, `${{{{package.version}}}}` or `${{{{inputs.NAME}}}}`",
                show(inner)
            ),
        });
    }
    Ok((name, 3 + close + 2))
}

/// An "unknown variable" error for `name` at `offset`.
pub(crate) fn unknown(name: &str, offset: usize, scope: &dyn Scope) -> SubstError {
    let names = scope.names();
    let hint = match closest(name, names.iter().map(String::as_str)) {
        Some(s) => format!("; did you mean `${{{{{s}}}}}`?"),
        None if name.starts_with("inputs.") => {
            "; `inputs.*` exist only inside a pipeline run with `uses`, for the inputs it declares"
                .into()
        }
        None => "; known: package.name, package.version, vars.*, targets.destdir, ...".into(),
    };
    SubstError {
        offset,
        message: format!("unknown variable `${{{{{name}}}}}`{hint}"),
    }
}

/// Replaces every `${{name}}` in `text` with its value from `scope`.
pub(crate) fn substitute(text: &str, scope: &dyn Scope) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    let mut rest_start = 0;
    while let Some(rel) = text[rest_start..].find("${{") {
        let start = rest_start + rel;
        out.push_str(&text[rest_start..start]);
        let (name, len) = parse_ref(text, start)?;
        let value = scope
            .lookup(name)
            .ok_or_else(|| unknown(name, start, scope))?;
        out.push_str(&value);
        rest_start = start + len;
    }
    out.push_str(&text[rest_start..]);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scope from a fixed list, for tests.
    pub(crate) struct Fixed(pub Vec<(&'static str, &'static str)>);

    impl Scope for Fixed {
        fn lookup(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
        fn names(&self) -> Vec<String> {
            self.0.iter().map(|(k, _)| k.to_string()).collect()
        }
    }

    fn scope() -> Fixed {
        Fixed(vec![
            ("package.name", "hello"),
            ("package.version", "1.10"),
            ("vars.flavor", "full"),
            ("targets.destdir", "/home/build/out"),
        ])
    }

    #[test]
    fn replaces_all_forms() {
        let s = scope();
        assert_eq!(
            substitute(
                "${{package.name}}-${{ package.version }}.tar ${{vars.flavor}}",
                &s
            )
            .unwrap(),
            "hello-1.10.tar full"
        );
        assert_eq!(
            substitute("mkdir -p ${{targets.destdir}}/bin", &s).unwrap(),
            "mkdir -p /home/build/out/bin"
        );
        // Shell syntax is untouched.
        assert_eq!(
            substitute("echo ${HOME} $x {{y}} $", &s).unwrap(),
            "echo ${HOME} $x {{y}} $"
        );
        // Values are not substituted again.
        let s2 = Fixed(vec![("vars.a", "${{vars.a}}")]);
        assert_eq!(substitute("${{vars.a}}", &s2).unwrap(), "${{vars.a}}");
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let e = substitute("echo ${{vars.flavour}}", &scope()).unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(
            e.message,
            "unknown variable `${{vars.flavour}}`; did you mean `${{vars.flavor}}`?"
        );
        let e = substitute("${{inputs.x}}", &scope()).unwrap_err();
        assert!(
            e.message.contains("only inside a pipeline run with `uses`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unterminated_and_malformed() {
        let e = substitute("a ${{vars.flavor", &scope()).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.starts_with("unterminated `${{`"));
        let e = substitute("${{ }}", &scope()).unwrap_err();
        assert!(
            e.message.contains("is not a valid substitution"),
            "{}",
            e.message
        );
        let e = substitute("x ${{vars.a b}}", &scope()).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(
            e.message.starts_with("`${{vars.a b}}` is not a valid"),
            "{}",
            e.message
        );
    }
}
