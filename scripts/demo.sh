#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed (apt), install
# vmbuild the way a user does (`cargo install`, the guest init built in), fetch the guest kernel (first run),
# build the hello pipeline in a microVM with a cache dir, then build the pip
# example twice with the same cache (virtiofs) to show the cache at work,
# then once on a "fresh runner" whose cache is imported from an OCI export.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo install --locked --path crates/vmbuild --root target/install
VMBUILD=target/install/bin/vmbuild
$VMBUILD --version

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

# A fresh CI runner: its cache dir is empty, but the cache the builds above
# made travels as an OCI export (here an OCI layout dir; a registry works the
# same with type=registry,ref=...). Exported once, imported before booting:
# the build downloads no package file.
rm -rf cache-export cache-fresh
$VMBUILD cache export ./cache --to type=local,dest=./cache-export
start=$(date +%s.%N)
$VMBUILD build examples/pip-cache/vmbuild.yaml --cache-dir ./cache-fresh --cache-mode virtiofs \
    --cache-from type=local,src=./cache-export \
    -e "PIP_INDEX_URL=$INDEX_URL" -e PIP_TRUSTED_HOST=10.0.2.2 \
    --output-dir vmbuild-out/pip-fresh-runner --log-format text
end=$(date +%s.%N)
printf 'fresh runner pip build (cache imported): %.1f s, %s package file(s) downloaded\n' \
    "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$(index_file_requests)"
