#!/usr/bin/env bash
# Benchmark of the pip example (docs/benchmarks.md): environment image build
# time and size, then cold- and warm-cache builds (virtiofs) measured in one
# run, with their ratio. Needs a release build (scripts/demo.sh makes one).
set -euo pipefail
cd "$(dirname "$0")/.."
VMBUILD=${VMBUILD:-target/release/vmbuild}
. scripts/lib/local-index.sh
start_local_index

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

key=$($VMBUILD image ls | awk '/python3-pip/ {print $1; exit}')
[[ -n $key ]] && $VMBUILD image rm "$key" >/dev/null
t0=$(now)
$VMBUILD image build examples/pip-cache/vmbuild.yaml
t1=$(now)
image_dir=$(dirname "$($VMBUILD image build examples/pip-cache/vmbuild.yaml | awk '{print $2}')")
rootfs_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs_bytes"])' "$image_dir/image.json")
image_bytes=$(stat -c %s "$image_dir"/rootfs.*)

cache=$(mktemp -d)
declare -A took
for run in cold warm; do
    s=$(now)
    $VMBUILD build examples/pip-cache/vmbuild.yaml --cache-dir "$cache" --cache-mode virtiofs \
        -e "PIP_INDEX_URL=$INDEX_URL" -e PIP_TRUSTED_HOST=10.0.2.2 \
        --output-dir "$cache/out-$run" --log-format json 2>/dev/null
    took[$run]=$(secs "$s" "$(now)")
    echo "$run build: ${took[$run]} s, $(index_file_requests) package file(s) downloaded"
done
rm -rf "$cache"

# Warm start (docs/warm-start.md): the same build in overlay mode, booted
# (--cold) and restored from a snapshot, interleaved, 3 each, after one
# untimed build that saves the snapshot.
cache=$(mktemp -d)
overlay_build() {
    $VMBUILD build examples/pip-cache/vmbuild.yaml --cache-dir "$cache" "$@" \
        -e "PIP_INDEX_URL=$INDEX_URL" -e PIP_TRUSTED_HOST=10.0.2.2 \
        --output-dir "$cache/out" --log-format json 2>/dev/null
}
overlay_build
booted=() restored=()
for _ in 1 2 3; do
    s=$(now); overlay_build --cold; booted+=("$(secs "$s" "$(now)")")
    s=$(now); overlay_build; restored+=("$(secs "$s" "$(now)")")
done
rm -rf "$cache"
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
echo "overlay build, booted: ${booted[*]} s (median $(median "${booted[@]}"))"
echo "overlay build, restored: ${restored[*]} s (median $(median "${restored[@]}"))"
echo "restored/booted: $(awk -v w="$(median "${restored[@]}")" -v c="$(median "${booted[@]}")" 'BEGIN { printf "%.2f", w / c }')"
echo "image build: $(secs "$t0" "$t1") s"
echo "image: $((image_bytes >> 20)) MiB packed vs $((rootfs_bytes >> 20)) MiB unpacked rootfs"
echo "warm/cold: $(awk -v w="${took[warm]}" -v c="${took[cold]}" 'BEGIN { printf "%.2f", w / c }')"
