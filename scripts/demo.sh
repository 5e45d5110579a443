#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build vmbuild and
# its guest init, fetch the guest kernel, and run an example with a cache dir.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-init.sh
cargo build --release -p vmbuild
cp target/vmbuild-init target/release/vmbuild-init
VMBUILD=target/release/vmbuild

$VMBUILD doctor
mkdir -p cache
echo "hello from the host cache" > cache/greeting.txt
$VMBUILD run --cache-dir ./cache -- sh -c '
  echo "kernel: $(uname -r)"
  cat /var/cache/vmbuild/greeting.txt
  echo "written in the guest" > /var/cache/vmbuild/new-file
  ls /var/cache/melange/'
echo "host cache after the run (new-file was discarded: default overlay mode):"
ls cache
