//! A small located YAML tree built from `saphyr-parser` events.
//!
//! Why our own tree: every node keeps its line and column, so every error
//! (unknown key, wrong type, bad substitution inside a `runs` block) can
//! name its place; scalars keep their source text (`version: 1.10` stays
//! `"1.10"`, never the float 1.1); duplicate keys, several documents, deep
//! nesting and alias bombs are reported instead of being silently merged or
//! exhausting memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::{show, ConfigError};
use crate::source::{Pos, Source};

/// Deepest nesting of mappings and sequences accepted.
pub(crate) const MAX_DEPTH: usize = 128;
/// Most nodes one file may produce (aliases included).
pub(crate) const MAX_NODES: usize = 200_000;

/// A parser span's start as a [`Pos`].
fn pos_of(span: Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col(),
        index: span.start.index(),
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// What a node holds. Scalars are kept as written (no type resolution).
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar { value: String, style: ScalarStyle },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, style: ScalarStyle::Plain }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for "found ..." in messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing (null)",
            Kind::Scalar { .. } => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Kind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.count() + v.count())
                    .sum::<usize>()
            }
        }
    }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder<'s> {
    src: &'s Source,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
}

/// A tree as the JSON a YAML language server (or any YAML 1.2 loader with
/// the core schema) sees: plain scalars become null, integers, floats or
/// booleans when they read as one, quoted ones stay strings.
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        Kind::Scalar { value, style } => {
            if node.is_null() {
                Value::Null
            } else if *style != ScalarStyle::Plain {
                Value::String(value.clone())
            } else if let Ok(i) = value.parse::<i64>() {
                Value::from(i)
            } else if let Some(f) = value
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
            {
                Value::Number(f)
            } else if value == "true" || value == "false" {
                Value::Bool(value == "true")
            } else {
                Value::String(value.clone())
            }
        }
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match &k.kind {
                        Kind::Scalar { value, .. } => value.clone(),
                        _ => to_json(k).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

/// Parses `src` into one tree. `Ok(None)` for a file without content.
pub(crate) fn parse(src: &Source) -> Result<Option<Node>, ConfigError> {
    let mut b = Builder {
        src,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
        nodes: 0,
    };
    let mut parser = Parser::new_from_str(&src.text);
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| ConfigError::Syntax {
            at: src.loc_line_col(e.marker().line().max(1), e.marker().col()),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        b.event(ev, span)?;
    }
    Ok(b.root)
}

impl Builder<'_> {
    fn err(&self, span: Span, message: String) -> ConfigError {
        ConfigError::Syntax {
            at: self.src.loc(pos_of(span)),
            message,
        }
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), ConfigError> {
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.err(
                        span,
                        "a second YAML document (`---`); a config file holds exactly one".into(),
                    ));
                }
                Ok(())
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let node = Node {
                    pos: pos_of(span),
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        style,
                    },
                };
                self.complete(node, anchor, span)
            }
            Event::SequenceStart(anchor, _tag) => self.open(
                Frame::Seq {
                    pos: pos_of(span),
                    anchor,
                    items: Vec::new(),
                },
                span,
            ),
            Event::MappingStart(anchor, _tag) => self.open(
                Frame::Map {
                    pos: pos_of(span),
                    anchor,
                    entries: Vec::new(),
                    key: None,
                },
                span,
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(self.err(span, "unbalanced YAML collection end".into()));
                };
                let (node, anchor) = match frame {
                    Frame::Seq { pos, anchor, items } => (
                        Node {
                            pos,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Frame::Map {
                        pos,
                        anchor,
                        entries,
                        key,
                    } => {
                        if key.is_some() {
                            return Err(self.err(span, "mapping key without a value".into()));
                        }
                        (
                            Node {
                                pos,
                                kind: Kind::Map(entries),
                            },
                            anchor,
                        )
                    }
                };
                self.nodes -= 1; // counted when opened
                self.complete(node, anchor, span)
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(self.err(span, "alias to an unknown anchor".into()));
                };
                let n = node.count();
                self.nodes += n.saturating_sub(1);
                if self.nodes > MAX_NODES {
                    return Err(self.err(
                        span,
                        format!(
                            "aliases expand to more than {MAX_NODES} YAML nodes; simplify the file"
                        ),
                    ));
                }
                self.complete(node, 0, span)
            }
        }
    }

    fn open(&mut self, frame: Frame, span: Span) -> Result<(), ConfigError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(span, format!("YAML nested deeper than {MAX_DEPTH} levels")));
        }
        self.nodes += 1;
        self.stack.push(frame);
        Ok(())
    }

    fn complete(&mut self, node: Node, anchor: usize, span: Span) -> Result<(), ConfigError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err(span, format!("more than {MAX_NODES} YAML nodes")));
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let src = self.src;
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    *key = Some(node);
                    Ok(())
                }
                Some(k) => {
                    if let Kind::Scalar { value: name, .. } = &k.kind {
                        let first = entries.iter().find(|(old, _)| {
                            matches!(&old.kind, Kind::Scalar { value, .. } if value == name)
                        });
                        if let Some((old, _)) = first {
                            return Err(ConfigError::Syntax {
                                at: src.loc(k.pos),
                                message: format!(
                                    "duplicate key `{}` (first at line {}); remove one",
                                    show(name),
                                    old.pos.line
                                ),
                            });
                        }
                    }
                    entries.push((k, node));
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Result<Option<Node>, ConfigError> {
        parse(&Source::new("t.yaml", text))
    }

    fn map_of(node: &Node) -> &[(Node, Node)] {
        match &node.kind {
            Kind::Map(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn scalar(node: &Node) -> (&str, ScalarStyle) {
        match &node.kind {
            Kind::Scalar { value, style } => (value, *style),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn scalars_keep_their_text_and_positions() {
        let root = tree("a: 1.10\nb:\n  - 'x'\nc: |\n  line\n")
            .unwrap()
            .unwrap();
        let e = map_of(&root);
        assert_eq!(scalar(&e[0].1), ("1.10", ScalarStyle::Plain));
        assert_eq!((e[0].1.pos.line, e[0].1.pos.col), (1, 3));
        let Kind::Seq(items) = &e[1].1.kind else {
            panic!()
        };
        assert_eq!(scalar(&items[0]), ("x", ScalarStyle::SingleQuoted));
        assert_eq!((items[0].pos.line, items[0].pos.col), (3, 4));
        assert_eq!(scalar(&e[2].1), ("line\n", ScalarStyle::Literal));
        // A literal block's position is its first content character.
        assert_eq!((e[2].1.pos.line, e[2].1.pos.col), (5, 2));
    }

    #[test]
    fn empty_file_is_none() {
        assert!(tree("").unwrap().is_none());
        assert!(tree("# only a comment\n").unwrap().is_none());
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_lines() {
        let e = tree("a: 1\nb: 2\na: 3\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "t.yaml:3:1: duplicate key `a` (first at line 1); remove one"
        );
    }

    #[test]
    fn second_document_is_an_error() {
        let e = tree("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.yaml:2:1: a second YAML document"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = tree("a: [1, 2\nb: 3\n").unwrap_err();
        let at = e.location().unwrap();
        assert!(at.line >= 1, "{e}");
        assert!(e.to_string().contains("invalid YAML"), "{e}");
    }

    #[test]
    fn aliases_are_expanded_and_bombs_stopped() {
        let root = tree("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        let e = map_of(&root);
        assert_eq!(scalar(&map_of(&e[1].1)[0].1).0, "v");

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = tree(&bomb).unwrap_err().to_string();
        assert!(e.contains("YAML nodes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        let e = tree(&text).unwrap_err().to_string();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn null_and_type_names() {
        let root = tree("a: ~\nb:\nc: x\nd: []\ne: {}\n").unwrap().unwrap();
        let e = map_of(&root);
        assert!(e[0].1.is_null() && e[1].1.is_null() && !e[2].1.is_null());
        assert_eq!(e[2].1.type_name(), "a string");
        assert_eq!(e[3].1.type_name(), "a list");
        assert_eq!(e[4].1.type_name(), "a mapping");
        assert_eq!(e[0].1.type_name(), "nothing (null)");
    }
}
