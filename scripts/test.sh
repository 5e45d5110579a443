#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what it needs,
# builds the static guest init and the workspace, fetches the guest kernel
# once, then runs every test (unit tests and real-VM end-to-end tests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-init.sh
cargo build --workspace --all-targets
# Warm the kernel/busybox/initramfs cache in one process so the parallel
# tests do not all wait on the first download (they would be correct, only slower).
target/debug/vmbuild run -- true
cargo test --workspace "$@"
