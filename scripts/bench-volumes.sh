#!/usr/bin/env bash
# Benchmark of cache volumes (docs/benchmarks.md), everything side by side
# in one run on this machine:
#  1. the commit of persist=on-success (overlay mode) against virtiofs for a
#     command that fills a fresh volume with 2,000 small files and one
#     100 MiB file: wall time of each, and how long the commit itself took
#     (from the JSON events: the command's end to the "committed" note);
#  2. the pip example's warm build with pip's cache as a volume: overlay +
#     persist=on-success against virtiofs.
# Needs a release build (cargo build --release -p vmbuild).
set -euo pipefail
cd "$(dirname "$0")/.."
VMBUILD=${VMBUILD:-target/release/vmbuild}
ROUNDS=${ROUNDS:-3}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

FILL='mkdir -p /v/d; i=0; while [ $i -lt 2000 ]; do echo "file $i" > /v/d/f$i; i=$((i+1)); done; head -c 104857600 /dev/zero > /v/big'

declare -a ov vf commit
for r in $(seq "$ROUNDS"); do
    s=$(now)
    $VMBUILD run --log-format json --cache-root "$root" \
        --cache "id=ov$r,target=/v,persist=on-success" -- sh -c "$FILL" 2>"$root/ov.json"
    ov+=("$(secs "$s" "$(now)")")
    commit+=("$(python3 - "$root/ov.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
end = next(e["time_ms"] for e in ev if e["event"] == "step_finished")
done = next(e["time_ms"] for e in ev if e["event"] == "note" and ": committed " in e["text"])
print(f"{(done - end) / 1000:.2f}")
PY
)")
    s=$(now)
    $VMBUILD run --cache-mode virtiofs --cache-root "$root" \
        --cache "id=vf$r,target=/v" -- sh -c "$FILL" 2>/dev/null
    vf+=("$(secs "$s" "$(now)")")
    cmp -s <(cd "$root/ov$r" && find . -type f | sort | xargs cat | sha256sum) \
           <(cd "$root/vf$r" && find . -type f | sort | xargs cat | sha256sum) \
        || { echo "round $r: committed volume differs from the virtiofs one" >&2; exit 1; }
done
m_ov=$(printf '%s\n' "${ov[@]}" | median)
m_vf=$(printf '%s\n' "${vf[@]}" | median)
m_c=$(printf '%s\n' "${commit[@]}" | median)
echo "fill 2000 files + 100 MiB, $ROUNDS rounds interleaved (medians):"
echo "  overlay + persist=on-success: ${m_ov} s (commit ${m_c} s: $(awk -v c="$m_c" -v t="$m_ov" 'BEGIN { printf "%.0f%%", 100 * c / t }') of the run)"
echo "  virtiofs:                     ${m_vf} s"
echo "  on-success / virtiofs: $(awk -v a="$m_ov" -v b="$m_vf" 'BEGIN { printf "%.2fx", a / b }')"

. scripts/lib/local-index.sh
start_local_index
commit_secs() { # JSON-EVENTS-FILE: seconds from the last step's end to the commit note
    python3 - "$1" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
end = [e["time_ms"] for e in ev if e["event"] == "step_finished"][-1]
done = next((e["time_ms"] for e in ev if e["event"] == "note" and ": committed " in e["text"]), end)
print(f"{(done - end) / 1000:.2f}")
PY
}
pip_build() { # MODE-ARGS... ; prints seconds (events in $root/pip.json)
    local s; s=$(now)
    $VMBUILD build examples/pip-cache/vmbuild.yaml --cache-root "$root" \
        -e "PIP_INDEX_URL=$INDEX_URL" -e PIP_TRUSTED_HOST=10.0.2.2 -e PIP_CACHE_DIR=/pipcache \
        --output-dir "$root/out" --log-format json "$@" 2>"$root/pip.json"
    secs "$s" "$(now)"
}
# Fill both caches (cold), then time the warm builds in turn.
pip_build --cache id=pip-ov,target=/pipcache,persist=on-success >/dev/null
pip_build --cache-mode virtiofs --cache id=pip-vf,target=/pipcache >/dev/null
index_file_requests >/dev/null
declare -a wov wvf wc
for r in $(seq "$ROUNDS"); do
    wov+=("$(pip_build --cache id=pip-ov,target=/pipcache,persist=on-success)")
    wc+=("$(commit_secs "$root/pip.json")")
    wvf+=("$(pip_build --cache-mode virtiofs --cache id=pip-vf,target=/pipcache)")
done
files=$(index_file_requests)
m_wov=$(printf '%s\n' "${wov[@]}" | median)
m_wvf=$(printf '%s\n' "${wvf[@]}" | median)
echo "pip example, warm, cache as a volume ($ROUNDS rounds interleaved, medians; $files package file(s) downloaded by the warm builds):"
m_wc=$(printf '%s\n' "${wc[@]}" | median)
echo "  overlay + persist=on-success: ${m_wov} s (commit ${m_wc} s: $(awk -v c="$m_wc" -v t="$m_wov" 'BEGIN { printf "%.0f%%", 100 * c / t }') of the build)"
echo "  virtiofs:                     ${m_wvf} s"
echo "  on-success / virtiofs: $(awk -v a="$m_wov" -v b="$m_wvf" 'BEGIN { printf "%.2fx", a / b }')"
