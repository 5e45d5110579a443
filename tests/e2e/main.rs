//! End-to-end tests: they run the real `vmbuild` binary, which boots real
//! microVMs (TCG here, KVM where usable). `scripts/test.sh` installs what
//! they need (QEMU, the guest init) first; nothing here is skipped.

mod build;
mod cache;
mod cache_cmd;
mod cache_coherence;
mod cache_locks;
mod cache_transfer;
mod confinement;
mod docker;
mod env_images;
mod harness;
mod melange;
mod validate;
mod network;
mod non_root;
mod oom;
#[path = "../../crates/transfer/tests/support/mod.rs"]
mod registry;
mod rename_dir;
mod run_basics;
mod run_failures;
mod scratch;
mod tamper;
mod vm_failures;
mod volumes;
