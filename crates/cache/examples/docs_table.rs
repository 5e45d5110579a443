//! Prints the cache defaults table that docs/cache.md embeds:
//! `cargo run -p vmbuild-cache --example docs_table`.
fn main() {
    print!("{}", vmbuild_cache::docs_table());
}
