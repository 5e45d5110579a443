//! The store's error type.

/// What can go wrong in a [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation (or taking a lock) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for building [`StoreError::Io`] with a context string.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}
