//! The one error type of cache export and import. Every message is one
//! line that names the place (registry, directory, volume) and, where it
//! can, what to do.

use std::path::PathBuf;

/// A failed export or import.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Spec(#[from] crate::target::SpecError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The registry refused or failed a request.
    #[error("registry {registry}: {why}")]
    Registry { registry: String, why: String },
    /// The registry asked for credentials and refused the ones we had.
    #[error("registry {registry} refused {how}: log in with `docker login {registry}` (or set VMBUILD_REGISTRY_USER and VMBUILD_REGISTRY_PASSWORD)")]
    Unauthorized { registry: String, how: String },
    /// No export at that reference or tag.
    #[error("{place}: no cache export there yet")]
    NotFound { place: String },
    /// What was read back is not a well-formed export.
    #[error("{place}: {why}")]
    Format { place: String, why: String },
    /// A blob's bytes do not hash to its digest.
    #[error("{place}: blob {digest} is corrupt ({why}); the volume was left unchanged")]
    Corrupt {
        place: String,
        digest: String,
        why: String,
    },
    /// A chunk's archive was refused by the hardened unpacker.
    #[error("{place}: volume {volume}: {source}; the volume was left unchanged")]
    Unpack {
        place: String,
        volume: String,
        #[source]
        source: vmbuild_runner::export::ExportError,
    },
    /// The export does not have a volume that was asked for by name.
    #[error("{place}: has no volume {volume} (it has: {have})")]
    NoSuchVolume {
        place: String,
        volume: String,
        have: String,
    },
    #[error("{what} is not a directory: {path}")]
    NotADirectory { what: String, path: PathBuf },
    /// The volume's lock could not be taken (the cache crate's words).
    #[error("{0}")]
    Lock(String),
    /// Ctrl-C or a timeout.
    #[error("cache transfer interrupted")]
    Interrupted,
}

impl TransferError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| TransferError::Io { context, source }
    }
}
