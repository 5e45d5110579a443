//! `--env-file` and `--env K=V` parsing.
//!
//! An env file has one `KEY=VALUE` per line. Blank lines and lines starting
//! with `#` are ignored; a line may start with `export `; spaces around `=`
//! are allowed. A value may be:
//! - unquoted: surrounding spaces are trimmed and ` #...` ends it (a comment);
//! - in double quotes: `\n`, `\t`, `\\`, `\"` and `\$` are escapes, `#` is text;
//! - in single quotes: taken literally.
//!
//! Only a comment may follow a closing quote. Later lines win over earlier
//! ones for the same key.

use crate::error::{show, ConfigError, Loc};

/// Whether `name` is a valid environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses the text of an env file named `name` (the name is used in errors).
pub fn parse_env_file(name: &str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let at = |col0: usize| Loc {
            file: name.to_string(),
            line: idx + 1,
            col: col0 + 1,
        };
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let (k, v) = parse_line(line).map_err(|(col_byte, message)| ConfigError::EnvFile {
            at: at(line[..col_byte.min(line.len())].chars().count()),
            message,
        })?;
        let Some(k) = k else { continue };
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

/// Parses one `--env` argument: `KEY=VALUE` (the value is taken as is).
pub fn parse_env_assignment(arg: &str) -> Result<(String, String), ConfigError> {
    let Some((k, v)) = arg.split_once('=') else {
        return Err(ConfigError::CliEnv {
            arg: show(arg),
            message: "expected KEY=VALUE".into(),
        });
    };
    if !is_env_name(k) {
        return Err(ConfigError::CliEnv {
            arg: show(arg),
            message: format!(
                "`{}` is not a valid variable name; use letters, digits and _ (not starting with a digit)",
                show(k)
            ),
        });
    }
    Ok((k.to_string(), v.to_string()))
}

type LineResult = Result<(Option<String>, String), (usize, String)>;

/// One line: `(None, _)` for blank and comment lines; errors carry the
/// byte column.
fn parse_line(line: &str) -> LineResult {
    let body = line.trim_start();
    let mut col = line.len() - body.len();
    if body.is_empty() || body.starts_with('#') {
        return Ok((None, String::new()));
    }
    let mut body = body;
    if let Some(rest) = body.strip_prefix("export") {
        if rest.starts_with([' ', '\t']) {
            let trimmed = rest.trim_start();
            col += body.len() - trimmed.len();
            body = trimmed;
        }
    }
    let Some(eq) = body.find('=') else {
        return Err((col, format!("expected KEY=VALUE, found `{}`", show(body))));
    };
    let key = body[..eq].trim_end();
    if !is_env_name(key) {
        return Err((
            col,
            format!(
                "`{}` is not a valid variable name; use letters, digits and _ (not starting with a digit)",
                show(key)
            ),
        ));
    }
    let after = &body[eq + 1..];
    let value_raw = after.trim_start();
    let vcol = col + eq + 1 + (after.len() - value_raw.len());
    let value = match value_raw.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let (v, used) = quoted(value_raw, q).ok_or((
                vcol,
                format!("unterminated {q}-quoted value; close it with {q}"),
            ))?;
            let tail = value_raw[used..].trim_start();
            if !(tail.is_empty() || tail.starts_with('#')) {
                let tcol = vcol + (value_raw.len() - tail.len());
                return Err((
                    tcol,
                    format!("unexpected `{}` after the closing quote", show(tail)),
                ));
            }
            v
        }
        _ => {
            let end = comment_start(value_raw).unwrap_or(value_raw.len());
            value_raw[..end].trim_end().to_string()
        }
    };
    Ok((Some(key.to_string()), value))
}

/// Where an inline comment (`#` after whitespace) starts in an unquoted value.
fn comment_start(v: &str) -> Option<usize> {
    let b = v.as_bytes();
    (1..b.len()).find(|&i| b[i] == b'#' && (b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

/// A quoted value starting with `q`: the value and the bytes consumed.
fn quoted(s: &str, q: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        if c == q {
            return Some((out, i + 1));
        }
        if q == '"' && c == '\\' {
            match it.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e @ ('\\' | '"' | '$'))) => out.push(e),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let text = "\
# a comment
   
A=1
export B = two words  # trailing comment
C=\"x # not a comment\\n\\\"q\\\"\"  # comment
D='single $X \\n'
E=
F=a#b
A=override
G=\"\"\r
";
        let env = parse_env_file("e.env", text).unwrap();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("A"), Some("override"));
        assert_eq!(get("B"), Some("two words"));
        assert_eq!(get("C"), Some("x # not a comment\n\"q\""));
        assert_eq!(get("D"), Some("single $X \\n"));
        assert_eq!(get("E"), Some(""));
        assert_eq!(get("F"), Some("a#b"));
        assert_eq!(get("G"), Some(""));
        assert_eq!(
            env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["A", "B", "C", "D", "E", "F", "G"]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse_env_file("e.env", "A=1\nnot a pair\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.env:2:1: expected KEY=VALUE, found `not a pair`"
        );
        let e = parse_env_file("e.env", "A=1\n\n  1BAD=x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.env:3:3: `1BAD` is not a valid variable name; use letters, digits and _ (not starting with a digit)"
        );
        let e = parse_env_file("e.env", "X=\"open\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.env:1:3: unterminated \"-quoted value; close it with \""
        );
        let e = parse_env_file("e.env", "X='a' b\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.env:1:7: unexpected `b` after the closing quote"
        );
        let e = parse_env_file("e.env", "export  Y-Z=1\n").unwrap_err();
        assert_eq!(e.location().unwrap().col, 9);
    }

    #[test]
    fn cli_assignments() {
        assert_eq!(
            parse_env_assignment("A=b=c").unwrap(),
            ("A".into(), "b=c".into())
        );
        assert_eq!(parse_env_assignment("A=").unwrap(), ("A".into(), "".into()));
        assert_eq!(
            parse_env_assignment("A").unwrap_err().to_string(),
            "--env A: expected KEY=VALUE"
        );
        assert!(parse_env_assignment("9=x").is_err());
        assert!(is_env_name("_a1") && !is_env_name("") && !is_env_name("a-b"));
    }
}
