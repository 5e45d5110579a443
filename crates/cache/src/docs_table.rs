//! The Markdown table of cache defaults that `docs/cache.md` carries.

use vmbuild_proto::{GUEST_CACHE_DIR, GUEST_HOME};

use crate::env_defaults::{cache_env_defaults, symlink_defaults};

/// Renders every environment and symlink default (for the real guest paths)
/// as a Markdown table: `| Tool | Variable or path | Default | Why |`.
pub fn docs_table() -> String {
    let mut out = String::from(
        "| Tool | Variable or path | Default | Why |\n|------|------------------|---------|-----|\n",
    );
    for e in cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME) {
        let why = if e.set_by.is_empty() {
            e.why.to_owned()
        } else {
            format!(
                "{}; not set when {} is set",
                e.why,
                e.set_by
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        };
        row(
            &mut out,
            e.tool,
            &format!("`{}`", e.name),
            &format!("`{}`", e.value),
            &why,
        );
    }
    for l in symlink_defaults(GUEST_CACHE_DIR, GUEST_HOME) {
        let why = match l.skip_if_env {
            Some(var) => format!("{}; not made when `{var}` is set", l.why),
            None => l.why.to_owned(),
        };
        row(
            &mut out,
            l.tool,
            &format!("`{}` (symlink, made if missing)", l.link),
            &format!("→ `{}`", l.target),
            &why,
        );
    }
    out
}

fn row(out: &mut String, tool: &str, what: &str, default: &str, why: &str) {
    let cell = |s: &str| s.replace('|', "\\|");
    out.push_str(&format!(
        "| {} | {} | {} | {} |\n",
        cell(tool),
        cell(what),
        cell(default),
        cell(why)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_a_row_per_default_and_well_formed_rows() {
        let t = docs_table();
        let lines: Vec<_> = t.lines().collect();
        let n = cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME).len()
            + symlink_defaults(GUEST_CACHE_DIR, GUEST_HOME).len();
        assert_eq!(lines.len(), 2 + n);
        for l in &lines {
            assert!(l.starts_with("| ") || l.starts_with("|-"), "{l}");
            // 5 unescaped pipes = 4 columns.
            let pipes = l.matches('|').count() - l.matches("\\|").count();
            assert_eq!(pipes, 5, "{l}");
        }
    }

    #[test]
    fn mentions_every_variable_and_path() {
        let t = docs_table();
        for e in cache_env_defaults(GUEST_CACHE_DIR, GUEST_HOME) {
            assert!(t.contains(&format!("`{}`", e.name)), "{}", e.name);
            assert!(t.contains(&format!("`{}`", e.value)), "{}", e.value);
        }
        for l in symlink_defaults(GUEST_CACHE_DIR, GUEST_HOME) {
            assert!(t.contains(&l.link) && t.contains(&l.target), "{}", l.link);
        }
        assert!(t.contains("| pip | `PIP_CACHE_DIR` | `/var/cache/vmbuild/pip` |"));
        assert!(t.contains("not made when `CARGO_HOME` is set"));
    }
}
