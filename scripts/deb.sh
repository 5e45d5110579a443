#!/usr/bin/env bash
# Builds the Debian package of vmbuild with cargo-deb and prints its path:
# the binary in /usr/bin, a copy of the guest init it carries in
# /usr/lib/vmbuild, man pages, bash/zsh/fish completions, the pipeline JSON
# Schema and the docs. Usage: scripts/deb.sh [OUTPUT_DIR] (default
# target/debian). cargo-deb is installed into target/tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deb_version=3.8.0
tools=$PWD/target/tools
if ! command -v cargo-deb >/dev/null 2>&1 && [[ ! -x $tools/bin/cargo-deb ]]; then
    echo "deb: installing cargo-deb $cargo_deb_version into $tools" >&2
    cargo install --quiet --locked "cargo-deb@$cargo_deb_version" --root "$tools"
fi
export PATH=$tools/bin:$PATH

out=${1:-target/debian}
mkdir -p "$out"
cargo build --release --locked -p vmbuild >&2
# Man pages, completions, the init and the schema, written by the binary
# itself so they match it (paths as in crates/vmbuild/Cargo.toml).
rm -rf target/deb-assets
target/release/vmbuild assets target/deb-assets
cargo deb --locked --no-build -p vmbuild --output "$out" --quiet
