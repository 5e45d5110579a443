#!/usr/bin/env bash
# Benchmark of the runners (docs/benchmarks.md): the hello and pip examples
# under qemu, bubblewrap and docker, interleaved in one `vmbuild bench
# runners` run. The pip example installs from a local index with no added
# latency (each build is cold: no --cache-dir), so what differs between
# rows is the runner. Needs a release build and a Docker Engine
# (scripts/dockerd.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."
VMBUILD=${VMBUILD:-target/release/vmbuild}
if ! python3 -m pip --version >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi
dir=$(mktemp -d)
python3 -m pip download --quiet --only-binary=:all: --no-deps -d "$dir/wheels" idna==3.7 packaging==24.1
python3 -m pip download --quiet --no-binary=:all: --no-deps -d "$dir/wheels" six==1.16.0
PYPI_BIND=0.0.0.0 python3 tests/e2e/fixtures/pypi_server.py "$dir/wheels" "$dir/requests.log" 0 >"$dir/port" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do [[ -s $dir/port ]] && break; sleep 0.1; done
port=$(cat "$dir/port")
$VMBUILD bench runners --runs "${RUNS:-5}" examples/hello/vmbuild.yaml examples/pip-cache/vmbuild.yaml \
    --extra=-e "--extra=PIP_INDEX_URL=http://{host}:$port/simple/" \
    --extra=-e "--extra=PIP_TRUSTED_HOST={host}"
