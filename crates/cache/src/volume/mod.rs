//! Named cache volumes (`--cache id=NAME,target=PATH,...`): BuildKit's
//! cache mounts for vmbuild. A volume is a directory under the cache root,
//! mounted at its own guest path like `--cache-dir` (read-only 9p + overlay,
//! or virtiofs), and shared between concurrent builds on one host as its
//! `sharing=` says, with kernel-released `flock`s (a crashed holder never
//! leaves a volume locked).

mod lock;
mod root;
mod spec;

pub use lock::{acquire, holder_pid, Acquired, HeldVolume};
pub use root::{cache_root, CACHE_ROOT_ENV};
pub use spec::{
    bad_id, check_target, parse_mode, parse_persist, parse_sharing, valid_id, Persist, Sharing,
    SpecError, VolumeSource, VolumeSpec,
};
