#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed (apt), build
# vmbuild and its static guest init, fetch the guest kernel (first run),
# build the hello pipeline in a microVM with a cache dir, then build the pip
# example twice with the same cache (virtiofs) to show the cache at work.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-init.sh >/dev/null
cargo build --release -p vmbuild
cp target/vmbuild-init target/release/vmbuild-init
VMBUILD=target/release/vmbuild

$VMBUILD doctor
mkdir -p cache
$VMBUILD build examples/hello/vmbuild.yaml --runner qemu --cache-dir ./cache \
    --output-dir vmbuild-out/hello --log-format text
vmbuild-out/hello/bin/hello

# The pip example: its environment image (python3-pip) is built once, then
# two builds with the same cache. The second downloads no package file.
. scripts/lib/local-index.sh
start_local_index
$VMBUILD image build examples/pip-cache/vmbuild.yaml
rm -rf cache/pip
for run in first second; do
    start=$(date +%s.%N)
    $VMBUILD build examples/pip-cache/vmbuild.yaml --cache-dir ./cache --cache-mode virtiofs \
        -e "PIP_INDEX_URL=$INDEX_URL" -e PIP_TRUSTED_HOST=10.0.2.2 \
        --output-dir "vmbuild-out/pip-$run" --log-format text
    end=$(date +%s.%N)
    printf '%s pip build: %.1f s, %s package file(s) downloaded\n' \
        "$run" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$(index_file_requests)"
done
