//! `--cache-from` / `--cache-to` around a build, and the transfers of
//! `vmbuild cache export|import`: which volumes, under which locks, with
//! progress and Ctrl-C, and BuildKit's error policy (a failing
//! `--cache-from` is a warning; a failing `--cache-to` too, unless
//! `ignore-error=false`). The transfer itself is `vmbuild_transfer`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vmbuild_cache::volume::{lock_exclusive, VolumeSource, VolumeSpec};
use vmbuild_runner::{RunError, Stopper};
use vmbuild_transfer::{
    CacheRef, Dest, Direction, ExportOptions, Location, Meter, Outcome, Reading, Source,
    TransferError,
};

use crate::live::Task;

/// The name of `--cache-dir` in an export.
pub const CACHE_DIR_NAME: &str = "cache-dir";
/// How often a transfer's meter is read (a live bar moves this often;
/// plain lines come at most every [`crate::live::line::PLAIN_EVERY`]).
const METER_EVERY: Duration = Duration::from_millis(100);

/// A volume a transfer reads or replaces.
#[derive(Debug, Clone)]
pub struct Vol {
    /// Its name in the export.
    pub name: String,
    pub dir: PathBuf,
    /// Its lock's name under the cache root.
    pub lock: String,
    /// Its record's key.
    pub key: String,
}

/// Where the transfer records live: `<cache root>/.transfer` (volume ids
/// never start with a dot).
pub fn records_dir(root: &Path) -> PathBuf {
    root.join(".transfer")
}

/// The build's volumes that transfers cover: `--cache-dir` (as
/// `cache-dir`) and every named volume (`id=`), build- and step-level.
/// `src=DIR` volumes are the user's own directories and are left out.
pub fn build_vols(
    root: &Path,
    cache_dir: Option<&Path>,
    specs: &[&VolumeSpec],
) -> Result<Vec<Vol>, RunError> {
    let mut out = Vec::new();
    if let Some(d) = cache_dir {
        out.push(dir_vol(CACHE_DIR_NAME, d)?);
    }
    for s in specs {
        if let VolumeSource::Named(id) = &s.source {
            if !out.iter().any(|v: &Vol| v.name == *id) {
                out.push(Vol {
                    name: id.clone(),
                    dir: root.join(id),
                    lock: id.clone(),
                    key: id.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// A plain directory as a transfer volume named `name` (made if missing).
pub fn dir_vol(name: &str, dir: &Path) -> Result<Vol, RunError> {
    let dir = vmbuild_cache::prepare_cache_dir(dir)?;
    Ok(Vol {
        name: name.to_string(),
        lock: crate::volumes::src_lock_name(&dir),
        key: vmbuild_transfer::records::key_for(None, &dir),
        dir,
    })
}

/// `--cache-from REF` / `--cache-to REF` as users wrote them.
fn label(dir: Direction, spec: &CacheRef) -> String {
    match dir {
        Direction::From => format!("cache-from {spec}"),
        Direction::To => format!("cache-to {spec}"),
    }
}

/// Runs `work` on its own thread (the transfer blocks: disk, zstd, its own
/// registry client), showing `meter` as a live bar or as plain notes
/// through `note` (see [`crate::live`]), and cancelling it on Ctrl-C or
/// `--timeout` (then waiting for it to clean up).
pub async fn on_thread<T: Send + 'static>(
    label: &str,
    stop: &Stopper,
    note: &mut dyn FnMut(&str),
    work: impl FnOnce(&Meter) -> T + Send + 'static,
) -> Result<T, RunError> {
    let meter = Arc::new(Meter::default());
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let m = meter.clone();
    std::thread::Builder::new()
        .name("vmbuild-transfer".into())
        .spawn(move || {
            let _ = tx.send(work(&m));
        })
        .map_err(|e| RunError::io("starting the cache transfer thread", e))?;
    let mut shown = MeterView::new(crate::live::mode(), label);
    let mut tick = tokio::time::interval(METER_EVERY);
    let during = format!("during {label}");
    let out = loop {
        tokio::select! {
            r = &mut rx => {
                break r.map_err(|_| RunError::CacheTransfer { flag: label.into(), why: "the transfer thread panicked".into() });
            }
            _ = tick.tick() => {
                for l in shown.reading(&meter.read()) {
                    note(&l);
                }
            }
            e = stop.fired(&during) => {
                meter.cancel();
                let _ = rx.await;
                break Err(e);
            }
        }
    };
    for l in shown.finish() {
        note(&l);
    }
    out
}

/// A transfer's [`Meter`] readings as a [`Task`] per phase (packing,
/// pushing, pulling, unpacking).
struct MeterView {
    mode: crate::live::Mode,
    label: String,
    phase: String,
    task: Option<Task>,
}

impl MeterView {
    /// On a terminal a spinner shows at once (connecting to a registry,
    /// reading an export's index); plain lines start with the first phase.
    fn new(mode: crate::live::Mode, label: &str) -> MeterView {
        let task = match mode {
            crate::live::Mode::Bar { .. } => Some(Task::start(mode, label, None).0),
            crate::live::Mode::Plain { .. } => None,
        };
        MeterView {
            mode,
            label: label.to_string(),
            phase: String::new(),
            task,
        }
    }

    /// Takes a reading; the plain lines due, if any.
    fn reading(&mut self, r: &Reading) -> Vec<String> {
        let mut out = Vec::new();
        if r.phase.is_empty() {
            return out;
        }
        // The phase first: a narrow terminal cuts the end of a live line.
        let what = if r.total_blobs > 0 {
            format!(
                "{} {}/{} blobs for {}",
                r.phase, r.blobs, r.total_blobs, self.label
            )
        } else {
            format!("{} for {}", r.phase, self.label)
        };
        if r.phase != self.phase || self.task.is_none() {
            out.extend(self.task.take().and_then(Task::finish));
            r.phase.clone_into(&mut self.phase);
            let total = (r.total_bytes > 0).then_some(r.total_bytes);
            let (task, first) = Task::start(self.mode, &what, total);
            self.task = Some(task);
            out.extend(first);
        }
        if let Some(t) = &mut self.task {
            t.set_what(&what);
            out.extend(t.set_done(r.bytes));
        }
        out
    }

    /// Ends the live line; a plain closing line after a long phase.
    fn finish(&mut self) -> Vec<String> {
        self.task
            .take()
            .and_then(Task::finish)
            .into_iter()
            .collect()
    }
}

/// Imports into `vols` from the `from` specs before a build: for each
/// volume the first spec whose export has it wins; a volume another build
/// holds is left alone. Every failure is a note, never an error (but
/// Ctrl-C and the timeout are).
pub async fn import_before(
    from: &[CacheRef],
    vols: &[Vol],
    root: &Path,
    stop: &Stopper,
    note: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    let mut pending: Vec<Vol> = vols.to_vec();
    std::fs::create_dir_all(root)
        .map_err(|e| RunError::io(format!("creating the cache root {}", root.display()), e))?;
    for spec in from {
        if pending.is_empty() {
            break;
        }
        let l = label(Direction::From, spec);
        let (spec2, todo, root2) = (spec.clone(), pending.clone(), root.to_path_buf());
        let done = on_thread(&l, stop, note, move |meter| {
            import_some(&spec2, &todo, &root2, meter)
        })
        .await?;
        match done {
            Ok(lines) => {
                for (name, line) in lines {
                    note(&format!("{l}: {line}"));
                    if let Some(name) = name {
                        pending.retain(|v| v.name != name);
                    }
                }
            }
            Err(TransferError::Interrupted) => return Err(RunError::Interrupted),
            Err(e @ TransferError::NotFound { .. }) => note(&format!("cache-from: {e}")),
            Err(e) => note(&format!("{l}: {e}; building without it")),
        }
    }
    Ok(())
}

/// One spec's imports: `(Some(volume) when it is settled, line)` each.
fn import_some(
    spec: &CacheRef,
    vols: &[Vol],
    root: &Path,
    meter: &Meter,
) -> Result<Vec<(Option<String>, String)>, TransferError> {
    let mut store = vmbuild_transfer::open(spec, Direction::From, &[])?;
    let export = vmbuild_transfer::read_export(store.as_mut())?;
    let records = records_dir(root);
    let mut lines = Vec::new();
    for v in vols {
        if !export.config.volumes.iter().any(|x| x.name == v.name) {
            continue;
        }
        let lock = match lock_exclusive(root, &v.lock, false, |_| {}) {
            Ok(f) => f,
            Err(e) => {
                lines.push((None, format!("{}: not imported: {e}", v.name)));
                continue;
            }
        };
        let dest = Dest {
            name: v.name.clone(),
            dir: v.dir.clone(),
            key: v.key.clone(),
            force: false,
        };
        let out = vmbuild_transfer::import(
            store.as_mut(),
            &export,
            std::slice::from_ref(&dest),
            &records,
            meter,
        );
        drop(lock);
        match out {
            Ok(outs) => {
                for o in outs {
                    let settled = !matches!(o, Outcome::Absent { .. });
                    lines.push((settled.then(|| o.name().to_string()), o.line()));
                }
            }
            Err(TransferError::Interrupted) => return Err(TransferError::Interrupted),
            Err(e) => lines.push((None, format!("{}: not imported: {e}", v.name))),
        }
    }
    Ok(lines)
}

/// Exports `vols` to each `to` spec after a successful build. A failure
/// is a note, or the build's error with `ignore-error=false`.
pub async fn export_after(
    to: &[CacheRef],
    vols: &[Vol],
    mount_from: &[CacheRef],
    root: &Path,
    stop: &Stopper,
    note: &mut dyn FnMut(&str),
) -> Result<(), RunError> {
    if vols.is_empty() && !to.is_empty() {
        note("cache-to: the build has no --cache-dir and no named volume (--cache id=...): nothing to export");
        return Ok(());
    }
    let mounts: Vec<String> = mount_from
        .iter()
        .filter_map(|s| match &s.location {
            Location::Registry { reference, .. } => Some(reference.clone()),
            Location::Local { .. } => None,
        })
        .collect();
    for spec in to {
        let l = label(Direction::To, spec);
        let (spec2, mounts2, records) = (spec.clone(), mounts.clone(), records_dir(root));
        let sources: Vec<Source> = vols
            .iter()
            .map(|v| Source {
                name: v.name.clone(),
                dir: v.dir.clone(),
                key: v.key.clone(),
            })
            .collect();
        let out = on_thread(&l, stop, note, move |meter| {
            let mut store = vmbuild_transfer::open(&spec2, Direction::To, &mounts2)?;
            vmbuild_transfer::export(
                &sources,
                store.as_mut(),
                &ExportOptions {
                    level: spec2.compression_level,
                    records: &records,
                    meter,
                },
            )
        })
        .await?;
        match out {
            Ok(summary) => note(&format!("cache-to {summary}")),
            Err(TransferError::Interrupted) => return Err(RunError::Interrupted),
            Err(e) if spec.ignore_error => note(&format!(
                "{l}: {e} (ignored; ignore-error=false makes this fail the build)"
            )),
            Err(e) => {
                return Err(RunError::CacheTransfer {
                    flag: format!("--cache-to {spec}"),
                    why: e.to_string(),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmbuild_cache::volume::VolumeSpec;

    fn reading(phase: &str, blobs: u64, bytes: u64) -> Reading {
        Reading {
            phase: phase.into(),
            bytes,
            total_bytes: 4096,
            blobs,
            total_blobs: 2,
            rate: 0.0,
        }
    }

    #[test]
    fn plain_transfer_lines_name_each_phase_once_with_its_size() {
        let mut v = MeterView::new(crate::live::Mode::Plain { color: false }, "cache-to X");
        assert!(v
            .reading(&Reading {
                phase: String::new(),
                ..reading("", 0, 0)
            })
            .is_empty());
        assert_eq!(
            v.reading(&reading("packing", 0, 0)),
            ["packing 0/2 blobs for cache-to X (4.0 KiB)"]
        );
        assert!(
            v.reading(&reading("packing", 1, 2048)).is_empty(),
            "not due yet"
        );
        assert_eq!(
            v.reading(&reading("pushing", 0, 0)),
            ["pushing 0/2 blobs for cache-to X (4.0 KiB)"]
        );
        assert!(v.finish().is_empty(), "a short phase ends without a line");
    }

    #[test]
    fn build_volumes_are_the_cache_dir_and_named_volumes_once() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let a: VolumeSpec = "id=gomod,target=/go".parse().unwrap();
        let a2: VolumeSpec = "id=gomod,target=/go2".parse().unwrap();
        let src: VolumeSpec = format!("src={},target=/x", root.path().display())
            .parse()
            .unwrap();
        let v = build_vols(root.path(), Some(&cache), &[&a, &src, &a2]).unwrap();
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["cache-dir", "gomod"]);
        assert_eq!(v[1].dir, root.path().join("gomod"));
        assert!(v[0].lock.starts_with(".src-"), "{}", v[0].lock);
        assert!(v[0].key.starts_with("dir-"));
        assert!(cache.is_dir(), "the cache dir is made");
    }
}
