//! `if:` conditions: a small expression language (a superset of melange's).
//!
//! ```text
//! expr    := and ( '||' and )*
//! and     := cmp ( '&&' cmp )*
//! cmp     := unary ( ( '==' | '!=' ) unary )?
//! unary   := '!' unary | primary
//! primary := '(' expr ')' | 'single' | "double" | ${{name}} | bare-word
//! ```
//!
//! Every operand is a string; `${{name}}` is replaced by its value as one
//! operand (so values with spaces or quotes are safe); `==`/`!=` compare
//! strings and give `true`/`false`. Where a truth value is needed (`!`,
//! `&&`, `||`, the whole condition) the operand must be `true` or `false`.
//! Both sides of `&&`/`||` are always checked, so a mistake is reported even
//! where it would not change the result.

use crate::error::show;
use crate::subst::{parse_ref, unknown, Scope};

/// Deepest nesting of parentheses and `!`.
const MAX_NESTING: usize = 64;

/// A condition that does not parse or evaluate: where (byte offset in the
/// condition text) and why. `subst` marks errors in a `${{...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CondError {
    pub offset: usize,
    pub message: String,
    pub subst: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Not,
    Eq,
    Ne,
    And,
    Or,
    Value(String),
}

fn err(offset: usize, message: impl Into<String>) -> CondError {
    CondError {
        offset,
        message: message.into(),
        subst: false,
    }
}

fn lex(text: &str, scope: &dyn Scope) -> Result<Vec<(Tok, usize)>, CondError> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let two = rest.get(..2).unwrap_or("");
        let (tok, len) = match (c, two) {
            (_, "==") => (Tok::Eq, 2),
            (_, "!=") => (Tok::Ne, 2),
            (_, "&&") => (Tok::And, 2),
            (_, "||") => (Tok::Or, 2),
            ('!', _) => (Tok::Not, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('\'' | '"', _) => {
                let (s, len) = string_literal(text, i, c)?;
                (Tok::Value(s), len)
            }
            ('=' | '&' | '|', _) => {
                let hint = match c {
                    '=' => "`==`",
                    '&' => "`&&`",
                    _ => "`||`",
                };
                return Err(err(i, format!("unexpected `{c}`; did you mean {hint}?")));
            }
            _ => {
                let (word, len) = word(text, i, scope)?;
                if len == 0 {
                    return Err(err(i, format!("unexpected `{c}`")));
                }
                (Tok::Value(word), len)
            }
        };
        toks.push((tok, i));
        i += len;
    }
    Ok(toks)
}

/// A bare word starting at `text[start]`: plain characters and `${{name}}`
/// references glued together (`v${{package.version}}` is one operand).
fn word(text: &str, start: usize, scope: &dyn Scope) -> Result<(String, usize), CondError> {
    let mut out = String::new();
    let mut i = start;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("${{") {
            let subst_err = |e: crate::subst::SubstError| CondError {
                offset: e.offset,
                message: e.message,
                subst: true,
            };
            let (name, len) = parse_ref(text, i).map_err(subst_err)?;
            let value = scope
                .lookup(name)
                .ok_or_else(|| subst_err(unknown(name, i, scope)))?;
            out.push_str(&value);
            i += len;
            continue;
        }
        let len = rest
            .find(|c: char| c.is_whitespace() || "()!=&|'\"".contains(c))
            .unwrap_or(rest.len());
        let len = rest[..len].find("${{").unwrap_or(len);
        if len == 0 {
            break;
        }
        out.push_str(&rest[..len]);
        i += len;
    }
    Ok((out, i - start))
}

/// A quoted string starting at `text[start]` (the quote). Backslash escapes
/// `\\`, `\'`, `\"`, `\n`, `\t`; other escapes are kept as written.
fn string_literal(text: &str, start: usize, quote: char) -> Result<(String, usize), CondError> {
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        if c == quote {
            return Ok((out, 1 + j + 1));
        }
        if c == '\\' {
            match chars.next() {
                Some((_, e @ ('\\' | '\'' | '"'))) => out.push(e),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(err(
        start,
        format!("unterminated string; close it with {quote}"),
    ))
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
    depth: usize,
}

/// A value with the offset it came from.
type Val = (String, usize);

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(_, o)| *o)
    }

    fn expr(&mut self) -> Result<Val, CondError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            let right = self.and()?;
            let v = truth(&left)? | truth(&right)?;
            left = (v.to_string(), left.1);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Val, CondError> {
        let mut left = self.cmp()?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            let right = self.cmp()?;
            let v = truth(&left)? & truth(&right)?;
            left = (v.to_string(), left.1);
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<Val, CondError> {
        let left = self.unary()?;
        let eq = match self.peek() {
            Some(Tok::Eq) => true,
            Some(Tok::Ne) => false,
            _ => return Ok(left),
        };
        self.at += 1;
        let right = self.unary()?;
        if matches!(self.peek(), Some(Tok::Eq | Tok::Ne)) {
            return Err(err(
                self.offset(),
                "comparisons do not chain; group them with parentheses and && or ||",
            ));
        }
        Ok((((left.0 == right.0) == eq).to_string(), left.1))
    }

    fn unary(&mut self) -> Result<Val, CondError> {
        if self.peek() == Some(&Tok::Not) {
            let at = self.offset();
            self.at += 1;
            self.nest(at)?;
            let v = self.unary()?;
            self.depth -= 1;
            return Ok(((!truth(&v)?).to_string(), at));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Val, CondError> {
        let at = self.offset();
        match self.toks.get(self.at).cloned() {
            Some((Tok::Value(v), o)) => {
                self.at += 1;
                Ok((v, o))
            }
            Some((Tok::LParen, _)) => {
                self.at += 1;
                self.nest(at)?;
                let v = self.expr()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(err(self.offset(), "expected `)` to close the `(`"));
                }
                self.at += 1;
                Ok(v)
            }
            Some((t, _)) => Err(err(at, format!("expected a value, found {}", describe(&t)))),
            None => Err(err(at, "expected a value, found the end of the condition")),
        }
    }

    fn nest(&mut self, at: usize) -> Result<(), CondError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(err(at, format!("nested deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::LParen => "`(`",
        Tok::RParen => "`)`",
        Tok::Not => "`!`",
        Tok::Eq => "`==`",
        Tok::Ne => "`!=`",
        Tok::And => "`&&`",
        Tok::Or => "`||`",
        Tok::Value(_) => "a value",
    }
}

fn truth(v: &Val) -> Result<bool, CondError> {
    match v.0.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(err(
            v.1,
            format!(
                "`{}` is not true or false; compare it with == or != (e.g. `${{{{vars.x}}}} == 'yes'`)",
                show(other)
            ),
        )),
    }
}

/// Evaluates `text` with variables from `scope`.
pub(crate) fn evaluate(text: &str, scope: &dyn Scope) -> Result<bool, CondError> {
    let toks = lex(text, scope)?;
    if toks.is_empty() {
        return Err(err(
            0,
            "the condition is empty; write e.g. `${{vars.x}} == 'yes'` or remove `if`",
        ));
    }
    let mut p = Parser {
        toks,
        at: 0,
        end: text.len(),
        depth: 0,
    };
    let v = p.expr()?;
    if let Some((t, o)) = p.toks.get(p.at) {
        return Err(err(
            *o,
            format!("unexpected {} after a complete condition", describe(t)),
        ));
    }
    truth(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subst::tests::Fixed;

    fn scope() -> Fixed {
        Fixed(vec![
            ("vars.flavor", "full"),
            ("vars.spaced", "a b 'c'"),
            ("vars.on", "true"),
            ("vars.empty", ""),
        ])
    }

    fn ev(text: &str) -> Result<bool, CondError> {
        evaluate(text, &scope())
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(ev("${{vars.flavor}} == 'full'"), Ok(true));
        assert_eq!(ev("${{vars.flavor}} != 'full'"), Ok(false));
        assert_eq!(ev("${{ vars.flavor }} == full"), Ok(true));
        assert_eq!(ev("${{vars.spaced}} == \"a b 'c'\""), Ok(true));
        assert_eq!(ev("${{vars.empty}} == ''"), Ok(true));
        assert_eq!(ev("true"), Ok(true));
        assert_eq!(ev("false"), Ok(false));
        assert_eq!(ev("${{vars.on}}"), Ok(true));
        assert_eq!(ev("!${{vars.on}}"), Ok(false));
        assert_eq!(ev("!(${{vars.flavor}} == 'x')"), Ok(true));
        assert_eq!(ev("a == b || c == c"), Ok(true));
        assert_eq!(ev("a == a && c == d"), Ok(false));
        // && binds tighter than ||.
        assert_eq!(ev("true || false && false"), Ok(true));
        assert_eq!(ev("(true || false) && false"), Ok(false));
        assert_eq!(ev("'it\\'s' == \"it's\""), Ok(true));
        assert_eq!(ev("x86_64 == x86_64 && 1.2.3 != 1.2.4"), Ok(true));
        assert_eq!(ev("pre-${{vars.flavor}}-post == pre-full-post"), Ok(true));
        // A value with spaces stays one operand.
        assert_eq!(ev("x${{vars.spaced}} == \"xa b 'c'\""), Ok(true));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = ev("full = 'full'").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("did you mean `==`"), "{}", e.message);

        let e = ev("${{vars.flavour}} == x").unwrap_err();
        assert!(
            e.subst && e.message.contains("did you mean `${{vars.flavor}}`"),
            "{e:?}"
        );

        let e = ev("(a == b").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("expected `)`"));

        let e = ev("a == 'b").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("unterminated string"));

        let e = ev("${{vars.flavor}}").unwrap_err();
        assert!(
            e.message.contains("`full` is not true or false"),
            "{}",
            e.message
        );

        let e = ev("a == b c").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("after a complete condition"));

        assert!(ev("a == b == c")
            .unwrap_err()
            .message
            .contains("do not chain"));
        assert!(ev("").unwrap_err().message.contains("empty"));
        assert!(ev("a ==")
            .unwrap_err()
            .message
            .contains("end of the condition"));
        assert!(ev("&& a").is_err());
        assert!(ev("${{vars.flavor").unwrap_err().subst);
        // The right side of || is checked even when the left is true.
        assert!(ev("true || nonsense").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(ev(&deep).unwrap_err().message.contains("nested deeper"));
        let nots = format!("{}true", "!".repeat(10_000));
        assert!(ev(&nots).unwrap_err().message.contains("nested deeper"));
    }
}
