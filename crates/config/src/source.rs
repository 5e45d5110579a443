//! A loaded file's text and name, and the mapping from a node (or a byte
//! offset inside a scalar's value) back to `file:line:col`.

use saphyr_parser::ScalarStyle;

use crate::error::Loc;

/// A position as the parser reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 0-based column in characters.
    pub col: usize,
    /// 0-based index in characters from the start of the file.
    pub index: usize,
}

/// One config, pipeline or env file.
#[derive(Debug)]
pub(crate) struct Source {
    /// The name errors show (the path as given, or `<builtin>/x.yaml`).
    pub name: String,
    /// The whole text.
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The location of a node's first character.
    pub fn loc(&self, pos: Pos) -> Loc {
        Loc {
            file: self.name.clone(),
            line: pos.line,
            col: pos.col + 1,
        }
    }

    /// A location from a 1-based line and a 0-based character column.
    pub fn loc_line_col(&self, line: usize, col0: usize) -> Loc {
        Loc {
            file: self.name.clone(),
            line,
            col: col0 + 1,
        }
    }

    /// The location of byte `offset` of a scalar's (unescaped, unfolded)
    /// `value`, where the scalar starts at `pos` in this file with `style`.
    ///
    /// Exact for plain and quoted scalars on one line and for literal (`|`)
    /// blocks; for folded or escaped text it looks for the text at `offset`
    /// in the source after `pos`, and falls back to the scalar's start.
    pub fn loc_in(&self, pos: Pos, style: ScalarStyle, value: &str, offset: usize) -> Loc {
        let offset = floor_char_boundary(value, offset);
        if offset == 0 && matches!(style, ScalarStyle::Plain) {
            return self.loc(pos);
        }
        let prefix = &value[..offset];
        let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
        match style {
            ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                let skip = usize::from(quoted);
                if let Some(start) = self.byte_of_char(pos.index + skip) {
                    if !prefix.contains('\n') && self.text[start..].starts_with(prefix) {
                        return self
                            .loc_line_col(pos.line, pos.col + skip + prefix.chars().count());
                    }
                }
            }
            ScalarStyle::Literal => {
                if let Some(loc) = self.loc_in_literal(pos, value, offset) {
                    return loc;
                }
            }
            ScalarStyle::Folded => {}
        }
        self.search_after(pos, &value[offset..])
            .unwrap_or_else(|| self.loc(pos))
    }

    /// Literal blocks keep their lines. The parser puts a block scalar at
    /// its first content character (after leading empty lines), so value
    /// line `k` is source line `pos.line + k - leading_empty`, starting at
    /// column `pos.col`.
    fn loc_in_literal(&self, pos: Pos, value: &str, offset: usize) -> Option<Loc> {
        let prefix = &value[..offset];
        let leading = value.len() - value.trim_start_matches('\n').len();
        let k = prefix.matches('\n').count();
        let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
        let line_end = value[line_start..]
            .find('\n')
            .map_or(value.len(), |i| line_start + i);
        let value_line = &value[line_start..line_end];
        let line = pos.line + k.checked_sub(leading)?;
        let src_line = self.text.lines().nth(line.checked_sub(1)?)?;
        let content: String = src_line.chars().skip(pos.col).collect();
        if content != value_line {
            return None;
        }
        let col0 = pos.col + value[line_start..offset].chars().count();
        Some(self.loc_line_col(line, col0))
    }

    /// Finds the text at the error (up to the end of its line) in the
    /// source after `pos`.
    fn search_after(&self, pos: Pos, rest: &str) -> Option<Loc> {
        let needle: String = rest.chars().take_while(|&c| c != '\n').take(40).collect();
        if needle.trim().is_empty() {
            return None;
        }
        let from = self.byte_of_char(pos.index)?;
        let found = from + self.text[from..].find(&needle)?;
        Some(self.loc_of_byte(found))
    }

    /// The location of a byte offset into the whole text.
    pub fn loc_of_byte(&self, byte: usize) -> Loc {
        let byte = floor_char_boundary(&self.text, byte);
        let before = &self.text[..byte];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        self.loc_line_col(line, before[line_start..].chars().count())
    }

    fn byte_of_char(&self, index: usize) -> Option<usize> {
        if index == self.text.chars().count() {
            return Some(self.text.len());
        }
        self.text.char_indices().nth(index).map(|(b, _)| b)
    }
}

/// The largest char boundary `<= i` (str::floor_char_boundary is unstable).
pub(crate) fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: usize, col: usize, index: usize) -> Pos {
        Pos { line, col, index }
    }

    #[test]
    fn plain_scalar_offset_is_exact() {
        let s = Source::new("f.yaml", "a: hello ${{x}}\n");
        let l = s.loc_in(pos(1, 3, 3), ScalarStyle::Plain, "hello ${{x}}", 6);
        assert_eq!((l.line, l.col), (1, 10));
    }

    #[test]
    fn quoted_scalar_skips_the_quote() {
        let s = Source::new("f.yaml", "a: 'hi ${{x}}'\n");
        let l = s.loc_in(pos(1, 3, 3), ScalarStyle::SingleQuoted, "hi ${{x}}", 3);
        assert_eq!((l.line, l.col), (1, 8));
    }

    #[test]
    fn literal_block_maps_lines() {
        let text = "runs: |\n  echo one\n  echo ${{bad}}\n";
        let s = Source::new("f.yaml", text);
        let value = "echo one\necho ${{bad}}\n";
        let off = value.find("${{").unwrap();
        let l = s.loc_in(pos(2, 2, 10), ScalarStyle::Literal, value, off);
        assert_eq!((l.line, l.col), (3, 8));
        // Leading empty lines are skipped by the parser's position.
        let s = Source::new("f.yaml", "runs: |\n\n  a ${{x}}\n");
        let l = s.loc_in(pos(3, 2, 11), ScalarStyle::Literal, "\na ${{x}}\n", 3);
        assert_eq!((l.line, l.col), (3, 5));
    }

    #[test]
    fn folded_falls_back_to_search() {
        let text = "runs: >\n  echo one\n  echo ${{bad}}\n";
        let s = Source::new("f.yaml", text);
        let value = "echo one echo ${{bad}}\n";
        let off = value.find("${{").unwrap();
        let l = s.loc_in(pos(2, 2, 10), ScalarStyle::Folded, value, off);
        assert_eq!((l.line, l.col), (3, 8));
    }

    #[test]
    fn multibyte_text_counts_characters() {
        let s = Source::new("f.yaml", "é: ü ${{x}}\n");
        let l = s.loc_in(pos(1, 3, 3), ScalarStyle::Plain, "ü ${{x}}", "ü ".len());
        assert_eq!((l.line, l.col), (1, 6));
        assert_eq!(s.loc_of_byte(s.text.find('$').unwrap()).col, 6);
    }
}
