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
echo "image build: $(secs "$t0" "$t1") s"
echo "image: $((image_bytes >> 20)) MiB packed vs $((rootfs_bytes >> 20)) MiB unpacked rootfs"
echo "warm/cold: $(awk -v w="${took[warm]}" -v c="${took[cold]}" 'BEGIN { printf "%.2f", w / c }')"
