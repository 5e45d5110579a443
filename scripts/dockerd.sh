#!/usr/bin/env bash
# A Docker Engine of the test suite's own, for the `--runner docker` tests:
#   scripts/dockerd.sh start   prints `export DOCKER_HOST=...` for a usable engine:
#                              the one DOCKER_HOST (or /var/run/docker.sock) already
#                              answers on, else a dockerd started here with its own
#                              data root, exec root and socket under target/dockerd/
#   scripts/dockerd.sh stop    stops the dockerd this script started (by its pid file),
#                              nothing else
# Needs root (dockerd does) and the docker.io package (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
base=$PWD/target/dockerd
sock=$base/docker.sock
pidfile=$base/dockerd.pid

answers() { # $1: unix socket path
    [[ -S $1 ]] && curl -fsS --max-time 2 --unix-socket "$1" http://localhost/_ping >/dev/null 2>&1
}

case "${1:-}" in
start)
    existing=${DOCKER_HOST:-unix:///var/run/docker.sock}
    if [[ $existing == unix://* ]] && answers "${existing#unix://}"; then
        echo "export DOCKER_HOST=$existing"
        exit 0
    fi
    if answers "$sock"; then
        echo "export DOCKER_HOST=unix://$sock"
        exit 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd.sh: dockerd not found; run scripts/setup.sh (apt-get install docker.io)" >&2; exit 1; }
    mkdir -p "$base/root" "$base/exec"
    # setsid: its own session, so a terminal's Ctrl-C during the tests does
    # not reach it; the pid file is how `stop` finds it.
    setsid dockerd --data-root "$base/root" --exec-root "$base/exec" \
        --pidfile "$pidfile" -H "unix://$sock" >"$base/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 150); do
        answers "$sock" && { echo "export DOCKER_HOST=unix://$sock"; exit 0; }
        sleep 0.2
    done
    echo "dockerd.sh: dockerd did not answer on $sock within 30 s; see $base/dockerd.log" >&2
    tail -5 "$base/dockerd.log" >&2 || true
    exit 1
    ;;
stop)
    [[ -f $pidfile ]] || exit 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || exit 0
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    ;;
*)
    echo "usage: scripts/dockerd.sh start|stop" >&2
    exit 2
    ;;
esac
