#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what it needs,
# builds the workspace (the static guest init is built into vmbuild by
# crates/embedded-init's build script, as for a user's `cargo install`),
# fetches the guest kernel once, then runs every test (unit tests and
# real-VM end-to-end tests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
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
# cargo-deb for the .deb test (scripts/deb.sh would install it too, but
# not in the middle of the VM tests).
if [[ ! -x target/tools/bin/cargo-deb ]]; then
    cargo install --quiet --locked cargo-deb@3.8.0 --root target/tools
fi
# The release build a user's `cargo install --locked --path crates/vmbuild`
# makes (it uses this workspace's target/): built here, before any VM
# test runs, so the install and .deb tests only copy it instead of
# compiling beside booting VMs.
cargo build --release --locked -p vmbuild
cargo build --workspace --all-targets
# Warm the kernel/busybox/initramfs cache in one process so the parallel
# tests do not all wait on the first download (they would be correct, only slower).
target/debug/vmbuild run -- true
cargo test --workspace "$@"
# A short, fixed-time fuzz run of what the guest controls (frames and
# messages, the output unpacker) from the checked-in corpus.
scripts/fuzz.sh "${VMBUILD_FUZZ_SECONDS:-15}"
