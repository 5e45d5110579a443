#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed (apt), build
# vmbuild and its static guest init, fetch the guest kernel (first run), and
# build the example pipeline in a microVM with a cache dir.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-init.sh >/dev/null
cargo build --release -p vmbuild
cp target/vmbuild-init target/release/vmbuild-init
VMBUILD=target/release/vmbuild

$VMBUILD doctor
mkdir -p cache
$VMBUILD build examples/hello/vmbuild.yaml --runner qemu --cache-dir ./cache --output-dir vmbuild-out/hello
echo
echo "outputs in vmbuild-out/hello:"
ls -lR vmbuild-out/hello
vmbuild-out/hello/bin/hello
