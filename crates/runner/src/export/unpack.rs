//! The hostile-stream unpacker behind [`super::TarExtractor`]: raw tar
//! entries validated one by one and written with `openat`-family calls
//! under the staging directory's fd (the rules are in [`super`]'s docs).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::pax::{parse_pax, read_meta, Pax};
use super::{bad_stream, io_err, ChannelReader, ExportError, ExportLimits, ExportReport, COPY_BUF};

/// Metadata from GNU long-name/long-link and pax headers for the next entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

pub(super) fn unpack_stream(
    root: OwnedFd,
    staging: PathBuf,
    reader: ChannelReader,
    limits: ExportLimits,
    concatenated: bool,
) -> Result<ExportReport, ExportError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_ignore_zeros(concatenated);
    let mut unpacker = Unpacker::new(root, staging, limits);
    {
        let entries = archive.entries().map_err(bad_stream)?.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(bad_stream)?;
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::GNULongName => {
                    if pending
                        .long_name
                        .replace(read_meta(&mut entry, "GNU long name")?)
                        .is_some()
                    {
                        return Err(bad_stream("two GNU long-name headers for one entry"));
                    }
                }
                tar::EntryType::GNULongLink => {
                    if pending
                        .long_link
                        .replace(read_meta(&mut entry, "GNU long link")?)
                        .is_some()
                    {
                        return Err(bad_stream("two GNU long-link headers for one entry"));
                    }
                }
                tar::EntryType::XHeader => {
                    let data = read_meta(&mut entry, "pax")?;
                    if pending.pax.replace(parse_pax(&data)?).is_some() {
                        return Err(bad_stream("two pax headers for one entry"));
                    }
                }
                tar::EntryType::XGlobalHeader => {
                    // Archive-wide defaults (comments, charset); nothing we apply.
                    read_meta(&mut entry, "pax global")?;
                }
                _ => unpacker.entry(&mut entry, std::mem::take(&mut pending))?,
            }
        }
        if !pending.is_empty() {
            return Err(bad_stream(
                "the archive ends with a long-name or pax header that describes no entry",
            ));
        }
    }
    let mut reader = archive.into_inner();
    // Concatenated archives are read to the end of the stream (their
    // integrity is the caller's: each cache chunk is checked by digest).
    if reader.eof && !concatenated {
        return Err(bad_stream(
            "the stream ended before the end-of-archive marker (truncated: did the guest tar fail?)",
        ));
    }
    // Padding after the marker (GNU tar fills its 10 KiB record) must be zeros:
    // anything else would be data we silently ignore.
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = reader.read(&mut buf).map_err(bad_stream)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(bad_stream(
                "unexpected data after the end-of-archive marker",
            ));
        }
    }
    unpacker.finish_dirs()?;
    Ok(unpacker.report)
}

/// Normalises an archive path: `.` components and repeated/trailing `/` are
/// dropped; absolute paths, `..`, NUL and empty names are refused. The result
/// joins the components with `/`; the root is `""`.
pub(super) fn normalise(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.is_empty() {
        return Err("empty name".into());
    }
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    if raw[0] == b'/' {
        return Err("absolute path".into());
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("the name contains a `..` component".into()),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    Ok(out)
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`). `rel` must not be the root.
pub(super) fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// For messages: lossy UTF-8 with control characters escaped.
pub(super) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

pub(super) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

pub(super) fn timestamps(t: Timespec) -> Timestamps {
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

struct DirMeta {
    mode: u32,
    mtime: Option<Timespec>,
}

/// Why a parent lookup failed, before it is turned into an error for an entry.
enum Lookup {
    Refused(String),
    Io(io::Error),
}

/// The extraction state, owned by the unpacking thread.
struct Unpacker {
    root: Rc<OwnedFd>,
    staging: PathBuf,
    /// Every directory we created or saw (root = ""), for the final pass.
    dirs: HashMap<Vec<u8>, DirMeta>,
    /// The last parent directory opened (nothing is ever replaced during an
    /// extraction, so a cached fd keeps naming the same path).
    cached: Option<(Vec<u8>, Rc<OwnedFd>)>,
    entries: u64,
    limits: ExportLimits,
    report: ExportReport,
}

impl Unpacker {
    fn new(root: OwnedFd, staging: PathBuf, limits: ExportLimits) -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(
            Vec::new(),
            DirMeta {
                mode: 0o755,
                mtime: None,
            },
        );
        Self {
            root: Rc::new(root),
            staging,
            dirs,
            cached: None,
            entries: 0,
            limits,
            report: ExportReport::default(),
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pending: Pending,
    ) -> Result<(), ExportError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ExportError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let header = entry.header();
        let pax = pending.pax.unwrap_or_default();
        let raw_path = match pax.path.or(pending.long_name) {
            Some(p) => p,
            None => header.path_bytes().into_owned(),
        };
        let shown = show(&raw_path);
        let refuse = |reason: String| ExportError::Refused {
            entry: shown.clone(),
            reason,
        };
        let rel = normalise(&raw_path).map_err(refuse)?;
        let kind = header.entry_type();
        let mode = header
            .mode()
            .map_err(|e| refuse(format!("bad mode field ({e})")))?
            & 0o777;
        let mtime = match pax.mtime {
            Some(t) => t,
            None => {
                let secs = header
                    .mtime()
                    .map_err(|e| refuse(format!("bad mtime field ({e})")))?;
                Timespec {
                    tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
                    tv_nsec: 0,
                }
            }
        };
        let size = header.entry_size().map_err(bad_stream)?;
        if pax.size.is_some_and(|s| s != size) {
            // The tar crate's raw mode frames entries by the header size; a pax
            // size override would desynchronise us (busybox and GNU tar's
            // default format never emit one).
            return Err(refuse("a pax size override is not supported".into()));
        }
        let link = pax
            .linkpath
            .or(pending.long_link)
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));

        if rel.is_empty() && kind != tar::EntryType::Directory {
            return Err(refuse("the archive root can only be a directory".into()));
        }
        if kind != tar::EntryType::Directory && raw_path.ends_with(b"/") {
            return Err(refuse(
                "a name ending in `/` that is not a directory".into(),
            ));
        }
        match kind {
            tar::EntryType::Directory => self
                .dir(&rel, mode, mtime)
                .map_err(|e| self.for_entry(e, &shown)),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.file(entry, &rel, size, mode, mtime, &shown)
            }
            tar::EntryType::Symlink => {
                let target = link.ok_or_else(|| refuse("a symlink without a target".into()))?;
                self.symlink(&rel, &target, mtime)
                    .map_err(|e| self.for_entry(e, &shown))
            }
            tar::EntryType::Link => {
                let target = link.ok_or_else(|| refuse("a hard link without a target".into()))?;
                self.hardlink(&rel, &target)
                    .map_err(|e| self.for_entry(e, &shown))
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                tracing::warn!(entry = %shown, "skipping a device node or fifo in the build outputs");
                self.report.skipped += 1;
                Ok(())
            }
            tar::EntryType::GNUSparse => Err(refuse("GNU sparse files are not supported".into())),
            other => Err(refuse(format!(
                "unsupported entry type `{}`",
                show(&[other.as_byte()])
            ))),
        }
    }

    fn for_entry(&self, e: Lookup, shown: &str) -> ExportError {
        match e {
            Lookup::Refused(reason) => ExportError::Refused {
                entry: shown.to_string(),
                reason,
            },
            Lookup::Io(source) => io_err(
                format!(
                    "writing build output `{shown}` into {}",
                    self.staging.display()
                ),
                source,
            ),
        }
    }

    /// Opens directory `rel` (`""` = root) without following any symlink,
    /// creating missing components (mode 0700 until the final pass) if asked.
    fn open_dir(&mut self, rel: &[u8], create: bool) -> Result<Rc<OwnedFd>, Lookup> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((path, fd)) = &self.cached {
            if path == rel {
                return Ok(fd.clone());
            }
        }
        let mut cur = self.root.clone();
        let mut end = 0;
        for comp in rel.split(|b| *b == b'/') {
            end += comp.len();
            let walked = &rel[..end];
            let fd = match rustix::fs::openat(&*cur, os(comp), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    rustix::fs::mkdirat(&*cur, os(comp), Mode::from_raw_mode(0o700))
                        .map_err(|e| Lookup::Io(e.into()))?;
                    self.report.dirs += 1;
                    self.dirs.entry(walked.to_vec()).or_insert(DirMeta {
                        mode: 0o755,
                        mtime: None,
                    });
                    rustix::fs::openat(&*cur, os(comp), DIR_FLAGS, Mode::empty())
                        .map_err(|e| Lookup::Io(e.into()))?
                }
                Err(e) => return Err(explain_parent(&cur, comp, walked, e)),
            };
            cur = Rc::new(fd);
            end += 1; // the `/`
        }
        self.cached = Some((rel.to_vec(), cur.clone()));
        Ok(cur)
    }

    fn dir(&mut self, rel: &[u8], mode: u32, mtime: Timespec) -> Result<(), Lookup> {
        if !rel.is_empty() {
            let (parent, name) = split_parent(rel);
            let parent = self.open_dir(parent, true)?;
            match rustix::fs::mkdirat(&*parent, os(name), Mode::from_raw_mode(0o700)) {
                Ok(()) => self.report.dirs += 1,
                Err(Errno::EXIST) => {
                    let st = rustix::fs::statat(&*parent, os(name), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| Lookup::Io(e.into()))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        return Err(exists());
                    }
                }
                Err(e) => return Err(Lookup::Io(e.into())),
            }
        }
        self.dirs.insert(
            rel.to_vec(),
            DirMeta {
                mode,
                mtime: Some(mtime),
            },
        );
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &[u8],
        size: u64,
        mode: u32,
        mtime: Timespec,
        shown: &str,
    ) -> Result<(), ExportError> {
        if self.report.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(ExportError::TooLarge {
                limit: self.limits.max_bytes,
                entry: shown.to_string(),
            });
        }
        let (parent, name) = split_parent(rel);
        let parent = self
            .open_dir(parent, true)
            .map_err(|e| self.for_entry(e, shown))?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&*parent, os(name), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => return Err(self.for_entry(exists(), shown)),
            Err(e) => return Err(self.for_entry(Lookup::Io(e.into()), shown)),
        };
        let mut file = File::from(fd);
        let write_err = |e: io::Error| self.for_entry(Lookup::Io(e), shown);
        let mut buf = vec![0u8; COPY_BUF.min(size as usize).max(1)];
        let mut written = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(bad_stream)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(write_err)?;
            written += n as u64;
        }
        if written != size {
            return Err(bad_stream(format!(
                "the stream ended inside `{shown}` ({written} of {size} bytes; truncated)"
            )));
        }
        rustix::fs::futimens(&file, &timestamps(mtime)).map_err(|e| write_err(e.into()))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| write_err(e.into()))?;
        self.report.files += 1;
        self.report.bytes += written;
        Ok(())
    }

    fn symlink(&mut self, rel: &[u8], target: &[u8], mtime: Timespec) -> Result<(), Lookup> {
        if target.is_empty() || target.contains(&0) {
            return Err(Lookup::Refused(
                "a symlink with an empty target or a NUL byte in it".into(),
            ));
        }
        let (parent, name) = split_parent(rel);
        let parent = self.open_dir(parent, true)?;
        match rustix::fs::symlinkat(os(target), &*parent, os(name)) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(exists()),
            Err(e) => return Err(Lookup::Io(e.into())),
        }
        rustix::fs::utimensat(
            &*parent,
            os(name),
            &timestamps(mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Lookup::Io(e.into()))?;
        self.report.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, rel: &[u8], target: &[u8]) -> Result<(), Lookup> {
        let target_rel = normalise(target).map_err(|why| {
            Lookup::Refused(format!("hard link target `{}`: {why}", show(target)))
        })?;
        let not_file = |what: &str| {
            Lookup::Refused(format!(
                "hard link target `{}` {what}; a hard link may only point to a regular file extracted before it",
                show(target)
            ))
        };
        if target_rel.is_empty() {
            return Err(not_file("is the archive root"));
        }
        let (tparent, tname) = split_parent(&target_rel);
        let tparent = match self.open_dir(tparent, false) {
            Ok(fd) => fd,
            Err(Lookup::Refused(why)) => {
                return Err(not_file(&format!("cannot be reached: {why}")))
            }
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&*tparent, os(tname), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {}
                FileType::Symlink => return Err(not_file("is a symlink")),
                FileType::Directory => return Err(not_file("is a directory")),
                _ => return Err(not_file("is not a regular file")),
            },
            Err(Errno::NOENT) => return Err(not_file("does not exist")),
            Err(e) => return Err(Lookup::Io(e.into())),
        }
        let (parent, name) = split_parent(rel);
        let parent = self.open_dir(parent, true)?;
        // Flags empty: no AT_SYMLINK_FOLLOW, so linkat never follows a symlink.
        match rustix::fs::linkat(&*tparent, os(tname), &*parent, os(name), AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(exists()),
            Err(e) => return Err(Lookup::Io(e.into())),
        }
        self.report.hardlinks += 1;
        Ok(())
    }

    /// Applies directory modes and mtimes, deepest first: after all their
    /// contents exist (creating entries changes a directory's mtime) and
    /// before their parents (a parent made read-only or unsearchable would
    /// stop us reaching them).
    fn finish_dirs(&mut self) -> Result<(), ExportError> {
        let mut dirs: Vec<(Vec<u8>, DirMeta)> =
            std::mem::take(&mut self.dirs).into_iter().collect();
        sort_deepest_first(&mut dirs);
        for (rel, meta) in dirs {
            let shown = show(&rel);
            let fd = if rel.is_empty() {
                self.root.clone()
            } else {
                let (parent, name) = split_parent(&rel);
                let parent = self
                    .open_dir(parent, false)
                    .map_err(|e| self.for_entry(e, &shown))?;
                let fd = rustix::fs::openat(&*parent, os(name), DIR_FLAGS, Mode::empty())
                    .map_err(|e| self.for_entry(Lookup::Io(e.into()), &shown))?;
                Rc::new(fd)
            };
            if let Some(t) = meta.mtime {
                rustix::fs::futimens(&*fd, &timestamps(t))
                    .map_err(|e| self.for_entry(Lookup::Io(e.into()), &shown))?;
            }
            rustix::fs::fchmod(&*fd, Mode::from_raw_mode(meta.mode))
                .map_err(|e| self.for_entry(Lookup::Io(e.into()), &shown))?;
        }
        Ok(())
    }
}

/// Orders directories (normalised paths, root = `""`) children before parents.
pub(super) fn sort_deepest_first<T>(dirs: &mut [(Vec<u8>, T)]) {
    let depth = |rel: &[u8]| {
        if rel.is_empty() {
            0
        } else {
            1 + rel.iter().filter(|b| **b == b'/').count()
        }
    };
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(depth(rel)));
}

fn exists() -> Lookup {
    Lookup::Refused(
        "an entry with this name was already extracted, and outputs never replace one another \
         (only a directory may be listed twice)"
            .into(),
    )
}

/// Turns a failed `openat(O_NOFOLLOW|O_DIRECTORY)` of a parent into a reason.
fn explain_parent(dir: &OwnedFd, comp: &[u8], walked: &[u8], err: Errno) -> Lookup {
    let walked = show(walked);
    match rustix::fs::statat(dir, os(comp), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Lookup::Refused(format!(
            "its parent `{walked}` is a symlink; outputs may contain symlinks but nothing is written through one"
        )),
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            Lookup::Refused(format!("its parent `{walked}` is not a directory"))
        }
        Err(Errno::NOENT) => Lookup::Refused(format!("`{walked}` does not exist")),
        _ => Lookup::Io(err.into()),
    }
}
