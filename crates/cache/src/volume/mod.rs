//! Named cache volumes (`--cache id=NAME,target=PATH,...`): BuildKit's
//! cache mounts for vmbuild. A volume is a directory under the cache root,
//! mounted at its own guest path like `--cache-dir` (read-only 9p + overlay,
//! or virtiofs), and shared between concurrent builds on one host as its
//! `sharing=` says, with kernel-released `flock`s (a crashed holder never
//! leaves a volume locked). `vmbuild cache` lists, measures, clears,
//! removes and prunes them ([`list_volumes`], [`du_entries`],
//! [`clear_dir`], [`remove_volume`], [`prune`]).

mod admin;
mod list;
mod lock;
mod plain;
mod root;
mod spec;
mod usage;

pub use admin::{check_subpath, clear_dir, lock_exclusive, prune, remove_volume, Cleared, Pruned};
pub use list::{find_volume, list_volumes, parse_volume_name, read_volume, Holder, Volume};
pub use lock::{acquire, flocks_in_proc_locks, flocks_on, holder_pid, Acquired, HeldVolume};
pub use plain::{plain_entries, prune_plain, PlainEntry};
pub use root::{cache_root, CACHE_ROOT_ENV};
pub use spec::{
    bad_id, check_target, parse_mode, parse_persist, parse_sharing, valid_id, Persist, Sharing,
    SpecError, VolumeSource, VolumeSpec,
};
pub use usage::{du_entries, human_size, usage, DuEntry, Usage};
