//! docs/cache.md embeds the defaults table; it must match the code.

#[test]
fn docs_cache_md_has_the_current_defaults_table() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cache.md"))
        .expect("docs/cache.md exists");
    let table = vmbuild_cache::docs_table();
    assert!(
        doc.contains(&table),
        "docs/cache.md is out of date: regenerate its table with `cargo run -p vmbuild-cache --example docs_table`"
    );
}
