//! How far long host-side work (a kernel download, an unpack) has got, told
//! to whoever draws it: the library reports events, the front end decides
//! whether that is a live bar, a plain line now and then, or nothing.

/// One progress event of a long operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// An operation begins (`"downloading linux-image-amd64 6.1.0"`): with
    /// its size in bytes when known (then [`Progress::Bytes`] follow), else
    /// a spinner's worth of work.
    Begin {
        /// What is happening, in words.
        what: &'a str,
        /// Its size in bytes, when known.
        total: Option<u64>,
    },
    /// Bytes done so far in the current operation.
    Bytes(u64),
    /// The current operation ended (successfully or not).
    End,
}

/// A progress sink that ignores everything (for callers without a screen).
pub fn ignore(_: Progress<'_>) {}
