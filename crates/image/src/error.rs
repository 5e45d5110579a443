//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while provisioning a kernel, busybox or an
/// initramfs. Each message says what happened and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Neither `XDG_CACHE_HOME` nor `HOME` is usable.
    #[error(
        "cannot find a cache directory: XDG_CACHE_HOME is unset (or not absolute) and HOME is unset; \
         set one of them"
    )]
    NoCacheDir,

    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `apt-get` / `apt-cache` / `dpkg-deb` is missing on this host.
    #[error(
        "cannot download the Debian package `{package}`: `{tool}` is not installed on this host \
         (apt-get, apt-cache and dpkg-deb are needed); pass a kernel image instead with \
         --kernel PATH (or VMBUILD_KERNEL=PATH), plus --kernel-modules DIR if it needs modules"
    )]
    NoApt {
        /// The package that was to be fetched.
        package: String,
        /// The missing tool.
        tool: &'static str,
    },

    /// An apt or dpkg command failed.
    #[error(
        "`{command}` failed ({status}): {stderr}; check network access to the Debian archive \
         and run `apt-get update`"
    )]
    AptFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its stderr.
        stderr: String,
    },

    /// The downloaded `.deb` does not match its pin.
    #[error(
        "sha256 mismatch for {file}: pinned {expected}, downloaded {actual}; the file was not \
         used. The archive changed under the pin: check the mirror, or update the pin in images/"
    )]
    HashMismatch {
        /// The downloaded file.
        file: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The hash of the file.
        actual: String,
    },

    /// A package did not have the expected contents.
    #[error("package {package} {version} is not usable: {reason}")]
    BadPackage {
        /// Package name.
        package: String,
        /// Package version.
        version: String,
        /// What is wrong.
        reason: String,
    },

    /// The fallback package could not be determined.
    #[error(
        "the pinned {package} {version} is no longer in the apt archive and no fallback was \
         found: {reason}; run `apt-get update`, or pass a kernel with --kernel PATH"
    )]
    NoFallback {
        /// Pinned package.
        package: String,
        /// Pinned version.
        version: String,
        /// Why no fallback could be found.
        reason: String,
    },

    /// A user-supplied kernel is neither a bzImage nor an ELF.
    #[error("{path} is not a Linux kernel image (bzImage or ELF vmlinux)")]
    NotAKernel {
        /// The file.
        path: PathBuf,
    },

    /// A kernel image looks like one but is damaged.
    #[error("{path} is a corrupt or truncated kernel image: {reason}; pass an intact kernel")]
    CorruptKernel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A user-supplied ELF kernel has no PVH entry point, so QEMU cannot boot it.
    #[error(
        "{path} is an ELF vmlinux without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, needs \
         CONFIG_PVH=y); QEMU cannot boot it directly: pass the bzImage (vmlinuz) instead"
    )]
    NoPvhNote {
        /// The file.
        path: PathBuf,
    },

    /// No modules directory was found for a user-supplied kernel.
    #[error(
        "no modules directory for kernel {kernel} (release {release}); looked in: {looked_in}; \
         pass --kernel-modules DIR (the kernel's lib/modules/{release} directory)"
    )]
    NoModulesDir {
        /// The kernel image.
        kernel: PathBuf,
        /// Its release string.
        release: String,
        /// The directories that were tried.
        looked_in: String,
    },

    /// A kernel needs modules but has no modules directory.
    #[error(
        "kernel release {release} has no modules directory but the guest needs modules ({modules}); \
         pass --kernel-modules DIR"
    )]
    ModulesDirMissing {
        /// The kernel release.
        release: String,
        /// The wanted modules.
        modules: String,
    },

    /// A wanted module (or a dependency of one) exists neither as a file nor built in.
    #[error(
        "kernel module `{module}`{needed_by} not found in {dir}: no {module}.ko under kernel/ \
         and not in modules.builtin; use a kernel that provides it (--kernel / --kernel-modules)"
    )]
    ModuleNotFound {
        /// The module name.
        module: String,
        /// `" (needed by X)"` or empty.
        needed_by: String,
        /// The modules directory.
        dir: PathBuf,
    },

    /// Module dependencies form a cycle.
    #[error("kernel module dependency cycle: {chain}; the modules directory is inconsistent")]
    ModuleCycle {
        /// The cycle, `a -> b -> a`.
        chain: String,
    },

    /// A module file could not be parsed.
    #[error("cannot read kernel module {path}: {reason}; the modules directory may be corrupt")]
    BadModule {
        /// The module file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A pin file in images/ is invalid.
    #[error("invalid pin file images/{file}: {reason}")]
    BadPin {
        /// File name.
        file: &'static str,
        /// Parse error.
        reason: String,
    },

    /// A cached entry is unreadable.
    #[error("cache entry {path} is damaged: {reason}; delete it and retry")]
    BadCacheEntry {
        /// The entry.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An environment spec (`environment.contents`) has an invalid field.
    #[error("invalid environment {field} `{value}`: {reason}")]
    InvalidEnvSpec {
        /// Which field: `package`, `suite`, `mirror` or `architecture`.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What is allowed.
        reason: String,
    },

    /// A host tool needed to build environment images is missing.
    #[error("`{tool}` not found in PATH; it is needed to {purpose}: install it with `apt-get install {package}`")]
    ToolMissing {
        /// The executable.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
        /// What it is needed for.
        purpose: &'static str,
    },

    /// apt could not find some requested packages (or versions).
    #[error(
        "package not found in Debian {suite}: {name}; check the spelling and that the package \
         exists in that suite (https://packages.debian.org), or change suite/mirror in \
         environment.contents"
    )]
    UnknownPackage {
        /// The unknown package(s), comma-separated (`name` or `name=version`).
        name: String,
        /// The suite that was searched.
        suite: String,
    },

    /// mmdebstrap or mkfs failed while building an environment image.
    #[error("building the environment image failed: `{command}` exited with {status}; last output: {output}; {hint}")]
    ImageBuildFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its output.
        output: String,
        /// What to check.
        hint: &'static str,
    },

    /// No cached environment image has a key starting with this prefix.
    #[error("no environment image matches `{prefix}`; list them with `vmbuild image ls`")]
    NoSuchImage {
        /// The key prefix asked for.
        prefix: String,
    },

    /// A running build uses the image (or another vmbuild is removing it).
    #[error(
        "environment image {key} is in use by a running vmbuild; try again when it has finished"
    )]
    ImageInUse {
        /// The image's short key.
        key: String,
    },

    /// More than one cached environment image matches a key prefix.
    #[error("`{prefix}` matches several environment images ({matches}); give more characters of the key")]
    AmbiguousImage {
        /// The key prefix asked for.
        prefix: String,
        /// The matching keys, abbreviated.
        matches: String,
    },
}

/// Shorthand for building [`ImageError::Io`] with a context string.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

impl From<vmbuild_store::StoreError> for ImageError {
    fn from(e: vmbuild_store::StoreError) -> ImageError {
        match e {
            vmbuild_store::StoreError::Io { context, source } => ImageError::Io { context, source },
        }
    }
}
