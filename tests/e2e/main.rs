//! End-to-end tests: they run the real `vmbuild` binary, which boots real
//! microVMs (TCG here, KVM where usable). `scripts/test.sh` installs what
//! they need (QEMU, the release build the install tests copy) first; nothing here is skipped.

#[macro_use]
mod harness;
mod build;
mod cache;
mod cache_cmd;
mod cache_coherence;
mod cache_locks;
mod cache_transfer;
mod ci_recipes;
mod config_show;
mod confinement;
mod docker;
mod env_images;
mod install;
mod interactive;
mod melange;
mod melange_families;
mod melange_toolchains;
mod network;
mod non_root;
mod oom;
mod progress;
#[path = "../../crates/transfer/tests/support/mod.rs"]
mod registry;
mod rename_dir;
mod run_basics;
mod run_failures;
mod scratch;
mod tamper;
mod validate;
mod vm_failures;
mod volumes;
mod warm_start;
