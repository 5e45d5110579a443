//! "Did you mean ...?": the closest candidate by edit distance.

/// The candidate closest to `input`, if it is close enough to be a likely
/// typo: at most a third of the longer word's length in edits (minimum 1),
/// a case-insensitive match, or one being a prefix of the other (at least
/// 3 characters: `working-dir` -> `working-directory`).
pub(crate) fn closest<'a, I>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = input.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let cl = c.to_lowercase();
        let prefix =
            lower.len().min(cl.len()) >= 3 && (cl.starts_with(&lower) || lower.starts_with(&cl));
        let d = if cl == lower {
            0
        } else if prefix {
            1
        } else {
            distance(&lower, &cl)
        };
        let limit = (input.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent swaps).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        let keys = ["package", "environment", "vars", "pipeline"];
        assert_eq!(closest("pipline", keys).as_deref(), Some("pipeline"));
        assert_eq!(closest("enviroment", keys).as_deref(), Some("environment"));
        assert_eq!(closest("Package", keys).as_deref(), Some("package"));
        assert_eq!(closest("vras", keys).as_deref(), Some("vars"));
        assert_eq!(closest("zzzzzz", keys), None);
        assert_eq!(closest("x", ["y"]).as_deref(), Some("y"));
        assert_eq!(
            closest("working-dir", ["with", "working-directory"]).as_deref(),
            Some("working-directory")
        );
        assert_eq!(closest("wo", ["working-directory"]), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("", "abc"), 3);
    }
}
