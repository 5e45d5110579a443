//! Typed reading of the located YAML tree: mappings with a fixed set of
//! keys (unknown ones are errors with a suggestion), strings, lists and
//! string maps, each error naming `file:line:col`.

use saphyr_parser::ScalarStyle;

use crate::error::{show, ConfigError};
use crate::source::Pos;
use crate::source::Source;
use crate::suggest::closest;
use crate::yaml::{Kind, Node};

/// A string value with where it came from (for errors inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str {
    pub value: String,
    pub pos: Pos,
    pub style: ScalarStyle,
}

impl Str {
    /// A value that has no place in a file (defaults, built-in values).
    pub fn synthetic(value: impl Into<String>, pos: Pos) -> Str {
        Str {
            value: value.into(),
            pos,
            style: ScalarStyle::Plain,
        }
    }
}

/// The checked entries of one mapping.
pub(crate) struct Fields<'n> {
    pub pos: Pos,
    pub context: &'static str,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, unless absent or null.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, v)| *k == key && !v.is_null())
            .map(|(_, _, v)| *v)
    }

    /// The key node of `key` (for errors about the key itself).
    pub fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }

    /// Whether `key` is present (even with a null value).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| *k == key)
    }
}

/// Decoding context: the file being read.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'s> {
    pub src: &'s Source,
}

impl<'s> Cx<'s> {
    pub fn wrong_type(&self, node: &Node, field: &str, expected: &'static str) -> ConfigError {
        ConfigError::WrongType {
            at: self.src.loc(node.pos),
            field: field.to_string(),
            expected,
            found: node.type_name(),
        }
    }

    pub fn invalid(&self, pos: Pos, field: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            at: self.src.loc(pos),
            field: field.to_string(),
            message,
        }
    }

    /// Reads `node` as a mapping whose keys must all be in `allowed`.
    /// A YAML merge key (`<<: *anchor`) adds the anchor's entries that are
    /// not already present.
    pub fn map<'n>(
        &self,
        node: &'n Node,
        field: &str,
        context: &'static str,
        allowed: &'static [&'static str],
    ) -> Result<Fields<'n>, ConfigError> {
        let Kind::Map(entries) = &node.kind else {
            return Err(self.wrong_type(node, field, "a mapping"));
        };
        let mut out: Vec<(&'n str, &'n Node, &'n Node)> = Vec::new();
        let mut merged: Vec<(&'n str, &'n Node, &'n Node)> = Vec::new();
        for (k, v) in entries {
            let name = self.key_name(k, context)?;
            if name == "<<"
                && matches!(
                    k.kind,
                    Kind::Scalar {
                        style: ScalarStyle::Plain,
                        ..
                    }
                )
            {
                self.merge_into(v, field, context, &mut merged)?;
                continue;
            }
            if !allowed.contains(&name) {
                return Err(self.unknown_key(k.pos, name, context, allowed));
            }
            out.push((name, k, v));
        }
        for (name, k, v) in merged {
            if !allowed.contains(&name) {
                return Err(self.unknown_key(k.pos, name, context, allowed));
            }
            if !out.iter().any(|(n, _, _)| *n == name) {
                out.push((name, k, v));
            }
        }
        Ok(Fields {
            pos: node.pos,
            context,
            entries: out,
        })
    }

    fn merge_into<'n>(
        &self,
        v: &'n Node,
        field: &str,
        context: &str,
        merged: &mut Vec<(&'n str, &'n Node, &'n Node)>,
    ) -> Result<(), ConfigError> {
        let sources: Vec<&'n Node> = match &v.kind {
            Kind::Map(_) => vec![v],
            Kind::Seq(items) => items.iter().collect(),
            _ => return Err(self.wrong_type(v, "<<", "a mapping or a list of mappings")),
        };
        for s in sources {
            let Kind::Map(entries) = &s.kind else {
                return Err(self.wrong_type(s, field, "a mapping"));
            };
            for (k, val) in entries {
                let name = self.key_name(k, context)?;
                if !merged.iter().any(|(n, _, _)| *n == name) {
                    merged.push((name, k, val));
                }
            }
        }
        Ok(())
    }

    fn key_name<'n>(&self, k: &'n Node, context: &str) -> Result<&'n str, ConfigError> {
        match &k.kind {
            Kind::Scalar { value, .. } => Ok(value),
            _ => Err(self.wrong_type(k, &format!("a key in {context}"), "a string")),
        }
    }

    pub fn unknown_key(
        &self,
        pos: Pos,
        key: &str,
        context: &'static str,
        allowed: &'static [&'static str],
    ) -> ConfigError {
        ConfigError::UnknownKey {
            at: self.src.loc(pos),
            key: show(key),
            context,
            suggestion: closest(key, allowed.iter().copied()),
            valid: allowed,
        }
    }

    /// A scalar as a string (any scalar: `1.10`, `true` and `8` stay text).
    pub fn string(&self, node: &Node, field: &str) -> Result<Str, ConfigError> {
        match &node.kind {
            Kind::Scalar { value, style } if !node.is_null() => Ok(Str {
                value: value.clone(),
                pos: node.pos,
                style: *style,
            }),
            _ => Err(self.wrong_type(node, field, "a string")),
        }
    }

    /// An optional string field (absent or null: `None`).
    pub fn opt_string(&self, f: &Fields<'_>, key: &str) -> Result<Option<Str>, ConfigError> {
        f.get(key).map(|n| self.string(n, key)).transpose()
    }

    /// A required, non-empty string field.
    pub fn req_string(&self, f: &Fields<'_>, key: &str) -> Result<Str, ConfigError> {
        match self.opt_string(f, key)? {
            Some(s) if !s.value.trim().is_empty() => Ok(s),
            Some(s) => Err(self.invalid(s.pos, key, format!("`{key}` is empty; give it a value"))),
            None => Err(ConfigError::Missing {
                at: self.src.loc(f.key_node(key).map_or(f.pos, |k| k.pos)),
                field: key.to_string(),
                context: f.context,
            }),
        }
    }

    /// A list of strings (absent or null: empty).
    pub fn string_list(&self, f: &Fields<'_>, key: &str) -> Result<Vec<Str>, ConfigError> {
        let Some(node) = f.get(key) else {
            return Ok(Vec::new());
        };
        let Kind::Seq(items) = &node.kind else {
            return Err(self.wrong_type(node, key, "a list of strings"));
        };
        items.iter().map(|i| self.string(i, key)).collect()
    }

    /// A mapping of string to string (absent or null: empty; a null value
    /// is the empty string).
    pub fn string_map(&self, f: &Fields<'_>, key: &str) -> Result<Vec<(Str, Str)>, ConfigError> {
        let Some(node) = f.get(key) else {
            return Ok(Vec::new());
        };
        let Kind::Map(entries) = &node.kind else {
            return Err(self.wrong_type(node, key, "a mapping of names to strings"));
        };
        let mut out: Vec<(Str, Str)> = Vec::new();
        for (k, v) in entries {
            let name = self.string(k, &format!("a key in `{key}`"))?;
            let value = if v.is_null() {
                Str::synthetic("", v.pos)
            } else {
                self.string(v, &name.value)?
            };
            out.push((name, value));
        }
        Ok(out)
    }

    /// A list of mappings (absent or null: empty).
    pub fn list<'n>(&self, f: &Fields<'n>, key: &str) -> Result<Vec<&'n Node>, ConfigError> {
        let Some(node) = f.get(key) else {
            return Ok(Vec::new());
        };
        match &node.kind {
            Kind::Seq(items) => Ok(items.iter().collect()),
            _ => Err(self.wrong_type(node, key, "a list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn with_root<T>(text: &str, f: impl FnOnce(Cx<'_>, &Node) -> T) -> T {
        let src = Source::new("t.yaml", text);
        let root = yaml::parse(&src).unwrap().unwrap();
        f(Cx { src: &src }, &root)
    }

    #[test]
    fn unknown_keys_are_located_and_suggested() {
        let e = with_root("name: x\nvesion: 1\n", |cx, root| {
            cx.map(root, "package", "package", &["name", "version"])
                .err()
                .unwrap()
        });
        assert_eq!(
            e.to_string(),
            "t.yaml:2:1: unknown key `vesion` in package; did you mean `version`?"
        );
    }

    #[test]
    fn merge_keys_fill_missing_entries() {
        with_root(
            "base: &b {a: 1, b: 2}\nm:\n  <<: *b\n  b: 3\n",
            |cx, root| {
                let top = cx.map(root, "", "top", &["base", "m"]).unwrap();
                let m = cx
                    .map(top.get("m").unwrap(), "m", "m", &["a", "b"])
                    .unwrap();
                assert_eq!(cx.string(m.get("a").unwrap(), "a").unwrap().value, "1");
                assert_eq!(cx.string(m.get("b").unwrap(), "b").unwrap().value, "3");
            },
        );
    }

    #[test]
    fn wrong_types_and_missing_fields() {
        with_root("a: [1]\nb: {x: y}\nc:\nd: ''\n", |cx, root| {
            let f = cx
                .map(root, "", "package", &["a", "b", "c", "d", "e"])
                .unwrap();
            let e = cx.opt_string(&f, "a").unwrap_err().to_string();
            assert_eq!(e, "t.yaml:1:4: `a` must be a string, found a list");
            let e = cx.string_list(&f, "b").unwrap_err().to_string();
            assert_eq!(
                e,
                "t.yaml:2:4: `b` must be a list of strings, found a mapping"
            );
            assert_eq!(cx.opt_string(&f, "c").unwrap(), None);
            let e = cx.req_string(&f, "c").unwrap_err().to_string();
            assert_eq!(e, "t.yaml:3:1: missing required `c` in package; add it");
            let e = cx.req_string(&f, "d").unwrap_err().to_string();
            assert_eq!(e, "t.yaml:4:4: `d` is empty; give it a value");
            let e = cx.req_string(&f, "e").unwrap_err().to_string();
            assert_eq!(e, "t.yaml:1:1: missing required `e` in package; add it");
        });
    }

    #[test]
    fn string_maps_keep_order_and_null_is_empty() {
        with_root("env:\n  B: 2\n  A:\n  C: 1.10\n", |cx, root| {
            let f = cx.map(root, "", "top", &["env"]).unwrap();
            let m = cx.string_map(&f, "env").unwrap();
            let kv: Vec<(&str, &str)> = m
                .iter()
                .map(|(k, v)| (k.value.as_str(), v.value.as_str()))
                .collect();
            assert_eq!(kv, [("B", "2"), ("A", ""), ("C", "1.10")]);
        });
    }
}
