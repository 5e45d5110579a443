//! Cutting a volume's listing into chunks, one OCI layer each, so that a
//! small change re-uploads little: the cut points depend on the entries
//! around them, not on their position, so adding or changing a file
//! changes the chunk it falls in and (rarely) the next one, never all the
//! chunks after it.
//!
//! The rules, in listing order (depth first, names in byte order):
//! - a regular file of [`LARGE_FILE`] or more is a chunk of its own;
//! - a new top-level subtree starts a new chunk once the current one holds
//!   [`TOP_LEVEL_MIN`] (so `pip/` and `npm/` in one cache dir never share
//!   a chunk, but a root of tiny files is not cut per file);
//! - past [`MIN_CHUNK`], a chunk ends after an entry whose path hashes to
//!   0 modulo [`CUT_EVERY`] (content-defined: the same paths cut in the
//!   same places whatever was inserted before them);
//! - a chunk never grows past [`MAX_CHUNK`].
//!
//! Sizes count file content plus 512 bytes per entry (its tar header).

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::walk::{Entry, Kind};

/// Files this large are chunks of their own.
pub const LARGE_FILE: u64 = 4 << 20;
/// Below this, a chunk is never cut on a path hash.
pub const MIN_CHUNK: u64 = 1 << 20;
/// A chunk is cut before it passes this.
pub const MAX_CHUNK: u64 = 8 << 20;
/// A top-level subtree starts a new chunk once the chunk holds this much.
pub const TOP_LEVEL_MIN: u64 = 64 << 10;
/// Past [`MIN_CHUNK`], one path in this many ends a chunk.
pub const CUT_EVERY: u64 = 16;
/// The version of the chunking and packing rules: part of every
/// fingerprint, so changing the rules never reuses an old chunk's digest.
pub const RULES_VERSION: u32 = 1;

fn weight(e: &Entry) -> u64 {
    e.size + 512
}

fn is_large(e: &Entry) -> bool {
    e.kind == Kind::File && e.size >= LARGE_FILE
}

fn path_cut(rel: &[u8]) -> bool {
    let h = Sha256::digest(rel);
    u64::from_le_bytes(h[..8].try_into().unwrap_or_default()) % CUT_EVERY == 0
}

/// The chunks of `entries`, as ranges of it covering every entry once, in
/// order.
pub fn plan(entries: &[Entry]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0u64;
    for (i, e) in entries.iter().enumerate() {
        if i > start {
            let prev = &entries[i - 1];
            let new_top = e.top() != prev.top() && acc >= TOP_LEVEL_MIN;
            let cut = is_large(e)
                || is_large(prev)
                || new_top
                || acc + weight(e) > MAX_CHUNK
                || (acc >= MIN_CHUNK && path_cut(&prev.rel));
            if cut {
                out.push(start..i);
                start = i;
                acc = 0;
            }
        }
        acc += weight(e);
    }
    if start < entries.len() {
        out.push(start..entries.len());
    }
    out
}

/// What a chunk's bytes depend on: every entry's path, kind, mode, size,
/// times, inode and link target, the zstd `level` and [`RULES_VERSION`].
/// Equal fingerprints mean the chunk packs to the same bytes, so its
/// digest can be reused without reading the files.
pub fn fingerprint(entries: &[Entry], level: i32) -> String {
    let mut h = Sha256::new();
    h.update(RULES_VERSION.to_le_bytes());
    h.update(level.to_le_bytes());
    for e in entries {
        h.update((e.rel.len() as u64).to_le_bytes());
        h.update(&e.rel);
        let (tag, link): (u8, &[u8]) = match &e.kind {
            Kind::Dir => (0, b""),
            Kind::File => (1, b""),
            Kind::Symlink(t) => (2, t),
            Kind::HardLink(t) => (3, t),
        };
        h.update([tag]);
        h.update((link.len() as u64).to_le_bytes());
        h.update(link);
        h.update(e.mode.to_le_bytes());
        h.update(e.size.to_le_bytes());
        for s in e.stamp {
            h.update(s.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, size: u64) -> Entry {
        Entry {
            rel: rel.as_bytes().to_vec(),
            kind: Kind::File,
            mode: 0o644,
            size,
            mtime: 0,
            stamp: [0; 5],
            nlink: 1,
        }
    }

    fn covers(plan: &[Range<usize>], n: usize) {
        let mut next = 0;
        for r in plan {
            assert_eq!(r.start, next);
            assert!(r.end > r.start);
            next = r.end;
        }
        assert_eq!(next, n);
    }

    #[test]
    fn large_files_stand_alone_and_chunks_stay_under_the_maximum() {
        let mut es = vec![file("a", 10), file("big", LARGE_FILE), file("c", 10)];
        for i in 0..3000 {
            es.push(file(&format!("d/{i:05}"), 8 << 10));
        }
        let p = plan(&es);
        covers(&p, es.len());
        assert_eq!(p[0], 0..1);
        assert_eq!(p[1], 1..2, "the large file alone");
        for r in &p {
            let w: u64 = es[r.clone()].iter().map(weight).sum();
            assert!(w <= MAX_CHUNK || r.len() == 1, "{r:?} weighs {w}");
        }
        // 24 MiB of small files: cut on path hashes, several chunks.
        assert!(p.len() > 4, "{}", p.len());
    }

    #[test]
    fn top_level_subtrees_start_new_chunks() {
        let mut es = Vec::new();
        for i in 0..20 {
            es.push(file(&format!("npm/{i}"), 8 << 10));
        }
        for i in 0..20 {
            es.push(file(&format!("pip/{i}"), 8 << 10));
        }
        let p = plan(&es);
        assert_eq!(p, vec![0..20, 20..40]);
        // A root of tiny files is one chunk, not one per file.
        let tiny: Vec<Entry> = (0..100).map(|i| file(&format!("f{i}"), 10)).collect();
        assert_eq!(plan(&tiny), vec![0..100]);
    }

    #[test]
    fn an_insert_changes_only_nearby_chunks() {
        let mut es: Vec<Entry> = (0..4000)
            .map(|i| file(&format!("d/{i:05}"), 4 << 10))
            .collect();
        let before: Vec<String> = plan(&es)
            .into_iter()
            .map(|r| fingerprint(&es[r], 3))
            .collect();
        es.insert(1234, file("d/01233a", 4 << 10));
        let after: Vec<String> = plan(&es)
            .into_iter()
            .map(|r| fingerprint(&es[r], 3))
            .collect();
        let changed = after.iter().filter(|f| !before.contains(f)).count();
        assert!(before.len() > 5);
        assert!(changed <= 2, "{changed} of {} chunks changed", after.len());
    }

    #[test]
    fn fingerprints_see_every_field() {
        let base = vec![file("a", 1)];
        let f = fingerprint(&base, 3);
        assert_eq!(f, fingerprint(&base.clone(), 3));
        assert_ne!(f, fingerprint(&base, 4));
        let mut e = base.clone();
        e[0].stamp[1] = 1; // ctime: a rewrite that kept size and mtime
        assert_ne!(f, fingerprint(&e, 3));
        let mut e = base.clone();
        e[0].kind = Kind::Symlink(b"x".to_vec());
        assert_ne!(f, fingerprint(&e, 3));
        let mut e = base;
        e[0].mode = 0o600;
        assert_ne!(f, fingerprint(&e, 3));
    }
}
