//! Cache export and import (`--cache-to` / `--cache-from`, `vmbuild cache
//! export|import`): cache volumes as content-addressed OCI artifacts in a
//! registry or an OCI image layout directory, so a fleet of ephemeral CI
//! runners shares one cache.
//!
//! Data flow, export: [`walk`] lists a volume → [`chunk`] cuts it →
//! [`pack`] writes each new chunk as deterministic tar+zstd → a
//! [`store::Store`] ([`registry::Registry`] or [`layout::Layout`]) gets the
//! blobs it lacks, then the [`format`] config and manifest. Import:
//! the store's manifest → [`format`] checks it → each chunk is verified,
//! decompressed and unpacked by the hardened unpacker into a staging
//! directory that replaces the volume. [`records`] remember chunk digests
//! and sync state per volume. The file format is in `docs/cache.md`.

pub mod auth;
pub mod chunk;
mod error;
pub mod export;
pub mod format;
pub mod import;
pub mod layout;
pub mod meter;
pub mod pack;
pub mod records;
pub mod registry;
pub mod store;
pub mod target;
pub mod walk;

pub use error::TransferError;
pub use export::{export, ExportOptions, ExportSummary, Source};
pub use import::{import, read_export, Dest, Outcome};
pub use meter::{Meter, Reading};
pub use store::Store;
pub use target::{CacheRef, Direction, Location};

/// Opens the store a spec names: for writing (`--cache-to`, a layout dir is
/// created) or reading. `mount_from`: registry references whose blobs a
/// push may mount instead of uploading (the `--cache-from` refs).
pub fn open(
    spec: &CacheRef,
    dir: Direction,
    mount_from: &[String],
) -> Result<Box<dyn Store>, TransferError> {
    Ok(match &spec.location {
        Location::Registry {
            reference,
            plain_http,
            ca_file,
        } => {
            let mut r = registry::Registry::new(reference, *plain_http, ca_file.as_ref())?;
            r.mount_from(mount_from);
            Box::new(r)
        }
        Location::Local { dir: path, tag } => match dir {
            Direction::To => Box::new(layout::Layout::create(path, tag)?),
            Direction::From => Box::new(layout::Layout::open(path, tag)),
        },
    })
}
