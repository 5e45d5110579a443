#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what it needs,
# builds the static guest init and the workspace, fetches the guest kernel
# once, then runs every test (unit tests and real-VM end-to-end tests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-init.sh
# A Docker Engine for the `--runner docker` tests: the one already running,
# else our own (data root and socket under target/dockerd/), stopped when
# this script ends however it ends.
trap 'scripts/dockerd.sh stop' EXIT
eval "$(scripts/dockerd.sh start)"
# The Rust virtiofsd, so both virtiofsd flavours are tested (QEMU's C one
# comes with qemu-system-x86). Kept in target/ between runs.
if [[ ! -x target/tools/bin/virtiofsd ]]; then
    cargo install --quiet --locked virtiofsd@1.14.0 --root target/tools
fi
export VMBUILD_TEST_RUST_VIRTIOFSD=$PWD/target/tools/bin/virtiofsd
cargo build --workspace --all-targets
# Warm the kernel/busybox/initramfs cache in one process so the parallel
# tests do not all wait on the first download (they would be correct, only slower).
target/debug/vmbuild run -- true
cargo test --workspace "$@"
# A short, fixed-time fuzz run of what the guest controls (frames and
# messages, the output unpacker) from the checked-in corpus.
scripts/fuzz.sh "${VMBUILD_FUZZ_SECONDS:-15}"
