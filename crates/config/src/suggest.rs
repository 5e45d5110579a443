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
        let limit = (input.chars().count().max(c.chars().count()) / 3).max(1);
        // Only a strictly closer candidate can win: past that bound the
        // distance is not computed out (thousands of candidates from an
        // index of Debian's ~60,000 names).
        let bound = best.map_or(limit, |(bd, _)| limit.min(bd.saturating_sub(1)));
        let d = if cl == lower {
            Some(0)
        } else if prefix {
            Some(1)
        } else {
            distance_within(&lower, &cl, bound)
        };
        if let Some(d) = d.filter(|d| *d <= limit && best.is_none_or(|(bd, _)| *d < bd)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// The optimal-string-alignment distance (Levenshtein plus adjacent
/// swaps) of `a` and `b` if it is at most `max`, else `None` — found
/// without filling the whole table when it is larger: the lengths alone
/// may rule it out, and two rows past `max` end the search (no later cell
/// can come back under it).
fn distance_within(a: &str, b: &str, max: usize) -> Option<usize> {
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la.abs_diff(lb) > max {
        return None;
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        d[i * w] = i;
        let mut row_min = d[i * w];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
            row_min = row_min.min(v);
        }
        // The transposition reaches back two rows, so stop only when this
        // row and the one before are both past `max`.
        if row_min > max && (i < 2 || d[(i - 1) * w..i * w].iter().all(|v| *v > max)) {
            return None;
        }
    }
    Some(d[a.len() * w + b.len()]).filter(|v| *v <= max)
}

/// The whole optimal-string-alignment distance: no bound, no cut-off.
#[cfg(test)]
fn distance(a: &str, b: &str) -> usize {
    distance_within(a, b, usize::MAX).unwrap_or(usize::MAX)
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

    #[test]
    fn the_bounded_distance_agrees_with_the_full_one() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "kitten",
            "sitting",
            "libssl-dev",
            "libssl3",
            "openssl-dev",
            "python3-pip",
            "py3-pip",
            "python-3.12",
            "build-base",
            "abcdef",
            "badcfe",
            "fedcba",
        ];
        for a in words {
            for b in words {
                let full = distance(a, b);
                for max in 0..8 {
                    let want = (full <= max).then_some(full);
                    assert_eq!(distance_within(a, b, max), want, "{a:?} {b:?} max {max}");
                }
            }
        }
    }
}
