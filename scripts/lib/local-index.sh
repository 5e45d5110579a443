# Sourced by demo.sh and bench-pip.sh: serve three real package files
# (downloaded from PyPI on the host) as a PEP 503 index on the host's
# loopback, with 1.5 s latency per package file to stand in for a remote
# index. The guest reaches it at 10.0.2.2. Sets INDEX_URL and INDEX_LOG; stops on exit.

start_local_index() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    fi
    INDEX_DIR=$(mktemp -d)
    # Two wheels, and six as an sdist: the first build has to build its
    # wheel, which pip keeps in the cache for the next build.
    python3 -m pip download --quiet --only-binary=:all: --no-deps -d "$INDEX_DIR/wheels" \
        idna==3.7 packaging==24.1
    python3 -m pip download --quiet --no-binary=:all: --no-deps -d "$INDEX_DIR/wheels" \
        six==1.16.0
    INDEX_LOG=$INDEX_DIR/requests.log
    python3 tests/e2e/fixtures/pypi_server.py "$INDEX_DIR/wheels" "$INDEX_LOG" 1.5 >"$INDEX_DIR/port" &
    INDEX_PID=$!
    trap 'kill $INDEX_PID 2>/dev/null; rm -rf "$INDEX_DIR"' EXIT
    for _ in $(seq 50); do [[ -s $INDEX_DIR/port ]] && break; sleep 0.1; done
    INDEX_URL="http://10.0.2.2:$(cat "$INDEX_DIR/port")/simple/"
}

# Package files fetched since the last call.
index_file_requests() {
    local n=0
    [[ -f $INDEX_LOG ]] && n=$(grep -c /files/ "$INDEX_LOG" || true)
    rm -f "$INDEX_LOG"
    echo "$n"
}
